"""Read-only JSON the dashboard needs about the server: what is enabled, and the ``/metrics`` numbers."""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from prometheus_client.parser import text_string_to_metric_families

from shoal.api import ops
from shoal.api.deps import ServicesDep
from shoal.auth import authenticator_of
from shoal.services import Services

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


def feature_collection(services: Services, feature: str) -> str | None:
    """The collection a feature keeps its records in (``None`` when the feature is not running)."""
    state = services.extras.get(feature)
    settings = getattr(state, "settings", None)
    collection = getattr(settings, "collection", None)
    return collection if isinstance(collection, str) else None


@router.get("/config")
async def config(request: Request, services: ServicesDep) -> dict[str, Any]:
    """What the page adapts to: enabled features, their collections, whether auth is on and who
    is calling (a non-admin user only ever acts as themselves)."""
    from shoal import __version__

    principal = getattr(request.state, "principal", None)
    return {
        "version": __version__,
        "auth": authenticator_of(request.app) is not None,
        "principal": None if principal is None else {"subject": principal.subject, "admin": principal.admin},
        "features": sorted(services.extras.get("_features", {})),
        "collections": [c.name for c in services.collections.list()],
        "tweets": feature_collection(services, "tweets"),
        "conversations": feature_collection(services, "insights"),
        "items": feature_collection(services, "recommend"),
    }


def samples(exposition: str) -> list[dict[str, Any]]:
    """Every sample of a Prometheus text exposition as ``{"name", "labels", "value"}`` (finite values
    only; ``_created`` timestamps left out)."""
    out: list[dict[str, Any]] = []
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name.endswith("_created") or not math.isfinite(sample.value):
                continue
            out.append({"name": sample.name, "labels": dict(sample.labels), "value": sample.value})
    return out


@router.get("/metrics")
async def metrics(services: ServicesDep) -> dict[str, Any]:
    """The numbers of ``/metrics`` (the same registry, refreshed the same way) as JSON, with the
    ``/ready`` verdict: ``{"ts", "ready": {"status", "details"?}, "samples": [...]}``."""
    exposition = (await services.metrics.render()).decode()
    readiness = await ops.ready(services)
    ready: dict[str, Any] = orjson.loads(bytes(readiness.body))
    return {
        "ts": time.time(),
        "ready": {"status": ready.get("status", "unavailable"), "details": ready.get("details", {})},
        "samples": samples(exposition),
    }
