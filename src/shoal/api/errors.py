"""The one place where errors become HTTP responses: ``{"error": code, "details": ...}``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shoal.errors import Overloaded, ShoalError

logger = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "invalid_schema",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
}


def error_body(code: str, details: Any, **extra: Any) -> dict[str, Any]:
    return {"error": code, "details": details, **extra}


def describe_validation(errors: Sequence[Any]) -> str:
    """Name the field and the reason, e.g. ``Missing required field: text`` or
    ``records.0.text: String should have at least 1 character``."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]
        field = ".".join(loc) or "body"
        kind = err.get("type", "")
        if kind == "missing":
            parts.append(f"Missing required field: {field}")
        elif kind == "extra_forbidden":
            parts.append(f"Unknown field: {field}")
        elif kind == "json_invalid":
            parts.append(f"body: invalid JSON ({err.get('ctx', {}).get('error', 'cannot be decoded')})")
        else:
            parts.append(f"{field}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts[:5]) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ShoalError)
    async def _shoal(request: Request, exc: ShoalError) -> JSONResponse:
        headers: dict[str, str] = {}
        extra: dict[str, Any] = {}
        if isinstance(exc, Overloaded):
            retry = max(1, math.ceil(exc.retry_after))
            headers["Retry-After"] = str(retry)
            extra["retry_after"] = retry
        if exc.status_code >= 500:
            logger.error("request failed", error=exc.code, details=str(exc.details))
        return JSONResponse(
            error_body(exc.code, exc.details if exc.details is not None else exc.code, **extra),
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_schema", describe_validation(exc.errors())), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        details = f"body: {exc.detail} (is it valid UTF-8 JSON?)" if exc.status_code == 400 else exc.detail
        return JSONResponse(error_body(code, details), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", path=request.url.path)
        return JSONResponse(error_body("internal_error", "unexpected error; see the server log"), status_code=500)
