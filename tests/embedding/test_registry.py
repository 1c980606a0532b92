"""The engine registry: one engine per model in use, over the real local model and a local server
speaking the OpenAI embeddings API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from shoal.cache.sqlite import SqliteCache
from shoal.embedding.registry import EngineRegistry
from shoal.errors import BackendError, ConfigurationError, ShuttingDown
from shoal.settings import Settings
from tests.embedding.conftest import FAKE_DIM, FakeOpenAI, fake_unit_vector


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, log_json=False, **overrides)  # type: ignore[call-arg]


def remote(tmp_path: Path, fake: FakeOpenAI) -> Settings:
    return settings(tmp_path, embedder_base_url=fake.url, embedder_api_key="sk-test", embedder_dim=FAKE_DIM)


async def test_the_default_engine_is_the_servers_model_under_every_name(tmp_path: Path) -> None:
    async with EngineRegistry(settings(tmp_path, embedder="local:minilm-int8")) as registry:
        default = registry.default
        assert default.model_id == "local:minilm"
        assert await registry.get("local:minilm-int8") is default
        assert await registry.get("local:minilm") is default
        assert registry.models() == ["local:minilm"]
        assert (await default.embed(["hello"])).shape == (1, 384)


async def test_another_model_gets_its_own_engine_sharing_the_l2(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with (
        SqliteCache(tmp_path / "l2.db", ttl=3600) as l2,
        EngineRegistry(remote(tmp_path, fake_openai), l2) as registry,
    ):
        other = await registry.get("openai:text-embedding-test")
        assert other is not registry.default
        assert (other.model_id, other.dim) == ("openai:text-embedding-test", FAKE_DIM)
        assert other.l2 is l2 and registry.default.l2 is l2
        assert await registry.get("openai:text-embedding-test") is other
        assert registry.models() == ["local:minilm", "openai:text-embedding-test"]
        vectors = await other.embed(["routed to the remote model"])
        np.testing.assert_allclose(vectors[0], fake_unit_vector("routed to the remote model"), rtol=1e-6)
        local = await registry.default.embed(["routed to the remote model"])
        assert local.shape == (1, 384)  # same text, other model: another cache key, another vector
    assert fake_openai.requests == [["routed to the remote model"]]


async def test_concurrent_first_uses_open_one_engine(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with EngineRegistry(remote(tmp_path, fake_openai)) as registry:
        engines = await asyncio.gather(*(registry.get("openai:text-embedding-test") for _ in range(5)))
    assert all(engine is engines[0] for engine in engines)


async def test_an_unknown_model_is_refused_and_not_remembered(tmp_path: Path) -> None:
    async with EngineRegistry(settings(tmp_path)) as registry:
        for _ in range(2):
            with pytest.raises(ConfigurationError, match="unknown local model"):
                await registry.get("local:nope")
        assert registry.models() == ["local:minilm"]


async def test_preload_opens_what_it_can_and_logs_the_rest(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with EngineRegistry(remote(tmp_path, fake_openai)) as registry:
        with capture_logs() as logs:
            await registry.preload(["local:minilm", "local:nope", "openai:text-embedding-test"])
        assert registry.models() == ["local:minilm", "openai:text-embedding-test"]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["event"], e["model"]) for e in warnings] == [("cannot open an embedding engine yet", "local:nope")]


async def test_exit_closes_every_engine(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async with EngineRegistry(remote(tmp_path, fake_openai)) as registry:
        engines = [registry.default, await registry.get("openai:text-embedding-test")]
    for engine in engines:
        with pytest.raises(ShuttingDown):
            await engine.embed(["too late"])
    with pytest.raises(BackendError):
        registry.default  # noqa: B018 - the property is what is tested
    with pytest.raises(ShuttingDown):
        await registry.get("openai:text-embedding-test")


async def test_a_default_that_cannot_open_fails_the_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        async with EngineRegistry(settings(tmp_path, embedder="local:nope")):
            pass
