"""Summary statistics the benchmarks share."""

from __future__ import annotations

import numpy as np


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (NaN for none), in their unit."""
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")
