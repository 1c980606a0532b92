"""``python -m tests.cluster_child serve ...``: the real ``shoal`` command line, with the insights
capability among the default features when the app does not list it yet.

The multi-process test needs ``POST /api/v1/conversations`` (the endpoint that spends the inbound
rate limit). Once ``shoal.app.default_features()`` includes ``InsightsFeature`` this adds nothing and
the child is exactly ``shoal serve``.
"""

from __future__ import annotations

from shoal import app as shoal_app
from shoal.feature import Feature

_defaults = shoal_app.default_features


def _with_insights() -> list[Feature]:
    from shoal.insights.feature import InsightsFeature

    features = _defaults()
    if not any(isinstance(f, InsightsFeature) for f in features):
        features.append(InsightsFeature())
    return features


if __name__ == "__main__":
    shoal_app.default_features = _with_insights
    from shoal.cli import main

    main()
