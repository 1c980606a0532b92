"""Quality of the local insights analyzer (no server): sentiment macro recall on TweetEval sentiment val
next to plain VADER, and online-clustering NMI on BANKING77 next to batch KMeans(77).

    .venv/bin/python scripts/eval_insights.py

Prints JSON; ``python -m bench.insights`` runs the same evaluation plus the speed figures and writes
bench/results/insights.json. Needs scikit-learn.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.insights import clustering_quality, sentiment_quality

if __name__ == "__main__":
    print(json.dumps({"sentiment": sentiment_quality(), "clustering": clustering_quality()}, indent=2))
