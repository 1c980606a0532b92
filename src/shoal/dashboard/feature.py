"""``DashboardFeature``: the page at ``/``, its built assets at ``/static/``, and the small JSON
endpoints it reads (``/dashboard/config``, ``/dashboard/metrics``, ``/dashboard/search``).

The assets are built from ``web/`` by ``make dashboard`` and committed, so serving them needs no
Node and no network: nothing is loaded from a CDN.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from shoal.dashboard import routes, search
from shoal.feature import Feature

STATIC_DIR = Path(__file__).parent / "static"

# Hashed file names never change content: cache them for a year. Everything else is revalidated.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# The page only talks to this server; a token in sessionStorage is then out of reach of injected code.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class CachedStaticFiles(StaticFiles):
    """Static files with cache headers: immutable under ``assets/`` (content-hashed names)."""

    def file_response(
        self, full_path: str | PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        hashed = scope["path"].startswith(("/static/assets/", "/assets/"))
        response.headers["cache-control"] = IMMUTABLE if hashed else REVALIDATE
        if str(full_path).endswith(".html"):
            response.headers.update(SECURITY_HEADERS)
        else:
            response.headers["x-content-type-options"] = "nosniff"
        return response


def page_router(static_dir: Path = STATIC_DIR) -> APIRouter:
    """``GET /`` (the built ``index.html``) and ``/static/...``."""
    router = APIRouter(tags=["dashboard"])

    # "/dashboard" serves the same page: an exact path that can be made public when auth is on.
    @router.get("/", include_in_schema=False)
    @router.get("/dashboard", include_in_schema=False)
    async def index() -> Response:
        page = static_dir / "index.html"
        if not page.is_file():
            return PlainTextResponse(
                "The dashboard is not built: run `make dashboard` (needs Node 20+).", status_code=503
            )
        return FileResponse(page, media_type="text/html", headers={"cache-control": REVALIDATE, **SECURITY_HEADERS})

    router.mount("/static", CachedStaticFiles(directory=static_dir, check_dir=False), name="static")
    return router


class DashboardFeature(Feature):
    """Serves the dashboard on API processes. It owns no resources: the page reads the other
    features' public APIs, plus three small read-only endpoints of its own."""

    name = "dashboard"

    def __init__(self, static_dir: Path = STATIC_DIR) -> None:
        self._static_dir = static_dir

    def routers(self) -> Sequence[APIRouter]:
        return (routes.router, search.router, page_router(self._static_dir))
