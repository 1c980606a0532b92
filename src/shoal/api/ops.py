"""Operations endpoints: liveness, readiness of every backend, Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from shoal.api.deps import ServicesDep
from shoal.errors import ShoalError

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    checks: dict[str, Any] = {
        "log": services.log.ping(),
        "records": services.records.ping(),
        "vectors": services.vectors.ping(),
        "cache": services.cache.ping(),
        "bus": services.bus.ping(),
    }
    for name, feature in services.extras.get("_features", {}).items():
        checks[name] = feature.ready(services)
    failing: dict[str, str] = {}
    results = await asyncio.gather(*checks.values(), return_exceptions=True)
    for name, result in zip(checks, results, strict=True):
        if isinstance(result, BaseException):
            failing[name] = str(result) if isinstance(result, ShoalError) else f"{type(result).__name__}: {result}"
    if failing:
        return JSONResponse({"status": "unavailable", "error": "not_ready", "details": failing}, status_code=503)
    return JSONResponse({"status": "ready", "model": services.engine.model_id})


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    return Response(await services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
