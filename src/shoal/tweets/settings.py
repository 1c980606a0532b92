"""Tweet-stream knobs (``SHOAL_TWEETS_*``), built by ``TweetsFeature.start``, never at import."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TweetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOAL_TWEETS_", env_file=".env", extra="ignore")

    collection: str = Field("tweets", description="collection the tweets are stored in")
    max_batch: int = Field(500, ge=1, le=10_000, description="tweets per WebSocket batch")
    max_text_chars: int = Field(10_000, ge=1)
    default_k: int = Field(5, ge=1, description="similar tweets pushed per tweet unless the client sets k")
    max_k: int = Field(50, ge=1)
    send_queue: int = Field(1024, ge=1, description="messages waiting per connection before it is closed (1013)")
    max_pending: int = Field(10_000, ge=1, description="tweets per connection acked but not yet pushed")
    max_subscriptions: int = Field(32, ge=1, description="standing queries per connection")
    auth_timeout_s: float = Field(10.0, gt=0, description="time to send the first-message auth")
    close_timeout_s: float = Field(5.0, gt=0, description="time a closing handshake may take")
    max_search_limit: int = Field(100, ge=1, description="largest /search_payload limit")
