"""Authentication: static API keys (plain and admin) and JWTs verified against a JWKS.

When auth is configured (``SHOAL_API_KEYS``, ``SHOAL_ADMIN_API_KEYS`` or ``SHOAL_AUTH_JWKS_URL``) every
route except the public paths needs ``Authorization: Bearer <jwt | api key>`` (or ``X-API-Key``); the
``Principal`` lands on ``request.state.principal``. WebSockets may also carry the token as the
subprotocol pair ``["bearer", <token>]``, as ``?token=`` (last resort) or, on the paths that allow it,
as a first message ``{"type": "auth", "token": ...}``. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx
import jwt
import orjson
import structlog
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.errors import BackendError, ShoalError, Unauthorized
from shoal.settings import Settings

logger = structlog.get_logger(__name__)

ALGORITHMS = ("RS256", "ES256")
"""The only signature algorithms accepted: asymmetric, so a public JWKS key can never sign."""
WS_SUBPROTOCOL = "bearer"
WS_POLICY_VIOLATION = 1008
WS_INTERNAL_ERROR = 1011


class AuthSettings(BaseSettings):
    """JWT claim checks and auth knobs (``SHOAL_AUTH_*``); keys and the JWKS URL live in ``Settings``."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_AUTH_", env_file=".env", extra="ignore")

    issuer: str | None = Field(None, description="expected `iss`; defaults to the discovery document's issuer")
    audience: list[str] = Field(default_factory=list, description="accepted `aud` values (any one matches)")
    user_claim: str = Field("sub", description="claim that names the user (tweets' user_id)")
    admin_claim: str | None = Field(None, description="claim that marks an admin, e.g. `role`")
    admin_value: str = Field("admin", description="value of admin_claim (or an item of it) meaning admin")
    leeway_s: float = Field(30.0, ge=0, description="clock skew allowed on exp / nbf / iat")
    jwks_ttl_s: float = Field(300.0, gt=0, description="how long fetched keys are trusted before a refetch")
    jwks_min_refetch_s: float = Field(30.0, ge=0, description="least time between fetches on an unknown kid")
    jwks_timeout_s: float = Field(5.0, gt=0)
    public_paths: list[str] = Field(
        default_factory=lambda: ["/health", "/ready", "/", "/dashboard", "/static/", "/examples/"],
        description="paths served without auth; an entry ending in '/' (other than '/' itself) is a prefix",
    )
    ws_first_message_paths: list[str] = Field(
        default_factory=lambda: ["/ws"], description="WebSocket paths that authenticate from the first message"
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. ``subject`` is the user id for JWTs and user-bound API keys."""

    subject: str
    kind: Literal["jwt", "api_key"]
    admin: bool = False
    user_bound: bool = True
    """False for a plain API key: it names a service, not a user."""
    claims: Mapping[str, Any] = field(default_factory=dict)


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_api_keys(entries: list[str], *, admin: bool) -> dict[str, Principal]:
    """``user:key`` binds a key to a user; a plain ``key`` is a service key (subject ``apikey:<fp>``)."""
    table: dict[str, Principal] = {}
    for entry in entries:
        user, sep, secret = entry.partition(":")
        if sep and user and secret:
            principal = Principal(user, "api_key", admin=admin)
        else:
            secret = entry
            label = "admin" if admin else "apikey"
            principal = Principal(f"{label}:{fingerprint(secret)[:12]}", "api_key", admin=admin, user_bound=False)
        table[fingerprint(secret)] = principal
    return table


class Jwks:
    """Signing keys from a JWKS (or OIDC discovery) URL: cached for ``ttl`` and refetched on an
    unknown ``kid``, at most once per ``min_refetch`` seconds, so bad tokens cannot hammer the IdP."""

    def __init__(self, url: str, *, ttl: float, min_refetch: float, timeout: float) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refetch = min_refetch
        self.timeout = timeout
        self.issuer: str | None = None
        self.fetches = 0
        self._jwks_uri: str | None = None
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        if time.monotonic() - self._fetched_at > self.ttl:
            await self._refresh(self._fetched_at)
        found = self._lookup(kid)
        if found is None and time.monotonic() - self._fetched_at >= self.min_refetch:
            await self._refresh(self._fetched_at)  # key rotation: a new kid appears before the cache expires
            found = self._lookup(kid)
        if found is None:
            raise Unauthorized("unknown signing key (kid)")
        return found

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self, seen: float) -> None:
        async with self._lock:
            if self._fetched_at != seen:
                return  # another request refreshed while this one waited
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                self._fetched_at = time.monotonic()  # failures are rate-bounded too
                if not self._keys:
                    raise BackendError(f"JWKS unavailable: {type(exc).__name__}") from exc
                logger.warning("JWKS refetch failed; keeping the cached keys", error=type(exc).__name__)
                return
            self._keys, self._fetched_at = keys, time.monotonic()

    async def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        self.fetches += 1
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as client:
            document = await self._get(client, self._jwks_uri or self.url)
            if "keys" not in document and isinstance(document.get("jwks_uri"), str):
                # An OIDC discovery document: remember where the keys are and who the issuer is.
                self._jwks_uri = document["jwks_uri"]
                issuer = document.get("issuer")
                self.issuer = issuer if isinstance(issuer, str) else None
                document = await self._get(client, self._jwks_uri)
        signing = [k for k in document.get("keys", []) if isinstance(k, dict) and k.get("use", "sig") == "sig"]
        keyset = jwt.PyJWKSet.from_dict({"keys": signing})
        return {k.key_id: k for k in keyset.keys if k.algorithm_name in ALGORITHMS}

    @staticmethod
    async def _get(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        response = await client.get(url)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("JWKS document is not a JSON object")
        return document


_JWT_ERRORS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid (nbf/iat)"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
)


class Authenticator:
    """Turns a bearer token (JWT or API key) into a ``Principal`` or raises ``Unauthorized``."""

    def __init__(self, settings: Settings, auth: AuthSettings | None = None) -> None:
        self.auth = auth or AuthSettings()
        self._keys = parse_api_keys([k.get_secret_value() for k in settings.api_keys], admin=False)
        self._keys.update(parse_api_keys([k.get_secret_value() for k in settings.admin_api_keys], admin=True))
        a = self.auth
        self.jwks = (
            Jwks(settings.auth_jwks_url, ttl=a.jwks_ttl_s, min_refetch=a.jwks_min_refetch_s, timeout=a.jwks_timeout_s)
            if settings.auth_jwks_url
            else None
        )

    async def authenticate(self, token: str) -> Principal:
        token = token.strip()
        if not token:
            raise Unauthorized("empty token")
        principal = self._keys.get(fingerprint(token))
        if principal is not None:
            return principal
        if token.count(".") == 2:
            if self.jwks is None:
                raise Unauthorized("JWTs are not accepted here (no JWKS configured)")
            return await self._verify(token)
        raise Unauthorized("invalid API key")

    async def _verify(self, token: str) -> Principal:
        assert self.jwks is not None
        a = self.auth
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("malformed token") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthorized(f"token algorithm {str(alg)[:16]!r} not accepted (RS256 or ES256 only)")
        kid = header.get("kid")
        key = await self.jwks.key(kid if isinstance(kid, str) else None)
        if key.algorithm_name != alg:
            raise Unauthorized("token algorithm does not match its signing key")
        issuer = a.issuer or self.jwks.issuer
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=a.audience or None,
                issuer=issuer,
                leeway=a.leeway_s,
                options={"require": ["exp", a.user_claim], "verify_aud": bool(a.audience)},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidTokenError as exc:
            reason = next((text for kind, text in _JWT_ERRORS if isinstance(exc, kind)), "invalid token")
            raise Unauthorized(reason) from exc
        subject = claims.get(a.user_claim)
        if not isinstance(subject, str | int) or not str(subject):
            raise Unauthorized(f"token claim {a.user_claim!r} is not a user id")
        return Principal(str(subject), "jwt", admin=self._is_admin(claims), claims=claims)

    def _is_admin(self, claims: Mapping[str, Any]) -> bool:
        if not self.auth.admin_claim:
            return False
        value = claims.get(self.auth.admin_claim)
        return value == self.auth.admin_value or (isinstance(value, list) and self.auth.admin_value in value)

    def is_public(self, path: str) -> bool:
        # "/" is the dashboard page only, never a prefix that would open every route.
        return any(path == p or (p.endswith("/") and p != "/" and path.startswith(p)) for p in self.auth.public_paths)


def bearer_token(headers: Mapping[bytes, bytes]) -> str | None:
    """The token from ``Authorization: Bearer`` or ``X-API-Key``."""
    raw = headers.get(b"authorization")
    if raw is not None:
        scheme, _, value = raw.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() or None if key is not None else None


def websocket_token(scope: Scope) -> tuple[str | None, bool]:
    """(token, came as the ``bearer`` subprotocol) from headers, subprotocols, then ``?token=``."""
    token = bearer_token(dict(scope.get("headers") or ()))
    if token:
        return token, False
    protocols = [p.strip() for p in scope.get("subprotocols") or ()]
    if WS_SUBPROTOCOL in protocols:
        index = protocols.index(WS_SUBPROTOCOL)
        if index + 1 < len(protocols):
            return protocols[index + 1], True
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return (values[0], False) if values else (None, False)


def close_reason(text: str) -> str:
    """A WebSocket close reason must fit in 123 bytes."""
    return text.encode()[:123].decode(errors="ignore")


class AuthMiddleware:
    """Pure ASGI: authenticates HTTP requests and WebSocket handshakes before any route runs."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.authenticator.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self._websocket(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = bearer_token(dict(scope.get("headers") or ()))
        if token is None:
            await _reject_http(send, Unauthorized("missing credentials: send Authorization: Bearer <token>"))
            return
        try:
            principal = await self.authenticator.authenticate(token)
        except ShoalError as exc:
            await _reject_http(send, exc)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        token, via_subprotocol = websocket_token(scope)
        state = scope.setdefault("state", {})
        if token is None:
            if scope["path"] in self.authenticator.auth.ws_first_message_paths:
                state["principal"] = None  # the endpoint authenticates from the first message
                await self.app(scope, receive, send)
                return
            await reject_websocket(receive, send, WS_POLICY_VIOLATION, "missing credentials", subprotocol=None)
            return
        subprotocol = WS_SUBPROTOCOL if via_subprotocol else None
        try:
            principal = await self.authenticator.authenticate(token)
        except ShoalError as exc:
            code = WS_POLICY_VIOLATION if exc.status_code in (401, 403) else WS_INTERNAL_ERROR
            await reject_websocket(receive, send, code, str(exc), subprotocol=subprotocol)
            return
        state["principal"] = principal

        async def send_with_subprotocol(message: Message) -> None:
            # The browser offered ["bearer", token]: the handshake must echo "bearer" (never the token).
            if message["type"] == "websocket.accept" and not message.get("subprotocol"):
                message = {**message, "subprotocol": WS_SUBPROTOCOL}
            await send(message)

        await self.app(scope, receive, send_with_subprotocol if via_subprotocol else send)


async def _reject_http(send: Send, exc: ShoalError) -> None:
    body = orjson.dumps({"error": exc.code, "details": str(exc)})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status_code == 401:
        headers.append((b"www-authenticate", b'Bearer realm="shoal"'))
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def reject_websocket(receive: Receive, send: Send, code: int, reason: str, *, subprotocol: str | None) -> None:
    """Accept, then close with ``code`` and ``reason``: a close before accept would reach the
    client as a bare HTTP 403 with the reason lost."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    await send({"type": "websocket.close", "code": code, "reason": close_reason(reason)})


class RedactTokens(logging.Filter):
    """Blanks ``token=...`` in log lines (uvicorn logs WebSocket paths with their query string)."""

    pattern = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.pattern.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = self.pattern.sub(r"\1***", record.msg)
        return True


def install(app: FastAPI, settings: Settings, auth: AuthSettings | None = None) -> Authenticator | None:
    """Require auth on every non-public route when auth is configured; the authenticator (or
    ``None`` with auth off) is kept on ``app.state.authenticator`` for WebSocket first-message auth."""
    for name in ("uvicorn.error", "uvicorn.access"):
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())
    authenticator = Authenticator(settings, auth) if settings.auth_enabled else None
    app.state.authenticator = authenticator
    if authenticator is not None:
        app.add_middleware(AuthMiddleware, authenticator=authenticator)
    return authenticator


def authenticator_of(app: Any) -> Authenticator | None:
    """The app's authenticator, ``None`` when auth is off."""
    found: Authenticator | None = getattr(app.state, "authenticator", None)
    return found
