"""The local provider: all-MiniLM-L6-v2 on onnxruntime, int8 (shipped) or fp32 (built on demand).

The int8 model and ``tokenizer.json`` ship inside the package (``assets/``) with a manifest of their
sha256, written by ``scripts/export_model.py``; the fp32 model lives under ``models_dir`` with a sidecar
``minilm-fp32.json`` the export writes. Both are checked at load, so a corrupt file is refused, not run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shoal.embedding.base import EmbeddingProvider, Vectors
from shoal.errors import ConfigurationError, EmbeddingError

ASSETS_DIR = Path(__file__).resolve().with_name("assets")
INT8_MODEL = "minilm-int8.onnx"
FP32_MODEL = "minilm-fp32.onnx"
TOKENIZER = "tokenizer.json"
MANIFEST = "manifest.json"
DIM = 384

Variant = Literal["int8", "fp32"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expect_sha256(path: Path, expected: str | None) -> None:
    if expected is None:
        raise ConfigurationError(f"no sha256 recorded for {path}; re-run scripts/export_model.py")
    actual = file_sha256(path)
    if actual != expected:
        raise ConfigurationError(
            f"{path} sha256 {actual} does not match the manifest ({expected}); the file is corrupt or"
            " foreign — reinstall shoal or re-run scripts/export_model.py"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    return data


class OnnxProvider(EmbeddingProvider):
    """all-MiniLM-L6-v2 (384 dims) on CPU through onnxruntime.

    Inference runs on ``threads`` worker threads of its own (onnxruntime releases the GIL), so the event
    loop stays free. Within a call, texts are sorted by token length and cut into forward passes by
    ``plan_passes`` (each pass pads to its longest text, at most ``max_batch`` texts, at least one pass
    per worker when there are texts enough); each pass runs single-threaded on one worker, and the
    workers take passes from every call in flight in order. Results come back in input order.

    Why passes in parallel rather than onnxruntime's intra-op threads: a pass split across two threads
    ends when its slower half does, so whenever the event loop takes one core the other thread waits
    for it; and on tweet-sized passes the split's synchronisation costs more than it saves. Two
    single-threaded passes side by side embed ~1.4x the texts a second of one two-threaded pass
    (``bench/embed.py --passes``, docs/embedding.md).

    Args:
        variant: ``"int8"`` (shipped, ``local:minilm``) or ``"fp32"`` (exact, ``local:minilm-fp32``;
            build it with ``make model-fp32``).
        threads: forward passes run in parallel, one thread each.
        max_tokens: texts are truncated to this many tokens.
        models_dir: where the fp32 model is looked for.
        assets_dir: where the int8 model, tokenizer and manifest are (the package's ``assets/``).
        max_batch: texts per forward pass.
        nice: how much lower than the rest of the process the inference threads run (Linux thread
            niceness, 0 = same). Under load the event loop then wins the CPU over the model, so
            202s, searches and pushes stay fast while embedding still gets every idle cycle.
    """

    def __init__(
        self,
        variant: Variant = "int8",
        threads: int = 2,
        max_tokens: int = 256,
        models_dir: Path = Path("data/models"),
        *,
        assets_dir: Path = ASSETS_DIR,
        max_batch: int = 32,
        nice: int = 0,
    ) -> None:
        if variant not in ("int8", "fp32"):
            raise ConfigurationError(f"unknown ONNX variant {variant!r} (use 'int8' or 'fp32')")
        self.variant = variant
        self.model_id = "local:minilm" if variant == "int8" else "local:minilm-fp32"
        self.dim = DIM
        self.max_batch = max_batch
        self.threads = threads
        self.max_tokens = max_tokens
        self.models_dir = Path(models_dir)
        self.assets_dir = Path(assets_dir)
        self.nice = nice
        self._executor: ThreadPoolExecutor | None = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: list[str] = []
        self._counted: dict[str, Any] = {}
        """Encodings made by ``token_lengths`` (the engine sorting a window), taken by the ``embed``
        that follows instead of tokenizing the texts again; at most ``_COUNTED_MAX``."""

    @property
    def model_path(self) -> Path:
        if self.variant == "int8":
            return self.assets_dir / INT8_MODEL
        return self.models_dir / FP32_MODEL

    async def open(self) -> None:
        """Verify the artifacts' sha256 and load tokenizer and session (off the event loop)."""
        linux = sys.platform.startswith("linux")
        niceness = os.getpriority(os.PRIO_PROCESS, 0) + self.nice if self.nice > 0 and linux else None
        self._executor = ThreadPoolExecutor(
            max_workers=self.threads,
            thread_name_prefix="shoal-onnx",
            initializer=_lower_priority,
            initargs=(niceness,),
        )
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            # Waits for the forward passes in flight; run off the loop so the loop keeps serving.
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
        self._session = None
        self._tokenizer = None
        self._counted.clear()

    def _load(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        manifest = _read_json(self.assets_dir / MANIFEST)
        artifacts: dict[str, str] = manifest.get("artifacts", {})
        _expect_sha256(self.assets_dir / TOKENIZER, artifacts.get(TOKENIZER))
        if self.variant == "int8":
            _expect_sha256(self.model_path, artifacts.get(INT8_MODEL))
        else:
            if not self.model_path.exists():
                raise ConfigurationError(
                    f"the fp32 model {self.model_path} is missing: run `make model-fp32` (needs the build"
                    " venv with torch), or use SHOAL_EMBEDDER=local:minilm"
                )
            sidecar = _read_json(self.model_path.with_suffix(".json"))
            _expect_sha256(self.model_path, sidecar.get("sha256"))

        tokenizer = Tokenizer.from_file(str(self.assets_dir / TOKENIZER))
        # The shipped tokenizer pads everything to 128; pad per chunk instead (see _forward).
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_tokens)

        try:
            session = ort.InferenceSession(
                str(self.model_path), sess_options=self._session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ConfigurationError(f"cannot load {self.model_path}: {exc}") from exc
        self._inputs = [i.name for i in session.get_inputs()]
        self._tokenizer = tokenizer
        self._session = session

    def _session_options(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread a pass; passes run side by side on the provider's workers (see the class docstring).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning workers burn a core while idle; a server waiting for text must sit at ~0% CPU.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Memory-pattern planning caches one allocation plan per input shape; with a new width every call it
        # only grows the arena (~190 MB at 32-text calls) and costs nothing to turn off (docs/benchmarks.md).
        options.enable_mem_pattern = False
        return options

    async def embed(self, texts: Sequence[str]) -> Vectors:
        executor = self._executor
        if executor is None or self._session is None:
            raise EmbeddingError(f"{self.model_id} is not open")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        chunks, passes = await asyncio.get_running_loop().run_in_executor(executor, self._plan, executor, list(texts))
        vectors = await asyncio.gather(*(asyncio.wrap_future(p) for p in passes))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for chunk, rows in zip(chunks, vectors, strict=True):
            out[chunk] = rows
        return out

    def _plan(self, executor: ThreadPoolExecutor, texts: list[str]) -> tuple[list[list[int]], list[Future[Vectors]]]:
        """Tokenize, cut into passes and queue them, on a worker: the passes join the executor's queue
        the moment the tokens exist, not once the event loop gets round to it (a worker would sit idle
        for that hop, up to the GIL's switch interval while the loop is busy)."""
        encodings = self._encodings(texts)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        chunks = [order[a:b] for a, b in self.passes([len(encodings[i].ids) for i in order])]
        return chunks, [executor.submit(self._forward, [encodings[i] for i in chunk]) for chunk in chunks]

    def _encodings(self, texts: list[str]) -> list[Any]:
        """The texts' encodings: the ones ``token_lengths`` kept (taken, so each is used once), the
        rest tokenized now."""
        counted = self._counted
        found = [counted.pop(t, None) for t in texts]
        missing = [i for i, e in enumerate(found) if e is None]
        if missing:
            for i, encoding in zip(missing, self._tokenizer.encode_batch([texts[i] for i in missing]), strict=True):
                found[i] = encoding
        return found

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Exact token counts. The encodings are kept for the ``embed`` that follows (the engine
        counts a window to sort it, then embeds it), so its texts are not tokenized twice."""
        if self._tokenizer is None:
            return super().token_lengths(texts)
        texts = list(texts)
        encodings = self._tokenizer.encode_batch(texts)
        if len(self._counted) + len(texts) > _COUNTED_MAX:
            self._counted.clear()  # counted and never embedded (a failed or cancelled call): drop them
        self._counted.update(zip(texts, encodings, strict=True))
        return [len(e.ids) for e in encodings]

    def count_tokens(self, texts: Sequence[str]) -> int:
        if self._tokenizer is None:
            return super().count_tokens(texts)
        return sum(len(e.ids) for e in self._tokenizer.encode_batch(list(texts)))

    def passes(self, lengths: Sequence[int]) -> list[tuple[int, int]]:
        """How texts of these sorted token counts are cut into forward passes (``plan_passes``)."""
        return plan_passes(lengths, self.max_batch, min_passes=self.threads)

    def _forward(self, encodings: list[Any]) -> Vectors:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            types[row, :n] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        try:
            (hidden,) = self._session.run(["last_hidden_state"], {k: feeds[k] for k in self._inputs})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbeddingError(f"{self.model_id} inference failed: {exc}") from exc
        return _mean_pool_normalise(hidden, mask)


_COUNTED_MAX = 4096
"""Encodings kept between ``token_lengths`` and ``embed``: a few engine windows' worth."""

# The cost of one forward pass of n texts padded to L tokens, in units of one padded token:
# PASS_OVERHEAD + n * L * (1 + ATTENTION * L). Fitted on MiniLM int8, one thread, by
# `bench/embed.py --passes` (runs vary: 8-30 tokens a pass, 52-66 us a token); the attention's L^2 is a
# few % at tweet lengths. The plan is not sensitive to either within that range.
PASS_OVERHEAD = 16.0
ATTENTION = 0.0015


def plan_passes(lengths: Sequence[int], max_batch: int, min_passes: int = 1) -> list[tuple[int, int]]:
    """Cut texts sorted by token count into forward passes, as ``(start, stop)`` slices, at least cost.

    Every text in a pass is padded to the pass's longest, so one long tweet in a pass of short ones
    makes them all long: a random batch of 32 tweets costs ~2x its sorted passes. Fewer passes pay the
    per-pass overhead less often; this picks the cut with the least estimated cost (dynamic programming
    over the sorted lengths, each pass at most ``max_batch``). Then, while there are fewer than
    ``min_passes`` passes (workers that would sit idle), the costliest pass of two texts or more is
    halved, so a lone call keeps every worker busy.
    """
    n = len(lengths)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for stop in range(1, n + 1):
        longest = lengths[stop - 1]  # sorted: the last text of a pass is its longest
        per_text = longest * (1 + ATTENTION * longest)
        for start in range(max(0, stop - max_batch), stop):
            cost = best[start] + PASS_OVERHEAD + (stop - start) * per_text
            if cost < best[stop]:
                best[stop], cut[stop] = cost, start
    passes: list[tuple[int, int]] = []
    stop = n
    while stop > 0:
        passes.append((cut[stop], stop))
        stop = cut[stop]
    passes.reverse()
    while passes and len(passes) < min_passes:
        start, stop = max(passes, key=lambda p: (p[1] - p[0]) * lengths[p[1] - 1] if p[1] - p[0] > 1 else -1)
        if stop - start < 2:
            break  # one text a pass already
        middle = (start + stop) // 2
        at = passes.index((start, stop))
        passes[at : at + 1] = [(start, middle), (middle, stop)]
    return passes


def _lower_priority(niceness: int | None) -> None:
    """Set the calling thread's niceness to ``niceness`` (``None``: leave it) if that lowers it
    (Linux: per thread, inherited by the threads it starts).

    Runs first on each inference thread, before the session exists, so onnxruntime's intra-op workers,
    created from that thread, inherit it too. A target, not an increment: a worker may be started by
    another worker (passes are queued from one), whose niceness it already inherits.
    """
    if niceness is None:
        return
    tid = 0  # 0 = the calling thread on Linux
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
            os.setpriority(os.PRIO_PROCESS, tid, min(niceness, 19))
    except OSError:  # a sandbox may forbid it; priority is a hint, never a reason to fail
        return


def _mean_pool_normalise(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]) -> Vectors:
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    out: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
    return out
