"""Conversation insights: quality and speed, each next to a baseline measured in the same run.

    .venv/bin/python -m bench.insights [--conversations 20000] [--seconds 10] [--skip-server]

Figures (issue 4):
- sentiment macro-averaged recall on TweetEval sentiment val: plain VADER vs the local rules vs the
  rules + embedding head (5-fold cross-validated on val: the only 3-class split available) — target ≥ 0.65;
- topic clustering NMI on BANKING77 train (77 intents): online clusters vs batch KMeans(77) on the same
  embeddings — target ≥ 0.95 × batch;
- local analysis throughput beyond embedding (vectors precomputed) vs plain VADER — target ≥ 1,000/s;
- 202 latency p99 at 100 requests/s against a real server process, next to GET /health — target ≤ 20 ms;
- server RSS after N conversations analysed, extrapolated linearly to 100k — target ≤ 1 GB.
Writes bench/results/insights.json. Needs scikit-learn (bench only).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "insights.json"


async def embed(texts: list[str]) -> np.ndarray:
    from shoal.embedding.onnx import OnnxProvider

    async with OnnxProvider() as provider:
        return await provider.embed(texts)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# -- quality -------------------------------------------------------------------------------------
def sentiment_quality() -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import recall_score
    from sklearn.model_selection import StratifiedKFold
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from shoal.insights.sentiment import SentimentAnalyzer

    texts = lines(DATA / "tweeteval" / "sentiment" / "val_text.txt")
    y = np.array([int(x) for x in lines(DATA / "tweeteval" / "sentiment" / "val_labels.txt")])
    vader = SentimentIntensityAnalyzer()
    compound = np.array([vader.polarity_scores(t)["compound"] for t in texts])
    vader_pred = np.where(compound >= 0.05, 2, np.where(compound <= -0.05, 0, 1))
    rules = SentimentAnalyzer()
    rule_scores = np.array([rules.rules(t)[0] for t in texts])
    rule_pred = np.array([{"negative": 0, "neutral": 1, "positive": 2}[rules.label_for(s)] for s in rule_scores])
    features = np.hstack([asyncio.run(embed(texts)), rule_scores[:, None]])
    oof = np.zeros((len(y), 3))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(features, y):
        model = LogisticRegression(C=0.5, max_iter=3000, class_weight="balanced").fit(features[train], y[train])
        oof[test] = model.predict_proba(features[test])
    return {
        "dataset": "tweeteval/sentiment val (2,000 tweets)",
        "vader_macro_recall": round(float(recall_score(y, vader_pred, average="macro")), 4),
        "rules_macro_recall": round(float(recall_score(y, rule_pred, average="macro")), 4),
        "head_cv5_macro_recall": round(float(recall_score(y, oof.argmax(axis=1), average="macro")), 4),
        "target": 0.65,
    }


def clustering_quality() -> dict[str, Any]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from shoal.insights.clusters import OnlineClusterer
    from shoal.insights.settings import InsightsSettings

    with (DATA / "banking77" / "train.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    order = np.random.default_rng(0).permutation(len(rows))  # a stream arrives mixed, not sorted by intent
    texts = [rows[i]["text"] for i in order]
    labels = [rows[i]["category"] for i in order]
    vectors = asyncio.run(embed(texts))
    s = InsightsSettings()
    online = OnlineClusterer(
        vectors.shape[1],
        join=s.cluster_join,
        merge=s.cluster_merge,
        split_below=s.cluster_split_below,
        split_min=s.cluster_split_min,
        max_clusters=s.max_clusters,
    )
    started = time.perf_counter()
    assigned = []
    for i in range(0, len(texts), 256):
        assigned += [a.cluster_id for a in online.add(vectors[i : i + 256], texts[i : i + 256])]
    online_s = time.perf_counter() - started
    final = [online.nearest(v).cluster_id for v in vectors]  # type: ignore[union-attr]
    started = time.perf_counter()
    kmeans = KMeans(77, n_init=3, random_state=0).fit(vectors)
    batch_s = time.perf_counter() - started
    batch_nmi = float(nmi(labels, kmeans.labels_))
    online_nmi = float(nmi(labels, final))
    # same number of clusters as KMeans: cap the online model at 77 and compare again
    capped = OnlineClusterer(
        vectors.shape[1],
        join=s.cluster_join,
        merge=s.cluster_merge,
        split_below=s.cluster_split_below,
        split_min=s.cluster_split_min,
        max_clusters=77,
    )
    for i in range(0, len(texts), 256):
        capped.add(vectors[i : i + 256], texts[i : i + 256])
    capped_nmi = float(nmi(labels, [capped.nearest(v).cluster_id for v in vectors]))  # type: ignore[union-attr]
    return {
        "dataset": "banking77 train (10,003 queries, 77 intents)",
        "kmeans77_nmi": round(batch_nmi, 4),
        "online_nmi": round(online_nmi, 4),
        "online_nmi_as_assigned": round(float(nmi(labels, assigned)), 4),
        "online_clusters": len(online.clusters),
        "online_ratio": round(online_nmi / batch_nmi, 4),
        "online_capped77_nmi": round(capped_nmi, 4),
        "online_capped77_ratio": round(capped_nmi / batch_nmi, 4),
        "online_texts_per_s": round(len(texts) / online_s, 1),
        "kmeans_seconds": round(batch_s, 1),
        "sample_labels": sorted(c.label for c in online.clusters.values())[:12],
        "target_ratio": 0.95,
    }


def twcs_texts() -> list[str]:
    with (DATA / "twcs" / "twcs_random_sample.csv").open(newline="", encoding="utf-8") as fh:
        return [r["text"] for r in csv.DictReader(fh) if r["inbound"] == "True"]


def analysis_speed() -> dict[str, Any]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from shoal.insights.analyzer import LocalAnalyzer
    from shoal.insights.clusters import OnlineClusterer
    from shoal.insights.sentiment import SentimentAnalyzer, SentimentHead

    texts = twcs_texts()
    vectors = asyncio.run(embed(texts))
    vader = SentimentIntensityAnalyzer()
    started = time.perf_counter()
    for t in texts:
        vader.polarity_scores(t)
    vader_rate = len(texts) / (time.perf_counter() - started)
    analyzer = LocalAnalyzer(SentimentAnalyzer(head=SentimentHead.load()), OnlineClusterer(vectors.shape[1]))
    started = time.perf_counter()
    for i in range(0, len(texts), 256):
        analyzer.analyze_sync(texts[i : i + 256], vectors[i : i + 256])
    rate = len(texts) / (time.perf_counter() - started)
    return {
        "conversations": len(texts),
        "local_analysis_per_s": round(rate, 1),
        "plain_vader_per_s": round(vader_rate, 1),
        "ratio_to_vader": round(rate / vader_rate, 3),
        "target_per_s": 1000,
    }


# -- server ----------------------------------------------------------------------------------------
def serve(port: int, data_dir: str) -> None:
    """Child process: the app with the insights feature (until it is in ``default_features``)."""
    import uvicorn

    from shoal.app import CoreFeature, create_app
    from shoal.insights.feature import InsightsFeature
    from shoal.settings import Settings

    settings = Settings(data_dir=Path(data_dir), port=port, rate_limit_per_s=100_000, log_level="WARNING")
    app = create_app(settings, features=[CoreFeature(), InsightsFeature()])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=120)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


async def paced(rate: float, seconds: float, request: Any) -> list[float]:
    latencies: list[float] = []
    started = time.perf_counter()

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        await request(i)
        latencies.append((time.perf_counter() - t0) * 1000)

    tasks = []
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return latencies


async def server_figures(conversations: int, seconds: float) -> dict[str, Any]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    texts = twcs_texts()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        command = [sys.executable, "-m", "bench.insights", "--serve", str(port), tmp]
        child = subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: ASYNC220 - started once, before timing
        url = f"http://127.0.0.1:{port}"
        try:
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            timeout = httpx.Timeout(60, pool=None)
            async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
                for _ in range(900):
                    try:
                        if (await client.get("/ready")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)  # waiting for the child to boot
                proc = psutil.Process(child.pid)
                rss_start = proc.memory_info().rss / 2**20

                async def health(i: int) -> None:
                    (await client.get("/health")).raise_for_status()

                async def post(i: int) -> None:
                    body = {"text": f"{texts[i % len(texts)]} #{i}", "author": f"u{i % 50}"}
                    r = await client.post("/api/v1/conversations", json=body)
                    assert r.status_code == 202, r.text

                await asyncio.gather(*(health(i) for i in range(64)))  # open the connections first
                health_ms = await paced(100, seconds, health)
                post_ms = await paced(100, seconds, post)
                posted = int(100 * seconds)

                started = time.perf_counter()
                for start in range(0, conversations, 500):
                    batch = [{"text": f"{texts[(start + i) % len(texts)]} ~{start + i}"} for i in range(500)]
                    r = await client.post("/api/v1/conversations", json=batch[: conversations - start])
                    assert r.status_code == 202, r.text
                total = posted + conversations
                wide = {"start_time": "2000-01-01T00:00:00Z", "end_time": "2100-01-01T00:00:00Z", "bucket": "30d"}
                peak = rss_start
                while True:
                    meta = (await client.get("/api/v1/insights/summary", params=wide)).json()["metadata"]
                    peak = max(peak, proc.memory_info().rss / 2**20)
                    if meta["total_count"] >= total:
                        break
                    await asyncio.sleep(0.5)  # polling a long-running job's progress
                analysed_s = time.perf_counter() - started
                rss_after = proc.memory_info().rss / 2**20
        finally:
            child.terminate()
            child.wait(timeout=60)
    per_conv_mb = (max(rss_after, peak) - rss_start) / total
    return {
        "p99_202_ms_at_100rps": round(pct(post_ms, 99), 2),
        "p50_202_ms_at_100rps": round(pct(post_ms, 50), 2),
        "p99_health_ms_at_100rps": round(pct(health_ms, 99), 2),
        "p99_ratio_to_health": round(pct(post_ms, 99) / pct(health_ms, 99), 2),
        "conversations_analysed": total,
        "end_to_end_per_s": round(conversations / analysed_s, 1),
        "rss_start_mb": round(rss_start, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_100k_extrapolated_mb": round(rss_start + per_conv_mb * 100_000, 1),
        "rss_note": f"measured after {total} conversations; 100k extrapolated linearly from growth",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--only-server", action="store_true", help="keep the other figures of the last run")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DATA_DIR"))
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return
    console = Console()
    if args.only_server:
        results: dict[str, Any] = json.loads(RESULTS.read_text())
    else:
        results = {
            "sentiment": sentiment_quality(),
            "clustering": clustering_quality(),
            "analysis_speed": analysis_speed(),
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if not args.skip_server:
        results["server"] = asyncio.run(server_figures(args.conversations, args.seconds))
    table = Table(title="insights")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("baseline (same run)", justify="right")
    table.add_column("target", justify="right")
    s, c, a = results["sentiment"], results["clustering"], results["analysis_speed"]
    table.add_row(
        "sentiment macro recall (head, 5-fold)",
        f"{s['head_cv5_macro_recall']:.3f}",
        f"VADER {s['vader_macro_recall']:.3f}",
        "≥ 0.65",
    )
    table.add_row("sentiment macro recall (rules only)", f"{s['rules_macro_recall']:.3f}", "", "")
    table.add_row(
        f"NMI online ({c['online_clusters']} clusters)",
        f"{c['online_nmi']:.3f}",
        f"KMeans(77) {c['kmeans77_nmi']:.3f}",
        f"ratio {c['online_ratio']:.2f} ≥ 0.95",
    )
    table.add_row(
        "NMI online capped at 77", f"{c['online_capped77_nmi']:.3f}", "", f"ratio {c['online_capped77_ratio']:.2f}"
    )
    table.add_row(
        "local analysis /s", f"{a['local_analysis_per_s']:.0f}", f"VADER {a['plain_vader_per_s']:.0f}", "≥ 1000"
    )
    if "server" in results:
        r = results["server"]
        table.add_row(
            "202 p99 ms @100 rps",
            f"{r['p99_202_ms_at_100rps']:.1f}",
            f"/health {r['p99_health_ms_at_100rps']:.1f}",
            "≤ 20",
        )
        table.add_row(
            "RSS MB at 100k (extrapolated)",
            f"{r['rss_100k_extrapolated_mb']:.0f}",
            f"start {r['rss_start_mb']:.0f}",
            "≤ 1024",
        )
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
