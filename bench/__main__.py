"""`make bench`: run every benchmark in turn; each prints its table and writes bench/results/<name>.json.

.venv/bin/python -m bench [name ...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["embed", "log", "search", "ingest", "ws", "insights", "rag", "recommend", "backfill", "backends", "dashboard"]


def main(names: list[str]) -> int:
    failed = []
    for name in names or ORDER:
        if not (ROOT / "bench" / f"{name}.py").exists():
            continue
        print(f"\n=== bench/{name}.py ===", flush=True)
        if subprocess.call([sys.executable, "-m", f"bench.{name}"], cwd=ROOT) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
