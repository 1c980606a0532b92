"""Recommendation knobs (``SHOAL_RECOMMEND_*``), built by ``RecommendFeature.start``, never at import."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RecommendSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOAL_RECOMMEND_", env_file=".env", extra="ignore")

    collection: str = Field("items", description="collection holding the catalog items")
    topic: str = Field("interactions", description="log topic of interaction events (keyed by user)")
    list_size: int = Field(50, ge=1, le=1000, description="items kept in each user's cached list (largest limit)")
    half_life_s: float = Field(7 * 24 * 3600.0, gt=0, description="taste decay half-life, in event time")
    popular_half_life_s: float = Field(24 * 3600.0, gt=0, description="trending decay half-life")
    weight_view: float = 1.0
    weight_click: float = 2.0
    weight_add_to_cart: float = 4.0
    weight_purchase: float = 8.0
    weight_dislike: float = Field(-6.0, le=0, description="negative: pushes the taste away from the item")
    weight_rating: float = Field(4.0, ge=0, description="rating weight at a full step above neutral")
    rating_neutral: float = Field(3.0, description="a rating equal to this neither attracts nor repels")
    rating_scale: float = Field(2.0, gt=0, description="rating distance from neutral that gives weight_rating")
    popularity_blend: float = Field(
        0.5,
        ge=0,
        description="score += blend * trending score / top trending score; trending items join the "
        "candidates (0: taste only; on MovieLens taste alone loses to popularity, blended it wins)",
    )
    exact_max_items: int = Field(
        50_000,
        ge=0,
        description="catalogs up to this many items are held in memory and every list is scored exactly against "
        "every item (float32: 4 bytes x dimension an item, 77 MB at 50k x 384); larger ones are searched through "
        "the vector store (HNSW, ef raised toward k + seen); 0: always the vector store",
    )
    max_ef: int = Field(4096, ge=16, description="ceiling of the HNSW beam width raised toward k + seen")
    recent_size: int = Field(50, ge=0, le=1000, description="last applied item ids kept on the profile")
    batch_size: int = Field(256, ge=1, le=10_000, description="events per profiler batch")
    max_events_per_request: int = Field(1000, ge=1, le=100_000)
    popular_refresh_s: float = Field(1.0, ge=0, description="least time between trending-list refreshes")
    dedup_retention_s: float = Field(
        30 * 24 * 3600.0, gt=0, description="how long applied event ids are remembered for idempotency"
    )
    list_ttl_s: float = Field(30 * 24 * 3600.0, gt=0, description="how long a cached list lives")

    def weight(self, kind: str, value: float | None) -> float:
        """Signed weight of one event (ratings scale around ``rating_neutral``)."""
        if kind == "rating":
            rating = value if value is not None else self.rating_neutral
            return self.weight_rating * (rating - self.rating_neutral) / self.rating_scale
        weight: float = getattr(self, f"weight_{kind}")
        return weight
