// Live stream view: semantic search with filters, and tweets as they are indexed (WS /ws standing
// query), each with its most similar tweets.
import { api, ApiError } from "./api";
import type { DashboardConfig, SearchHit, SearchOut, View } from "./config";
import { byId, fill, h, localToIso, score, sentimentBadge, time } from "./dom";
import { LiveSocket } from "./socket";

const FEED_SIZE = 50; // items kept on screen: the page must not grow without bound
const SIMILAR = 3;
const LIVE_QUERY_ID = "dashboard-live";

interface Match {
  type: "match";
  tweet_id: string;
  score: number;
  payload: { text?: string; user_id?: string; username?: string };
}

export class LiveView implements View {
  private config: DashboardConfig | null = null;
  private socket: LiveSocket | null = null;
  private watching = { query: "", min: 0.3 };
  private readonly feed = byId<HTMLOListElement>("live-feed");
  private readonly status = byId("live-status");

  constructor() {
    byId<HTMLFormElement>("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.search();
    });
    byId<HTMLFormElement>("watch-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.watching = {
        query: byId<HTMLInputElement>("watch-query").value.trim(),
        min: Number(byId<HTMLInputElement>("watch-min").value || "0.3"),
      };
      this.socket?.send({ type: "unsubscribe", id: LIVE_QUERY_ID });
      this.subscribe();
    });
    byId<HTMLFormElement>("tweet-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendTweet();
    });
  }

  show(): void {}

  hide(): void {}

  reset(config: DashboardConfig): void {
    this.config = config;
    const select = byId<HTMLSelectElement>("search-collection");
    const preferred = [config.tweets, config.conversations, config.items].filter((c): c is string => !!c);
    const names = [...new Set([...preferred, ...config.collections])];
    fill(select, names.map((n) => h("option", { value: n }, n)));
    if (config.principal && !config.principal.admin) byId<HTMLInputElement>("tweet-user").value = config.principal.subject;
    this.socket?.close();
    this.socket = null;
    if (!config.tweets) {
      this.setStatus("tweet stream off");
      return;
    }
    void this.backlog(config.tweets);
    this.socket = new LiveSocket("/ws", {
      onOpen: () => this.subscribe(),
      onState: (state, reason) => this.setStatus(reason ? `${state}: ${reason}` : state),
      onMessage: (m) => this.onMessage(m),
    });
  }

  private setStatus(text: string): void {
    this.status.textContent = text;
    this.status.dataset.state = text.split(":")[0];
  }

  private subscribe(): void {
    const { query, min } = this.watching;
    // With no topic, a cosine >= -1 matches every new tweet: the standing query becomes a live feed.
    this.socket?.send({
      type: "subscribe",
      id: LIVE_QUERY_ID,
      query: query || "everything",
      min_score: query ? min : -1,
    });
  }

  private onMessage(message: Record<string, unknown>): void {
    switch (message.type) {
      case "match":
        this.add(message as unknown as Match);
        break;
      case "subscribed":
        this.setStatus(this.watching.query ? `watching “${this.watching.query}”` : "connected");
        break;
      case "ack":
        byId("live-empty").textContent = `Sent: ${(message.ids as string[]).join(", ")} — waiting for it to be indexed…`;
        break;
      case "error":
        this.setStatus(`error: ${String(message.details ?? message.error)}`);
        break;
      default:
        break;
    }
  }

  /** The newest tweets, so the feed is not empty before the first push. */
  private async backlog(collection: string): Promise<void> {
    try {
      const out = await api<SearchOut>("/dashboard/search", { body: { collection, limit: 10 } });
      for (const hit of out.results) {
        // below anything pushed meanwhile: the backlog is older than every push
        if (this.feed.querySelector(`[data-id="${CSS.escape(hit.id)}"]`)) continue;
        const match: Match = { type: "match", tweet_id: hit.id, score: 0, payload: { text: hit.text ?? "", user_id: hit.user ?? undefined } };
        this.add(match, hit.ts ? new Date(hit.ts) : null);
      }
    } catch (error) {
      byId("live-empty").textContent = `Cannot read the newest tweets: ${error instanceof Error ? error.message : String(error)}`;
    }
  }

  /** Show a tweet: at the top when pushed live (``at`` null), in time order below when from the backlog. */
  private add(match: Match, at: Date | null = null): void {
    const existing = this.feed.querySelector<HTMLElement>(`[data-id="${CSS.escape(match.tweet_id)}"]`);
    existing?.remove();
    const who = match.payload.username ? `@${match.payload.username}` : match.payload.user_id ?? "";
    const similar = h("ol", { class: "similar", "aria-label": "Similar tweets" }, h("li", { class: "muted" }, "finding similar…"));
    const when = at ?? new Date();
    const item = h(
      "li",
      { class: at ? "live-item backlog" : "live-item", "data-id": match.tweet_id },
      h("p", { class: "text" }, match.payload.text ?? ""),
      h("p", { class: "meta" }, h("span", {}, who), " · ", h("time", { datetime: when.toISOString() }, when.toLocaleString())),
      similar,
    );
    if (at) this.feed.append(item);
    else this.feed.prepend(item);
    byId("live-empty").hidden = true;
    while (this.feed.children.length > FEED_SIZE) this.feed.lastElementChild?.remove();
    void this.similar(match.tweet_id, similar);
  }

  private async similar(id: string, target: HTMLElement): Promise<void> {
    if (!this.config?.tweets) return;
    try {
      const out = await api<SearchOut>("/dashboard/search", { body: { collection: this.config.tweets, id, limit: SIMILAR } });
      fill(
        target,
        out.results.length
          ? out.results.map((r) => h("li", {}, h("span", { class: "score" }, score(r.score)), " ", r.text ?? r.id))
          : [h("li", { class: "muted" }, "no similar tweets yet")],
      );
    } catch (error) {
      fill(target, [h("li", { class: "muted" }, error instanceof Error ? error.message : String(error))]);
    }
  }

  private sendTweet(): void {
    const user = byId<HTMLInputElement>("tweet-user").value.trim();
    const input = byId<HTMLInputElement>("tweet-text");
    const text = input.value.trim();
    if (!user || !text) return;
    const id = `${user}:${Date.now().toString(36)}`;
    if (this.socket?.send({ tweets: [{ id, user_id: user, username: user, text }] })) input.value = "";
    else this.setStatus("offline: cannot send");
  }

  private async search(): Promise<void> {
    const status = byId("search-status");
    const list = byId<HTMLOListElement>("search-results");
    const form = {
      collection: byId<HTMLSelectElement>("search-collection").value,
      text: byId<HTMLInputElement>("q").value.trim(),
      user: byId<HTMLInputElement>("search-user").value.trim() || undefined,
      start_time: localToIso(byId<HTMLInputElement>("search-from").value),
      end_time: localToIso(byId<HTMLInputElement>("search-to").value),
      sentiment: byId<HTMLSelectElement>("search-sentiment").value || undefined,
      limit: 20,
    };
    if (!form.text || !form.collection) return;
    status.textContent = "searching…";
    try {
      const out = await api<SearchOut>("/dashboard/search", { body: form });
      status.textContent = `${out.results.length} result${out.results.length === 1 ? "" : "s"} in ${out.took_ms.toFixed(1)} ms`;
      fill(list, out.results.map(resultItem));
    } catch (error) {
      status.textContent = error instanceof ApiError ? `${error.code}: ${error.details}` : String(error);
      fill(list, []);
    }
  }
}

function resultItem(hit: SearchHit): HTMLLIElement {
  return h(
    "li",
    { class: "result" },
    h("p", { class: "text" }, hit.text ?? hit.id),
    h(
      "p",
      { class: "meta" },
      h("span", { class: "score", title: "cosine similarity" }, score(hit.score)),
      hit.user ? ` · ${hit.user}` : "",
      hit.ts ? ` · ${time(hit.ts)}` : "",
      " ",
      sentimentBadge(hit.sentiment?.label, hit.sentiment?.score),
    ),
  );
}
