"""fpcli: acoustic fingerprints of music libraries.

The public API: ``analyze_batch`` / ``analyze_streaming`` for files, the
``BatchAnalyzer`` / ``StreamingAnalyzer`` classes for blocks, ``AnalysisParams`` and
the dimension tables of ``fpcli.fingerprint``.
"""

from fpcli.analyze import analyze_batch, analyze_streaming
from fpcli.batch import BatchAnalyzer
from fpcli.errors import AudioReadError, FpcliError
from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS, Fingerprint
from fpcli.params import FINGERPRINT_VERSION, AnalysisParams
from fpcli.streaming import StreamingAnalyzer

__version__ = "0.1.0"

__all__ = [
    "AnalysisParams", "AudioReadError", "BATCH_DIMS", "BatchAnalyzer", "FINGERPRINT_VERSION",
    "Fingerprint", "FpcliError", "STREAMING_DIMS", "StreamingAnalyzer", "analyze_batch", "analyze_streaming",
]
