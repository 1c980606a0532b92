"""Embedding operations: coverage, backfill, scheduled re-queues and model switches without downtime."""
