// The dashboard shell: tabs (hash routed, arrow-key navigable), the token, the server config.
import "./style.css";
import { api, ApiError, getToken, onAuthProblem, setToken } from "./api";
import type { DashboardConfig, View } from "./config";
import { byId } from "./dom";
import { HealthView } from "./health";
import { InsightsView } from "./insights";
import { LiveView } from "./live";
import { RecsView } from "./recs";

const NAMES = ["live", "insights", "recs", "health"] as const;
type Name = (typeof NAMES)[number];

const banner = byId("banner");
const tokenInput = byId<HTMLInputElement>("token");
const tabs = NAMES.map((n) => byId<HTMLButtonElement>(`tab-${n}`));
const views: Record<Name, View> = {
  live: new LiveView(),
  insights: new InsightsView(),
  recs: new RecsView(),
  health: new HealthView(),
};
let current: Name | null = null;

function warn(text: string): void {
  banner.textContent = text;
  banner.hidden = !text;
}

onAuthProblem((error) => {
  warn(
    error.status === 401
      ? `Authentication required (${error.details}). Paste a token or API key above.`
      : `Forbidden: ${error.details}`,
  );
  if (error.status === 401) tokenInput.focus();
});

function nameFromHash(): Name {
  const wanted = location.hash.replace(/^#/, "");
  return (NAMES as readonly string[]).includes(wanted) ? (wanted as Name) : "live";
}

function select(name: Name, focus = false): void {
  tabs.forEach((tab, i) => {
    const on = NAMES[i] === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    byId(`view-${NAMES[i]}`).hidden = !on;
    if (on && focus) tab.focus();
  });
  if (current && current !== name) views[current].hide();
  current = name;
  views[name].show();
}

tabs.forEach((tab, i) => {
  tab.addEventListener("click", () => {
    history.replaceState(null, "", `#${NAMES[i]}`);
    select(NAMES[i]);
  });
  tab.addEventListener("keydown", (event) => {
    const moves: Record<string, number> = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: NAMES.length - 1 - i };
    const move = moves[event.key];
    if (move === undefined) return;
    event.preventDefault();
    const next = NAMES[(i + move + NAMES.length) % NAMES.length];
    history.replaceState(null, "", `#${next}`);
    select(next, true);
  });
});
window.addEventListener("hashchange", () => select(nameFromHash()));

async function loadConfig(): Promise<void> {
  try {
    const config = await api<DashboardConfig>("/dashboard/config");
    warn("");
    byId("version").textContent = `v${config.version}`;
    document.body.dataset.ready = "true";
    // each view reloads itself if it is the visible one
    for (const view of Object.values(views)) view.reset(config);
  } catch (error) {
    if (!(error instanceof ApiError && (error.status === 401 || error.status === 403))) {
      warn(`Cannot reach the server: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

byId<HTMLFormElement>("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(tokenInput.value.trim());
  void loadConfig();
});

tokenInput.value = getToken();
select(nameFromHash());
void loadConfig();
