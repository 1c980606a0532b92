"""The local ONNX provider, on the real shipped int8 model."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoal.embedding.onnx import (
    ASSETS_DIR,
    ATTENTION,
    INT8_MODEL,
    PASS_OVERHEAD,
    TOKENIZER,
    OnnxProvider,
    file_sha256,
    plan_passes,
)
from shoal.errors import ConfigurationError, EmbeddingError

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar.",
    "The central bank raised interest rates again this quarter.",
    "my flight got cancelled and nobody at the airline desk will help",
    "ok",
    "Kittens are sleeping on the sofa in the afternoon sun, curled up next to each other.",
]


async def test_shape_dtype_and_unit_norm(provider: OnnxProvider) -> None:
    vectors = await provider.embed(SENTENCES)
    assert provider.model_id == "local:minilm"
    assert provider.dim == 384
    assert vectors.shape == (len(SENTENCES), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_empty_input_gives_no_rows(provider: OnnxProvider) -> None:
    assert (await provider.embed([])).shape == (0, 384)


async def test_paraphrase_is_closer_than_unrelated(provider: OnnxProvider) -> None:
    guitar, strumming, bank = await provider.embed(SENTENCES[:3])
    assert guitar @ strumming > 0.6
    assert guitar @ strumming > guitar @ bank + 0.4


async def test_order_is_preserved_across_length_sorting(provider: OnnxProvider) -> None:
    # Lengths deliberately out of order, and more texts than one forward pass holds.
    texts = [f"{s} ({i})" if i % 2 else s for i, s in enumerate(SENTENCES * 8)][: len(SENTENCES) * 8]
    texts = list(dict.fromkeys(texts))
    batched = await provider.embed(texts)
    alone = np.concatenate([await provider.embed([t]) for t in texts])
    # int8 activations are quantized per batch, so a text's vector moves slightly with its batch
    # mates; each row must still be closest to the same text embedded alone.
    similarity = batched @ alone.T
    assert (similarity.argmax(axis=1) == np.arange(len(texts))).all()
    assert similarity.diagonal().min() > 0.95


def _padded_cost(lengths: list[int], passes: list[tuple[int, int]]) -> float:
    return sum(PASS_OVERHEAD + (b - a) * lengths[b - 1] * (1 + ATTENTION * lengths[b - 1]) for a, b in passes)


def test_plan_passes_gives_a_long_outlier_its_own_pass() -> None:
    lengths = [12] * 15 + [90]
    assert plan_passes(lengths, 32) == [(0, 15), (15, 16)]


def test_plan_passes_keeps_similar_lengths_in_full_passes() -> None:
    assert [b - a for a, b in plan_passes([20] * 64, 32)] == [32, 32]
    assert len(plan_passes([20] * 70, 32)) == 3
    assert plan_passes([], 32) == []


def test_plan_passes_halves_passes_until_every_worker_has_one() -> None:
    assert plan_passes([20] * 10, 32, min_passes=2) == [(0, 5), (5, 10)]
    assert len(plan_passes([5, 6, 7, 8, 9, 10, 11, 12], 32, min_passes=4)) == 4
    assert plan_passes([30], 32, min_passes=2) == [(0, 1)]  # one text cannot be split
    assert plan_passes([], 32, min_passes=2) == []


def test_plan_passes_covers_every_text_once_and_never_costs_more_than_fixed_chunks() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 120))
        lengths = sorted(int(x) for x in rng.integers(3, 128, size=n))
        max_batch = int(rng.integers(1, 40))
        passes = plan_passes(lengths, max_batch)
        assert [i for a, b in plan_passes(lengths, max_batch, min_passes=3) for i in range(a, b)] == list(range(n))
        assert [i for a, b in passes for i in range(a, b)] == list(range(n))
        assert all(0 < b - a <= max_batch for a, b in passes)
        fixed = [(a, min(a + max_batch, n)) for a in range(0, n, max_batch)]
        assert _padded_cost(lengths, passes) <= _padded_cost(lengths, fixed) + 1e-9


async def test_a_long_text_among_short_ones_does_not_change_their_vectors() -> None:
    short = [f"short tweet number {i}" for i in range(12)]
    long_text = "a much longer text about flights, refunds and lost luggage " * 6
    async with OnnxProvider(threads=1) as provider:  # one worker: no pass is halved to feed another
        mixed = await provider.embed([*short[:6], long_text, *short[6:]])
        alone = await provider.embed(short)
    # Planned passes keep the short texts together, padded to their own length, not the long one's.
    np.testing.assert_allclose(np.delete(mixed, 6, axis=0), alone, atol=1e-6)


async def test_long_text_is_truncated_at_max_tokens() -> None:
    async with OnnxProvider("int8", max_tokens=16) as short:
        long_text = "word " * 1000
        head = " ".join(["word"] * 14)  # 14 words + [CLS] + [SEP] = 16 tokens
        assert short.count_tokens([long_text]) == 16
        a, b = await short.embed([long_text, head])
        assert a @ b > 0.999


async def test_calls_from_many_tasks_all_come_back_with_their_own_vectors(provider: OnnxProvider) -> None:
    results = await asyncio.gather(*(provider.embed([s]) for s in SENTENCES))
    together = await provider.embed(SENTENCES)
    for i, row in enumerate(results):
        assert row.shape == (1, 384)
        assert int((together @ row[0]).argmax()) == i


class Watched(OnnxProvider):
    """The real provider on two workers, noting (from the worker) which workers ran forward passes and
    that one has begun."""

    def __init__(self) -> None:
        super().__init__(threads=2)
        self.workers: set[str] = set()
        self.forwarding = threading.Event()

    def _forward(self, encodings: list[Any]) -> Any:
        self.workers.add(threading.current_thread().name)
        self.forwarding.set()
        return super()._forward(encodings)


class CountingTokenizer:
    """The provider's real tokenizer, counting the texts it encodes."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.encoded: list[str] = []

    def encode_batch(self, texts: list[str]) -> Any:
        self.encoded.extend(texts)
        return self.tokenizer.encode_batch(texts)


async def test_texts_counted_to_sort_are_not_tokenized_again_to_embed(provider: OnnxProvider) -> None:
    texts = [f"{s} #{i}" for i, s in enumerate(SENTENCES)]
    # int8 passes quantise per batch: compare the same calls made without counting first
    expected = await provider.embed([*texts[3:], *texts[:3], "not counted before"])
    expected_again = await provider.embed(texts[:2])
    counting = CountingTokenizer(provider._tokenizer)
    provider._tokenizer = counting
    try:
        lengths = provider.token_lengths(texts)  # what the engine does to sort a window
        vectors = await provider.embed([*texts[3:], *texts[:3], "not counted before"])
        again = await provider.embed(texts[:2])  # each kept encoding serves one call
    finally:
        provider._tokenizer = counting.tokenizer
    assert lengths == [len(e.ids) for e in counting.tokenizer.encode_batch(texts)]
    assert counting.encoded == [*texts, "not counted before", *texts[:2]]
    np.testing.assert_array_equal(vectors, expected)
    np.testing.assert_array_equal(again, expected_again)
    assert provider.count_tokens(texts) == sum(lengths) and not provider._counted  # counting to bill keeps nothing


async def test_one_call_runs_its_passes_on_every_worker() -> None:
    async with Watched() as provider:
        vectors = await provider.embed([f"{s} {i}" for i, s in enumerate(SENTENCES * 3)])
    assert vectors.shape == (len(SENTENCES) * 3, 384)
    assert len(provider.workers) == 2


async def test_corrupt_artifact_is_refused(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR, assets)
    with (assets / INT8_MODEL).open("r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ConfigurationError, match="sha256"):
        async with OnnxProvider("int8", assets_dir=assets):
            pass


async def test_tampered_tokenizer_is_refused(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR, assets)
    (assets / TOKENIZER).write_text((assets / TOKENIZER).read_text().replace('"[UNK]"', '"[UNKNOWN]"', 1))
    with pytest.raises(ConfigurationError, match=r"tokenizer\.json"):
        async with OnnxProvider("int8", assets_dir=assets):
            pass


async def test_missing_fp32_model_names_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="make model-fp32"):
        async with OnnxProvider("fp32", models_dir=tmp_path):
            pass


async def test_fp32_checked_against_its_sidecar(tmp_path: Path) -> None:
    (tmp_path / "minilm-fp32.onnx").write_bytes(b"not a model")
    (tmp_path / "minilm-fp32.json").write_text('{"sha256": "%s"}' % ("0" * 64))
    with pytest.raises(ConfigurationError, match="sha256"):
        async with OnnxProvider("fp32", models_dir=tmp_path):
            pass


def test_shipped_manifest_matches_shipped_artifacts() -> None:
    import json

    manifest = json.loads((ASSETS_DIR / "manifest.json").read_text())
    for name, digest in manifest["artifacts"].items():
        assert file_sha256(ASSETS_DIR / name) == digest, name
    assert manifest["source_weights_sha256"] == ("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")


async def test_embed_before_open_is_an_embedding_error() -> None:
    with pytest.raises(EmbeddingError):
        await OnnxProvider("int8").embed(["hello"])


def _thread_niceness() -> list[int]:
    """The niceness of every thread of this process (field 19 of /proc/self/task/<tid>/stat)."""
    values = []
    for stat in Path("/proc/self/task").glob("*/stat"):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        values.append(int(fields[16]))
    return values


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="thread niceness is read from Linux /proc")
async def test_inference_threads_run_at_lower_priority_than_the_loop() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    before = _thread_niceness().count(base + 5)
    provider = OnnxProvider(threads=2, nice=5)
    await provider.open()
    try:
        await provider.embed(SENTENCES)
        # Both workers (each runs its passes single-threaded) are lowered.
        assert _thread_niceness().count(base + 5) - before >= 2
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the event loop's thread is untouched
    finally:
        await provider.close()


async def test_passes_start_while_the_event_loop_is_busy() -> None:
    # A busy server's loop may not run for a while; the passes of a call already on its way must not
    # wait for it: the worker that tokenized the texts queues them.
    async with Watched() as provider:
        call = asyncio.create_task(provider.embed(SENTENCES))
        await asyncio.sleep(0)  # one step: the call hands its texts to a worker
        assert provider.forwarding.wait(timeout=10)  # holds this loop's thread meanwhile
        assert (await call).shape == (len(SENTENCES), 384)
