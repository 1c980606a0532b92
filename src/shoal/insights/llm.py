"""The LLM analyzer: any OpenAI-compatible chat API (Grok, ...) through the ``openai`` SDK.

Conversations go in batched prompts (``batch_size`` per call); the model must answer JSON matching
``LLMBatch`` (sent as a JSON schema), validated with pydantic before anything is stored. Calls are
paced by a ``RateLimiter`` (Redis-backed when configured, so the ceiling holds across workers), failed
calls are retried with exponential backoff and jitter, and a batch that still fails falls back to the
local analyzer — so an LLM outage degrades the analysis, never loses it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import openai
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from shoal.insights.analyzer import Analysis, LocalAnalyzer
from shoal.insights.sentiment import Label
from shoal.llm_settings import LLMSettings
from shoal.ratelimit import RateLimiter

logger = structlog.get_logger(__name__)

LIMIT_KEY = "llm:chat"

SYSTEM_PROMPT = """You analyse customer-support conversations. For each conversation return:
- sentiment_score: a number in [-1, 1] (-1 very negative, 0 neutral, 1 very positive); read sarcasm and
  negation for what they mean, not for their surface words;
- clusters: 1 to 3 short snake_case topic labels (e.g. "delivery_problems", "billing_refund");
- confidence: a number in [0, 1], how sure you are;
- reasoning: one sentence citing the words that decided it.
Answer only with JSON: {"results": [{"id": <the conversation's id>, "sentiment_score": ..., "clusters": [...],
"confidence": ..., "reasoning": "..."}]}, one result per conversation."""


class LLMItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int
    sentiment_score: Annotated[float, Field(ge=-1.0, le=1.0)]
    clusters: Annotated[list[Annotated[str, Field(min_length=1, max_length=80)]], Field(min_length=1, max_length=5)]
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    reasoning: Annotated[str, Field(min_length=1, max_length=2000)]


class LLMBatch(BaseModel):
    results: list[LLMItem]


class InvalidLLMOutput(ValueError):
    """The model answered something that is not the requested JSON."""


def snake(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:60] or "other"


def _label(score: float, positive: float, negative: float) -> Label:
    if score >= positive:
        return "positive"
    if score <= -negative:
        return "negative"
    return "neutral"


class LLMAnalyzer:
    """Analyses with the LLM, clusters locally (topics must be comparable across conversations).

    Args:
        settings: base URL, key, model, timeout.
        local: the local analyzer (clusters every batch; the fallback for failed LLM batches).
        limiter: paces calls to ``settings.max_calls_per_s`` (share one through Redis across workers).
        client: an ``AsyncOpenAI`` to use (not closed here); by default one is made and closed.
    """

    def __init__(
        self,
        settings: LLMSettings,
        local: LocalAnalyzer,
        limiter: RateLimiter,
        *,
        batch_size: int = 20,
        max_retries: int = 3,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        self.settings = settings
        self.local = local
        self.limiter = limiter
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.name = f"llm:{settings.model}"
        self._owns_client = client is None
        self._client = client or openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            timeout=settings.timeout_s,
            max_retries=0,  # retries are ours: they go through the rate limiter too
        )
        self.calls = 0
        self.fallbacks = 0

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def analyze(self, texts: Sequence[str], vectors: npt.NDArray[np.float32]) -> list[Analysis]:
        base = await self.local.analyze(texts, vectors)
        out: list[Analysis] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            local = base[start : start + self.batch_size]
            try:
                items = await self._with_retries(chunk)
            except (openai.OpenAIError, InvalidLLMOutput, TimeoutError) as exc:
                self.fallbacks += 1
                logger.warning("llm analysis failed; using the local analyzer", error=str(exc), size=len(chunk))
                out.extend(local)
                continue
            out.extend(self._merge(item, fallback) for item, fallback in zip(items, local, strict=True))
        return out

    def _merge(self, item: LLMItem, local: Analysis) -> Analysis:
        sentiment = self.local.sentiment
        return Analysis(
            sentiment_score=round(item.sentiment_score, 4),
            sentiment=_label(item.sentiment_score, sentiment.positive_threshold, sentiment.negative_threshold),
            clusters=list(dict.fromkeys(snake(c) for c in item.clusters)),
            confidence=round(item.confidence, 4),
            reasoning=item.reasoning,
            analyzer=self.name,
            cluster=local.cluster,
            cluster_id=local.cluster_id,
            similarity=local.similarity,
        )

    async def _with_retries(self, texts: list[str]) -> list[LLMItem]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_random_exponential(multiplier=0.2, max=5.0),
            retry=retry_if_exception_type(
                (
                    openai.APIConnectionError,
                    openai.APITimeoutError,
                    openai.RateLimitError,
                    openai.InternalServerError,
                    InvalidLLMOutput,
                    TimeoutError,
                )
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self.call(texts)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self) -> None:
        while (wait := await self.limiter.hit(LIMIT_KEY)) is not None:  # noqa: ASYNC110
            await asyncio.sleep(wait)  # pacing, not synchronisation: the limiter says when

    async def call(self, texts: list[str]) -> list[LLMItem]:
        """One chat call for ``texts``; the validated results in input order."""
        await self._acquire()
        self.calls += 1
        payload = json.dumps([{"id": i, "text": t} for i, t in enumerate(texts)], ensure_ascii=False)
        response = await self._client.chat.completions.create(
            model=self.settings.model,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": payload},
            ],
            temperature=0,
            response_format=_response_format(),
        )
        content = response.choices[0].message.content if response.choices else None
        return parse_items(content, len(texts))


def _response_format() -> Any:
    return {
        "type": "json_schema",
        "json_schema": {"name": "conversation_insights", "schema": LLMBatch.model_json_schema(), "strict": True},
    }


def parse_items(content: str | None, expected: int) -> list[LLMItem]:
    """Validate the model's answer: JSON, the schema, and exactly one result per id ``0..expected-1``."""
    if not content:
        raise InvalidLLMOutput("empty answer")
    text = content.strip()
    if text.startswith("```"):  # models like to fence JSON even when told not to
        text = text.strip("`").removeprefix("json").strip()
    try:
        batch = LLMBatch.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidLLMOutput(f"answer does not match the schema: {exc.errors()[:2]}") from exc
    by_id = {item.id: item for item in batch.results}
    if sorted(by_id) != list(range(expected)):
        raise InvalidLLMOutput(f"expected ids 0..{expected - 1}, got {sorted(by_id)[:10]}")
    return [by_id[i] for i in range(expected)]
