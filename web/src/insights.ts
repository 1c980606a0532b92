// Insights view: sentiment over time, top clusters (size, trend, examples), a cluster's conversations.
import { api, ApiError, qs } from "./api";
import { sentimentChart, type SentimentBucket } from "./charts";
import type { DashboardConfig, View } from "./config";
import { byId, fill, h, num, score, sentimentBadge, time } from "./dom";

interface TopCluster {
  label: string;
  count: number;
  trend: "rising" | "falling" | "steady";
}

interface Summary {
  buckets: SentimentBucket[];
  top_clusters: TopCluster[];
  metadata: { total_count: number; avg_sentiment: number | null; pending_count: number; failed_count: number };
}

interface Cluster {
  id: string | number;
  label: string;
  size: number;
  top_terms: string[];
  examples: string[];
}

interface Insight {
  conversation_id: string;
  timestamp: string;
  text: string;
  author: string | null;
  grok_analysis: {
    sentiment_score: number;
    sentiment?: string;
    clusters: string[];
    confidence: number;
    reasoning: string;
    analyzer?: string;
  } | null;
}

interface InsightsPage {
  insights: Insight[];
  metadata: { total_count: number; returned_count: number };
}

const TREND = { rising: "↑ rising", falling: "↓ falling", steady: "→ steady" } as const;
const BUCKETS = [60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400];
const EPOCH = "2006-01-01T00:00:00Z"; // "all time": before any tweet

function bucketFor(seconds: number): string {
  const size = BUCKETS.find((b) => seconds / b <= 60) ?? BUCKETS[BUCKETS.length - 1];
  return size % 86400 === 0 ? `${size / 86400}d` : size % 3600 === 0 ? `${size / 3600}h` : `${size / 60}m`;
}

function bucketSeconds(bucket: string): number {
  const n = Number.parseInt(bucket, 10);
  return n * ({ m: 60, h: 3600, d: 86400 } as Record<string, number>)[bucket.slice(-1)];
}

/** Every bucket from the first to the last present one, empty ones as zero, so the axis is time. */
function dense(buckets: SentimentBucket[], step: number): SentimentBucket[] {
  if (buckets.length < 2) return buckets;
  const by = new Map(buckets.map((b) => [Date.parse(b.start), b]));
  const first = Date.parse(buckets[0].start);
  const last = Date.parse(buckets[buckets.length - 1].start);
  const out: SentimentBucket[] = [];
  for (let t = first; t <= last && out.length < 500; t += step * 1000) {
    out.push(by.get(t) ?? { start: new Date(t).toISOString(), count: 0, avg_sentiment: null, positive: 0, negative: 0, neutral: 0 });
  }
  return out;
}

export class InsightsView implements View {
  private config: DashboardConfig | null = null;
  private visible = false;
  private range = { start: "", end: "" };
  private selected: string | null = null;

  constructor() {
    byId<HTMLFormElement>("insights-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.load();
    });
    byId<HTMLSelectElement>("insights-range").addEventListener("change", () => void this.load());
  }

  show(): void {
    this.visible = true;
    void this.load();
  }

  hide(): void {
    this.visible = false;
  }

  reset(config: DashboardConfig): void {
    this.config = config;
    if (this.visible) void this.load();
  }

  private async window(): Promise<{ start: string; end: string }> {
    const end = new Date();
    const choice = byId<HTMLSelectElement>("insights-range").value;
    if (choice !== "all") return { start: new Date(end.getTime() - Number(choice) * 1000).toISOString(), end: end.toISOString() };
    // all time: from the oldest conversation (the API lists oldest first)
    const page = await api<InsightsPage>(`/api/v1/insights${qs({ start_time: EPOCH, end_time: end.toISOString(), limit: 1 })}`);
    const oldest = page.insights[0]?.timestamp ?? new Date(end.getTime() - 86400_000).toISOString();
    return { start: oldest, end: end.toISOString() };
  }

  private async load(): Promise<void> {
    if (!this.config) return;
    const totals = byId("insights-totals");
    if (!this.config.conversations) {
      totals.textContent = "The insights feature is not enabled on this server.";
      return;
    }
    totals.textContent = "loading…";
    try {
      this.range = await this.window();
      const seconds = (Date.parse(this.range.end) - Date.parse(this.range.start)) / 1000;
      const bucket = bucketFor(Math.max(seconds, 60));
      const [summary, clusters] = await Promise.all([
        api<Summary>(`/api/v1/insights/summary${qs({ start_time: this.range.start, end_time: this.range.end, bucket, top: 12 })}`),
        api<{ clusters: Cluster[] }>("/api/v1/clusters?limit=200"),
      ]);
      const m = summary.metadata;
      totals.textContent =
        `${num(m.total_count)} analysed · average sentiment ${score(m.avg_sentiment)} · ` +
        `${num(m.pending_count)} pending · ${num(m.failed_count)} failed`;
      const figure = byId("sentiment-chart");
      fill(figure, sentimentChart(dense(summary.buckets, bucketSeconds(bucket))));
      this.renderClusters(summary.top_clusters, clusters.clusters);
      if (this.selected) void this.conversations(this.selected);
    } catch (error) {
      totals.textContent = error instanceof ApiError ? `${error.code}: ${error.details}` : String(error);
    }
  }

  private renderClusters(top: TopCluster[], all: Cluster[]): void {
    const byLabel = new Map(all.map((c) => [c.label, c]));
    // clusters active in the range first; without any, the largest ones overall
    const rows = top.length
      ? top.map((t) => ({ label: t.label, count: t.count, trend: TREND[t.trend], info: byLabel.get(t.label) }))
      : all.slice(0, 12).map((c) => ({ label: c.label, count: c.size, trend: "", info: c }));
    const list = byId("clusters");
    if (!rows.length) {
      fill(list, [h("li", { class: "muted" }, "No clusters yet: post conversations to /api/v1/conversations.")]);
      return;
    }
    fill(
      list,
      rows.map((row) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "cluster",
              "aria-pressed": String(row.label === this.selected),
              "data-label": row.label,
              onclick: () => {
                this.selected = row.label;
                list.querySelectorAll<HTMLElement>("button.cluster").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.label === row.label)));
                void this.conversations(row.label);
              },
            },
            h("span", { class: "cluster-label" }, row.label),
            h("span", { class: "cluster-count" }, `${num(row.count)} conversation${row.count === 1 ? "" : "s"}${row.info ? ` · cluster size ${num(row.info.size)}` : ""}`),
            row.trend ? h("span", { class: `trend ${row.trend.split(" ")[1]}` }, row.trend) : null,
            row.info?.examples.length ? h("span", { class: "examples" }, `“${row.info.examples.slice(0, 2).join("” · “")}”`) : null,
          ),
        ),
      ),
    );
  }

  private async conversations(label: string): Promise<void> {
    const list = byId("conversations");
    byId("conversations-title").textContent = `Conversations in ${label}`;
    try {
      const page = await api<InsightsPage>(
        `/api/v1/insights${qs({ start_time: this.range.start, end_time: this.range.end, cluster: label, limit: 50 })}`,
      );
      fill(
        list,
        page.insights.length
          ? page.insights.map((c) =>
              h(
                "li",
                { class: "result" },
                h("p", { class: "text" }, c.text),
                h(
                  "p",
                  { class: "meta" },
                  time(c.timestamp),
                  c.author ? ` · ${c.author}` : "",
                  " ",
                  sentimentBadge(c.grok_analysis?.sentiment ?? null, c.grok_analysis?.sentiment_score),
                  c.grok_analysis ? ` · confidence ${score(c.grok_analysis.confidence)}` : "",
                ),
                c.grok_analysis?.reasoning ? h("p", { class: "reasoning" }, c.grok_analysis.reasoning) : null,
              ),
            )
          : [h("li", { class: "muted" }, "No conversations of this cluster in the selected range.")],
      );
    } catch (error) {
      fill(list, [h("li", { class: "muted" }, error instanceof Error ? error.message : String(error))]);
    }
  }
}
