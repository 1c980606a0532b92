// Inline SVG charts: no library, nothing to download, readable by screen readers via <title>/<desc>.
import { h } from "./dom";

const NS = "http://www.w3.org/2000/svg";

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
  ...children: (SVGElement | string)[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child);
  return el;
}

/** A small line of the last values (e.g. throughput per poll). */
export function sparkline(values: number[], label: string, width = 160, height = 36): SVGSVGElement {
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "spark", role: "img" }, svg("title", {}, label));
  if (values.length < 2) return chart;
  const max = Math.max(...values, 1e-9);
  const min = Math.min(...values, 0);
  const step = width / (values.length - 1);
  const y = (v: number): number => height - 2 - ((v - min) / (max - min || 1)) * (height - 4);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  chart.append(svg("polyline", { points, fill: "none", stroke: "currentColor", "stroke-width": 2 }));
  return chart;
}

export interface SentimentBucket {
  start: string;
  count: number;
  avg_sentiment: number | null;
  positive: number;
  negative: number;
  neutral: number;
}

const COLORS = { positive: "#1a7f37", neutral: "#6e7781", negative: "#c0262d" } as const;

/** Stacked bars of positive / neutral / negative counts per bucket, with the average score as a line. */
export function sentimentChart(buckets: SentimentBucket[]): HTMLElement[] {
  const width = 640;
  const height = 220;
  const pad = { left: 36, right: 36, top: 10, bottom: 24 };
  const inner = { w: width - pad.left - pad.right, h: height - pad.top - pad.bottom };
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const total = buckets.reduce((n, b) => n + b.count, 0);
  const avg = total ? buckets.reduce((s, b) => s + (b.avg_sentiment ?? 0) * b.count, 0) / total : null;
  const summary =
    buckets.length === 0
      ? "No analysed conversations in this range."
      : `${total} conversations in ${buckets.length} time buckets; average sentiment ${avg === null ? "n/a" : avg.toFixed(2)}.`;
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "sentiment-svg-title sentiment-svg-desc" },
    svg("title", { id: "sentiment-svg-title" }, "Sentiment over time"),
    svg("desc", { id: "sentiment-svg-desc" }, summary),
  );
  const barW = inner.w / Math.max(buckets.length, 1);
  const yCount = (c: number): number => (c / max) * inner.h;
  const ySent = (s: number): number => pad.top + ((1 - s) / 2) * inner.h;
  // axes: counts on the left, sentiment -1..1 on the right
  chart.append(
    svg("line", { x1: pad.left, y1: pad.top + inner.h, x2: pad.left + inner.w, y2: pad.top + inner.h, class: "axis" }),
    svg("text", { x: pad.left - 6, y: pad.top + 8, "text-anchor": "end", class: "tick" }, String(max)),
    svg("text", { x: pad.left - 6, y: pad.top + inner.h, "text-anchor": "end", class: "tick" }, "0"),
    svg("text", { x: pad.left + inner.w + 6, y: ySent(1) + 8, class: "tick" }, "+1"),
    svg("text", { x: pad.left + inner.w + 6, y: ySent(-1), class: "tick" }, "−1"),
    svg("line", { x1: pad.left, y1: ySent(0), x2: pad.left + inner.w, y2: ySent(0), class: "zero" }),
  );
  buckets.forEach((b, i) => {
    const x = pad.left + i * barW + barW * 0.1;
    let base = pad.top + inner.h;
    for (const kind of ["negative", "neutral", "positive"] as const) {
      const hgt = yCount(b[kind]);
      if (hgt <= 0) continue;
      base -= hgt;
      chart.append(
        svg(
          "rect",
          { x: x.toFixed(1), y: base.toFixed(1), width: Math.max(1, barW * 0.8).toFixed(1), height: hgt.toFixed(1), fill: COLORS[kind] },
          svg("title", {}, `${new Date(b.start).toLocaleString()}: ${b[kind]} ${kind}`),
        ),
      );
    }
  });
  const line = buckets
    .map((b, i) => (b.avg_sentiment === null ? null : `${(pad.left + (i + 0.5) * barW).toFixed(1)},${ySent(b.avg_sentiment).toFixed(1)}`))
    .filter((p): p is string => p !== null);
  if (line.length > 1) chart.append(svg("polyline", { points: line.join(" "), class: "avg-line" }));
  if (buckets.length) {
    chart.append(
      svg("text", { x: pad.left, y: height - 6, class: "tick" }, new Date(buckets[0].start).toLocaleString()),
      svg("text", { x: pad.left + inner.w, y: height - 6, "text-anchor": "end", class: "tick" }, new Date(buckets[buckets.length - 1].start).toLocaleString()),
    );
  }
  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Legend" },
    ...(["positive", "neutral", "negative"] as const).map((k) => h("li", {}, h("span", { class: `swatch ${k}`, "aria-hidden": "true" }), k)),
    h("li", {}, h("span", { class: "swatch line", "aria-hidden": "true" }), "average score"),
  );
  const wrapper = h("div", { class: "chart-box" });
  wrapper.append(chart);
  return [wrapper, legend, h("figcaption", {}, summary)];
}
