"""Helpers shared by the deploy-file tests: repository paths, ``${VAR}`` interpolation as Compose does
it, and checks that a set of ``SHOAL_*`` variables is a valid configuration of this code."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shoal import factory
from shoal.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CORE_FIELDS = frozenset(f"SHOAL_{name.upper()}" for name in Settings.model_fields)

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` replaced in every string of ``value``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        found = env.get(name)
        if op in (":-", "-"):
            return found if found else arg
        if op in (":?", "?") and not found:
            raise KeyError(f"{name}: {arg}")
        return found or ""

    return _VAR.sub(replace, value)


def check_shoal_env(env: Mapping[str, str]) -> Settings:
    """Every ``SHOAL_*`` name is a core setting, the whole parses, and every backend URL is one the
    factory accepts (instances are built, not opened: nothing connects)."""
    unknown = sorted(k for k in env if k.startswith("SHOAL_") and k not in CORE_FIELDS)
    assert not unknown, f"not Shoal settings: {unknown}"
    fields = {k.removeprefix("SHOAL_").lower(): v for k, v in env.items() if k.startswith("SHOAL_")}
    settings = Settings(_env_file=None, **fields)  # type: ignore[call-arg]
    factory.make_log(settings.resolved_log_url, partitions=settings.log_partitions)
    factory.make_vector_store(settings.resolved_vector_url)
    factory.make_record_store(settings.resolved_database_url)
    factory.make_cache(settings.cache_url, ttl=60)
    factory.make_bus(settings.bus_url)
    return settings
