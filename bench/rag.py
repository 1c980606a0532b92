"""RAG benchmark (``make bench``): runs ``scripts/eval_rag.py`` — SciFact quality, indexing docs/s
against the embedding engine's ceiling, ``/query`` p50/p99 — and writes ``bench/results/rag.json``."""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "eval_rag.py"), run_name="__main__")
