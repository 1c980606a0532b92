"""The pipeline: processors consuming the log (indexer, and the features' own)."""
