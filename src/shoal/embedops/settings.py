"""Embedding-operations knobs (``SHOAL_EMBEDOPS_*``), built by ``EmbedOpsFeature.start``, never at import."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmbedOpsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOAL_EMBEDOPS_", env_file=".env", extra="ignore")

    schedule_enabled: bool = Field(True, description="run the re-queue scheduler in worker processes")
    schedule_interval_s: float = Field(6 * 3600, gt=0, description="time between two scheduler runs")
    schedule_jitter: float = Field(0.1, ge=0, lt=1, description="each wait is the interval ± this fraction")
    schedule_lookback_s: float = Field(7 * 24 * 3600, gt=0, description="only records whose ts is this recent")
    schedule_limit: int = Field(100, ge=1, description="records re-queued per run at most")
    backfill_batch: int = Field(100, ge=1, le=2048, description="default records per backfill batch")
    heartbeat_s: float = Field(5.0, gt=0, description="progress line at least this often on a followed job")
    calibration_texts: int = Field(64, ge=1, description="texts a dry run embeds to measure a local model")
