"""Settings of the conversation-insights feature (``SHOAL_INSIGHTS_*``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class InsightsSettings(BaseSettings):
    """Knobs of conversation analysis. The inbound rate limit is the core one (``SHOAL_RATE_LIMIT_PER_S``)."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_INSIGHTS_", env_file=".env", extra="ignore")

    collection: str = "conversations"
    analyzer: Literal["auto", "local", "llm"] = "auto"
    """``auto``: the LLM when ``SHOAL_LLM_BASE_URL`` + key are set, else local; ``llm`` requires them."""
    max_batch: int = Field(1000, ge=1, le=10_000, description="conversations per POST")
    batch_size: int = Field(256, ge=1, description="log messages per analysis batch")
    max_attempts: int = Field(5, ge=1, description="analysis attempts before a conversation is failed")
    retry_delay_s: float = Field(2.0, gt=0)
    positive_threshold: float | None = Field(None, ge=0, le=1, description="default: the shipped head's")
    negative_threshold: float | None = Field(None, ge=0, le=1)
    use_head: bool = True
    cluster_join: float = Field(0.65, ge=-1, le=1)
    cluster_merge: float = Field(0.85, ge=-1, le=1)
    cluster_split_below: float = Field(0.55, ge=0, le=1)
    cluster_split_min: int = Field(40, ge=4)
    max_clusters: int = Field(300, ge=2)
    llm_batch_size: int = Field(20, ge=1, le=100, description="conversations per LLM prompt")
    llm_max_retries: int = Field(3, ge=0)

    def clusterer_options(self) -> dict[str, Any]:
        """The ``OnlineClusterer`` keyword arguments these settings choose."""
        return {
            "join": self.cluster_join,
            "merge": self.cluster_merge,
            "split_below": self.cluster_split_below,
            "split_min": self.cluster_split_min,
            "max_clusters": self.max_clusters,
        }
