"""One BLAS thread for a query.

A query's matrix products are one matrix-vector product over the index (memory-bound)
and small factorisations. On two cores shared with other work, OpenBLAS's thread pool
makes them slower, not faster: its threads spin waiting for a core (measured on a
loaded 2-core machine, a 10,000-row matrix-vector product: 0.1 ms of CPU with one
thread, 8 ms with two). The analyzers limit their threads the same way
(``fpcli.analyze.one_blas_thread``); this one keeps the controller, so that entering
the limit costs ~20 us per query instead of ~0.7 ms, and imports nothing from the
analysis code.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any


@functools.cache
def _controller() -> Any:
    """threadpoolctl's view of the loaded thread pools (~10 ms to build, once)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with one BLAS/OpenMP thread, then restore the previous limits."""
    with _controller().limit(limits=1):
        yield
