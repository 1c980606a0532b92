"""Grounded generation through an OpenAI-compatible chat API (``SHOAL_LLM_*``), streamed.

The prompt numbers the sources and forbids any claim without a ``[n]`` citation; when the sources do
not hold the answer the model must say so with ``NO_ANSWER`` instead of guessing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

import openai
from aiolimiter import AsyncLimiter
from openai.types.chat import ChatCompletionMessageParam

from shoal.errors import BackendError, ConfigurationError

if TYPE_CHECKING:
    from shoal.llm_settings import LLMSettings

NO_ANSWER = "The provided sources do not contain the answer to this question."

SYSTEM_PROMPT = f"""You answer questions using ONLY the numbered sources the user gives you.
Rules:
1. Every statement in your answer must be supported by the sources and cite them inline as [n]
   (for example: "Aspirin lowers fever [2]."). Never write a sentence without a citation.
2. Do not use outside knowledge, and do not cite a number that is not in the sources.
3. If the sources do not contain the answer, reply exactly: "{NO_ANSWER}"
4. Be concise."""


@dataclass(frozen=True, slots=True)
class ContextSource:
    """One numbered source handed to the model."""

    n: int
    title: str
    text: str


def build_messages(question: str, sources: Sequence[ContextSource]) -> list[ChatCompletionMessageParam]:
    """The chat messages for ``question`` grounded in ``sources``."""
    blocks = "\n\n".join(f"[{s.n}] {s.title}\n{s.text}".strip() for s in sources) or "(no sources)"
    user = f"Sources:\n\n{blocks}\n\nQuestion: {question}\n\nAnswer with citations:"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


class LLM:
    """A chat model behind the ``openai`` SDK, rate limited to ``max_calls_per_s``.

    Use as an async context manager (closes its HTTP client).
    """

    def __init__(self, settings: LLMSettings) -> None:
        if not settings.base_url or not settings.model:
            raise ConfigurationError("SHOAL_LLM_BASE_URL and SHOAL_LLM_MODEL are needed for generation")
        self.model = settings.model
        key = settings.api_key.get_secret_value() if settings.api_key else "unused"
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url, api_key=key, timeout=settings.timeout_s, max_retries=2
        )
        self._limiter = AsyncLimiter(settings.max_calls_per_s, 1.0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.close()

    async def stream(self, question: str, sources: Sequence[ContextSource]) -> AsyncIterator[str]:
        """Yield the answer's text as the model produces it."""
        async with self._limiter:
            try:
                response = await self._client.chat.completions.create(
                    model=self.model, messages=build_messages(question, sources), stream=True, temperature=0
                )
                async for chunk in response:
                    if chunk.choices and (text := chunk.choices[0].delta.content):
                        yield text
            except openai.OpenAIError as exc:
                raise BackendError(f"llm: {type(exc).__name__}: {exc}") from exc

    async def complete(self, question: str, sources: Sequence[ContextSource]) -> str:
        """The whole answer at once."""
        return "".join([part async for part in self.stream(question, sources)])
