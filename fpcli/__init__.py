"""fpcli: acoustic fingerprints of music libraries.

The public API: ``analyze_batch`` / ``analyze_streaming`` for files, the
``BatchAnalyzer`` / ``StreamingAnalyzer`` classes for blocks, ``AnalysisParams`` and
the dimension tables of ``fpcli.fingerprint``. Names are imported on first use
(PEP 562), so that ``fpcli --help`` does not pay for numpy and scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_PUBLIC = {
    "AnalysisParams": "fpcli.params", "AudioReadError": "fpcli.errors", "BATCH_DIMS": "fpcli.fingerprint",
    "BatchAnalyzer": "fpcli.batch", "FINGERPRINT_VERSION": "fpcli.params", "Fingerprint": "fpcli.fingerprint",
    "FpcliError": "fpcli.errors", "STREAMING_DIMS": "fpcli.fingerprint", "StreamingAnalyzer": "fpcli.streaming",
    "analyze_batch": "fpcli.analyze", "analyze_streaming": "fpcli.analyze",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'fpcli' has no attribute {name!r}")
