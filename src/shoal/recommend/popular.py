"""Trending items: counts of positive interactions that halve every ``half_life`` of event time.

A decayed score ``s`` last updated at ``t`` is worth ``s * 2^-((now - t) / h)`` now, so ranking by
``log2(s) + t / h`` orders items by their current decayed score at *any* ``now``: the store keeps
that rank in an indexed column and a top-N read never rescans or rewrites every item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Trend:
    item_id: str
    score: float
    at: float

    def add(self, weight: float, ts: float, half_life_s: float) -> None:
        """Add ``weight`` at event time ``ts`` (a late event is decayed to the current reference)."""
        if ts >= self.at:
            self.score = self.score * 2.0 ** (-(ts - self.at) / half_life_s) + weight
            self.at = ts
        else:
            self.score += weight * 2.0 ** (-(self.at - ts) / half_life_s)

    def rank(self, half_life_s: float) -> float:
        return math.log2(self.score) + self.at / half_life_s if self.score > 0 else -math.inf

    def score_at(self, now: float, half_life_s: float) -> float:
        return float(self.score * 2.0 ** (-(now - self.at) / half_life_s))
