"""The record store (SQLite by default, PostgreSQL at scale)."""

from shoal.records.base import Collection, CollectionStats, Record, RecordStore, Status

__all__ = ["Collection", "CollectionStats", "Record", "RecordStore", "Status"]
