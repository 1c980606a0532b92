"""RAG: index documents as chunks (dense + BM25 sparse vectors), retrieve with hybrid fusion,
rerank with a cross-encoder, and answer with citations (through an LLM, or extractively).

The feature is ``shoal.rag.feature.RagFeature``.
"""
