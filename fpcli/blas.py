"""One BLAS thread while the analyzers run.

Their matrix products are small (a block's frames by ~1,000 bins by ~80 columns): a
BLAS thread pool only adds threads that spin and compete for the cores (measured: a
library caller's analyze_streaming ran at 50-120x real time on two busy cores instead
of ~250x). ``one_blas_thread`` limits the pools while it is active, then restores
them; the analyzers' ``push`` and ``finish`` use it, so callers of the classes get it
too. Worker processes start single-threaded anyway (fpcli/executors/local.py).

The limit is the process's, not a thread's (OpenBLAS and MKL keep one pool for the
process), so it is counted for the process: the first body to enter, in any thread,
sets it, and the last to leave restores what the first found. Each thread limiting
and restoring on its own left the pool at one thread for good when two threads
overlapped: the second saw the first's limit as the original, and restored it last.

threadpoolctl's ``threadpool_limits`` scans the loaded libraries on every use (~15 ms);
one ``ThreadpoolController`` kept for the process makes a limit cost ~0.3 ms, and a
body entered while another runs costs a lock and a count.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_controllers: list[Any] = []  # the process's ThreadpoolController, made on first use
_lock = threading.Lock()      # guards the two below
_users = 0                    # bodies of one_blas_thread running now, in every thread
_limiter: Any = None          # the limit set by the first of them (it knows the original limits)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the body with every BLAS/OpenMP pool of the process limited to one thread."""
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    """Count one more body; the first sets the limit."""
    global _users, _limiter
    with _lock:
        if _users == 0:
            _limiter = _controller().limit(limits=1)
            _release_control()
        _users += 1


def _leave() -> None:
    """Count one body less; the last restores the limits the first found."""
    global _users, _limiter
    with _lock:
        _users -= 1
        if _users == 0:
            limiter, _limiter = _limiter, None
            limiter.restore_original_limits()
            _release_control()


def _release_control() -> None:
    """Let any thread set OpenBLAS's pool next. Recent threadpoolctl lets only the thread
    that last set a process-wide OpenBLAS pool set it again (the others' calls do
    nothing) until that thread gives up control; the thread that restores the limit
    is often not the one that set it."""
    import threadpoolctl

    release = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if release is not None:
        release()


def _controller() -> Any:
    """The ThreadpoolController of this process. Made at the first limit, once numpy
    (whose BLAS runs the products) is loaded."""
    if not _controllers:
        from threadpoolctl import ThreadpoolController

        _controllers.append(ThreadpoolController())
    return _controllers[0]
