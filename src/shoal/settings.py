"""Typed settings: environment (``SHOAL_*``) and ``.env``, validated at start-up.

Settings are built by the app factory (``create_app``) or the CLI, never at import time.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shoal.errors import ConfigurationError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every knob of a Shoal server. Each backend is chosen by a URL."""

    model_config = SettingsConfigDict(
        env_prefix="SHOAL_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # -- process -------------------------------------------------------------------------------
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    role: Literal["all", "api", "worker"] = "all"
    allow_insecure: bool = False
    log_level: str = "INFO"
    log_json: bool = True
    ws_compression: bool = Field(
        False,
        description="permessage-deflate on WebSockets: less bandwidth for ~12 % more event-loop CPU a push",
    )

    # -- backends (URLs; ``None`` means the embedded default under ``data_dir``) ---------------
    database_url: str | None = None
    vector_url: str | None = None
    log_url: str | None = None
    cache_url: str = "memory://"
    bus_url: str = "memory://"

    # -- embedding -----------------------------------------------------------------------------
    embedder: str = "local:minilm"
    embedder_base_url: str | None = None
    embedder_api_key: SecretStr | None = None
    embedder_dim: int | None = Field(None, ge=1, description="dimension of a remote model; probed if unset")
    embed_batch_size: int = Field(32, ge=1, le=2048)
    embed_max_wait_ms: float = Field(
        0.0, ge=0, description="how long an idle engine waits for company; batches form while it is busy"
    )
    embed_queue_size: int = Field(20_000, ge=1)
    embed_threads: int = Field(
        2, ge=1, description="forward passes of the local model run side by side, one thread each"
    )
    embed_nice: int = Field(
        5, ge=0, le=19, description="niceness of the local model's threads: the API wins the CPU under load"
    )
    embed_cache_size: int = Field(50_000, ge=0, description="L1 entries")
    embed_cache_ttl_s: int = Field(30 * 24 * 3600, ge=1)
    embed_max_tokens: int = Field(256, ge=8, le=512)
    embed_requests_per_minute: int = Field(3000, ge=1)
    embed_tokens_per_minute: int = Field(1_000_000, ge=1)
    embed_max_retries: int = Field(6, ge=0)
    embed_timeout_s: float = Field(30.0, gt=0)
    embed_price_per_1k_tokens: float = Field(0.0, ge=0)

    # -- pipeline ------------------------------------------------------------------------------
    log_partitions: int = Field(4, ge=1, le=256)
    log_fsync: Literal["always", "interval"] = Field(
        "interval",
        description="embedded log: fsync in the background at most log_fsync_interval_s after a commit "
        "(survives kill -9; no request waits for the disk), or fsync every commit before its 202 "
        "(also survives power loss)",
    )
    log_fsync_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="embedded log: the longest a commit waits for its background fsync (fsync=interval) "
        "and for the WAL checkpoint (both modes)",
    )
    ingest_batch_size: int = Field(256, ge=1, description="most records per indexer batch, while a backlog drains")
    ingest_batch_min: int | None = Field(
        None,
        ge=1,
        description="most records per indexer batch while it keeps up (unset: always ingest_batch_size); "
        "smaller shortens 202s under load but costs request-to-searchable latency near capacity",
    )
    max_records_per_request: int = Field(1000, ge=1)
    max_text_chars: int = Field(100_000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    wait_timeout_s: float = Field(30.0, gt=0)
    optimize_interval_s: float = Field(5.0, gt=0, description="optimise vector indexes once writes pause this long")
    optimize_max_pending: int = Field(
        20_000, ge=1, description="points written since the last optimisation after which it runs while writes go on"
    )
    drain_timeout_s: float = Field(20.0, gt=0)
    malloc_arena_max: int = Field(
        2,
        ge=0,
        description="shoal serve caps glibc's malloc arenas (each keeps the memory its threads freed); "
        "0 leaves glibc's default, MALLOC_ARENA_MAX in the environment wins",
    )

    # -- inbound rate limit (per client; shared through Redis when the cache URL is Redis) -------
    rate_limit_per_s: float = Field(100.0, gt=0, description="requests per second per client")
    rate_limit_burst: int | None = Field(None, ge=1, description="bucket size; defaults to one second's worth")

    # -- auth (enforced by the tweet-stream issue; the refusal to listen publicly starts here) ---
    api_keys: list[SecretStr] = Field(default_factory=list)
    admin_api_keys: list[SecretStr] = Field(default_factory=list)
    auth_jwks_url: str | None = None

    @field_validator("api_keys", "admin_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.admin_api_keys or self.auth_jwks_url)

    @model_validator(mode="after")
    def _refuse_insecure(self) -> Settings:
        if not is_loopback(self.host) and not self.auth_enabled and not self.allow_insecure:
            raise ConfigurationError(
                f"refusing to listen on {self.host!r} without auth: set SHOAL_API_KEYS or "
                "SHOAL_AUTH_JWKS_URL, or SHOAL_ALLOW_INSECURE=1 if you really mean it"
            )
        return self

    # -- resolved URLs -------------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'shoal.db').resolve()}"

    @property
    def resolved_vector_url(self) -> str:
        return self.vector_url or f"edge://{(self.data_dir / 'vectors').resolve()}"

    @property
    def resolved_log_url(self) -> str:
        return self.log_url or f"sqlite://{(self.data_dir / 'log.db').resolve()}"

    @property
    def embedding_cache_url(self) -> str:
        """L2 of the embedding cache: Redis when the cache URL is Redis, else a SQLite file."""
        if self.cache_url.startswith(("redis://", "rediss://", "unix://")):
            return self.cache_url
        return f"sqlite://{(self.data_dir / 'embed-cache.db').resolve()}"
