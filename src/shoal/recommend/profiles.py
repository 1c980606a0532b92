"""User profiles: a taste vector (time-decayed, weighted sum of item vectors), the items seen and
counters. Only the direction of the taste vector is used for queries, so the decayed sum is a
weighted moving average of the items' directions; negative weights (dislike, low ratings) push away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]


@dataclass(slots=True)
class Profile:
    user_id: str
    vector: Vector | None = None
    """Decayed weighted sum of item vectors, referenced to time ``at``; ``None`` before any known item."""
    at: float = 0.0
    """Event time (epoch seconds) the vector is decayed to."""
    seen: dict[str, None] = field(default_factory=dict)
    """Every item the user interacted with, in first-seen order (never recommended)."""
    recent: list[str] = field(default_factory=list)
    """Last applied item ids, oldest first (the order events were applied in)."""
    counters: dict[str, int] = field(default_factory=dict)
    events: int = 0
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def add(self, item_vector: Vector, weight: float, ts: float, half_life_s: float) -> None:
        """Fold one item into the taste: older contributions decay by half every ``half_life_s`` of
        event time. An event older than the profile decays itself instead (late arrivals count less)."""
        if self.vector is None:
            self.vector = weight * item_vector
            self.at = ts
        elif ts >= self.at:
            self.vector = self.vector * 0.5 ** ((ts - self.at) / half_life_s) + weight * item_vector
            self.at = ts
        else:
            self.vector = self.vector + weight * 0.5 ** ((self.at - ts) / half_life_s) * item_vector

    def record(self, item_id: str, kind: str, *, known: bool, recent_size: int) -> None:
        """Count one applied event and mark its item seen."""
        self.events += 1
        self.counters[kind] = self.counters.get(kind, 0) + 1
        if not known:
            self.counters["unknown_items"] = self.counters.get("unknown_items", 0) + 1
        self.seen[item_id] = None
        if recent_size:
            self.recent.append(item_id)
            del self.recent[:-recent_size]

    def direction(self) -> Vector | None:
        """The unit taste direction, or ``None`` when there is no taste yet."""
        if self.vector is None:
            return None
        norm = float(np.linalg.norm(self.vector))
        if not np.isfinite(norm) or norm < 1e-12:
            return None
        unit: Vector = self.vector / norm
        return unit

    def query(self) -> list[float] | None:
        """The unit taste direction to search with, or ``None`` when there is no taste yet."""
        unit = self.direction()
        return None if unit is None else unit.tolist()

    def summary(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "events": self.events,
            "counters": dict(self.counters),
            "seen": len(self.seen),
            "recent": list(self.recent),
            "has_taste": self.direction() is not None,
            "updated_at": self.updated_at.isoformat(),
        }


def unit(vector: Sequence[float]) -> Vector:
    """``vector`` scaled to length 1 (a zero vector as it is)."""
    array = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


def vector_to_bytes(vector: Vector | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype="<f8").tobytes()


def vector_from_bytes(raw: bytes | None) -> Vector | None:
    return None if raw is None else np.frombuffer(raw, dtype="<f8").astype(np.float64)
