"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, WebSocket

from shoal.services import Services


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain ``def`` dependency on a worker thread, a hop per request.
    services: Services = request.app.state.services
    return services


def ws_services(websocket: WebSocket) -> Services:
    services: Services = websocket.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_key(request: Request) -> str:
    """Who is calling, for rate limits: the authenticated subject, else the API key, else the peer."""
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        return f"sub:{principal.subject}"
    host = request.client.host if request.client else "unknown"
    return f"ip:{host}"
