"""The event bus (in-process by default, Redis pub/sub across processes)."""

from shoal.bus.base import Bus, Event, Subscription

__all__ = ["Bus", "Event", "Subscription"]
