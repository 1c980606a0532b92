"""What the insights routes and processor share at run time (``services.extras["insights"]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal.errors import BackendError

if TYPE_CHECKING:
    from shoal.insights.analyzer import Analyzer, LocalAnalyzer
    from shoal.insights.clusters import OnlineClusterer
    from shoal.insights.settings import InsightsSettings
    from shoal.insights.store import InsightsStore
    from shoal.services import Services

NAME = "insights"


@dataclass
class InsightsState:
    settings: InsightsSettings
    store: InsightsStore
    local: LocalAnalyzer
    analyzer: Analyzer
    clusterer: OnlineClusterer


def state_of(services: Services) -> InsightsState:
    try:
        state: InsightsState = services.extras[NAME]
    except KeyError:
        raise BackendError("insights feature is not started") from None
    return state
