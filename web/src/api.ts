// HTTP and WebSocket access to Shoal with the token the user gave (kept in sessionStorage only).

const TOKEN_KEY = "shoal.token";

export function getToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly details: string,
  ) {
    super(`${status} ${code}: ${details}`);
  }
}

type AuthListener = (error: ApiError) => void;
const authListeners: AuthListener[] = [];

/** Called on every 401/403, so the shell can ask for a token. */
export function onAuthProblem(listener: AuthListener): void {
  authListeners.push(listener);
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  signal?: AbortSignal;
}

export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method: options.method ?? (options.body === undefined ? "GET" : "POST"),
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: "bad_response", details: text.slice(0, 200) };
  }
  if (!response.ok) {
    const body = (data ?? {}) as { error?: string; details?: unknown };
    const details = typeof body.details === "string" ? body.details : JSON.stringify(body.details ?? "");
    const error = new ApiError(response.status, body.error ?? "error", details);
    if (response.status === 401 || response.status === 403) authListeners.forEach((l) => l(error));
    throw error;
  }
  return data as T;
}

export function qs(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Open a WebSocket on this server; the token travels as the `bearer` subprotocol (docs/auth.md). */
export function openSocket(path: string): WebSocket {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}${path}`;
  const token = getToken();
  return token ? new WebSocket(url, ["bearer", token]) : new WebSocket(url);
}
