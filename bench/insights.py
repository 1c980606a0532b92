"""Conversation insights: quality and speed, each next to a baseline measured in the same run.

    .venv/bin/python -m bench.insights [--conversations 100000] [--seconds 30] [--rate 100] [--skip-server]

Figures (issue 4):
- sentiment macro-averaged recall on TweetEval sentiment val: plain VADER vs the local rules vs the
  rules + embedding head (5-fold cross-validated on val: the only 3-class split available) — target ≥ 0.65;
- topic clustering NMI on BANKING77 train (77 intents): online clusters vs batch KMeans(77) on the same
  embeddings — target ≥ 0.95 × batch;
- local analysis beyond embedding (vectors precomputed): CPU time per conversation and conversations per
  CPU-second, vs plain VADER — target ≥ 1,000/s;
- against a real ``shoal serve`` process: 202 latency p50/p99 of an open-loop generator at 100
  conversations/s (one per request), next to ``GET /health`` at the same rate — target p99 ≤ 20 ms;
  then RSS sampled while ``--conversations`` more (twcs tweets, made unique) are accepted and analysed —
  target ≤ 1 GB after 100k.
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

from bench.disk import fsync_latency  # noqa: E402
from bench.loadgen import RawClient, paced_requests  # noqa: E402
from bench.stats import pct  # noqa: E402

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
    options = InsightsSettings().clusterer_options()
    online = OnlineClusterer(vectors.shape[1], **options)
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
    capped = OnlineClusterer(vectors.shape[1], **{**options, "max_clusters": 77})
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


def analysis_speed(passes: int = 3) -> dict[str, Any]:
    """The local analyzer's own cost, vectors precomputed: CPU time (``process_time``, so BLAS helper
    threads count) per conversation, next to plain VADER's in the same run. ``passes`` over the sample
    (repeats get a suffix) put the clusterer in its steady state (``max_clusters`` topics)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from shoal.insights.analyzer import LocalAnalyzer
    from shoal.insights.clusters import OnlineClusterer
    from shoal.insights.sentiment import SentimentAnalyzer, SentimentHead
    from shoal.insights.settings import InsightsSettings

    texts = twcs_texts()
    vectors = asyncio.run(embed(texts))
    stream = [t if p == 0 else f"{t} #{p}" for p in range(passes) for t in texts]
    vader = SentimentIntensityAnalyzer()
    cpu, wall = time.process_time(), time.perf_counter()
    for t in stream:
        vader.polarity_scores(t)
    vader_cpu = time.process_time() - cpu
    s = InsightsSettings()
    clusterer = OnlineClusterer(vectors.shape[1], **s.clusterer_options())
    analyzer = LocalAnalyzer(SentimentAnalyzer(head=SentimentHead.load()), clusterer)
    cpu, wall = time.process_time(), time.perf_counter()
    for p in range(passes):
        for i in range(0, len(texts), s.batch_size):
            end = min(i + s.batch_size, len(texts))
            analyzer.analyze_sync(stream[p * len(texts) + i : p * len(texts) + end], vectors[i:end])
    analyzer_cpu, analyzer_wall = time.process_time() - cpu, time.perf_counter() - wall
    n = len(stream)
    return {
        "conversations": n,
        "cpu_us_per_conversation": round(analyzer_cpu / n * 1e6, 1),
        "local_analysis_per_cpu_s": round(n / analyzer_cpu, 1),
        "local_analysis_per_s": round(n / analyzer_wall, 1),
        "plain_vader_per_cpu_s": round(n / vader_cpu, 1),
        "ratio_to_vader": round(vader_cpu / analyzer_cpu, 3),
        "clusters": len(clusterer.clusters),
        "load_average": os.getloadavg()[0],
        "target_per_s": 1000,
    }


# -- server ----------------------------------------------------------------------------------------


def start_server(data_dir: Path, port: int, log_fsync: str) -> subprocess.Popen[bytes]:
    """A real ``shoal serve`` process with the default features, embedded stores under ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    # one load generator is one client: lift the per-client inbound limit (default 100/s) for the bulk phase
    env.update(
        SHOAL_DATA_DIR=str(data_dir), SHOAL_PORT=str(port), SHOAL_RATE_LIMIT_PER_S="100000", SHOAL_LOG_FSYNC=log_fsync
    )
    log = (data_dir.parent / "server.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "shoal", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log)


def rss_breakdown(pid: int) -> dict[str, float]:
    """Resident MB by kind of mapping (``/proc/PID/smaps``): anonymous, ``[heap]``, and each mapped file by its
    name (the vector store's segment files repeat across segments, so they add up by name); ``(deleted)``
    marks files still mapped after they were unlinked."""
    totals: dict[str, float] = {}
    name = "anonymous"
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:  # not Linux, or the process is gone
        return {}
    for line in lines:
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            path = head[5] if len(head) > 5 else ""
            deleted = path.endswith("(deleted)")
            base = Path(path.removesuffix(" (deleted)")).name if path.startswith("/") else (path or "anonymous")
            if ".so" in base:
                base = "shared libraries"
            name = f"{base} (deleted)" if deleted else base
        elif head and head[0] == "Rss:":
            totals[name] = totals.get(name, 0.0) + int(head[1]) / 1024
    return {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v >= 1}


async def scrape(client: httpx.AsyncClient) -> dict[str, float] | None:
    """The server's unlabelled Prometheus samples by name; ``None`` when it did not answer (an HNSW
    build holds the GIL and stalls the whole process for a while)."""
    try:
        text = (await client.get("/metrics")).text
    except httpx.TransportError:
        return None
    samples = (line.split() for line in text.splitlines() if line and not line.startswith("#"))
    return {fields[0]: float(fields[1]) for fields in samples if "{" not in fields[0]}


async def optimised(client: httpx.AsyncClient, timeout_s: float) -> float:
    """Seconds until the server's vector optimisation backlog is empty (``shoal_vector_optimize_backlog_points``)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        samples = await scrape(client)
        if samples is not None and samples.get("shoal_vector_optimize_backlog_points") == 0:
            break
        await asyncio.sleep(1.0)  # polling a long-running job's progress
    return time.perf_counter() - started


async def analysed(client: httpx.AsyncClient) -> int:
    """Conversations the server's insights processor has analysed (its Prometheus counter); -1 when the
    server did not answer."""
    samples = await scrape(client)
    return -1 if samples is None else int(samples.get("shoal_insights_analyzed_total", 0))


async def server_figures(
    conversations: int, seconds: float, rate: float, timeout_s: float, log_fsync: str = "interval"
) -> dict[str, Any]:
    """202 latency at ``rate`` conversations/s next to ``GET /health`` at the same rate, then RSS while
    ``conversations`` more are accepted and analysed (sampled as they are, to show whether it grows)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    texts = twcs_texts()
    with tempfile.TemporaryDirectory() as tmp:
        child = start_server(Path(tmp) / "data", port, log_fsync)
        try:
            # idle connections close client-side before the server's 5 s keep-alive timeout could race a request
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=2.0)
            timeout = httpx.Timeout(120, pool=None)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout, limits=limits) as client:
                for _ in range(1800):
                    if child.poll() is not None:
                        raise RuntimeError(f"server exited with {child.returncode}; see {tmp}/server.log")
                    try:
                        if (await client.get("/ready")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)  # waiting for the child process to boot
                proc = psutil.Process(child.pid)
                rss_idle = proc.memory_info().rss / 2**20
                posted = 0

                async def latencies(request: Any) -> list[float]:
                    """``rate`` requests/s for ``seconds`` from a client that costs little CPU (open loop)."""
                    return await paced_requests(f"http://127.0.0.1:{port}", rate, seconds, request, expect={200, 202})

                def post(raw: RawClient, i: int) -> bytes:
                    i += posted
                    body = {"text": f"{texts[i % len(texts)]} #{i}", "author": f"u{i % 50}"}
                    return raw.encode("POST", "/api/v1/conversations", body)

                async def wait_analysed(total: int, on_sample: Any = None) -> int:
                    """Analysed count once it reaches ``total``, or when ``timeout_s`` ran out."""
                    started = time.perf_counter()
                    done = 0
                    while done < total and time.perf_counter() - started < timeout_s:
                        await asyncio.sleep(1.0)  # polling a long-running job's progress
                        done = max(done, await analysed(client))
                        if on_sample is not None:
                            on_sample(done)
                    return done

                # warm-up: the model, caches, every processor and the connections
                warm = [{"text": f"{texts[i]} (warm-up)"} for i in range(300)]
                assert (await client.post("/api/v1/conversations", json=warm)).status_code == 202
                posted += len(warm)
                await wait_analysed(posted)

                cpu0 = proc.cpu_times()
                health_ms = await latencies(lambda raw, i: raw.encode("GET", "/health"))
                cpu1 = proc.cpu_times()
                disk = await asyncio.to_thread(fsync_latency, Path(tmp), min(seconds, 10.0))
                post_ms = await latencies(post)
                cpu2 = proc.cpu_times()
                posted += int(rate * seconds)
                await wait_analysed(posted)

                # volume: bounded memory while ``conversations`` more are accepted and analysed
                base = posted
                samples: list[tuple[int, float]] = [(0, proc.memory_info().rss / 2**20)]
                started = time.perf_counter()
                for start in range(0, conversations, 1000):
                    n = min(1000, conversations - start)
                    batch = [{"text": f"{texts[(start + i) % len(texts)]} ~{start + i}"} for i in range(n)]
                    r = await client.post("/api/v1/conversations", json=batch)
                    assert r.status_code == 202, r.text
                posted += conversations

                def sample(done: int) -> None:
                    samples.append((done - base, proc.memory_info().rss / 2**20))

                done = await wait_analysed(posted, sample) - base
                volume_s = time.perf_counter() - started
                rss_analysed = proc.memory_info().rss / 2**20
                # the steady state: the last optimisation (after writes pause) has built and swapped its segment
                settled_s = await optimised(client, timeout_s)
                memory = proc.memory_info()
                breakdown = rss_breakdown(child.pid)
                samples.append((done, memory.rss / 2**20))
        finally:
            child.terminate()
            child.wait(timeout=120)
    busy = lambda a, b: (b.user + b.system - a.user - a.system) / seconds  # noqa: E731
    peak = max(rss for _, rss in samples)
    half = [rss for n, rss in samples if n >= done // 2]
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "p50_202_ms": round(pct(post_ms, 50), 2),
        "p99_202_ms": round(pct(post_ms, 99), 2),
        "log_fsync": log_fsync,
        **{k: round(v, 2) for k, v in disk.items()},
        "max_202_ms": round(max(post_ms), 2),
        "p50_health_ms": round(pct(health_ms, 50), 2),
        "p99_health_ms": round(pct(health_ms, 99), 2),
        "p99_ratio_to_health": round(pct(post_ms, 99) / pct(health_ms, 99), 2),
        "server_cpu_health_phase": round(busy(cpu0, cpu1), 3),
        "server_cpu_post_phase": round(busy(cpu1, cpu2), 3),
        "conversations": conversations,
        "analysed": done,
        "volume_per_s": round(done / volume_s, 1),
        "rss_idle_mb": round(rss_idle, 1),
        "rss_before_volume_mb": round(samples[0][1], 1),
        "rss_half_mb": round(half[0], 1) if half else None,
        "rss_at_last_analysed_mb": round(rss_analysed, 1),
        "optimizer_settled_after_s": round(settled_s, 1),
        "rss_after_mb": round(samples[-1][1], 1),
        # file-backed pages (mostly the vector store's memory-mapped segments) count in RSS but are page cache
        "rss_after_file_backed_mb": round(memory.shared / 2**20, 1),
        "rss_after_note": "" if done >= conversations else f"only {done} of {conversations} analysed in time",
        "rss_peak_mb": round(peak, 1),
        "rss_after_breakdown_mb": breakdown,
        "rss_second_half_growth_mb": round(samples[-1][1] - half[0], 1) if half else None,
        "rss_samples": [(done, round(rss, 1)) for done, rss in samples[:: max(1, len(samples) // 40)]],
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=100_000, help="volume phase (RSS after these)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each latency phase")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s of the latency phases")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting for analysis after")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument(
        "--log-fsync",
        choices=["always", "interval"],
        default="interval",
        help="SHOAL_LOG_FSYNC (the server default: interval)",
    )
    parser.add_argument("--only-server", action="store_true", help="keep the other figures of the last run")
    args = parser.parse_args()
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
        results["server"] = asyncio.run(
            server_figures(args.conversations, args.seconds, args.rate, args.timeout, args.log_fsync)
        )
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
        "local analysis / CPU-s (µs each)",
        f"{a['local_analysis_per_cpu_s']:.0f} ({a['cpu_us_per_conversation']:.0f})",
        f"VADER {a['plain_vader_per_cpu_s']:.0f}",
        "≥ 1000",
    )
    if "server" in results:
        r = results["server"]
        table.add_row(
            f"202 p50 / p99 ms @{r['rate_per_s']:.0f} rps (log fsync {r.get('log_fsync', 'always')})",
            f"{r['p50_202_ms']:.1f} / {r['p99_202_ms']:.1f}",
            f"/health {r['p50_health_ms']:.1f} / {r['p99_health_ms']:.1f}",
            "p99 ≤ 20",
        )
        if "disk_fsync_p99_ms" in r:
            disk = f"{r['disk_fsync_p50_ms']:.1f} / {r['disk_fsync_p99_ms']:.1f}"
            table.add_row("  the disk's own fsync p50 / p99 ms", disk)
        table.add_row(
            f"RSS MB after {r['analysed']:,} analysed",
            f"{r['rss_after_mb']:.0f} (peak {r['rss_peak_mb']:.0f})",
            f"idle {r['rss_idle_mb']:.0f}",
            "≤ 1024",
        )
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
