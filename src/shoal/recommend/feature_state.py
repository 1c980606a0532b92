"""What the recommendation routes find on ``services.extras["recommend"]``."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.errors import BackendError
from shoal.recommend.processor import RecommendMetrics
from shoal.recommend.service import Recommender
from shoal.recommend.settings import RecommendSettings
from shoal.recommend.store import ProfileStore
from shoal.services import Services

NAME = "recommend"


@dataclass(frozen=True, slots=True)
class RecommendState:
    settings: RecommendSettings
    store: ProfileStore
    recommender: Recommender
    metrics: RecommendMetrics


def state_of(services: Services) -> RecommendState:
    state: RecommendState | None = services.extras.get(NAME)
    if state is None:
        raise BackendError("recommendations are not started")
    return state
