"""The durable log (SQLite WAL by default, Kafka at scale)."""

from shoal.log.base import Consumer, Log, Message, partition_for

__all__ = ["Consumer", "Log", "Message", "partition_for"]
