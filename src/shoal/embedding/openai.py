"""The remote provider: any server speaking the OpenAI embeddings API (OpenAI, Azure, vLLM, Ollama…).

Requests are bounded by count and by estimated tokens, paced by two client-side limiters (requests
and tokens per minute) and retried with exponential backoff and jitter on 429, 5xx, timeouts and
connection errors; a ``Retry-After`` from the server overrides the computed wait. The SDK's own
retries are off so this is the one policy in force.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import openai
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from shoal.embedding.base import EmbeddingProvider, Vectors
from shoal.errors import ConfigurationError, EmbeddingError

_PROBE_TEXT = "dimension probe"
_MAX_RETRY_AFTER = 120.0
_RETRY_STATUS = {408, 409, 429}


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUS or exc.status_code >= 500
    return False


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``), if it did."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)  # the HTTP-date form
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _WaitHonouringRetryAfter:
    """Backoff with full jitter, unless the failed response carried a ``Retry-After``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_random_exponential(multiplier=initial, max=maximum)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after(exc)
        if asked is not None:
            return min(asked, _MAX_RETRY_AFTER)
        return float(self._backoff(state))


class OpenAIProvider(EmbeddingProvider):
    """Embeddings from an OpenAI-compatible ``POST /v1/embeddings``; ``model_id`` is ``openai:<model>``.

    Args:
        model: the remote model name.
        base_url: the API root (``None``: api.openai.com, which needs ``api_key``).
        api_key: bearer token; optional for self-hosted servers.
        dim: the model's dimension; probed with one request at ``open`` when ``None``.
        requests_per_minute / tokens_per_minute: client-side pacing below the account's limits.
        max_retries: retries after the first attempt on 429, 5xx, timeouts and connection errors.
        timeout: seconds per HTTP request.
        max_batch: inputs per request (OpenAI allows 2048).
        max_batch_tokens: estimated tokens per request (OpenAI allows 300k; estimates run ~4 chars/token).
        backoff_initial / backoff_max: seconds for the exponential backoff when no Retry-After is given.
    """

    is_remote = True

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        dim: int | None = None,
        requests_per_minute: int = 3000,
        tokens_per_minute: int = 1_000_000,
        max_retries: int = 6,
        timeout: float = 30.0,
        max_batch: int = 2048,
        max_batch_tokens: int = 100_000,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        if base_url is None and not api_key:
            raise ConfigurationError("SHOAL_EMBEDDER_API_KEY is required for api.openai.com")
        self.model = model
        self.model_id = f"openai:{model}"
        self.base_url = base_url
        self.dim = dim or 0
        self.max_batch = min(max_batch, 2048)
        self.max_batch_tokens = max_batch_tokens
        self.max_retries = max_retries
        self.timeout = timeout
        self._api_key = api_key or "unused"  # self-hosted servers usually ignore it; the SDK wants one
        self._requests = AsyncLimiter(requests_per_minute, 60)
        self._tokens = AsyncLimiter(tokens_per_minute, 60)
        self._tokens_per_minute = tokens_per_minute
        self._wait = _WaitHonouringRetryAfter(backoff_initial, backoff_max)
        self._client: openai.AsyncOpenAI | None = None
        self.requests_sent = 0

    async def open(self) -> None:
        self._client = openai.AsyncOpenAI(
            api_key=self._api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0
        )
        if not self.dim:
            try:
                self.dim = int((await self.embed([_PROBE_TEXT])).shape[1])
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def _tokens_of(self, text: str) -> int:
        return max(1, math.ceil(len(text) / 4))

    def _batches(self, texts: list[str]) -> Iterator[tuple[list[str], int]]:
        """Consecutive runs of ``texts`` within ``max_batch`` inputs and ``max_batch_tokens``."""
        batch: list[str] = []
        tokens = 0
        for text in texts:
            cost = self._tokens_of(text)
            if batch and (len(batch) >= self.max_batch or tokens + cost > self.max_batch_tokens):
                yield batch, tokens
                batch, tokens = [], 0
            batch.append(text)
            tokens += cost
        if batch:
            yield batch, tokens

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))  # the API bills every input: send each text once
        found: dict[str, Vectors] = {}
        for batch, tokens in self._batches(unique):
            vectors = await self._request(batch, tokens)
            found.update(zip(batch, vectors, strict=True))
        return np.stack([found[t] for t in texts])

    async def _request(self, batch: list[str], tokens: int) -> Vectors:
        client = self._client
        if client is None:
            raise EmbeddingError(f"{self.model_id} is not open")
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._requests.acquire()
                    # A single request can exceed the per-minute budget; it then takes the whole bucket.
                    await self._tokens.acquire(min(tokens, self._tokens_per_minute))
                    self.requests_sent += 1
                    response = await client.embeddings.create(model=self.model, input=batch, encoding_format="float")
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"{self.model_id}: {_describe(exc)}") from exc
        return self._vectors(response, len(batch))

    def _vectors(self, response: Any, expected: int) -> Vectors:
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != expected:
            raise EmbeddingError(f"{self.model_id}: asked for {expected} embeddings, got {len(data)}")
        vectors = np.asarray([item.embedding for item in data], dtype=np.float32)
        if vectors.ndim != 2 or (self.dim and vectors.shape[1] != self.dim):
            raise EmbeddingError(f"{self.model_id}: expected {self.dim} dimensions, got {vectors.shape[1:]}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        out: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        return out


def _describe(exc: openai.OpenAIError) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    return str(exc) or type(exc).__name__
