"""Settings of the OpenAI-compatible chat model (``SHOAL_LLM_*``) shared by the features that
generate text (RAG answers, insight reasoning). Built at start-up, never at import."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class LLMSettings(BaseSettings):
    """An OpenAI-compatible chat endpoint; generation is off while ``base_url`` or ``model`` is unset."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_LLM_", env_file=".env", extra="ignore")

    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    timeout_s: float = Field(30.0, gt=0)
    max_calls_per_s: float = Field(5.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.base_url and self.model)
