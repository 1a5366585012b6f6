"""Framing with carry-over, so any chunking of a stream gives the same frames."""

from __future__ import annotations

import numpy as np


class Framer:
    """Cut a 1-D stream into frames of ``size`` samples every ``hop`` samples.

    Frame i covers samples [i*hop, i*hop + size) of the whole stream (no centre
    padding); the samples not yet covered by a complete frame are carried to the
    next ``push``.
    """

    def __init__(self, size: int, hop: int) -> None:
        self.size = size
        self.hop = hop
        self._carry = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (frames, buffer): frames is a read-only view (n, size) into buffer."""
        buffer = np.concatenate([self._carry, samples.astype(np.float32, copy=False)])
        if len(buffer) < self.size:
            self._carry = buffer
            return np.zeros((0, self.size), dtype=np.float32), buffer
        n = (len(buffer) - self.size) // self.hop + 1
        frames = np.lib.stride_tricks.sliding_window_view(buffer, self.size)[: n * self.hop : self.hop]
        self._carry = buffer[n * self.hop :]
        return frames, buffer


class CenteredWindow:
    """Delay a per-frame series so each emitted frame has ``radius`` neighbours each side.

    ``push(x)`` returns a context array ``c`` of shape (m + 2*radius, ...) whose rows
    radius .. radius+m-1 are the m frames emitted now; frames before the start and
    after the end of the stream are ``pad`` (so results do not depend on chunking).
    """

    def __init__(self, radius: int, shape: tuple[int, ...] = (), pad: float = 0.0,
                 dtype: type = np.float32) -> None:
        self.radius = radius
        self._pad: np.ndarray = np.full((radius, *shape), pad, dtype=dtype)
        self._buffer = self._pad.copy()

    def push(self, x: np.ndarray) -> np.ndarray:
        buffer = np.concatenate([self._buffer, x.astype(self._buffer.dtype, copy=False)])
        if len(buffer) < 2 * self.radius + 1:
            self._buffer = buffer
            return buffer[:0]
        self._buffer = buffer[len(buffer) - 2 * self.radius :]
        return buffer

    def finish(self) -> np.ndarray:
        """Emit the frames still held back, padding the end of the stream."""
        buffer = np.concatenate([self._buffer, self._pad])
        self._buffer = self._pad[:0]
        return buffer if len(buffer) >= 2 * self.radius + 1 else buffer[:0]

    @staticmethod
    def emitted(context: np.ndarray, radius: int) -> int:
        return max(len(context) - 2 * radius, 0)
