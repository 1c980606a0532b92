"""Conversation insights: sentiment, online topic clusters, confidence and reasoning (issue 4)."""

from shoal.insights.feature import InsightsFeature
from shoal.insights.settings import InsightsSettings

__all__ = ["InsightsFeature", "InsightsSettings"]
