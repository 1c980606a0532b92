"""compose.yaml: valid against the Compose specification's JSON schema (and ``docker compose config``
where the plugin exists), wired with health-gated start order, and configured with settings this
code accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from typing import Any

import pytest
import yaml

from tests.deploy.checks import ROOT, check_shoal_env, interpolate
from tests.engines import require_module

COMPOSE = ROOT / "compose.yaml"
ENV = {"SHOAL_API_KEYS": "test-key-1,test-key-2"}
SHOAL_SERVICES = ("migrate", "api", "worker")
BACKING = ("postgres", "redis", "redpanda", "qdrant")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE.read_text()), ENV)  # merge keys resolved
    return loaded


def test_valid_against_the_compose_spec_schema() -> None:
    require_module("check_jsonschema", "check-jsonschema")
    jsonschema = require_module("jsonschema", "jsonschema")
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors


def test_docker_compose_config_accepts_it() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed (the schema test covers the file)")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", **ENV},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_a_missing_api_key_stops_compose_with_a_message() -> None:
    with pytest.raises(KeyError, match="SHOAL_API_KEYS"):
        interpolate(yaml.safe_load(COMPOSE.read_text()), {})


def test_services_start_in_order_once_their_dependencies_are_healthy() -> None:
    services = compose()["services"]
    assert set(services) == {*SHOAL_SERVICES, *BACKING}
    for name in BACKING:
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert {k: v["condition"] for k, v in depends.items() if k != "migrate"} == dict.fromkeys(
            BACKING, "service_healthy"
        )
    assert services["api"]["command"] == ["serve", "--role", "api"]
    assert services["worker"]["command"] == ["serve", "--role", "worker"]
    assert "ports" not in services["worker"], "workers serve only operations endpoints: nothing to publish"


@pytest.mark.parametrize("name", SHOAL_SERVICES)
def test_shoal_services_are_configured_with_valid_settings(name: str) -> None:
    service = compose()["services"][name]
    assert service["image"] and service["build"]["context"] == "."
    settings = check_shoal_env(service["environment"])
    assert settings.host == "0.0.0.0" and settings.auth_enabled
    assert settings.database_url and settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.cache_url.startswith("redis://") and settings.bus_url.startswith("redis://")
    assert settings.log_url and settings.log_url.startswith("kafka://redpanda:9092")
    assert settings.vector_url == "qdrant://qdrant:6333"
