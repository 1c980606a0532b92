"""``WS /ws``: tweet batches in, acks and live pushes out.

Client → server (JSON text frames):
``{"tweets": [{"user_id", "id", "text", "username", ...}]}`` · ``{"type": "subscribe", "query", "min_score",
"collection"?}``
· ``{"type": "unsubscribe", "id"}`` · ``{"type": "config", "k", "scope"}`` · ``{"type": "auth", "token"}``
· ``{"type": "ping"}``. Server → client: ``ack``, ``similar``, ``match``, ``analysis``, ``subscribed``,
``unsubscribed``, ``config``, ``auth_ok``, ``pong`` and ``error`` (the connection survives bad input).

Every outbound message goes through one bounded queue per connection; when it is full the client
is too slow to read and the connection closes with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from shoal.api.deps import ws_services
from shoal.api.errors import describe_validation
from shoal.auth import WS_POLICY_VIOLATION, WS_SUBPROTOCOL, Authenticator, Principal, authenticator_of, close_reason
from shoal.errors import Forbidden, InvalidInput, Overloaded, ShoalError, Unauthorized
from shoal.ingest import RecordIn
from shoal.services import Services
from shoal.tweets.messages import BATCH, ConfigIn, SubscribeIn, UnsubscribeIn
from shoal.tweets.push import Event, PushHub, StandingQuery
from shoal.tweets.settings import TweetSettings

logger = structlog.get_logger(__name__)
router = APIRouter(tags=["tweets"])

WS_TRY_AGAIN_LATER = 1013
WS_GOING_AWAY = 1001


class Connection:
    """One client: its identity, preferences, standing queries and bounded send queue."""

    def __init__(
        self,
        websocket: WebSocket,
        services: Services,
        settings: TweetSettings,
        hub: PushHub,
        principal: Principal | None,
        auth_on: bool,
    ) -> None:
        self.websocket = websocket
        self.services = services
        self.settings = settings
        self.hub = hub
        self.principal = principal
        self.auth_on = auth_on
        self.k = settings.default_k
        self.everyone = not self.restricted
        self.pending: set[str] = set()
        self.queries: set[str] = set()
        self.close_code: tuple[int, str] | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.send_queue)
        self._closing = asyncio.Event()
        self._query_ids = itertools.count(1)

    @property
    def restricted(self) -> bool:
        """With auth on, a non-admin only ever sees their own tweets."""
        return self.auth_on and not (self.principal is not None and self.principal.admin)

    # -- outbound ------------------------------------------------------------------------------
    def push(self, event: Event) -> None:
        if self._closing.is_set():
            return
        try:
            self._queue.put_nowait(orjson.dumps(event).decode())
        except asyncio.QueueFull:
            self.close(WS_TRY_AGAIN_LATER, f"send queue full ({self._queue.maxsize} messages): client too slow")

    def error(self, exc: ShoalError, **extra: Any) -> None:
        self.push({"type": "error", "error": exc.code, "details": exc.details, **extra})

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = (code, reason)
        self._closing.set()

    async def _send_loop(self) -> None:
        while True:
            await self.websocket.send_text(await self._queue.get())

    # -- lifecycle -----------------------------------------------------------------------------
    async def serve(self, authenticator: Authenticator | None) -> None:
        """Run until the client leaves or the connection must close; then close it with the reason."""
        tasks = [
            asyncio.create_task(self._send_loop(), name="ws-send"),
            asyncio.create_task(self._read_loop(authenticator), name="ws-read"),
            asyncio.create_task(self._closing.wait(), name="ws-closing"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            self.hub.drop(self, list(self.pending))
            self._closing.set()
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, WebSocketDisconnect | RuntimeError):
                logger.error("websocket task failed", error=type(result).__name__)
        if self.close_code is not None:
            code, reason = self.close_code
            if code == WS_TRY_AGAIN_LATER:
                logger.warning("closing a slow websocket client", queue=self._queue.maxsize)
            # A slow reader may never drain its socket: bound the closing handshake.
            with contextlib.suppress(asyncio.TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                await asyncio.wait_for(self.websocket.close(code, close_reason(reason)), self.settings.close_timeout_s)

    async def _read_loop(self, authenticator: Authenticator | None) -> None:
        if authenticator is not None and self.principal is None and not await self._first_message_auth(authenticator):
            return
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                self.error(InvalidInput("frame: send JSON text frames, not binary"))
                continue
            await self.handle(text)

    async def _first_message_auth(self, authenticator: Authenticator) -> bool:
        try:
            async with asyncio.timeout(self.settings.auth_timeout_s):
                text = await self.websocket.receive_text()
        except TimeoutError:
            self.close(WS_POLICY_VIOLATION, "authentication required: no auth message in time")
            return False
        except KeyError:  # a binary frame
            text = ""
        try:
            message = orjson.loads(text) if text else None
            token = message.get("token") if isinstance(message, dict) and message.get("type") == "auth" else None
            if not isinstance(token, str):
                raise Unauthorized("authentication required: send a token (subprotocol, header or auth message)")
            self.principal = await authenticator.authenticate(token)
        except orjson.JSONDecodeError:
            self.close(WS_POLICY_VIOLATION, "authentication required: first message must be {type: auth}")
            return False
        except ShoalError as exc:
            self.close(WS_POLICY_VIOLATION, str(exc))
            return False
        self.everyone = not self.restricted
        self.push({"type": "auth_ok", "user_id": self.principal.subject, "admin": self.principal.admin})
        return True

    # -- inbound -------------------------------------------------------------------------------
    async def handle(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self.error(InvalidInput(f"body: invalid JSON ({exc})"))
            return
        if not isinstance(message, dict):
            self.error(InvalidInput("body: expected a JSON object"))
            return
        kind = message.get("type", "tweets" if "tweets" in message else None)
        handler = {
            "tweets": self._tweets,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "config": self._config,
            "ping": self._ping,
            "auth": self._auth_again,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            self.error(InvalidInput(f"type: unknown message type {str(kind)[:32]!r}"))
            return
        try:
            await handler(message)
        except ValidationError as exc:
            # Name fields as "subscribe.query": a bare "query" would read as a location.
            prefix = [] if kind == "tweets" else [str(kind)]
            errors = [{**e, "loc": (".".join([*prefix, *map(str, e["loc"])]),)} for e in exc.errors()]
            self.error(InvalidInput(describe_validation(errors)))
        except ShoalError as exc:
            self.error(exc)

    async def _tweets(self, message: dict[str, Any]) -> None:
        batch = BATCH.validate_python({k: v for k, v in message.items() if k != "type"})
        settings = self.settings
        if len(batch.tweets) > settings.max_batch:
            raise InvalidInput(f"tweets: at most {settings.max_batch} per batch, got {len(batch.tweets)}")
        for i, tweet in enumerate(batch.tweets):
            if len(tweet.text) > settings.max_text_chars:
                raise InvalidInput(f"tweets.{i}.text: longer than {settings.max_text_chars} characters")
            if self.restricted and (self.principal is None or tweet.user_id != self.principal.subject):
                subject = self.principal.subject if self.principal else "?"
                raise Forbidden(f"tweets.{i}.user_id: you can only send tweets as {subject!r}")
        latest = {t.id: t for t in batch.tweets}  # a repeated id within one batch: the last one wins
        ids = [i for i in latest if i not in self.pending]
        if len(self.pending) + len(ids) > settings.max_pending:
            raise Overloaded(f"tweets: {len(self.pending)} tweets still being indexed; slow down", retry_after=1.0)
        now = datetime.now(UTC)
        records = [RecordIn(id=t.id, text=t.text, payload=t.payload(), ts=now) for t in latest.values()]
        # Registered before the append so an indexed event can never beat the registration.
        self.hub.expect(self, ids)
        self.pending.update(ids)
        try:
            await self.services.ingest.submit(settings.collection, records)
        except ShoalError:
            self.hub.forget(self, ids)
            self.pending.difference_update(ids)
            raise
        self.push({"type": "ack", "ids": list(latest)})

    def done(self, tweet_id: str) -> None:
        self.pending.discard(tweet_id)

    async def _subscribe(self, message: dict[str, Any]) -> None:
        request = SubscribeIn.model_validate(message)
        if len(self.queries) >= self.settings.max_subscriptions and request.id not in self.queries:
            raise InvalidInput(f"subscribe: at most {self.settings.max_subscriptions} standing queries")
        name = request.collection or self.settings.collection
        collection = await self.services.collections.get(name)
        engine = self.services.engine
        if collection.model != engine.model_id:
            # the query is embedded by the engine: its cosine to another model's vectors means nothing
            raise InvalidInput(
                f"collection: {name!r} is embedded with {collection.model}, queries with {engine.model_id}"
            )
        user_id = request.user_id
        if self.restricted and name == self.settings.collection:
            assert self.principal is not None
            if user_id not in (None, self.principal.subject):
                raise Forbidden("user_id: you can only subscribe to your own tweets")
            user_id = self.principal.subject
        vector = (await engine.embed([request.query]))[0]
        query_id = request.id or f"q{next(self._query_ids)}"
        self.hub.subscribe(StandingQuery(query_id, self, request.query, request.min_score, vector, user_id, name))
        self.queries.add(query_id)
        self.push(
            {
                "type": "subscribed",
                "id": query_id,
                "query": request.query,
                "min_score": request.min_score,
                "collection": name,
            }
        )

    async def _unsubscribe(self, message: dict[str, Any]) -> None:
        request = UnsubscribeIn.model_validate(message)
        if request.id not in self.queries:
            raise InvalidInput(f"id: no standing query {request.id!r}")
        self.hub.unsubscribe(self, request.id)
        self.queries.discard(request.id)
        self.push({"type": "unsubscribed", "id": request.id})

    async def _config(self, message: dict[str, Any]) -> None:
        request = ConfigIn.model_validate(message)
        self.configure(request.k, request.scope)

    def configure(self, k: int | None, scope: str | None) -> None:
        if k is not None:
            if not 1 <= k <= self.settings.max_k:
                raise InvalidInput(f"k: between 1 and {self.settings.max_k}")
            self.k = k
        if scope is not None:
            if scope not in ("own", "all"):
                raise InvalidInput("scope: 'own' or 'all'")
            if scope == "all" and self.restricted:
                raise Forbidden("scope: 'all' needs an admin key")
            self.everyone = scope == "all"
        self.push({"type": "config", "k": self.k, "scope": "all" if self.everyone else "own"})

    async def _ping(self, message: dict[str, Any]) -> None:
        self.push({"type": "pong"})

    async def _auth_again(self, message: dict[str, Any]) -> None:
        if self.principal is None:
            self.push({"type": "auth_ok", "user_id": None, "admin": False})  # auth is off: nothing to check
            return
        raise InvalidInput("type: already authenticated")


@router.websocket("/ws")
async def tweet_stream(websocket: WebSocket) -> None:
    services = ws_services(websocket)
    state = services.extras["tweets"]
    authenticator = authenticator_of(websocket.app)
    principal: Principal | None = getattr(websocket.state, "principal", None)
    subprotocol = WS_SUBPROTOCOL if WS_SUBPROTOCOL in websocket.scope.get("subprotocols", ()) else None
    await websocket.accept(subprotocol=subprotocol)
    connection = Connection(websocket, services, state.settings, state.hub, principal, authenticator is not None)
    params = websocket.query_params
    if "k" in params or "scope" in params:
        try:
            k = params.get("k")
            connection.configure(int(k) if k is not None and k.isdigit() else None, params.get("scope"))
            if k is not None and not k.isdigit():
                raise InvalidInput("k: must be a positive integer")
        except ShoalError as exc:
            connection.error(exc)
    await connection.serve(authenticator)
