"""Admin endpoints: backfill, model switch, rollback, job status, scheduled re-queue.

Long jobs answer with a stream of NDJSON progress lines (``application/x-ndjson``), the last one
final (``done``, ``stopped`` or ``failed``). Closing the stream asks the job to stop cleanly;
``detach: true`` answers 202 at once and leaves the job running (follow it with ``GET .../job``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from shoal.api.deps import ServicesDep
from shoal.embedops.backfill import Backfill, BackfillOptions
from shoal.embedops.reembed import drop_previous, reembed, rollback
from shoal.errors import Forbidden, NotFound
from shoal.services import Services

if TYPE_CHECKING:
    from shoal.embedops.feature import EmbedOpsState
    from shoal.embedops.jobs import Job

FEATURE = "embedops"


async def require_admin(request: Request) -> None:
    """With auth on, only admins (admin API keys or the admin JWT claim) may run these."""
    services: Services = request.app.state.services
    if not services.settings.auth_enabled:
        return
    principal = getattr(request.state, "principal", None)
    if principal is None or not getattr(principal, "admin", False):
        raise Forbidden("embedding operations need an admin key or token")


router = APIRouter(prefix="/v1", tags=["embedding operations"], dependencies=[Depends(require_admin)])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackfillBody(_Strict):
    model: str | None = Field(None, description="current model (default) or the shadow model of a switch")
    batch: Annotated[int, Field(ge=1, le=2048)] | None = None
    force: bool = False
    since: datetime | None = Field(None, description="only records whose ts is at least this")
    limit: Annotated[int, Field(ge=1)] | None = None
    dry_run: bool = False
    detach: bool = False


class ReembedBody(_Strict):
    model: str = Field(description="the new model, e.g. local:minilm-fp32 or openai:text-embedding-3-small")
    batch: Annotated[int, Field(ge=1, le=2048)] | None = None
    detach: bool = False


def _state(services: Services) -> EmbedOpsState:
    state: EmbedOpsState = services.extras[FEATURE]
    return state


def _answer(state: EmbedOpsState, job: Job, detach: bool) -> Any:
    if detach:
        return JSONResponse(job.snapshot(), status_code=status.HTTP_202_ACCEPTED)

    async def lines() -> AsyncIterator[bytes]:
        async for event in state.jobs.follow(job, state.settings.heartbeat_s):
            yield orjson.dumps(event) + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/collections/{collection}/backfill", response_model=None)
async def backfill(collection: str, body: BackfillBody, services: ServicesDep) -> Any:
    """Embed records lacking the model's embedding (all with ``force``); ``dry_run`` only estimates."""
    state = _state(services)
    options = BackfillOptions(
        model=body.model,
        batch=body.batch or state.settings.backfill_batch,
        force=body.force,
        since=body.since,
        limit=body.limit,
    )
    engine = Backfill(services, collection, options)
    if body.dry_run:
        estimate = await engine.estimate(
            calibration_texts=state.settings.calibration_texts,
            price_per_1k_tokens=services.settings.embed_price_per_1k_tokens,
        )
        return JSONResponse({"dry_run": True, **estimate.to_dict()})
    await engine.check()

    async def body_of(job: Job) -> None:
        report = await engine.run(job.stop, job.progress)
        job.info["complete"] = report.state == "done"

    return _answer(state, state.jobs.start("backfill", collection, body_of), body.detach)


@router.post("/collections/{collection}/reembed", response_model=None)
async def start_reembed(collection: str, body: ReembedBody, services: ServicesDep) -> Any:
    """Switch ``collection`` to ``model`` without downtime (shadow build, then one atomic promote)."""
    state = _state(services)
    await services.collections.get(collection)
    batch = body.batch or state.settings.backfill_batch

    async def body_of(job: Job) -> None:
        job.info.update(model=body.model, promoted=False)
        result = await reembed(services, collection, body.model, batch=batch, stop=job.stop, on_progress=job.progress)
        job.info.update(promoted=result.complete, passes=result.passes, complete=result.complete)

    return _answer(state, state.jobs.start("reembed", collection, body_of), body.detach)


@router.post("/collections/{collection}/reembed/rollback")
async def rollback_switch(collection: str, services: ServicesDep) -> dict[str, Any]:
    """Return to the previous model in one step, or abandon a switch in progress."""
    job = _state(services).jobs.get(collection)
    if job is not None and job.state == "running":
        job.stop.set()
        if job.task is not None:
            await asyncio.wait([job.task])
    after = await rollback(services, collection)
    return {"collection": collection, "model": after.model, "vector_name": after.vector_name}


@router.delete("/collections/{collection}/reembed/previous")
async def forget_previous(collection: str, services: ServicesDep) -> dict[str, Any]:
    """Drop the previous model's vectors: no rollback after this, and no more double embedding."""
    after = await drop_previous(services, collection)
    return {"collection": collection, "model": after.model, "previous_model": None}


@router.get("/collections/{collection}/job")
async def job_status(collection: str, services: ServicesDep) -> dict[str, Any]:
    job = _state(services).jobs.get(collection)
    if job is None:
        raise NotFound(f"no backfill or model switch has run on {collection!r} since the server started")
    return job.snapshot()


@router.delete("/collections/{collection}/job")
async def stop_job(collection: str, services: ServicesDep) -> dict[str, Any]:
    """Ask the running job to stop cleanly; answers once it has stopped."""
    job = _state(services).jobs.get(collection)
    if job is None:
        raise NotFound(f"no job on {collection!r}")
    job.stop.set()
    if job.task is not None:
        await asyncio.wait([job.task])
    return job.snapshot()


@router.post("/embedops/requeue")
async def requeue_now(services: ServicesDep) -> dict[str, int]:
    """Run the delta scheduler once now."""
    return {"requeued": await _state(services).scheduler.run_once()}
