"""Cross-encoder reranking: score (query, passage) pairs with a sentence-transformers CrossEncoder.

``SHOAL_RERANKER`` names a local model directory or a model id already in the Hugging Face cache
(nothing is downloaded). A directory with an ONNX export (``onnx/model.onnx`` or ``model.onnx``,
the layout sentence-transformers writes with ``backend="onnx"``) runs on onnxruntime with the
directory's ``tokenizer.json``: no torch at runtime. A directory holding only torch weights needs
``sentence-transformers`` (the ``rerank-torch`` extra) and says so when it is missing.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from shoal.errors import ConfigurationError, MissingDependencyError

ONNX_CANDIDATES = ("onnx/model.onnx", "model.onnx", "onnx/model_quantized.onnx", "model_quantized.onnx")
TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin")

Scores = npt.NDArray[np.float32]


def resolve_model_dir(spec: str) -> Path:
    """A local directory, or the cached snapshot of a Hugging Face model id (never downloaded)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:
        raise ConfigurationError(f"SHOAL_RERANKER={spec!r} is not a directory") from exc
    try:
        return Path(snapshot_download(repo_id=spec, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"SHOAL_RERANKER={spec!r} is neither a directory nor a model in the local Hugging Face cache"
        ) from exc


def _activation(config: dict[str, Any]) -> Callable[[Scores], Scores]:
    """Sigmoid for a one-label model (CrossEncoder's default) unless the config says Identity."""
    declared = str(config.get("sentence_transformers", {}).get("activation_fn", ""))
    if declared.endswith("Identity"):
        return lambda x: x
    return lambda x: (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


class CrossEncoderReranker:
    """Scores passages against a query; higher is more relevant.

    Args:
        model_dir: a CrossEncoder directory (``tokenizer.json`` + an ONNX file, or torch weights).
        max_tokens: the pair is truncated to this many tokens (longest side first).
        threads: onnxruntime intra-op threads.
        batch_size: pairs per forward pass.
    """

    def __init__(self, model_dir: Path, *, max_tokens: int = 256, threads: int = 2, batch_size: int = 16) -> None:
        self.model_dir = model_dir
        self.batch_size = batch_size
        config_path = model_dir / "config.json"
        config: dict[str, Any] = json.loads(config_path.read_text()) if config_path.exists() else {}
        self._activate = _activation(config)
        onnx_file = next((model_dir / c for c in ONNX_CANDIDATES if (model_dir / c).exists()), None)
        self._torch: Any = None
        if onnx_file is None:
            self._torch = self._load_torch(model_dir, max_tokens)
            return
        tokenizer_file = model_dir / "tokenizer.json"
        if not tokenizer_file.exists():
            raise ConfigurationError(f"reranker {model_dir}: tokenizer.json is missing (save a fast tokenizer)")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_tokens, strategy="longest_first")
        self._tokenizer.enable_padding(pad_id=self._tokenizer.token_to_id("[PAD]") or 0)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad graph
            raise ConfigurationError(f"reranker {onnx_file}: cannot load ONNX model: {exc}") from exc
        self._inputs = {i.name for i in self._session.get_inputs()}

    @staticmethod
    def _load_torch(model_dir: Path, max_tokens: int) -> Any:
        if not any((model_dir / w).exists() for w in TORCH_WEIGHTS):
            raise ConfigurationError(f"reranker {model_dir}: no ONNX file ({', '.join(ONNX_CANDIDATES)}) nor weights")
        try:
            module = importlib.import_module("sentence_transformers")
        except ImportError as exc:
            raise MissingDependencyError("sentence-transformers (torch)", "rerank-torch") from exc
        return module.CrossEncoder(str(model_dir), max_length=max_tokens)

    @property
    def backend(self) -> str:
        return "torch" if self._torch is not None else "onnx"

    def score_sync(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to ``query``, in the passages' order."""
        if not passages:
            return []
        if self._torch is not None:
            return [float(s) for s in self._torch.predict([(query, p) for p in passages])]
        scores: list[float] = []
        for first in range(0, len(passages), self.batch_size):
            batch = passages[first : first + self.batch_size]
            scores.extend(float(s) for s in self._forward(query, batch))
        return scores

    async def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """``score_sync`` off the event loop."""
        return await asyncio.to_thread(self.score_sync, query, list(passages))

    def _forward(self, query: str, passages: Sequence[str]) -> Scores:
        encodings = self._tokenizer.encode_batch([(query, p) for p in passages])
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (logits,) = self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[:1]
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim == 2 and logits.shape[1] > 1:
            # A two-label (irrelevant, relevant) head: the probability of the last label.
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            relevant: Scores = (exp[:, -1] / exp.sum(axis=1)).astype(np.float32)
            return relevant
        scores: Scores = self._activate(logits.reshape(-1))
        return scores


def load_reranker(spec: str, *, max_tokens: int = 256, threads: int = 2) -> CrossEncoderReranker:
    """The reranker ``SHOAL_RERANKER`` names."""
    return CrossEncoderReranker(resolve_model_dir(spec), max_tokens=max_tokens, threads=threads)
