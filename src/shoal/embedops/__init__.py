"""Embedding operations: coverage, backfill, scheduled re-queues and model switches without downtime.

Kept import-light: core modules (search, indexer) import ``shoal.embedops.engines`` from here.
"""
