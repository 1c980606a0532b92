"""RAG fixtures: an in-process app with the RAG feature on a fresh data dir, a tiny cross-encoder
built here (ONNX graph, no torch), and a local server speaking the OpenAI chat protocol."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from shoal.llm_settings import LLMSettings
from shoal.rag.chunking import TOKENIZER_PATH, load_tokenizer
from shoal.rag.feature import RagFeature
from shoal.rag.settings import RagSettings
from tests.app_fixtures import make_settings, running_app
from tests.rag.openai_server import FakeChatModel, serve_openai

CAT_WEIGHT = 1.0


def rag_settings(**overrides: Any) -> RagSettings:
    """RAG settings isolated from the environment and ``.env``."""
    return RagSettings(_env_file=None, **overrides)


def llm_settings(base_url: str | None = None) -> LLMSettings:
    """The fake chat model at ``base_url``, or no LLM at all (extractive answers)."""
    if base_url is None:
        return LLMSettings(_env_file=None)
    return LLMSettings(_env_file=None, base_url=base_url, api_key="test-key", model="fake-chat")


async def open_rag(tmp_path: Path, settings: RagSettings | None = None, llm: LLMSettings | None = None) -> Any:
    return running_app(make_settings(tmp_path), [RagFeature(settings or rag_settings(), llm or llm_settings())])


@pytest.fixture
async def rag_client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    async with await open_rag(tmp_path) as pair:
        yield pair


@pytest.fixture
async def chat_model() -> AsyncIterator[FakeChatModel]:
    model = FakeChatModel()
    async with serve_openai(model) as base_url:
        model.base_url = base_url
        yield model


def build_cross_encoder(directory: Path, *, keyword: str = "cat") -> Path:
    """A CrossEncoder-format directory with a tiny ONNX model whose logit counts ``keyword``
    tokens in the (query, passage) pair: deterministic, so tests can check the order."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    tokenizer = load_tokenizer()
    vocab = tokenizer.get_vocab_size()
    table = np.zeros((vocab, 1), dtype=np.float32)
    table[tokenizer.token_to_id(keyword), 0] = CAT_WEIGHT
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"], axis=0),  # [b, s, 1]
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["logits"], keepdims=0),  # [b, 1]
    ]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-cross-encoder",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (directory / "onnx").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "onnx" / "model.onnx"))
    shutil.copy(TOKENIZER_PATH, directory / "tokenizer.json")
    (directory / "config.json").write_text(
        '{"architectures": ["BertForSequenceClassification"], "num_labels": 1,'
        ' "sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}}'
    )
    return directory
