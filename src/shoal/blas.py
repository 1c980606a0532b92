"""BLAS threads: the numpy products of the server (clustering, the recommender's catalog scores) are
small, and OpenBLAS's workers spin while they wait for the next one."""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager

from threadpoolctl import ThreadpoolController


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager[object]:
    """BLAS limited to one thread while in the block. The products are too small to gain from more,
    and OpenBLAS's workers spin while they wait: on two shared cores they burned more CPU than the
    product itself (2-3× the analyzer's CPU time per conversation; a whole core beside the
    recommender's scores at 500 events/s) and stalled under load. OpenBLAS has one process-wide
    setting, so other threads' products in the block run on one thread too."""
    limiter: AbstractContextManager[object] = _blas().limit(limits=1, user_api="blas")
    return limiter
