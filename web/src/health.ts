// Pipeline health view: the numbers of /metrics (via GET /dashboard/metrics, which parses the same
// exposition), polled every 2 s while the view is visible; rates from counter deltas.
import { api } from "./api";
import { sparkline } from "./charts";
import type { DashboardConfig, View } from "./config";
import { byId, fill, h, num, pct } from "./dom";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface MetricsOut {
  ts: number;
  ready: { status: string; details?: Record<string, string> };
  samples: Sample[];
}

const POLL_MS = 2000;
const HISTORY = 60;

function total(samples: Sample[], name: string, where: Record<string, string> = {}): number | null {
  const found = samples.filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v));
  return found.length ? found.reduce((n, s) => n + s.value, 0) : null;
}

/** A quantile of a Prometheus histogram from its cumulative buckets (upper bound of the bucket). */
function quantile(samples: Sample[], name: string, q: number): number | null {
  const buckets = samples
    .filter((s) => s.name === `${name}_bucket`)
    .map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), n: s.value }))
    .sort((a, b) => a.le - b.le);
  const count = buckets.length ? buckets[buckets.length - 1].n : 0;
  if (!count) return null;
  const hit = buckets.find((b) => b.n >= q * count);
  return hit && Number.isFinite(hit.le) ? hit.le : null;
}

interface Tile {
  key: string;
  label: string;
  format: (v: number | null) => string;
  read: (now: MetricsOut, before: MetricsOut | null) => number | null;
}

function rate(name: string): (now: MetricsOut, before: MetricsOut | null) => number | null {
  return (now, before) => {
    if (!before) return null;
    const a = total(before.samples, name);
    const b = total(now.samples, name);
    const dt = now.ts - before.ts;
    return a === null || b === null || dt <= 0 ? null : Math.max(0, (b - a) / dt);
  };
}

const ms = (v: number | null): string => (v === null ? "–" : v < 1 ? `≤ ${Math.round(v * 1000)} ms` : `≤ ${v} s`);
const perS = (v: number | null): string => (v === null ? "–" : `${num(v)}/s`);

const TILES: Tile[] = [
  { key: "indexed", label: "Records indexed", format: perS, read: rate("shoal_records_indexed_total") },
  { key: "accepted", label: "Records accepted", format: perS, read: rate("shoal_records_accepted_total") },
  { key: "requests", label: "HTTP requests", format: perS, read: rate("shoal_http_request_duration_seconds_count") },
  { key: "embed", label: "Embedder throughput (measured)", format: perS, read: (n) => total(n.samples, "shoal_embed_throughput_texts_per_second") },
  { key: "queue", label: "Embedding queue depth", format: num, read: (n) => total(n.samples, "shoal_embed_queue_depth") },
  { key: "lag", label: "Log lag (all consumers)", format: num, read: (n) => total(n.samples, "shoal_log_lag") },
  { key: "hit", label: "Embedding cache hit ratio", format: pct, read: (n) => total(n.samples, "shoal_embed_cache_hit_ratio") },
  {
    key: "coverage",
    label: "Embedding coverage (lowest)",
    format: pct,
    read: (n) => {
      const values = n.samples.filter((s) => s.name === "shoal_collection_coverage_ratio").map((s) => s.value);
      return values.length ? Math.min(...values) : null;
    },
  },
  { key: "p50", label: "Ingest → searchable p50", format: ms, read: (n) => quantile(n.samples, "shoal_ingest_to_searchable_seconds", 0.5) },
  { key: "p99", label: "Ingest → searchable p99", format: ms, read: (n) => quantile(n.samples, "shoal_ingest_to_searchable_seconds", 0.99) },
];

export class HealthView implements View {
  private config: DashboardConfig | null = null;
  private timer: number | undefined;
  private previous: MetricsOut | null = null;
  private readonly history = new Map<string, number[]>();
  private inFlight = false;

  show(): void {
    window.clearInterval(this.timer);
    this.timer = window.setInterval(() => void this.poll(), POLL_MS);
    void this.poll();
  }

  hide(): void {
    window.clearInterval(this.timer);
    this.timer = undefined;
  }

  reset(config: DashboardConfig): void {
    this.config = config;
    this.previous = null;
    this.history.clear();
    if (this.timer !== undefined) void this.poll();
  }

  private async poll(): Promise<void> {
    if (!this.config || this.inFlight) return;
    this.inFlight = true;
    const status = byId("health-status");
    try {
      const now = await api<MetricsOut>("/dashboard/metrics");
      this.render(now);
      this.previous = now;
      const failing = Object.entries(now.ready.details ?? {});
      status.textContent =
        now.ready.status === "ready"
          ? `Ready · updated ${new Date(now.ts * 1000).toLocaleTimeString()}`
          : `Not ready: ${failing.map(([k, v]) => `${k}: ${v}`).join("; ")}`;
      status.dataset.state = now.ready.status;
    } catch (error) {
      status.textContent = `Cannot read metrics: ${error instanceof Error ? error.message : String(error)}`;
      status.dataset.state = "unavailable";
    } finally {
      this.inFlight = false;
    }
  }

  private render(now: MetricsOut): void {
    fill(
      byId("health-cards"),
      TILES.map((tile) => {
        const value = tile.read(now, this.previous);
        const series = this.history.get(tile.key) ?? [];
        if (value !== null) series.push(value);
        if (series.length > HISTORY) series.shift();
        this.history.set(tile.key, series);
        return h(
          "div",
          { class: "tile", "data-metric": tile.key },
          h("p", { class: "tile-label" }, tile.label),
          h("p", { class: "tile-value" }, tile.format(value)),
          sparkline(series, `${tile.label}, last ${series.length} readings`),
        );
      }),
    );
    const records = now.samples.filter((s) => s.name === "shoal_collection_records");
    const names = [...new Set(records.map((s) => s.labels.collection))].sort();
    fill(
      byId("collections"),
      names.map((c) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, c),
          h("td", {}, num(total(records, "shoal_collection_records", { collection: c, status: "embedded" }))),
          h("td", {}, num(total(records, "shoal_collection_records", { collection: c, status: "pending" }))),
          h("td", {}, num(total(records, "shoal_collection_records", { collection: c, status: "failed" }))),
          h("td", {}, pct(total(now.samples, "shoal_collection_coverage_ratio", { collection: c }))),
        ),
      ),
    );
    fill(
      byId("lags"),
      now.samples
        .filter((s) => s.name === "shoal_log_lag")
        .map((s) => h("tr", {}, h("td", {}, s.labels.topic ?? ""), h("td", {}, s.labels.group ?? ""), h("td", {}, num(s.value)))),
    );
    fill(
      byId("raw-metrics"),
      now.samples
        .filter((s) => !/_(bucket|created)$/.test(s.name))
        .map((s) => {
          const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${v}"`).join(",");
          return h("tr", {}, h("td", { class: "mono" }, labels ? `${s.name}{${labels}}` : s.name), h("td", {}, num(s.value)));
        }),
    );
  }
}
