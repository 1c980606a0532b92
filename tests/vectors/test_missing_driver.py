"""A missing optional driver fails loudly with the extra to install (checked in a fresh interpreter,
where the driver is made unimportable with ``sys.modules[name] = None``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CASES = {
    "qdrant": ("qdrant_client", "from shoal.factory import make_vector_store as m; m('qdrant+local://:memory:')"),
    "milvus": ("pymilvus", "from shoal.factory import make_vector_store as m; m('milvus+lite:///tmp/x.db')"),
    "pgvector": ("pgvector", "from shoal.factory import make_vector_store as m; m('pgvector://u@localhost/db')"),
    "kafka": ("aiokafka", "from shoal.factory import make_log as m; m('kafka://localhost:9092')"),
}


@pytest.mark.parametrize("extra", list(CASES))
def test_missing_driver_names_the_extra(extra: str) -> None:
    module, build = CASES[extra]
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules[{module!r}] = None
        from shoal.errors import MissingDependencyError
        try:
            {build}
        except MissingDependencyError as exc:
            print(exc)
        else:
            raise SystemExit("no MissingDependencyError")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"pip install 'shoal[{extra}]'" in done.stdout
