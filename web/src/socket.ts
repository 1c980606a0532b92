// A WebSocket that reconnects with back-off until closed, and reports its state.
import { openSocket } from "./api";

export type SocketState = "connecting" | "connected" | "offline" | "refused";

export interface LiveSocketHandlers {
  onOpen?: (ws: WebSocket) => void;
  onMessage: (message: Record<string, unknown>) => void;
  onState: (state: SocketState, reason?: string) => void;
}

const POLICY_VIOLATION = 1008;

export class LiveSocket {
  private ws: WebSocket | null = null;
  private retry = 0;
  private timer: number | undefined;
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly handlers: LiveSocketHandlers,
  ) {
    this.connect();
  }

  send(message: unknown): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  close(): void {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.ws?.close(1000, "dashboard closed the view");
    this.ws = null;
  }

  private connect(): void {
    this.handlers.onState("connecting");
    const ws = openSocket(this.path);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.retry = 0;
      this.handlers.onState("connected");
      this.handlers.onOpen?.(ws);
    });
    ws.addEventListener("message", (event: MessageEvent<string>) => {
      try {
        this.handlers.onMessage(JSON.parse(event.data) as Record<string, unknown>);
      } catch {
        // not JSON: nothing a view can show
      }
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws || this.closed) return;
      if (event.code === POLICY_VIOLATION) {
        // a bad token will not get better by retrying
        this.handlers.onState("refused", event.reason);
        return;
      }
      this.handlers.onState("offline", event.reason);
      const delay = Math.min(10_000, 500 * 2 ** this.retry++);
      this.timer = window.setTimeout(() => this.connect(), delay);
    });
  }
}
