"""fpcli: acoustic fingerprints of music libraries.

The public API: ``analyze_batch`` / ``analyze_streaming`` for files, the
``BatchAnalyzer`` / ``StreamingAnalyzer`` classes for blocks, ``AnalysisParams`` and
the dimension tables of ``fpcli.fingerprint``. Names are imported on first use
(PEP 562), so that ``fpcli --help`` does not pay for numpy and scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_PUBLIC = {
    "AnalysisParams": "fpcli.params", "AudioReadError": "fpcli.errors", "BATCH_DIMS": "fpcli.fingerprint",
    "BatchAnalyzer": "fpcli.batch", "FINGERPRINT_VERSION": "fpcli.params", "Fingerprint": "fpcli.fingerprint",
    "FpcliError": "fpcli.errors", "STREAMING_DIMS": "fpcli.fingerprint", "StreamingAnalyzer": "fpcli.streaming",
    "analyze_batch": "fpcli.analyze", "analyze_streaming": "fpcli.analyze",
}
__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:
    # The same names for type checkers and IDEs, which do not run __getattr__ (to them
    # every name was Any). "X as X" re-exports them under mypy's --no-implicit-reexport.
    from fpcli.analyze import analyze_batch as analyze_batch
    from fpcli.analyze import analyze_streaming as analyze_streaming
    from fpcli.batch import BatchAnalyzer as BatchAnalyzer
    from fpcli.errors import AudioReadError as AudioReadError
    from fpcli.errors import FpcliError as FpcliError
    from fpcli.fingerprint import BATCH_DIMS as BATCH_DIMS
    from fpcli.fingerprint import STREAMING_DIMS as STREAMING_DIMS
    from fpcli.fingerprint import Fingerprint as Fingerprint
    from fpcli.params import FINGERPRINT_VERSION as FINGERPRINT_VERSION
    from fpcli.params import AnalysisParams as AnalysisParams
    from fpcli.streaming import StreamingAnalyzer as StreamingAnalyzer


# Hidden from type checkers: to them a module __getattr__ made every name, a misspelt
# one too, an Any; they see the names imported under TYPE_CHECKING above.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in _PUBLIC:
            return getattr(importlib.import_module(_PUBLIC[name]), name)
        raise AttributeError(f"module 'fpcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and the public ones not imported yet, so that ``dir(fpcli)``,
    ``help(fpcli)`` and a shell's completion show them."""
    return sorted({*globals(), *_PUBLIC})
