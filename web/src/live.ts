// Live stream view: semantic search with filters, and tweets and conversations as they are indexed
// (WS /ws standing queries, one per collection), each with its most similar items; a conversation's
// sentiment and topic appear when the insights processor announces its analysis.
import { api, ApiError } from "./api";
import type { Analysis, DashboardConfig, SearchHit, SearchOut, View } from "./config";
import { byId, fill, h, localToIso, score, sentimentBadge, time } from "./dom";
import { LiveSocket } from "./socket";

const FEED_SIZE = 50; // items kept on screen: the page must not grow without bound
const SIMILAR = 3;
const BACKLOG = 10;

/** A watched collection: tweets come from the tweet stream, conversations from insights. */
interface Stream {
  kind: "tweet" | "conversation";
  collection: string;
  query: string; // the standing query's id on the socket
}

interface Payload {
  text?: string;
  user_id?: string;
  username?: string;
  author?: string | null;
}

interface Match {
  type: "match";
  collection: string;
  id: string;
  payload: Payload;
  analysis?: Analysis;
}

interface AnalysisPush {
  type: "analysis";
  collection: string;
  id: string;
  analysis: Analysis;
}

/** What a feed item shows, from a push or from the backlog. */
interface Entry {
  stream: Stream;
  id: string;
  payload: Payload;
  analysis: Analysis | null | undefined;
}

export class LiveView implements View {
  private socket: LiveSocket | null = null;
  private streams: Stream[] = [];
  private unconfirmed = new Set<string>(); // standing queries sent, not yet acknowledged
  private watched = false; // every standing query acknowledged
  private loading = 0; // backlogs still being read
  private watching = { query: "", min: 0.3 };
  private readonly feed = byId<HTMLOListElement>("live-feed");
  private readonly status = byId("live-status");
  private readonly empty = byId("live-empty");

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
      for (const stream of this.streams) this.socket?.send({ type: "unsubscribe", id: stream.query });
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
    const select = byId<HTMLSelectElement>("search-collection");
    const preferred = [config.tweets, config.conversations, config.items].filter((c): c is string => !!c);
    const names = [...new Set([...preferred, ...config.collections])];
    fill(select, names.map((n) => h("option", { value: n }, n)));
    if (config.principal && !config.principal.admin) byId<HTMLInputElement>("tweet-user").value = config.principal.subject;
    this.socket?.close();
    this.socket = null;
    fill(this.feed, []);
    this.empty.hidden = false;
    if (!config.tweets) {
      // the standing queries live on the tweet stream's socket
      this.streams = [];
      this.setStatus("tweet stream off");
      this.empty.textContent = "The live stream needs the tweet stream feature.";
      return;
    }
    this.streams = [{ kind: "tweet", collection: config.tweets, query: "dashboard-live" }];
    if (config.conversations) {
      this.streams.push({ kind: "conversation", collection: config.conversations, query: "dashboard-live-conversations" });
    }
    const what = this.streams.length > 1 ? "tweets and conversations" : "tweets";
    this.empty.textContent = `Waiting for ${what}… they appear here as soon as they are indexed.`;
    byId<HTMLInputElement>("watch-query").placeholder = `empty: every new ${this.streams.length > 1 ? "item" : "tweet"}`;
    this.watched = false;
    this.loading = this.streams.length;
    for (const stream of this.streams) {
      void this.backlog(stream).finally(() => {
        this.loading -= 1;
        this.markReady();
      });
    }
    this.socket = new LiveSocket("/ws", {
      onOpen: () => {
        markOnce("shoal:ws-open");
        this.subscribe();
      },
      onState: (state, reason) => this.setStatus(reason ? `${state}: ${reason}` : state === "connected" ? "subscribing" : state),
      onMessage: (m) => this.onMessage(m),
    });
  }

  private setStatus(text: string): void {
    this.status.textContent = text;
    this.status.dataset.state = text.split(":")[0];
  }

  private subscribe(): void {
    const { query, min } = this.watching;
    this.unconfirmed = new Set(this.streams.map((s) => s.query));
    for (const stream of this.streams) {
      // With no topic, a cosine >= -1 matches every new record: the standing query becomes a live feed.
      this.socket?.send({
        type: "subscribe",
        id: stream.query,
        collection: stream.collection,
        query: query || "everything",
        min_score: query ? min : -1,
      });
    }
  }

  private onMessage(message: Record<string, unknown>): void {
    switch (message.type) {
      case "match": {
        const match = message as unknown as Match;
        const stream = this.streams.find((s) => s.collection === match.collection);
        if (stream) this.add({ stream, id: match.id, payload: match.payload, analysis: match.analysis ?? null });
        break;
      }
      case "analysis": {
        const push = message as unknown as AnalysisPush;
        const item = this.item(push.collection, push.id);
        item?.querySelector(".analysis")?.replaceChildren(...analysisLine(push.analysis));
        break;
      }
      case "subscribed":
        this.unconfirmed.delete(String(message.id));
        // "connected" only once every stream is watched: nothing indexed after it is missed
        if (this.unconfirmed.size === 0) {
          this.setStatus(this.watching.query ? `watching “${this.watching.query}”` : "connected");
          this.watched = true;
          this.markReady();
        }
        break;
      case "ack":
        this.empty.textContent = `Sent: ${(message.ids as string[]).join(", ")} — waiting for it to be indexed…`;
        break;
      case "error":
        this.setStatus(`error: ${String(message.details ?? message.error)}`);
        break;
      default:
        break;
    }
  }

  /** The first load is over once the newest items are on screen and the socket watches every stream. */
  private markReady(): void {
    if (this.loading > 0 || !this.watched || document.body.dataset.live === "ready") return;
    markOnce("shoal:live-ready"); // bench/dashboard.py: navigation start → here
    document.body.dataset.live = "ready";
  }

  private item(collection: string, id: string): HTMLElement | null {
    return this.feed.querySelector<HTMLElement>(`[data-collection="${CSS.escape(collection)}"][data-id="${CSS.escape(id)}"]`);
  }

  /** The newest records of a stream, so the feed is not empty before the first push. */
  private async backlog(stream: Stream): Promise<void> {
    try {
      const out = await api<SearchOut>("/dashboard/search", { body: { collection: stream.collection, limit: BACKLOG } });
      for (const hit of out.results) {
        // below anything pushed meanwhile: the backlog is older than every push
        if (this.item(stream.collection, hit.id)) continue;
        const payload: Payload = { ...(hit.payload as Payload), text: hit.text ?? "" };
        this.add({ stream, id: hit.id, payload, analysis: hit.analysis }, hit.ts ? new Date(hit.ts) : new Date(0));
      }
    } catch (error) {
      this.empty.textContent = `Cannot read the newest ${stream.kind}s: ${error instanceof Error ? error.message : String(error)}`;
    }
  }

  /** Show an entry: at the top when pushed live (``at`` null), in time order below when from the backlog. */
  private add(entry: Entry, at: Date | null = null): void {
    const { stream, id, payload } = entry;
    this.item(stream.collection, id)?.remove();
    const conversation = stream.kind === "conversation";
    const who = conversation ? payload.author || "anonymous" : payload.username ? `@${payload.username}` : payload.user_id ?? "";
    const label = conversation ? "Similar conversations" : "Similar tweets";
    const similar = h("ol", { class: "similar", "aria-label": label }, h("li", { class: "muted" }, "finding similar…"));
    const when = at ?? new Date();
    const item = h(
      "li",
      {
        class: at ? `live-item ${stream.kind} backlog` : `live-item ${stream.kind}`,
        "data-id": id,
        "data-collection": stream.collection,
        "data-kind": stream.kind,
        "data-ts": String(when.getTime()),
      },
      h("p", { class: "text" }, payload.text ?? ""),
      h(
        "p",
        { class: "meta" },
        h("span", { class: `kind ${stream.kind}` }, conversation ? "Conversation" : "Tweet"),
        " ",
        h("span", {}, who),
        " · ",
        h("time", { datetime: when.toISOString() }, when.toLocaleString()),
      ),
      conversation ? h("p", { class: "meta analysis" }, ...analysisLine(entry.analysis)) : null,
      similar,
    );
    if (at) this.placeOlder(item, at.getTime());
    else this.feed.prepend(item);
    this.empty.hidden = true;
    while (this.feed.children.length > FEED_SIZE) this.feed.lastElementChild?.remove();
    void this.similar(stream, id, similar);
  }

  /** Backlog entries of several streams arrive in any order: keep them newest first. */
  private placeOlder(item: HTMLElement, ts: number): void {
    for (const other of this.feed.querySelectorAll<HTMLElement>(".live-item.backlog")) {
      if (Number(other.dataset.ts) < ts) {
        other.before(item);
        return;
      }
    }
    this.feed.append(item);
  }

  private async similar(stream: Stream, id: string, target: HTMLElement): Promise<void> {
    try {
      const out = await api<SearchOut>("/dashboard/search", { body: { collection: stream.collection, id, limit: SIMILAR } });
      fill(
        target,
        out.results.length
          ? out.results.map((r) => h("li", {}, h("span", { class: "score" }, score(r.score)), " ", r.text ?? r.id))
          : [h("li", { class: "muted" }, `no similar ${stream.kind}s yet`)],
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

/** A User Timing mark, once per page load (measured from navigation start). */
function markOnce(name: string): void {
  if (!performance.getEntriesByName(name, "mark").length) performance.mark(name);
}

/** A conversation's sentiment and topic, or that it is still being analysed. */
function analysisLine(analysis: Analysis | null | undefined): (Node | string)[] {
  if (!analysis) return [h("span", { class: "pending" }, "analysing…")];
  const parts: (Node | string)[] = [sentimentBadge(analysis.sentiment, analysis.sentiment_score) ?? ""];
  if (analysis.cluster) parts.push(" topic ", h("span", { class: "topic" }, analysis.cluster));
  parts.push(` · confidence ${score(analysis.confidence)}`);
  return parts;
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
      hit.analysis?.cluster ? ` · topic ${hit.analysis.cluster}` : "",
    ),
  );
}
