// Recommendations view: pick a user, send interactions with a click, watch the list change live
// (WS /ws/recommendations/{user_id}) next to the items similar to the one clicked.
import { api, ApiError } from "./api";
import type { DashboardConfig, SearchOut, View } from "./config";
import { byId, fill, h, score, time } from "./dom";
import { LiveSocket } from "./socket";

interface RecItem {
  item_id: string;
  title: string;
  score: number;
}

interface RecList {
  type?: string;
  user_id: string;
  items: RecItem[];
  updated_at: string | null;
  source: string;
}

const USERS_KEY = "shoal.dashboard.users";

export class RecsView implements View {
  private config: DashboardConfig | null = null;
  private socket: LiveSocket | null = null;
  private user = "";
  private updates = 0;
  private visible = false;

  constructor() {
    byId<HTMLFormElement>("rec-user-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.watch(byId<HTMLInputElement>("rec-user").value.trim());
    });
    byId<HTMLFormElement>("catalog-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.catalog(byId<HTMLInputElement>("catalog-q").value.trim());
    });
    byId<HTMLSelectElement>("rec-type").addEventListener("change", () => this.relabel());
    this.rememberUsers();
  }

  show(): void {
    this.visible = true;
    if (this.config && !this.socket) this.start();
  }

  hide(): void {
    this.visible = false;
  }

  reset(config: DashboardConfig): void {
    this.config = config;
    this.socket?.close();
    this.socket = null;
    if (config.principal && !config.principal.admin) byId<HTMLInputElement>("rec-user").value = config.principal.subject;
    if (this.visible) this.start();
  }

  private start(): void {
    if (!this.config?.items) {
      byId("rec-status").textContent = "recommendations off";
      return;
    }
    this.watch(byId<HTMLInputElement>("rec-user").value.trim());
    void this.catalog("");
  }

  private watch(user: string): void {
    if (!user || !this.config?.items) return;
    this.user = user;
    this.updates = 0;
    byId("rec-for").textContent = user;
    this.rememberUsers(user);
    this.socket?.close();
    const status = byId("rec-status");
    this.socket = new LiveSocket(`/ws/recommendations/${encodeURIComponent(user)}`, {
      onState: (state, reason) => {
        status.textContent = reason ? `${state}: ${reason}` : state;
        status.dataset.state = state;
      },
      onMessage: (m) => {
        if (m.type === "recommendations") this.render(m as unknown as RecList);
      },
    });
  }

  private render(list: RecList): void {
    if (list.user_id && list.user_id !== this.user) return;
    this.updates += 1;
    const panel = byId<HTMLOListElement>("rec-list");
    panel.dataset.updates = String(this.updates);
    byId("rec-source").textContent = list.source;
    byId("rec-updated").textContent = list.updated_at
      ? `Updated ${time(list.updated_at)} (${list.source === "popular" ? "trending items: no taste yet" : "from this user's taste"})`
      : "";
    fill(
      panel,
      list.items.length
        ? list.items.map((item) => this.itemRow(item.item_id, item.title, item.score))
        : [h("li", { class: "muted" }, "No items yet: import a catalog (shoal import) into the items collection.")],
    );
    panel.classList.remove("flash");
    void panel.offsetWidth; // restart the highlight animation
    panel.classList.add("flash");
  }

  private itemRow(id: string, title: string, value: number | null): HTMLLIElement {
    const type = byId<HTMLSelectElement>("rec-type").value;
    return h(
      "li",
      { class: "item", "data-id": id },
      h("span", { class: "item-title" }, title || id),
      value === null ? null : h("span", { class: "score", title: "score" }, score(value)),
      h(
        "button",
        {
          type: "button",
          class: "send-interaction",
          "aria-label": `Send ${type.replace(/_/g, " ")} on ${title || id}`,
          onclick: () => void this.interact(id, title || id),
        },
        `Send ${type.replace(/_/g, " ")}`,
      ),
    );
  }

  private relabel(): void {
    const type = byId<HTMLSelectElement>("rec-type").value.replace(/_/g, " ");
    document.querySelectorAll<HTMLButtonElement>("#view-recs button.send-interaction").forEach((b) => {
      const title = b.parentElement?.querySelector(".item-title")?.textContent ?? "";
      b.textContent = `Send ${type}`;
      b.setAttribute("aria-label", `Send ${type} on ${title}`);
    });
  }

  private async interact(itemId: string, title: string): Promise<void> {
    const type = byId<HTMLSelectElement>("rec-type").value;
    const status = byId("rec-updated");
    try {
      await api("/v1/events", { body: { user_id: this.user, item_id: itemId, type } });
      status.textContent = `Sent ${type} on “${title}”; waiting for the new list…`;
    } catch (error) {
      status.textContent = error instanceof ApiError ? `${error.code}: ${error.details}` : String(error);
      return;
    }
    byId("similar-of").textContent = `“${title}”`;
    try {
      const out = await api<{ items: RecItem[] }>(`/v1/items/${encodeURIComponent(itemId)}/similar?limit=8`);
      fill(
        byId("similar-list"),
        out.items.length ? out.items.map((i) => this.itemRow(i.item_id, i.title, i.score)) : [h("li", { class: "muted" }, "none")],
      );
    } catch (error) {
      fill(byId("similar-list"), [h("li", { class: "muted" }, error instanceof Error ? error.message : String(error))]);
    }
  }

  private async catalog(query: string): Promise<void> {
    if (!this.config?.items) return;
    try {
      const body = query ? { collection: this.config.items, text: query, limit: 15 } : { collection: this.config.items, limit: 15 };
      const out = await api<SearchOut>("/dashboard/search", { body });
      const title = (hit: SearchOut["results"][number]): string => String(hit.payload.title ?? hit.text ?? hit.id);
      fill(
        byId("catalog"),
        out.results.length
          ? out.results.map((hit) => this.itemRow(hit.id, title(hit), query ? hit.score : null))
          : [h("li", { class: "muted" }, "No items found.")],
      );
    } catch (error) {
      fill(byId("catalog"), [h("li", { class: "muted" }, error instanceof Error ? error.message : String(error))]);
    }
  }

  private rememberUsers(user?: string): void {
    const users: string[] = JSON.parse(sessionStorage.getItem(USERS_KEY) ?? "[]") as string[];
    if (user && !users.includes(user)) users.unshift(user);
    sessionStorage.setItem(USERS_KEY, JSON.stringify(users.slice(0, 20)));
    fill(byId("rec-users"), users.map((u) => h("option", { value: u })));
  }
}
