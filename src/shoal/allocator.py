"""The C allocator of a ``shoal serve`` process.

glibc gives threads malloc arenas of their own (up to eight per core), and an arena keeps much of
what it freed. A server has many allocating threads — the embedding runtime's, the vector store's
pools, SQLite's, the log writer — so after a long ingest a good part of its anonymous memory was the
arenas' free space: capped at two, RSS after 50,000 analysed conversations went from 769 to 685 MB at
the same throughput (docs/benchmarks.md, insights). ``MALLOC_ARENA_MAX`` in the environment does the
same from the first allocation and wins over the setting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import structlog

logger = structlog.get_logger(__name__)

_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for the threads started from now on.

    Returns whether the cap was set: ``arenas`` 0, an explicit ``MALLOC_ARENA_MAX``, a C library
    other than glibc (musl has no arenas to cap) or a platform other than Linux leave it alone.
    """
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not mallopt(_M_ARENA_MAX, arenas):
        logger.warning("mallopt(M_ARENA_MAX) refused", arenas=arenas)
        return False
    return True
