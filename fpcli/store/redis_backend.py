"""A shared store on Redis, behind the same small interface as ``DiskcacheBackend``.

Selected by ``--store redis://[user:password@]host:port/db`` (or ``rediss://``; the
password may also come from FPCLI_REDIS_PASSWORD). Values are JSON text, never
pickles. Keys live under ``fpcli:data:`` (records, path entries, failures) and
``fpcli:meta:`` (counters and the change journal, shared by every client);
``fpcli bench`` uses a private namespace instead and deletes it afterwards.

Eviction is Redis's: set ``maxmemory`` and ``maxmemory-policy volatile-lru``. Every
data key carries an expiry (the store's TTL, or a year), meta keys never do, so
under volatile-lru Redis evicts least-recently-used fingerprints and never the shared
counters; ``cache stats`` warns about any other policy. Evictions and expiries are
Redis's own INFO counters (server-wide).

Values are stored compactly (``encode``): a marker byte, the entry's census tag, then
the JSON text deflated with a fixed preset dictionary of the record's field names, so
the repeated keys cost almost nothing (a record of a real track: about 1.5 KB instead
of 3.0 KB of JSON; `benchmarks/scale.md` has the memory per record).
Plain JSON values written by older versions are still read, and rewritten compactly
by ``cache stats --recount``.

The census (``cache stats``) is a hash of counts per tag, kept by every client: a
write and a delete are each one script call (``WRITE_COUNTED``, ``DELETE_COUNTED``)
that replaces or removes the value and moves the count from the tag of exactly that
value, atomically, so no client killed half way leaves the counts off (a user whose
ACL refuses scripts writes with ``SET ... GET`` and moves the counts after, as fpcli
did before: the counts may then be left off by a client killed between the two).
Keys that
Redis itself evicts or expires never pass through a client: the hash then counts too
many. It remembers Redis's evicted+expired totals at the last full count, and
``cache stats`` says the counts may be stale when those moved (they are server-wide);
``cache stats --recount`` counts again (a scan of the keyspace, pipelined).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import math
import os
import secrets
import signal
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import platformdirs
import redis
import redis.backoff
import redis.exceptions
import redis.retry

from fpcli.errors import ParameterError, StoreError, StoreFullError, StoreReadOnlyError
from fpcli.store.protocol import BATCH, JOURNAL_LIMIT, UNREADABLE_MARK, Put, Tag, TagOf, kept_counts
from fpcli.store.redis_address import RedisAddress
from fpcli.store.redis_files import RedisFileSets
from fpcli.store.redis_files import glob_escape as _glob_escape

DEFAULT_EXPIRY_S = 365 * 24 * 3600  # data keys always expire, so volatile-lru can evict them
EXPIRING_WITH_RECORDS = ("rec:", "path:", "cand:")   # the keys a store TTL applies to
# The longest expiry set: Redis refuses one beyond a 64-bit count of milliseconds, and a
# --store-ttl of 1e30 s aborted a run with Redis's "value is not an integer or out of range".
MAX_EXPIRY_S = 1000 * 365 * 24 * 3600
# Keys per script call of a batch write. A call's arguments are in the server's memory
# while it runs and cannot be evicted, and the script evicts nothing between its writes:
# 100 records of about 1.3 KB stay within the room a Redis near its maxmemory makes by
# evicting before each call (500 asked 0.75 MB, and such a Redis refused an import).
SCRIPT_KEYS = 100
RECOMMENDED_POLICY = "volatile-lru"
T = TypeVar("T")
MARK = b"\x01"      # an encoded value: MARK, census tag, NUL, raw deflate of the JSON with ZDICT
TAG_BYTES = 48       # the longest tag plus its marker and NUL (what a recount reads of each value)
# The preset dictionary: field names and typical values of records, path entries and
# failures. Frozen: every stored value depends on it (a new one needs a new MARK).
ZDICT = (
    b'{"path":"/","size":0,"mtime_ns":0,"digest":"","content_key":""}'
    b'{"path":"/","error_type":"","message":"","size":0,"mtime_ns":0,"failed_at":0.0}'
    b'{"status":"valid","similarity":0.0,"threshold":0.0,"confidence_quality":"high","failed_metrics":[],'
    b'"errors":{},"validated_at":0.0}'
    b'{"digest":"","content_key":"","params_key":"v1-","fingerprint_version":1,"size":0,'
    b'"paths":[{"path":"/","mtime_ns":0}],"complete":true,"audio":{"duration_s":0.0,"samplerate":44100,'
    b'"channels":2,"format":"FLAC","subtype":"PCM_16","partial":false,"partial_reason":null},'
    b'"streaming":{"values":{"tempo_bpm":0.0,"rhythm_stability":0.0,"transient_density":0.0,'
    b'"silence_ratio":0.0,"spectral_centroid_hz":0.0,"spectral_rolloff_hz":0.0,"spectral_flatness":0.0,'
    b'"harmonic_ratio":0.0,"pitch_stability":0.0,"key_clarity":0.0,"loudness_range_lu":0.0,'
    b'"loudness_std_lu":0.0,"peak_consistency":0.0},"confidence":{"tempo_bpm":1.0,"rhythm_stability":1.0,'
    b'"transient_density":1.0,"silence_ratio":1.0,"spectral_centroid_hz":1.0,"spectral_rolloff_hz":1.0,'
    b'"spectral_flatness":1.0,"harmonic_ratio":1.0,"pitch_stability":1.0,"key_clarity":1.0,'
    b'"loudness_range_lu":1.0,"loudness_std_lu":1.0,"peak_consistency":1.0},"reasons":{},"chunks":0,'
    b'"seconds":0.0},"batch":{"values":{"band_sub_bass":0.0,"band_bass":0.0,"band_low_mid":0.0,'
    b'"band_mid":0.0,"band_upper_mid":0.0,"band_presence":0.0,"band_air":0.0,"lufs":0.0,"crest_db":0.0,'
    b'"bass_mid_ratio_db":0.0,"tempo_bpm":0.0,"rhythm_stability":0.0,"transient_density":0.0,'
    b'"silence_ratio":0.0,"spectral_centroid_hz":0.0,"spectral_rolloff_hz":0.0,"spectral_flatness":0.0,'
    b'"harmonic_ratio":0.0,"pitch_stability":0.0,"key_clarity":0.0,"loudness_range_lu":0.0,'
    b'"loudness_std_lu":0.0,"peak_consistency":0.0,"stereo_width":0.0,"phase_correlation":0.0},'
    b'"reasons":{}},"validation":null,"analysed_at":0.0,"last_used_at":0.0,"schema":2}'
)


def encode(text: str, tag: Tag) -> bytes:
    """The stored form of ``text`` (ASCII JSON) with its census tag."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, ZDICT)
    return MARK + (tag or "").encode("ascii") + b"\x00" + packer.compress(text.encode("utf-8")) + packer.flush()


def packed_fields(fields: Sequence[bytes]) -> bytes:
    """``fields`` as one argument for a script: each a 4-byte big-endian length, then its
    bytes (Lua's ``struct.unpack(">I4c0", ...)`` reads one)."""
    return b"".join(part for data in fields for part in (len(data).to_bytes(4, "big"), data))

def decode(value: bytes | str) -> str:
    """The JSON text of a stored value (encoded or, as older versions wrote, plain)."""
    if isinstance(value, str):
        return value
    if not value.startswith(MARK):
        return value.decode("utf-8", "replace")
    try:
        unpacker = zlib.decompressobj(-15, ZDICT)
        return (unpacker.decompress(value[value.index(b"\x00") + 1:]) + unpacker.flush()).decode("utf-8")
    except (ValueError, zlib.error, UnicodeDecodeError):
        return UNREADABLE_MARK + "not an fpcli value (it does not decode)"  # a bad entry, reported as such


# What ``get`` gives for a key of another Redis type: text that parses as no JSON, so
# the key is one bad entry (``verify --repair`` removes it), not a failed command.
WRONG_TYPE_TEXT = UNREADABLE_MARK + "a Redis value of another type (a list, set or hash), not fpcli's text"


def _wrong_type(exc: redis.exceptions.ResponseError) -> bool:
    return str(exc).startswith("WRONGTYPE")


def tag_of_value(value: bytes | str | None) -> Tag:
    """The census tag at the head of a stored value (None: absent, untagged or plain)."""
    if not isinstance(value, bytes) or not value or not value.startswith(MARK) or b"\x00" not in value:
        return None
    return value[1:value.index(b"\x00")].decode("ascii", "replace") or None


# The census kept in the same atomic step as the write: a script sets the value and
# moves the counts from the tag of the value it replaced (MARK, tag, NUL: see
# ``encode``) to the new one. Written as a SET ... GET and a later HINCRBY from the
# client, a client killed between the two left the counts off (one in about 30
# kill -9s of an import), and every write sent the old value back over the network.
# Tags are printable ASCII; anything else at a value's head is not counted (junk
# written from outside fpcli, which ``verify --repair`` removes).
_MOVE_COUNT = """
local function plain(key)
  local kind = redis.call("TYPE", key)["ok"]
  if kind ~= "string" and kind ~= "none" then redis.call("DEL", key) end
end
local function tag_of(value)
  if value and string.byte(value, 1) == 1 then
    local nul = string.find(value, "\\0", 2, true)
    if nul and nul > 2 then
      local tag = string.sub(value, 2, nul - 1)
      if string.find(tag, "^[%w%p]+$") then return tag end
    end
  end
  return nil
end
local function move_count(census, old_tag, new_tag)
  if old_tag ~= new_tag then
    if old_tag then redis.call("HINCRBY", census, old_tag, -1) end
    if new_tag then redis.call("HINCRBY", census, new_tag, 1) end
  end
end
"""
# The write of KEYS[1] (ARGV: value, expiry, tag) and the census KEYS[2] moved with it.
_SET_COUNTED = """
local old = redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2], "GET")
local new_tag = ARGV[3]
if new_tag == "" then new_tag = nil end
move_count(KEYS[2], tag_of(old), new_tag)
return 0
"""
# A key of another Redis type (a list someone pushed under fpcli's name) is junk in the
# way: dropped, never counted, rather than a WRONGTYPE error that stopped every run.
WRITE_COUNTED = _MOVE_COUNT + """
plain(KEYS[1])
""" + _SET_COUNTED
# A batch's compare-and-swap in one script call: KEYS[1] the census, then the data keys;
# ARGV[1] five fields per key (value, expiry, tag, mode, expected), each a 4-byte
# big-endian length and its bytes (``packed_fields``), where mode "0" writes, "1" writes
# while there is no value, "2" while the value is still ``expected``. Returns one 0
# (written) or 1 (changed, nothing written) per key. One call per key, as before, spent
# more time in redis-py's packing of 60,000 commands than in anything else an import of
# 20,000 records did, and one argument per field still cost 5 us each to pack; the
# census moves are summed and applied once.
WRITE_MANY_UNLESS_CHANGED = _MOVE_COUNT + """
local blob, pos = ARGV[1], 1
local function field()
  local text, after = struct.unpack(">I4c0", blob, pos)
  pos = after
  return text
end
local results, moves = {}, {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local value, expiry, new_tag, mode, expected = field(), field(), field(), field(), field()
  plain(key)
  local write = true
  if mode ~= "0" then
    local current = redis.call("GET", key)
    if mode == "1" then write = not current else write = current == expected end
  end
  if write then
    local old = redis.call("SET", key, value, "EX", expiry, "GET")
    local old_tag = tag_of(old)
    if new_tag == "" then new_tag = nil end
    if old_tag ~= new_tag then
      if old_tag then moves[old_tag] = (moves[old_tag] or 0) - 1 end
      if new_tag then moves[new_tag] = (moves[new_tag] or 0) + 1 end
    end
    results[i - 1] = 0
  else
    results[i - 1] = 1
  end
end
for tag, n in pairs(moves) do
  if n ~= 0 then redis.call("HINCRBY", KEYS[1], tag, n) end
end
return results
"""
DELETE_COUNTED = _MOVE_COUNT + """
plain(KEYS[1])
local old = redis.call("GETDEL", KEYS[1])
local old_tag = tag_of(old)
if old_tag then redis.call("HINCRBY", KEYS[2], old_tag, -1) end
if old then return 1 end
return 0
"""

# What a store full under ``noeviction`` still writes: what makes room. Redis refuses a
# command that may grow memory while used memory is above maxmemory (a delete script
# runs: its first write is a delete), so ``cache prune``, which the "is full" error
# names, failed at its first journal entry and at the smaller record of a file that
# lost a copy. These scripts declare ``allow-oom`` (Redis 7+; an older server finds
# the first line a syntax error, and the write is refused as before) and run only
# after a write was refused for memory: a value replaced by one no longer than itself,
# and the journal's few bytes per key (capped at JOURNAL_LIMIT keys).
ALLOW_OOM = "#!lua flags=allow-oom\n"
# KEYS[1] the key, KEYS[2] the census; ARGV: the value expected, as stored (read just
# before), the new value as stored ("": delete) and its expiry. Returns 0 (done), 1
# (changed meanwhile: nothing written) or 2 (the new value is longer: not written).
SHRINK_UNLESS_CHANGED_WHEN_FULL = ALLOW_OOM + _MOVE_COUNT + """
plain(KEYS[1])
local current = redis.call("GET", KEYS[1])
if current ~= ARGV[1] then return 1 end
local new_tag = nil
if ARGV[2] == "" then
  redis.call("DEL", KEYS[1])
else
  if #ARGV[2] > #current then return 2 end
  redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[3])
  new_tag = tag_of(ARGV[2])
end
move_count(KEYS[2], tag_of(current), new_tag)
return 0
"""
# KEYS[1] set to ARGV[1]: the epoch of a store ``cache clear`` emptied (a few bytes).
SET_WHEN_FULL = ALLOW_OOM + """
redis.call("SET", KEYS[1], ARGV[1])
return 0
"""
# KEYS[1] the generation, KEYS[2] the journal; ARGV[1] the journal's cap, then the keys
# changed: as ``journal_extend`` (pushed in slices: Lua's unpack stops at about 8,000).
JOURNAL_EXTEND_WHEN_FULL = ALLOW_OOM + """
local generation = redis.call("INCRBY", KEYS[1], #ARGV - 1)
for first = 2, #ARGV, 1000 do
  redis.call("RPUSH", KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
redis.call("LTRIM", KEYS[2], -tonumber(ARGV[1]), -1)
return generation
"""

# The journal's tail since generation ARGV[1], in one atomic step: {generation, keys}
# where keys is -1 when the journal cannot say (behind the index, or trimmed past it)
# and -2 when the counter is damaged. Reading the whole list (LRANGE 0 -1) on every
# search cost 54 ms at 20,000 entries, against the few entries a search needs.
JOURNAL_TAIL = """
local current = tonumber(redis.call("GET", KEYS[1]) or "0")
if current == nil or current ~= math.floor(current) then return {0, -2} end
local missing = current - tonumber(ARGV[1])
if missing < 0 then return {current, -1} end
if missing == 0 then return {current, {}} end
if missing > redis.call("LLEN", KEYS[2]) then return {current, -1} end
return {current, redis.call("LRANGE", KEYS[2], -missing, -1)}
"""

# Seconds a look at a server given up on may take: a refused connection answers at
# once; a server that stopped answering costs this much per command, not 10 s.
PROBE_TIMEOUT_S = 1.0


class _ScriptsRefused(Exception):
    """This Redis user may not run scripts (or the server has them renamed away)."""


def _refuses_scripts(exc: redis.exceptions.ResponseError) -> bool:
    """Whether a reply refuses the scripting commands themselves: an ACL without
    @scripting ("no permissions to run the 'evalsha' command", or 'script|exists'),
    or EVALSHA/SCRIPT renamed away ("unknown command")."""
    text = str(exc).lower()
    return ("no permissions" in text or "unknown command" in text) and ("evalsha" in text or "script" in text)


JOURNAL_READS = 5   # reads of the journal without scripts before a search gives up on it and rebuilds

WRITTEN_MEANWHILE = "written-meanwhile:"  # a census basis: other clients wrote during the count

# The meta keys every command may touch, and the Redis type each must have.
META_TYPES = {"epoch": "string", "generation": "string", "hits": "string", "misses": "string",
              "journal": "list", "census": "hash", "shared": "set", "server": "string"}
COUNTER_KEYS = ("epoch", "generation", "hits", "misses")


def _fresh_epoch() -> int:
    """A new epoch: random, never counted up from the last (a count repeats across
    restores of snapshots, and a client's saved index of that number passed for current)."""
    return secrets.randbelow(1 << 48)


def _is_integer(value: Any) -> bool:
    """A Redis integer value: what INCR accepts (a signed 64-bit decimal)."""
    try:
        return isinstance(value, str) and -(2**63) <= int(value) < 2**63 and str(int(value)) == value
    except ValueError:
        return False


class HandshakeBounded(redis.connection.SSLConnection):
    """A TLS connection whose handshake is part of connecting (``socket_connect_timeout``),
    not a read (``socket_timeout``): rediss:// to a plain server by mistake waited the
    whole read timeout, 10 s, as the server waits for the end of a line that a TLS hello
    never sends."""

    def _connect(self) -> Any:
        read_timeout = self.socket_timeout
        self.socket_timeout = self.socket_connect_timeout   # what the TCP connect leaves set for the handshake
        try:
            sock = super()._connect()
        finally:
            self.socket_timeout = read_timeout
        sock.settimeout(read_timeout)
        return sock


class RedisBackend:
    """Key/value storage in a Redis database; values are JSON-able data."""

    expires_identities = True   # every data key carries an expiry
    atomic_batches = False

    def __init__(self, url: str, *, ttl_s: float | None = None, namespace: str = "fpcli",
                 existing: bool = False) -> None:
        """``existing``: a database that holds no store of ``namespace`` is a
        ParameterError, and nothing is written to it."""
        self._data = f"{namespace}:data:"
        self._meta = f"{namespace}:meta:"
        address = RedisAddress.parse(url)
        self.host, self.port, self.location = address.host, address.port, address.location
        self.ttl_s = None if ttl_s is None else min(ttl_s, MAX_EXPIRY_S)
        password = address.password or os.environ.get("FPCLI_REDIS_PASSWORD")
        self._password_given, self._tls = bool(password), address.tls
        # About 4 s of retries of a refused or dropped connection: rides through a restart,
        # yet a dead server is reported quickly. A timeout is not retried: a TLS handshake
        # with a plain server (rediss:// by mistake) would otherwise hang 7 x 10 s.
        retry = redis.retry.Retry(redis.backoff.ExponentialBackoff(cap=1.0, base=0.1), retries=6,
                                  supported_errors=(redis.exceptions.ConnectionError,))
        # Text in and out with surrogateescape: a key or a meta value of bytes that are not
        # UTF-8 (junk written by another program) failed every command with a traceback,
        # cache verify --repair and clear included; read so, it is one bad entry, and a
        # key read so names the same bytes when it is deleted.
        options: dict[str, Any] = dict(
            host=self.host, port=self.port, db=address.db, username=address.user, password=password,
            ssl=address.tls, socket_timeout=10, socket_connect_timeout=3, retry=retry,
            retry_on_error=[redis.exceptions.ConnectionError], encoding_errors="surrogateescape")
        self._client = redis.Redis(**options, decode_responses=True)  # meta: text
        self._bin = redis.Redis(**options, decode_responses=False)    # data: encoded bytes
        # One quick look, no retries, whether a server given up on answers again (``_call``).
        self._probe = redis.Redis(**{**options, "socket_timeout": PROBE_TIMEOUT_S,
                                     "socket_connect_timeout": PROBE_TIMEOUT_S,
                                     "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
                                     "retry_on_error": []}, decode_responses=True)
        if address.tls:
            for client in (self._client, self._bin, self._probe):
                client.connection_pool.connection_class = HandshakeBounded
        self._write_counted = self._bin.register_script(WRITE_COUNTED)
        self._write_many_unless_changed = self._bin.register_script(WRITE_MANY_UNLESS_CHANGED)
        self._journal_tail = self._client.register_script(JOURNAL_TAIL)
        self._delete_counted = self._bin.register_script(DELETE_COUNTED)
        self._shrink_when_full = self._bin.register_script(SHRINK_UNLESS_CHANGED_WHEN_FULL)
        self._journal_when_full = self._client.register_script(JOURNAL_EXTEND_WHEN_FULL)
        self._set_when_full = self._client.register_script(SET_WHEN_FULL)
        self._allow_oom = True   # until this server does not know the flag (before Redis 7)
        self._scripts = True   # until this user is refused them (``_scripted``)
        self._info_refused = False
        self._unreachable: str | None = None   # why the server is given up on (``_call``)
        self._call(self._client.ping)
        if existing and not self._holds_store():
            self.close()
            # A mistyped database number (redis://host:6379/7) was an empty store, its
            # meta keys written there, and read-only commands reported it empty.
            raise ParameterError(f"{self.location}: no fpcli store in this Redis database (fpcli analyze or "
                                 "cache import makes one)", "store")
        self._opened_full(self._mend_meta)
        # A namespace's epoch starts at a random number, not 0. Each client keeps its
        # search index in its own folder, named by the epoch it was built at: when the
        # keys are lost (FLUSHDB, a restart without persistence), the store that fills
        # the namespace again must not pass for the old one at the same generation.
        self._opened_full(lambda: self._call(self._client.set, self._meta + "epoch", _fresh_epoch(),
                                             nx=True))
        self._opened_full(self._new_epoch_on_another_server)
        self._opened_full(self._census_start)
        self._files = RedisFileSets(self._call, self._client, self._bin, self._meta + "shared:")

    def _holds_store(self) -> bool:
        """Whether the namespace has a meta key or a data key (a SCAN only when it has
        no meta key: a store cleared, or written by a user refused the meta writes)."""
        pipe = self._client.pipeline(transaction=False)
        for name in META_TYPES:
            pipe.exists(self._meta + name)
        return any(self._call(pipe.execute)) or next(self._scan(""), None) is not None

    def _new_epoch_on_another_server(self) -> None:
        """A new epoch when the server is not the one this namespace last saw (INFO's
        run_id): a Redis restarted from an older snapshot, or failed over to a replica
        that was behind, went back to an older generation, and new writes brought it to
        the number a client's saved index had; that index, holding records since lost
        and lacking those written since, was loaded as current (search answered with 4
        hits of 9, exit 0). Each restart costs each client one rebuild of its index;
        serving a stale one costs more. Without INFO (an ACL, a hosted Redis) nothing
        is compared."""
        try:
            run_id = self._client.info("server").get("run_id")
        except redis.exceptions.RedisError:
            return
        if not run_id or self._call(self._client.get, self._meta + "server") == run_id:
            return
        # A fresh random epoch, as a new namespace gets: one counted up repeats across
        # restarts (E+1 after one restart, and again after a restore of a snapshot of E).
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._meta + "epoch", _fresh_epoch())
        pipe.set(self._meta + "server", run_id)
        self._call(pipe.execute)

    def _opened_full(self, setup: Callable[[], Any]) -> None:
        """Run a set-up step that writes, unless Redis is full or this user may only
        read. A Redis at its maxmemory under ``noeviction`` (Redis's default policy)
        refuses every write, and the writes of opening stopped every command, those
        that free room (clear, prune, a repair) and the one that says why (stats) among
        them. Opened so, a store reads and deletes; its first write says Redis is full
        and what to do. A read-only ACL user (a team's listener) was refused every
        command, ``cache stats`` and ``search`` too, for the writes of opening."""
        with contextlib.suppress(StoreFullError, StoreReadOnlyError):
            setup()

    def _mend_meta(self) -> None:
        """Delete meta keys that hold the wrong Redis type, and counters that are not
        integers (a hostile or mistaken SET): every command touches them, and a
        WRONGTYPE or "not an integer" error stopped every command, ``cache verify
        --repair`` and ``cache clear`` included. They are derived data: the census is
        counted again (``cache stats --recount``), the shared sets' names are lost (the
        sets are shared again), and a damaged journal or generation takes the epoch with
        it, so every client's search index is rebuilt rather than trusted."""
        names = list(META_TYPES)
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.type(self._meta + name)
        for name in COUNTER_KEYS:
            pipe.get(self._meta + name)
        answers = self._call(pipe.execute, raise_on_error=False)   # a GET of a list is an error
        kinds, values = dict(zip(names, answers[:len(names)], strict=True)), answers[len(names):]
        damaged = {name for name, kind in kinds.items() if kind not in ("none", META_TYPES[name])}
        damaged |= {name for name, value in zip(COUNTER_KEYS, values, strict=True)
                    if kinds[name] == "string" and not _is_integer(value)}
        if kinds["generation"] == "none" and kinds["journal"] == "list":
            # The count of changes lost alone (a DEL, an allkeys-* eviction): counted up
            # again from 0, it passed the number a client's saved index had, and that
            # index, lacking 950 records, was patched and served as current.
            damaged.add("generation")
        if damaged & {"epoch", "generation", "journal"}:
            damaged |= {"epoch", "generation", "journal"}
        if damaged:
            self._call(self._client.delete, *(self._meta + name for name in damaged))

    def _census_start(self) -> None:
        """An empty namespace's census is exact from the start (all zero), so the
        first ``cache stats`` after filling a new store does not scan it. Looking
        for a data key is a scan of the database, once per namespace: afterwards
        the basis is set."""
        if self._call(self._client.hexists, self._meta + "census", "basis"):
            return
        if next(self._scan(""), None) is None:
            basis = self._dropped()
            if not self._info_refused:   # a basis without INFO's figures read as a restart to every other client
                self._call(self._client.hsetnx, self._meta + "census", "basis", basis)

    # -- error translation -----------------------------------------------------------------

    def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a Redis command; any Redis failure becomes one StoreError naming the server.
        Once the server could not be reached through the retries, a later command first
        looks once, without retries, whether it answers again, and fails at once when
        it does not: a run that lost its Redis spent 4 s retrying each of the writes and
        tidy-ups on its way out (13-17 s before its one error line), and a store kept
        open (a Dask worker's) must work again when the server is back."""
        if self._unreachable is not None:
            if not self._answers_again():
                raise StoreError(self._unreachable)
            self._unreachable = None
        try:
            return function(*args, **kwargs)
        except redis.exceptions.AuthenticationError as exc:
            hint = "" if self._password_given else (
                "; this server wants a password: in the URL (redis://:password@host:port/db; with a user, "
                "redis://user:password@host:port/db) or in FPCLI_REDIS_PASSWORD")
            raise StoreError(f"Redis at {self.host}:{self.port}: authentication failed ({_first_line(exc)}){hint}") \
                from None
        except redis.exceptions.OutOfMemoryError:
            raise StoreFullError(self._full_message()) from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            tls = " (rediss:// speaks TLS: is this a plain redis:// server?)" if self._tls and "imeout" in str(exc) \
                else ""
            # A server that took the connection, then fell silent (paused, overloaded), is
            # no server that cannot be reached: it was reported as "cannot connect".
            what = "stopped answering" if "reading" in str(exc).lower() else "cannot connect"
            self._unreachable = f"Redis at {self.host}:{self.port}: {what} ({_first_line(exc)}){tls}"
            raise StoreError(self._unreachable) from None
        except redis.exceptions.ResponseError as exc:
            if _refuses_scripts(exc):
                raise _ScriptsRefused from None
            if isinstance(exc, redis.exceptions.ExecAbortError) and "OOM command not allowed" in str(exc):
                # A MULTI that Redis refused whole for memory (EXECABORT): the raw reply
                # stood where every other full write says what to do.
                raise StoreFullError(self._full_message()) from None
            # An ACL that refuses the command, or a read-only replica (READONLY), also when
            # it refused a MULTI whole (a failover between MULTI and EXEC).
            aborted_read_only = isinstance(exc, redis.exceptions.ExecAbortError) and \
                any(f"because of: {word}" in str(exc) for word in ("READONLY", "NOPERM"))
            if aborted_read_only or isinstance(exc, (redis.exceptions.NoPermissionError,
                                                     redis.exceptions.ReadOnlyError)):
                raise StoreReadOnlyError(f"Redis at {self.host}:{self.port} refused this ({_first_line(exc)}); "
                                         "commands that only read work (cache stats, list, show, failures, "
                                         "dupes, verify, export, and search among the fingerprints stored), the "
                                         "others need a user and a server that may write") from None
            raise StoreError(f"Redis at {self.host}:{self.port}: {_first_line(exc)}") from None
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"Redis at {self.host}:{self.port}: {_first_line(exc)}") from None

    def _answers_again(self) -> bool:
        """Whether the server answers a PING now (within PROBE_TIMEOUT_S, no retries)."""
        try:
            return bool(self._probe.ping())
        except redis.exceptions.RedisError:
            return False

    # -- the store interface ---------------------------------------------------------------

    @property
    def index_dir(self) -> Path:
        """Search indexes of a Redis store live in the local user cache directory."""
        digest = hashlib.sha256(f"{self.location}|{self._data}".encode()).hexdigest()[:16]
        return Path(platformdirs.user_cache_dir("fpcli")) / "redis-index" / digest

    @property
    def size_limit(self) -> int:
        return int(self.config().get("maxmemory", 0))

    def config(self) -> dict[str, Any]:
        """maxmemory and maxmemory-policy (empty when CONFIG is not allowed, as on some hosted Redis)."""
        try:
            return {str(k): v for k, v in dict(self._client.config_get("maxmemory*")).items()}
        except redis.exceptions.RedisError:
            return {}

    def _full_message(self) -> str:
        """Why a write was refused for memory, by the server's policy: under the
        recommended one, it said "let it evict fingerprints (volatile-lru)" to a server
        that already did and had nothing left it may evict."""
        head = f"Redis at {self.host}:{self.port} is full: its used memory is above its maxmemory and "
        room = "raise maxmemory, or make room (fpcli cache prune, cache clear)"
        if self.config().get("maxmemory-policy") == RECOMMENDED_POLICY:
            return head + ("nothing it may evict is left (keys without an expiry: other data, or the store's "
                           f"counters and journal); {room}")
        return head + ("its policy refuses writes; let it evict fingerprints (maxmemory-policy "
                       f"{RECOMMENDED_POLICY}), {room}")

    def policy_warning(self) -> str | None:
        if self._info_refused:
            return ("this Redis user may not run INFO: the evictions, expiries and memory shown as 0 are not "
                    "known")
        policy = self.config().get("maxmemory-policy")
        if policy is None or policy == RECOMMENDED_POLICY:
            return None
        return (f"Redis maxmemory-policy is {policy}; set {RECOMMENDED_POLICY} (with maxmemory) so that "
                "fingerprints, not the shared counters, are evicted")

    def get(self, key: str) -> str | None:
        value = self._call(self._get_text, self._data + key)
        return None if value is None else decode(value)

    def _get_text(self, full_key: str, client: Any = None) -> bytes | str | None:
        """GET, with a key of another Redis type read as WRONG_TYPE_TEXT."""
        try:
            value: bytes | str | None = (client or self._bin).get(full_key)
        except redis.exceptions.ResponseError as exc:
            if not _wrong_type(exc):
                raise
            return WRONG_TYPE_TEXT
        return value

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        values = self._call(self._bin.mget, [self._data + key for key in keys])
        return [None if value is None else decode(value) for value in values]

    def put(self, key: str, text: str, tag: Tag = None) -> None:
        self.put_many([(key, text, tag)])

    def put_many(self, items: Sequence[Put]) -> None:
        """Each value written and counted by one script call (``WRITE_COUNTED``), all in
        one pipeline (a Ctrl-C waits for it); without scripts, as ``_put_plain``."""
        with shielded():
            if self._scripts:
                pipe = self._bin.pipeline(transaction=False)
                for key, text, tag in items:
                    self._queue_write(pipe, key, text, tag)
                if self._scripted(pipe.execute)[0]:
                    return
            self._put_plain(items)

    def put_many_unless_changed(self, items: Sequence[Put], expected: Mapping[str, str | None]) -> set[str]:
        """The stored values of ``expected``'s keys are read (one MGET) and compared as
        text; the unchanged ones and the other items are then written by script calls
        of SCRIPT_KEYS keys each (``WRITE_MANY_UNLESS_CHANGED``), which compare each
        expected key's exact value again, all in one pipeline. Without scripts, each
        expected key goes through ``swap``. Returns the keys that changed."""
        keys = list(expected)
        raw = self._call(self._bin.mget, [self._data + key for key in keys]) if keys else []
        changed = {key for key, value in zip(keys, raw, strict=True)
                   if (None if value is None else decode(value)) != expected[key]}
        seen = {key: value for key, value in zip(keys, raw, strict=True) if key not in changed}
        kept = [item for item in items if item[0] not in changed]
        with shielded():
            if self._scripts:
                pipe = self._bin.pipeline(transaction=False)
                for start in range(0, len(kept), SCRIPT_KEYS):
                    self._queue_writes_unless_changed(pipe, kept[start:start + SCRIPT_KEYS], seen)
                ran, results = self._scripted(pipe.execute)
                if ran:
                    assert results is not None
                    outcomes = [outcome for result in results for outcome in result]
                    return changed | {key for (key, _, _), outcome in zip(kept, outcomes, strict=True) if outcome == 1}
            self._put_plain([item for item in kept if item[0] not in seen])
            return changed | {key for key, text, tag in kept if key in seen and not self.swap(key, expected[key],
                                                                                              text, tag)}

    def _queue_writes_unless_changed(self, pipe: redis.client.Pipeline, items: Sequence[Put],
                                     seen: Mapping[str, bytes | str | None]) -> None:
        """One ``WRITE_MANY_UNLESS_CHANGED`` call for ``items``: a key of ``seen`` is
        written while its value is still the one seen (or while there is none, for
        None), any other key unconditionally."""
        fields: list[bytes] = []
        for key, text, tag in items:
            if key not in seen:
                mode, value = b"0", b""
            else:
                stored = seen[key]
                value = stored.encode() if isinstance(stored, str) else stored or b""
                mode = b"1" if stored is None else b"2"
            fields += [encode(text, tag), str(self._expiry(key)).encode(), (tag or "").encode("ascii"), mode, value]
        self._write_many_unless_changed(keys=[self._meta + "census", *(self._data + key for key, _, _ in items)],
                                        args=[packed_fields(fields)], client=pipe)


    def _scripted(self, run: Callable[[], T]) -> tuple[bool, T | None]:
        """(True, what ``run`` returned) for a call of fpcli's scripts; (False, None)
        (nothing done, and scripts not tried again) when this Redis user may not run
        scripts (an ACL without @scripting, as some managed services give): every
        write failed there."""
        try:
            return True, self._call(run)
        except _ScriptsRefused:
            self._scripts = False
            return False, None

    def _put_plain(self, items: Sequence[Put]) -> None:
        """SET ... GET each value in one pipeline, then move the counts by the tags of
        the values replaced in a second one: for users who may not run scripts (a
        client killed between the two leaves the counts off: ``cache stats
        --recount`` counts again)."""
        pipe = self._bin.pipeline(transaction=False)
        for key, text, tag in items:
            pipe.set(self._data + key, encode(text, tag), ex=self._expiry(key), get=True)
        replaced = self._call(pipe.execute)
        deltas: collections.Counter[str] = collections.Counter()
        for (_, _, tag), old in zip(items, replaced, strict=True):
            deltas[tag or ""] += 1
            deltas[tag_of_value(old) or ""] -= 1
        counts = self._client.pipeline(transaction=False)
        for tag, n in deltas.items():
            if tag and n:
                counts.hincrby(self._meta + "census", tag, n)
        self._call(counts.execute)

    def _expiry(self, key: str) -> int:
        """Seconds until ``key`` expires: the store's TTL rounded up to whole seconds
        (never less than it; 1.5 s read as 1) for a record and the path and candidate
        entries that lead to records, else the default expiry. A TTL is above 0
        (``StoreSpec``: 0 read as none here). Path and candidate entries kept the
        default year: with a TTL of 2 s, 6,000 of them outlived their 3,000 records,
        unseen by prune and verify, and took the room of new records."""
        if self.ttl_s is not None and key.startswith(EXPIRING_WITH_RECORDS):
            return max(math.ceil(self.ttl_s), 1)
        return DEFAULT_EXPIRY_S

    def _queue_write(self, pipe: redis.client.Pipeline, key: str, text: str, tag: Tag) -> None:
        self._write_counted(keys=[self._data + key, self._meta + "census"],
                            args=[encode(text, tag), self._expiry(key), tag or ""], client=pipe)

    def swap(self, key: str, expected: str | None, text: str | None, tag: Tag = None) -> bool:
        """WATCH the key, compare, then write (or delete) and count it as ``put_many``
        (``delete``) does, in MULTI/EXEC (which fails when the key changed after the
        WATCH)."""
        full = self._data + key

        def attempt() -> bool:
            with self._bin.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(full)
                    current = self._get_text(full, pipe)
                    if (None if current is None else decode(current)) != expected:
                        return False
                    pipe.multi()
                    if text is None and self._scripts:
                        self._delete_counted(keys=[full, self._meta + "census"], client=pipe)
                    elif text is None:
                        pipe.getdel(full)
                    elif self._scripts:
                        self._queue_write(pipe, key, text, tag)
                    else:
                        pipe.set(full, encode(text, tag), ex=self._expiry(key), get=True)
                    (old,) = pipe.execute()
                except redis.exceptions.WatchError:
                    return False
                if not self._scripts:
                    self._move_count(tag_of_value(old), None if text is None else tag)
                return True

        with shielded():
            try:
                if self._scripts:
                    ran, swapped = self._scripted(attempt)
                    if ran:
                        return bool(swapped)
                return self._call(attempt)
            except StoreFullError:
                return self._swap_when_full(key, expected, text, tag)

    def _swap_when_full(self, key: str, expected: str | None, text: str | None, tag: Tag) -> bool:
        """``swap`` on a Redis full under ``noeviction``: a delete, or a value no longer
        than the one it replaces (a prune's record that lost paths), is still written,
        since it makes room; a StoreFullError for anything else."""
        full = self._data + key
        current = self._call(self._get_text, full)
        if (None if current is None else decode(current)) != expected:
            return False
        if current is None:
            if text is None:
                return True   # nothing to delete
            raise StoreFullError(self._full_message())
        stored = current if isinstance(current, bytes) else current.encode("utf-8", "surrogateescape")
        new = b"" if text is None else encode(text, tag)
        done = self._when_full(self._shrink_when_full, [full, self._meta + "census"],
                               [stored, new, self._expiry(key)])
        if done == 2:
            raise StoreFullError(self._full_message())
        return done == 0

    def _when_full(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """What ``script`` (one of the ``*_WHEN_FULL`` scripts) returns, run after a write
        was refused for memory; the StoreFullError again when this user may not run
        scripts or the server does not know their ``allow-oom`` flag (before Redis 7)."""
        if self._scripts and self._allow_oom:
            try:
                return self._call(script, keys=keys, args=args)
            except _ScriptsRefused:
                self._scripts = False
            except StoreFullError:
                pass
            except StoreError as exc:
                if "compiling" not in str(exc).lower() and "shebang" not in str(exc).lower():
                    raise
                self._allow_oom = False
        raise StoreFullError(self._full_message())

    def delete(self, key: str) -> bool:
        with shielded():
            if self._scripts:
                keys = [self._data + key, self._meta + "census"]
                ran, found = self._scripted(lambda: self._delete_counted(keys=keys))
                if ran:
                    return bool(found)
            old = self._call(self._bin.getdel, self._data + key)
            self._move_count(tag_of_value(old), None)
            return old is not None

    def _move_count(self, old_tag: Tag, new_tag: Tag) -> None:
        """The census moved from the tag of a value replaced or removed to its new one
        (without scripts; the scripts do this in the write itself)."""
        if old_tag == new_tag:
            return
        counts = self._client.pipeline(transaction=False)
        if old_tag:
            counts.hincrby(self._meta + "census", old_tag, -1)
        if new_tag:
            counts.hincrby(self._meta + "census", new_tag, 1)
        self._call(counts.execute)

    def _scan(self, prefix: str) -> Iterator[list[str]]:
        """Batches of full keys starting with ``prefix`` (SCAN: constant memory; a key
        may come twice if Redis rehashes meanwhile).

        A StoreError when the connection was made anew during the scan (each SCAN goes
        with CLIENT ID, which a new connection changes): a SCAN cursor means nothing to
        a restarted server, and one that fpcli rode through made ``cache export`` miss
        743 of 3,000 records and write 730 twice, exit 0, and ``prune`` and ``verify``
        the same. A user refused CLIENT ID scans as before."""
        pattern = _glob_escape(self._data + prefix) + "*"
        cursor, connection = 0, None
        while True:
            pipe = self._client.pipeline(transaction=False)
            pipe.client_id()
            pipe.scan(cursor, match=pattern, count=BATCH)
            client_id, scanned = self._call(pipe.execute, raise_on_error=False)
            if isinstance(scanned, Exception):
                self._call(_raise, scanned)
            if isinstance(client_id, int):
                if connection is not None and client_id != connection:
                    raise StoreError(f"Redis at {self.host}:{self.port}: the connection was lost during a scan of "
                                     "the store (a restart? a failover?), so what was read may miss entries or "
                                     "repeat them: run the command again")
                connection = client_id
            cursor, batch = scanned
            if batch:
                yield batch
            if cursor == 0:
                return

    def keys(self, prefix: str = "") -> Iterator[str]:
        for batch in self._scan(prefix):
            yield from (key[len(self._data):] for key in batch)

    def items(self, prefix: str = "") -> Iterator[tuple[str, str | None]]:
        """(key, text) of entries with ``prefix``, BATCH keys per SCAN and MGET. MGET
        gives nothing for a key of another Redis type: such a key is WRONG_TYPE_TEXT
        (one bad entry, which a repair removes), where verify passed over it."""
        for batch in self._scan(prefix):
            values = self._call(self._bin.mget, batch)
            missing = [key for key, value in zip(batch, values, strict=True) if value is None]
            other_types = set(self._other_types(missing)) if missing else set()
            for key, value in zip(batch, values, strict=True):
                if value is not None:
                    yield key[len(self._data):], decode(value)
                elif key in other_types:
                    yield key[len(self._data):], WRONG_TYPE_TEXT

    def _other_types(self, keys: list[str]) -> list[str]:
        """Which of ``keys`` hold a Redis value that is not a string (the rest are gone)."""
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        kinds = self._call(pipe.execute)
        return [key for key, kind in zip(keys, kinds, strict=True)
                if (kind.decode() if isinstance(kind, bytes) else kind) not in ("none", "string")]

    def count(self, prefix: str) -> int:
        return sum(len(batch) for batch in self._scan(prefix))

    # -- census ------------------------------------------------------------------------------

    def _dropped(self) -> str:
        """The server's identity and its evicted + expired totals: what a count is valid for."""
        server, stats = self._info("server"), self._info("stats")
        return f"{server.get('run_id', '')}:{int(stats.get('evicted_keys', 0)) + int(stats.get('expired_keys', 0))}"

    def census(self) -> tuple[dict[str, int] | None, str | None]:
        """The maintained counts (None when never counted) and, when Redis evicted or
        expired keys since the last full count, a note that they may be stale."""
        counts = kept_counts((k, v) for k, v in self._call(self._client.hgetall, self._meta + "census").items()
                             if k != "basis")
        stored = self._call(self._client.hget, self._meta + "census", "basis")
        if stored is None or counts is None:
            return None, None
        basis = stored if isinstance(stored, str) else stored.decode()
        if not basis:
            return None, None
        now = self._dropped()
        note = None
        if self._info_refused:
            note = "this Redis user may not run INFO: keys Redis evicted or expired since the last count are not known"
        elif basis.startswith(WRITTEN_MEANWHILE):
            note = "other clients wrote while these counts were taken: they may be off until they are counted again"
        elif now != basis:
            run, _, dropped = basis.rpartition(":")
            note = ("Redis restarted since the last count" if now.rpartition(":")[0] != run else
                    f"Redis evicted or expired {int(now.rpartition(':')[2]) - int(dropped)} keys (of any "
                    "database) since the last count")
            note += ": these counts may be too high until they are counted again"
        return {tag: n for tag, n in counts.items() if n}, note

    def recount(self, tag_of: TagOf) -> dict[str, int]:
        """Count the tags of every data key (reading only the head of each value);
        values written plain by older versions are read whole, tagged and rewritten
        compactly. Writes from other clients meanwhile may be missed or counted twice."""
        basis, before = self._dropped(), self.generation()
        counts: collections.Counter[str] = collections.Counter()
        for prefix in ("rec:", "fail:"):
            for batch in self._scan(prefix):
                pipe = self._bin.pipeline(transaction=False)
                for key in batch:
                    pipe.getrange(key, 0, TAG_BYTES)
                heads = self._call(pipe.execute, raise_on_error=False)
                for key, head in zip(batch, heads, strict=True):
                    if isinstance(head, redis.exceptions.ResponseError):
                        if not _wrong_type(head):
                            raise StoreError(f"Redis at {self.host}:{self.port}: {_first_line(head)}")
                        continue   # not fpcli's value: counted as nothing, as writes count it
                    tag = tag_of_value(head) if head and head.startswith(MARK) else self._migrate(key, tag_of)
                    if tag:
                        counts[tag] += 1
        if self.generation() != before:
            # Records written meanwhile may have been counted by this scan and by their
            # writer (or by neither): the counts replaced theirs, so say they may be off.
            basis = WRITTEN_MEANWHILE + basis
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self._meta + "census")
        pipe.hset(self._meta + "census", "basis", basis)
        for tag, n in counts.items():
            pipe.hset(self._meta + "census", tag, n)
        if not self._info_refused:   # without INFO the basis is unknown: counted, not kept
            self._opened_full(lambda: self._call(pipe.execute))  # a full Redis: counted, not kept
        return dict(counts)

    def _migrate(self, full_key: str, tag_of: TagOf) -> Tag:
        """Tag and rewrite compactly a plain value an older version wrote (its TTL kept)."""
        value = self._call(self._bin.get, full_key)
        if not value:
            return None
        text = decode(value)
        tag = tag_of(full_key[len(self._data):], text)
        self._call(self._bin.set, full_key, encode(text, tag), keepttl=True, xx=True)
        return tag

    def volumes(self) -> tuple[int, int | None]:
        return int(self._info("memory").get("used_memory", 0)), None

    def _info(self, section: str) -> dict[str, Any]:
        """INFO ``section``; empty when this user may not run INFO (a read-only ACL:
        INFO is a "dangerous" command), which ``policy_warning`` then says."""
        try:
            return dict(self._call(self._client.info, section))
        except StoreReadOnlyError:
            self._info_refused = True
            return {}

    def add_counters(self, deltas: dict[str, int]) -> None:
        pipe = self._client.pipeline()
        for name, delta in deltas.items():
            if delta:
                pipe.incrby(self._meta + name, delta)
        self._call(pipe.execute)

    def counter(self, name: str) -> int:
        if name in ("evictions", "expiries"):
            stats = self._info("stats")
            return int(stats.get("evicted_keys" if name == "evictions" else "expired_keys", 0))
        text = self._call(self._client.get, self._meta + name)
        try:
            return int(text or 0)
        except ValueError:  # a damaged counter counts from 0 rather than stopping every command
            return 0

    def journal_extend(self, keys: Sequence[str], *, making_room: bool = False) -> int:
        """INCRBY the generation and push the keys on a list capped at JOURNAL_LIMIT, in
        one transaction (so the list's tail always ends at the generation)."""
        if not keys:
            return self.generation()
        pipe = self._client.pipeline(transaction=True)
        pipe.incrby(self._meta + "generation", len(keys))
        pipe.rpush(self._meta + "journal", *keys[-JOURNAL_LIMIT:])
        pipe.ltrim(self._meta + "journal", -JOURNAL_LIMIT, -1)
        try:
            return int(self._call(pipe.execute)[0])
        except StoreFullError:
            # A Redis full under noeviction: the journal's few bytes per key are what a
            # prune's deletes need written first (the journal is capped); not for writes
            # that grow (an import or an analysis refused anyway: 3,000 entries per
            # import tried, never evicted).
            if not making_room:
                raise
            return int(self._when_full(self._journal_when_full, [self._meta + "generation", self._meta + "journal"],
                                       [JOURNAL_LIMIT, *keys[-JOURNAL_LIMIT:]]))

    def journal_since(self, generation: int) -> list[str] | None:
        if self._scripts:
            done, reply = self._scripted(lambda: self._journal_tail(
                keys=[self._meta + "generation", self._meta + "journal"], args=[generation]))
            if done and reply is not None:
                _, keys = reply
                return None if isinstance(keys, int) else list(keys)
        return self._journal_since_read_whole(generation)

    def _journal_since_read_whole(self, generation: int) -> list[str] | None:
        """``journal_since`` for users who may not run scripts: the whole list, read
        between two reads of the generation in one round trip. No transaction: a
        read-only ACL user may not run MULTI. A write moves the generation and the
        list in one transaction, so equal generations around the list mean that it
        is the list of that generation; otherwise it is read again."""
        for _ in range(JOURNAL_READS):
            pipe = self._client.pipeline(transaction=False)
            pipe.get(self._meta + "generation")
            pipe.lrange(self._meta + "journal", 0, -1)
            pipe.get(self._meta + "generation")
            current_text, journal, after = self._call(pipe.execute)
            if current_text == after:
                break
        else:
            return None   # written all the while: the changes are unknown, the index is built again
        if not _is_integer(current_text or "0"):
            return None   # damaged since this client opened the store: the changes are unknown
        missing = int(current_text or 0) - generation
        if missing < 0 or missing > len(journal):
            return None
        return list(journal[len(journal) - missing:]) if missing else []

    def generation(self) -> int:
        return self.counter("generation")

    def maintain(self, *, evict: bool = True) -> tuple[int, int]:
        """Nothing to do: Redis enforces expiry and maxmemory itself."""
        return 0, 0

    def removed_records(self) -> list[tuple[str, str]]:
        """None: Redis expires and evicts identity entries as it does records (each
        carries an expiry)."""
        return []

    def clear(self) -> int:
        """Delete every fpcli key; the epoch is a new random one (one counted up could
        meet a client's index of the same number again after a restore)."""
        # Not counted until the end: a clear killed half way left the old counts against
        # the keys it had not yet deleted (15,000 counted, 10,996 there).
        self._opened_full(lambda: self._call(self._client.hset, self._meta + "census", "basis", ""))
        removed = 0
        for namespace in (self._data, self._meta):
            keys = self._call(lambda ns=namespace: list(self._client.scan_iter(match=ns + "*", count=1000)))
            for start in range(0, len(keys), 1000):
                deleted = self._call(self._client.delete, *keys[start : start + 1000])
                removed += deleted if namespace == self._data else 0
        # Still full (of other data, or not yet freed): the keys are gone all the same, and the
        # new epoch is written all the same (a few bytes): with no key left, the store was
        # refused as none (`--store` of a database that holds no store).
        self._opened_full(lambda: self._set_even_when_full(self._meta + "epoch", _fresh_epoch()))
        # Empty now, the census is exact from here, unless a client wrote meanwhile: its
        # count may have gone with the old census, so the next stats counts again.
        written = next(self._scan(""), None) is not None
        self._opened_full(lambda: self._call(self._client.hset, self._meta + "census", "basis",
                                             "" if written else self._dropped()))
        return removed

    def _set_even_when_full(self, key: str, value: int) -> None:
        """SET, through an allow-oom script when Redis is full under noeviction."""
        try:
            self._call(self._client.set, key, value)
        except StoreFullError:
            self._when_full(self._set_when_full, [key], [value])

    # -- shared file sets (protocol.SharedFiles: the search index for every client) -------

    def shared_names(self) -> list[str]:
        return self._files.names()

    def shared_header(self, name: str) -> dict[str, Any] | None:
        return self._files.header(name)

    def share_files(self, name: str, files: dict[str, Path], info: dict[str, Any]) -> int:
        return self._files.share(name, files, info)

    def fetch_files(self, name: str, header: dict[str, Any], folder: Path) -> dict[str, Path] | None:
        return self._files.fetch(name, header, folder)

    def unshare(self, name: str) -> int:
        return self._files.remove(name)

    def delete_namespace(self) -> None:
        """Remove every key of this namespace, the epoch included (for temporary stores)."""
        keys = self._call(lambda: list(self._client.scan_iter(match=_glob_escape(self._meta) + "*", count=1000)))
        if keys:
            self._call(self._client.delete, *keys)

    def check(self) -> list[str]:
        self._call(self._client.ping)
        return []

    def unsafe_keys(self) -> int:
        return 0  # values are strings parsed as JSON: nothing can be unpickled

    def remove_unsafe(self) -> int:
        return 0

    def reset_meta(self, name: str) -> None:
        self._call(self._client.delete, self._meta + name)

    @contextlib.contextmanager
    def bulk_writes(self) -> Iterator[None]:
        yield  # pipelines already batch the writes; nothing to hold in this process

    def close(self) -> None:
        self._client.close()
        self._bin.close()
        self._probe.close()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold the signals that stop a run (Ctrl-C, SIGTERM, SIGHUP) until the body is
    done: a write and its census count are two round trips, and an interrupt between
    them (2 of 20 interrupted runs in a sweep) left `cache stats` a record short while
    it said its counts were exact. The handlers are swapped for one that notes the
    signal, which is raised again, to the handler restored, after the body (masking
    the signal would not do: a process-directed signal goes to any thread that does
    not mask it, and Python runs its handler in the main thread anyway). The body is
    bounded by the client's timeouts (a dead server fails within ~15 s). Handlers can
    only be set in the main thread, the only one that runs them: elsewhere nothing is
    held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: noted.append(signum))
                for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
        for signum in dict.fromkeys(noted):
            signal.raise_signal(signum)


def _raise(exc: Exception) -> None:
    """Raise ``exc`` (a pipeline's error reply), so that ``_call`` translates it."""
    raise exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
