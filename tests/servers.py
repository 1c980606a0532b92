"""A real HTTP/WebSocket server for tests: uvicorn on 127.0.0.1:<free port> in this event loop.

```python
async with running_server(app) as base_url:   # "http://127.0.0.1:54321"
    ...
```
The app's lifespan runs inside the server; leaving the block shuts it down gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


def free_socket() -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
    # it a response written as headers then body waits ~40 ms for the client's delayed ACK (Nagle)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def running_server(app: Any, *, startup_timeout: float = 60.0, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` until the block exits; yields the base URL. ``config`` goes to ``uvicorn.Config``."""
    sock = free_socket()
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "ws": "websockets-sansio", **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    # Inside a test the server must not take over the process's signal handlers.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    try:
        async with asyncio.timeout(startup_timeout):
            while not server.started:
                if task.done():
                    task.result()  # start-up failed: raise its error
                    raise RuntimeError("server exited during start-up")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=30)
        finally:
            sock.close()


class IdentityProvider:
    """Signs JWTs with keys it generates and serves them as a JWKS (and an OIDC discovery document)
    from a real local HTTP server, like Clerk or any OIDC provider."""

    def __init__(self, issuer: str = "https://idp.test", audience: str = "shoal") -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.base_url = ""
        self.rotate("rsa-1", "RS256")

    def rotate(self, kid: str, alg: str = "RS256", *, keep: bool = False) -> None:
        """Publish a fresh key ``kid`` (replacing the others unless ``keep``)."""
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        private = rsa.generate_private_key(65537, 2048) if alg == "RS256" else ec.generate_private_key(ec.SECP256R1())
        if not keep:
            self.keys.clear()
        self.keys[kid] = (alg, private)
        self.current = kid

    def jwks(self) -> dict[str, Any]:
        import json

        from jwt.algorithms import ECAlgorithm, RSAAlgorithm

        keys = []
        for kid, (alg, private) in self.keys.items():
            algo = RSAAlgorithm if alg == "RS256" else ECAlgorithm
            jwk = json.loads(algo.to_jwk(private.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}

    def token(self, *, kid: str | None = None, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        import time

        import jwt

        kid = kid or self.current
        alg, private = self.keys[kid]
        now = int(time.time())
        body = {"iss": self.issuer, "aud": self.audience, "sub": "user_123", "iat": now, "exp": now + 300}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, private, algorithm=alg, headers={"kid": kid, **(headers or {})})

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def jwks(request: Request) -> JSONResponse:
            self.fetches += 1
            return JSONResponse(self.jwks())

        async def discovery(request: Request) -> JSONResponse:
            return JSONResponse({"issuer": self.issuer, "jwks_uri": f"{self.base_url}/.well-known/jwks.json"})

        return Starlette(
            routes=[
                Route("/.well-known/jwks.json", jwks),
                Route("/.well-known/openid-configuration", discovery),
            ]
        )

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid-configuration"


@asynccontextmanager
async def identity_provider(**kwargs: Any) -> AsyncIterator[IdentityProvider]:
    """An ``IdentityProvider`` served on a free loopback port."""
    idp = IdentityProvider(**kwargs)
    async with running_server(idp.app(), lifespan="off") as base_url:
        idp.base_url = base_url
        yield idp
