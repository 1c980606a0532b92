"""The OpenAPI schema fuzzed with schemathesis against a real server: no input produces a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.processes import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data: Path = tmp_path_factory.mktemp("fuzz") / "data"
    with ServerProcess(data) as server:
        httpx.post(f"{server.url}/v1/collections", json={"name": "docs"}).raise_for_status()
        httpx.post(
            f"{server.url}/v1/collections/docs/records",
            params={"wait": "true"},
            json={"records": [{"id": "a", "text": "hello world"}, {"id": "b", "text": "good bye"}]},
        ).raise_for_status()
        yield server


@pytest.fixture(scope="module")
def api_schema(server: ServerProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, server: ServerProcess) -> None:
    if case.path.endswith("/collections/{collection}") and case.method == "DELETE":
        case.path_parameters = {**(case.path_parameters or {}), "collection": "not-docs"}
    response = case.call(base_url=server.url, timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
