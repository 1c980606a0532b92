"""Real-time recommendations (issue 6): see ``docs/recommendations.md``."""

from shoal.recommend.feature import RecommendFeature
from shoal.recommend.settings import RecommendSettings

__all__ = ["RecommendFeature", "RecommendSettings"]
