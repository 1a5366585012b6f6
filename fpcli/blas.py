"""One BLAS thread while the analyzers run.

Their matrix products are small (a block's frames by ~1,000 bins by ~80 columns): a
BLAS thread pool only adds threads that spin and compete for the cores (measured: a
library caller's analyze_streaming ran at 50-120x real time on two busy cores instead
of ~250x). ``one_blas_thread`` limits the pools while it is active, then restores
them; the analyzers' ``push`` and ``finish`` use it, so callers of the classes get it
too. Worker processes start single-threaded anyway (fpcli/executors/local.py).

threadpoolctl's ``threadpool_limits`` scans the loaded libraries on every use (~15 ms);
one ``ThreadpoolController`` kept for the process makes a limit cost ~0.3 ms, and a
nested use (a push inside a file's read loop) costs nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_state = threading.local()
_controllers: list[Any] = []  # the process's ThreadpoolController, made on first use


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the body with every BLAS/OpenMP pool of the process limited to one thread."""
    if getattr(_state, "depth", 0):
        yield
        return
    _state.depth = 1
    try:
        with _controller().limit(limits=1):
            yield
    finally:
        _state.depth = 0


def _controller() -> Any:
    """The ThreadpoolController of this process. Made at the first limit, once numpy
    (whose BLAS runs the products) is loaded."""
    if not _controllers:
        from threadpoolctl import ThreadpoolController

        _controllers.append(ThreadpoolController())
    return _controllers[0]
