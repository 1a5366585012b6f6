"""Synthetic catalogue-scale stores: one real record cloned N times.

    python benchmarks/make_records.py --count 100000 --out records-100k.jsonl [--seed 1]
    python benchmarks/make_records.py --count 100000 --out r.jsonl --root /tmp/catalogue --files

Analyses one generated 65 s track (``fpcli.synth``) into a temporary store, then
writes an export (the format ``fpcli cache import`` reads) of N records cloned from
it, each with its own digest, content key, path and duplicate-key bits and values
perturbed by a few per cent, so that stores, indexes and searches see N distinct
fingerprints. 65 s: a duplicate key covers a track's first minute, so a record is as
large as a real track's (a 6 s template's was 11 windows instead of 119, and its
records about 400 bytes smaller than real ones). A tenth of the
records lack batch values, a twentieth are previews and a tenth carry a validation
verdict, so that every census count is exercised. Never commit the output.

The records' paths are under ``--root`` (default /catalogue). With ``--files``, an
empty sparse file of each record's size and time is made at its path, so that a
search finds its hits' files there (without them, every hit is a gone file, and a
search reads every record to find none: the case of a drive not mounted).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator

import soundfile as sf

from fpcli import synth
from fpcli.fingerprint import DOMAINS
from fpcli.store import FingerprintStore, Record
from fpcli.store.maintenance import EXPORT_FORMAT, EXPORT_VERSION
from fpcli.store.records import PathSeen, Validation
from fpcli.store.schema import record_text

SR = 22050
TEMPLATE_SECONDS = 65.0


def template_record() -> Record:
    """One real record: a generated track analysed (streaming and batch) by fpcli."""
    from typer.testing import CliRunner

    from fpcli.cli import app

    with tempfile.TemporaryDirectory() as folder:
        track = os.path.join(folder, "template.flac")
        sf.write(track, synth.music_like(TEMPLATE_SECONDS, SR, seed=7), SR)
        store_dir = os.path.join(folder, "store")
        result = CliRunner().invoke(app, ["--store", store_dir, "analyze", "--batch", "--quiet", track])
        if result.exit_code != 0:
            raise RuntimeError(f"analysing the template failed: {result.output}")
        with FingerprintStore.open(store_dir) as store:
            return next(store.records())


def _hex(n: int, salt: str) -> str:
    return hashlib.blake2b(f"{salt}{n}".encode(), digest_size=16).hexdigest()


def _jitter(values: dict[str, float | None], rng: random.Random) -> dict[str, float | None]:
    """Each value times 0.95-1.05, kept within its dim's domain (a share stays <= 1)."""
    return {k: None if v is None else min(max(v * rng.uniform(0.95, 1.05), DOMAINS.get(k, (-math.inf,))[0]),
                                          DOMAINS.get(k, (0.0, math.inf))[1])
            for k, v in values.items()}


SPREAD_SECONDS = (90.0, 480.0)   # --durations spread: a library's songs, 1.5 to 8 minutes


ROOT = "/catalogue"


def clone(template: Record, n: int, rng: random.Random, spread: bool = False, root: str = ROOT) -> Record:
    """The n-th synthetic record: distinct identity and path, perturbed values; with
    ``spread``, a duration drawn from SPREAD_SECONDS (else the template's)."""
    streaming = dataclasses.replace(template.streaming, values=_jitter(template.streaming.values, rng))
    batch = None if n % 10 == 9 or template.batch is None else \
        dataclasses.replace(template.batch, values=_jitter(template.batch.values, rng))
    preview = n % 20 == 7
    validation = Validation("valid", 0.99, 0.9, "high", (), {}, time.time()) if n % 10 == 3 and not preview \
        else None
    path = f"{root}/{n % 997:03d}/artist {n % 7919}/track {n:07d}.flac"
    dupe_key = None if template.dupe_key is None else dataclasses.replace(
        template.dupe_key, bits=f"{rng.getrandbits(4 * len(template.dupe_key.bits)):0{len(template.dupe_key.bits)}x}")
    audio = dataclasses.replace(template.audio, duration_s=round(rng.uniform(*SPREAD_SECONDS), 3)) if spread \
        else template.audio
    return dataclasses.replace(
        template, audio=audio, digest=_hex(n, "d"), content_key=_hex(n, "c"), size=template.size + n, dupe_key=dupe_key,
        paths=(PathSeen(path, 1_700_000_000_000_000_000 + n),), complete=not preview,
        streaming=dataclasses.replace(streaming, seconds=30.0) if preview else streaming,
        batch=None if preview else batch, validation=validation)


def records(count: int, seed: int = 1, template: Record | None = None, spread: bool = False,
            root: str = ROOT) -> Iterator[Record]:
    rng = random.Random(seed)
    base = template or template_record()
    for n in range(count):
        yield clone(base, n, rng, spread, root)


def write_export(count: int, out: str, seed: int = 1, spread: bool = False, root: str = ROOT,
                 files: bool = False) -> None:
    folders: set[str] = set()
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"type": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported_at": time.time()}) + "\n")
        for record in records(count, seed, spread=spread, root=root):
            fh.write('{"type":"record","data":' + record_text(record) + "}\n")
            if files:
                _sparse_file(record, folders)


def _sparse_file(record: Record, folders: set[str]) -> None:
    """An empty file of the record's size (no block written) with its time."""
    seen = record.paths[-1]
    folder = os.path.dirname(seen.path)
    if folder not in folders:
        os.makedirs(folder, exist_ok=True)
        folders.add(folder)
    with open(seen.path, "wb") as fh:
        fh.truncate(record.size)
    os.utime(seen.path, ns=(seen.mtime_ns, seen.mtime_ns))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", type=int, nargs="?", help="records to write (or --count)")
    parser.add_argument("--count", dest="count_option", type=int)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--durations", choices=["template", "spread"], default="template",
                        help="every record the template's 65 s (the default), or spread over 90-480 s")
    parser.add_argument("--root", default=ROOT, help=f"the folder the records' paths are under (default {ROOT})")
    parser.add_argument("--files", action="store_true",
                        help="make an empty sparse file of each record's size and time at its path")
    args = parser.parse_args()
    count = args.count_option if args.count_option is not None else args.count
    if count is None:
        parser.error("give the number of records (--count N)")
    started = time.perf_counter()
    write_export(count, args.out, args.seed, spread=args.durations == "spread", root=os.path.abspath(args.root),
                 files=args.files)
    print(f"wrote {count:,} records to {args.out} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
