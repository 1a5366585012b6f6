"""The stored form of a timbre block and the soundness checks of its covariance.

A timbre is stored packed: the base64 of little-endian float32 values (the precision
a ``Timbre`` holds), the mean (N_MFCC) then the covariance's upper triangle row by
row. Records stored before timbres were single precision hold float64 values, and
are still read. ``schema`` parses records
with these; search indexes check whole stacks of packed timbres with
``sound_covariances``.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import TYPE_CHECKING, Any

from fpcli.fingerprint import indefinite_covariances

if TYPE_CHECKING:
    import numpy as np

    from fpcli.dsp.timbre import Timbre


def pack_timbre(timbre: Timbre) -> dict[str, Any]:
    """The stored form of a timbre block: ``{"packed": base64, "frames": n}``, the base64
    of little-endian float32 values, the mean (N_MFCC) then the covariance's upper
    triangle row by row (N_MFCC * (N_MFCC + 1) / 2). Lossless (a timbre holds float32
    values), 556 bytes of text instead of 2.7 KB of JSON numbers, and a look-up decodes
    it at C speed (parsing the numbers was most of a cached look-up). ``fpcli analyze
    --json`` shows the plain lists."""
    values = timbre.packed().astype("<f4")
    return {"packed": base64.b64encode(values.tobytes()).decode("ascii"), "frames": timbre.frames}


TIMBRE_VALUES = 13 + 13 * 14 // 2  # a packed timbre: N_MFCC means, then the covariance's upper triangle


def packed_values(packed: Any, *, finite: bool = True) -> np.ndarray | None:
    """(TIMBRE_VALUES,) float64 of a packed timbre's text; None when it is not the
    base64 of that many float32 values, or of float64 ones as stored before (or, with
    ``finite``, holds one that is not finite)."""
    import numpy as np

    try:
        raw = base64.b64decode(packed, validate=True) if isinstance(packed, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    width = len(raw) // TIMBRE_VALUES
    if width not in (4, 8) or len(raw) != width * TIMBRE_VALUES:
        return None
    values = np.frombuffer(raw, dtype=f"<f{width}").astype(np.float64)
    return None if finite and not np.isfinite(values).all() else values


@functools.cache
def upper_triangle(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(n)``, made once: every record write packs a covariance with it."""
    import numpy as np

    return np.triu_indices(n)


@functools.cache
def symmetric_layout() -> np.ndarray:
    """(N_MFCC, N_MFCC) int indices into a packed upper triangle: ``upper[layout]`` is the
    full symmetric matrix."""
    import numpy as np

    from fpcli.dsp.timbre import N_MFCC
    layout = np.zeros((N_MFCC, N_MFCC), dtype=np.intp)
    rows, cols = upper_triangle(N_MFCC)
    layout[rows, cols] = layout[cols, rows] = np.arange(len(rows))
    return layout


def sound_covariances(packed: np.ndarray) -> np.ndarray:
    """(n,) bool: which packed timbres (n, TIMBRE_VALUES) have a symmetric positive
    semi-definite covariance within COV_TOLERANCE, checked as one stacked array (the
    test ``parse_records`` applies; a packed upper triangle is symmetric by form)."""
    import numpy as np

    if not len(packed):
        return np.zeros(0, dtype=bool)
    return ~indefinite_covariances(unpack_stack(packed)[1])


def unpack_stack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(means (n, N_MFCC), covariances (n, N_MFCC, N_MFCC)) of packed timbres
    (n, TIMBRE_VALUES)."""
    from fpcli.dsp.timbre import N_MFCC

    return packed[:, :N_MFCC], packed[:, N_MFCC:][:, symmetric_layout()]


def plain_numbers(values: list[Any]) -> bool:
    """Every value an int or float (not a bool, not text) and finite, checked at C speed."""
    import numpy as np

    if not set(map(type, values)) <= NUMBER_TYPES:
        return False
    array = np.array(values, dtype=np.float64)  # an int beyond float range becomes inf
    return bool(np.isfinite(array).all())


NUMBER_TYPES = frozenset({int, float})
