"""The outcome of analysing one file, as plain data shared by the library runner,
the store and the CLI."""

from __future__ import annotations

import dataclasses
from typing import Any

from fpcli.fingerprint import Fingerprint
from fpcli.params import FINGERPRINT_VERSION

TIMEOUT_ERROR_TYPE = "Timeout"  # a result's error_type when the analysis outran the run's time limit
INTERNAL_ERROR_TYPE = "InternalError"  # a result's error_type for a fault of fpcli's, not of the file
WORKER_CRASHED = "WorkerCrashed"  # the process analysing the file died (a decoder's crash, the OOM killer)


@dataclasses.dataclass(frozen=True)
class TrackResult:
    """The outcome of analysing one file: status ``ok``, ``partial`` or ``error``."""

    path: str
    status: str
    error: str | None = None          # the reason (the path is not repeated)
    error_type: str | None = None
    duration_s: float | None = None
    samplerate: int | None = None
    channels: int | None = None
    format: str | None = None
    subtype: str | None = None
    partial_reason: str | None = None
    streaming: Fingerprint | None = None
    batch: Fingerprint | None = None
    seconds_taken: float = 0.0
    cached: bool = False

    @property
    def failed(self) -> bool:
        return self.status == "error"

    def to_json(self) -> dict[str, Any]:
        """The JSON Lines record of ``fpcli analyze --json`` (README, "Output")."""
        out: dict[str, Any] = {
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "duration_s": self.duration_s,
            "samplerate": self.samplerate,
            "channels": self.channels,
            "format": self.format,
            "subtype": self.subtype,
            "partial_reason": self.partial_reason,
            "fingerprint_version": FINGERPRINT_VERSION,
            "cached": self.cached,
        }
        if self.failed:
            out["error_type"] = self.error_type
        if self.streaming is not None:
            fp = self.streaming
            confidence = fp.confidence or {}
            out["complete"] = fp.complete
            out["seconds"] = fp.seconds
            out["params_key"] = fp.params_key
            out["chunks"] = fp.chunks
            out["streaming"] = {name: {"value": value, "confidence": confidence.get(name, 0.0)}
                                for name, value in fp.values.items()}
            out["streaming_null_reasons"] = fp.reasons
            # v2: the MFCC Gaussian {"mean": [13], "cov": [[13] x 13], "frames": n} (null when all silent).
            out["timbre"] = None if fp.timbre is None else fp.timbre.to_dict()
        if self.batch is not None:
            out["batch"] = dict(self.batch.values)
            out["batch_null_reasons"] = self.batch.reasons
        return out
