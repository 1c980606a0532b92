"""Settings of the OpenAI-compatible chat LLM (Grok or any compatible API), shared by insights and RAG.

Built by the features that use it (never at import time). The LLM is "configured" when both the base URL
and the key are set.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class LLMSettings(BaseSettings):
    """``SHOAL_LLM_BASE_URL``, ``SHOAL_LLM_API_KEY``, ``SHOAL_LLM_MODEL``, ..."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_LLM_", env_file=".env", extra="ignore")

    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "grok-2-latest"
    timeout_s: float = Field(30.0, gt=0)
    max_calls_per_s: float = Field(10.0, gt=0, description="ceiling on chat calls per second, all workers")

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.api_key and self.api_key.get_secret_value())
