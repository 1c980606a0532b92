"""``shoal serve`` caps glibc's malloc arenas: checked in a child process with glibc's own report."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from shoal.allocator import limit_arenas

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas are Linux's")

# Four threads allocate while all are alive (a barrier keeps them so), then glibc reports its heaps.
_CHILD = textwrap.dedent(
    """
    import ctypes, sys, threading
    from shoal.allocator import limit_arenas
    print(limit_arenas(int(sys.argv[1])), file=sys.stderr)
    barrier = threading.Barrier(4)
    def work():
        keep = [bytes(1000 + i % 7) for i in range(5000)]  # above pymalloc's 512 bytes: malloc
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    libc = ctypes.CDLL("libc.so.6")
    libc.fdopen.restype = ctypes.c_void_p
    out = ctypes.c_void_p(libc.fdopen(1, b"w"))
    libc.malloc_info(0, out)
    libc.fflush(out)
    """
)


def _heaps(arenas: int, **env: str) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(arenas)], capture_output=True, text=True, env=environ, check=True
    )
    return done.stdout.count("<heap nr="), done.stderr.strip()


def test_the_cap_holds_for_threads_started_after_it() -> None:
    assert _heaps(2) == (2, "True")
    uncapped, applied = _heaps(0)
    assert applied == "False" and uncapped >= 4  # one arena per concurrent thread without the cap


def test_an_explicit_malloc_arena_max_wins() -> None:
    heaps, applied = _heaps(2, MALLOC_ARENA_MAX="1")
    assert (heaps, applied) == (1, "False")


def test_zero_leaves_glibc_alone() -> None:
    assert limit_arenas(0) is False
