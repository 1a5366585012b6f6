"""The bounds a stored value must keep, shared by the checked parser (``schema``) and
the fast gate (``fast_schema``), which must agree on every record."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fpcli.fingerprint import DOMAIN_SLACK, DOMAINS, VALUE_LIMIT
from fpcli.params import MAX_CHANNELS, MAX_SAMPLERATE, MIN_SAMPLERATE

if TYPE_CHECKING:
    import numpy as np

# A file's modification time in ns as os.stat gives it: before 1970 it is negative, and
# file systems keep times past 2262 (ext4 until 2446), beyond a signed 64-bit integer.
# Such files were analysed again on every run: their records were refused.
MTIME_NS_RANGE = (-(2**63), 2**64 - 1)

# The largest magnitude of a measured value (a dim, a duration, a timbre number): far
# beyond what any analysis gives (1e9 s is 31 years, 1e9 Hz a gigahertz), and well
# inside float32, in which search indexes hold values (3.4e38): an imported 1e300
# became inf there and showed as a 300-digit tempo. (fingerprint.VALUE_LIMIT)

# The latest time a record may name, s since 1970: the end of year 9999, the last a
# date can show (an imported 1e300 was stored, then every listing failed on it).
TIME_LIMIT = 253402300799.0

# A record's audio format: what the readers let through (``audio.base.check_info``,
# the analyzers' ``checked_format``). An imported rate of 10**12 Hz was stored and
# listed as the track's.
SAMPLERATE_RANGE = (MIN_SAMPLERATE, MAX_SAMPLERATE)
CHANNELS_RANGE = (1, MAX_CHANNELS)

STREAM_PREFIX = "stream:"  # paths of named streams (fpcli analyze - --name NAME): no file behind them

# A path a file can have: text without NUL whose lone surrogates stand for bytes that
# are not UTF-8 (surrogateescape's U+DC80-U+DCFF), so that it encodes back to bytes.
# An imported "\ud800" or NUL was stored, then every key built from it or stat of it failed.
# And a path fpcli stores: absolute (every file's path is resolved before it is
# stored) or a named stream's. An imported relative path was kept, then read against
# whatever folder a later command ran in: prune judged it by the files there, and
# ``cache show`` of the same words never found it.
_PATH_CHAR = "[^\x00\ud800-\udc7f\udd00-\udfff]"
PATH_PATTERN = f"^(?:/{_PATH_CHAR}*|{STREAM_PREFIX}{_PATH_CHAR}+)\\Z"
_path_text = re.compile(PATH_PATTERN).search


def storable_path(value: object) -> bool:
    """Whether ``value`` is a path text the store keeps (``PATH_PATTERN``)."""
    return isinstance(value, str) and _path_text(value) is not None


def value_bounds(name: str) -> tuple[float, float]:
    """(lowest, highest) value a record may hold for dim ``name``: its domain
    (fingerprint.DOMAINS) widened by DOMAIN_SLACK for rounding, within +-VALUE_LIMIT."""
    low, high = DOMAINS.get(name, (-VALUE_LIMIT, VALUE_LIMIT))
    return max(low - DOMAIN_SLACK, -VALUE_LIMIT), min(high + DOMAIN_SLACK, VALUE_LIMIT)


def plausible(values: np.ndarray) -> bool:
    """Every value finite and within VALUE_LIMIT (NaN fails the comparison too)."""
    return bool((abs(values) <= VALUE_LIMIT).all())
