"""Faults shared by the fault tests and ``benchmarks/soak.py``: SQLite corruption
variants of a diskcache store, hostile import lines, small clean libraries."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.hostile.mutants import signal, wav_bytes


def clean_library(folder: Path, tracks: int, seconds: float = 1.0, *, broken: int = 1, rate: int = 16000) -> Path:
    """``tracks`` distinct small WAVs and ``broken`` undecodable ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(tracks):
        (folder / f"track{i:03d}.wav").write_bytes(wav_bytes(signal(seconds, rate, 1, 100 + i)[:, 0], rate))
    for i in range(broken):
        (folder / f"broken{i}.wav").write_bytes(b"RIFF" + bytes(100))
    return folder


def _zero(offset: int, size: int) -> Callable[[Path], None]:
    def corrupt(db: Path) -> None:
        with open(db, "r+b") as fh:
            fh.seek(offset)
            fh.write(bytes(size))
    return corrupt


def _random(offset: int, size: int, seed: int) -> Callable[[Path], None]:
    def corrupt(db: Path) -> None:
        with open(db, "r+b") as fh:
            fh.seek(offset)
            fh.write(np.random.default_rng(seed).bytes(size))
    return corrupt


def _truncate(fraction: float) -> Callable[[Path], None]:
    def corrupt(db: Path) -> None:
        os.truncate(db, int(db.stat().st_size * fraction))
    return corrupt


def _delete(db: Path) -> None:
    db.unlink()


def _directory(db: Path) -> None:
    db.unlink()
    db.mkdir()


def _garbage_file(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 200)


def _wal_garbage(db: Path) -> None:
    Path(str(db) + "-wal").write_bytes(np.random.default_rng(3).bytes(8192))


def _header_version(db: Path) -> None:
    with open(db, "r+b") as fh:  # SQLite's file-format version bytes
        fh.seek(18)
        fh.write(b"\x09\x09")


def _page_size(db: Path) -> None:
    with open(db, "r+b") as fh:
        fh.seek(16)
        fh.write(b"\x00\x03")  # page size 3: invalid


def _freelist(db: Path) -> None:
    with open(db, "r+b") as fh:
        fh.seek(32)
        fh.write(b"\xff\xff\xff\xff\xff\xff\xff\xff")


def _chmod_zero(db: Path) -> None:
    os.chmod(db, 0)


BASE_CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "zero 8 KiB at 4 KiB": _zero(4096, 8192),
    "zero the first 100 bytes": _zero(0, 100),
    "zero 8 KiB at 12 KiB": _zero(12288, 8192),
    "random 4 KiB at 4 KiB": _random(4096, 4096, 1),
    "random 512 B at 8 KiB": _random(8192, 512, 2),
    "truncate to half": _truncate(0.5),
    "truncate to 1 KiB": lambda db: os.truncate(db, 1024),
    "truncate to 0": _truncate(0.0),
    "delete the database": _delete,
    "replace it with a folder": _directory,
    "replace it with text": _garbage_file,
    "garbage write-ahead log": _wal_garbage,
    "bad format version": _header_version,
    "bad page size": _page_size,
    "bad freelist pointer": _freelist,
}
# 30 variants: each corruption of data/cache.db and of meta/cache.db
CORRUPTIONS = {f"{part}: {name}": (part, fn) for part in ("data", "meta") for name, fn in BASE_CORRUPTIONS.items()}
# corruptions SQLite's checks must see (verify exit 3), by the part they hit
MUST_BE_SEEN = {"data: zero 8 KiB at 4 KiB", "data: random 4 KiB at 4 KiB", "data: truncate to half",
                "data: zero 8 KiB at 12 KiB"}


def corrupt_store(store: Path, variant: str) -> None:
    part, fn = CORRUPTIONS[variant]
    fn(store / part / "cache.db")


def copy_store(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def a_record_line(export: Path) -> dict:
    """The first record of an export file."""
    for line in export.read_text().splitlines():
        item = json.loads(line)
        if item.get("type") == "record":
            return item["data"]
    raise AssertionError("no record in the export")


def hostile_import_lines(record: dict) -> dict[str, str]:
    """Import lines that must each be rejected (name -> line), built from a valid record."""
    def variant(**changes) -> str:
        data = json.loads(json.dumps(record))
        for dotted, value in changes.items():
            target = data
            *parents, leaf = dotted.split("__")
            for parent in parents:
                target = target[parent]
            if value is _DROP:
                target.pop(leaf)
            else:
                target[leaf] = value
        return json.dumps({"type": "record", "data": data})

    valid_failure = {"path": "/x.wav", "error_type": "E", "message": "m", "size": 1, "mtime_ns": 1, "failed_at": 1.0}
    lines = {
        "missing digest": variant(digest=_DROP),
        "missing streaming": variant(streaming=_DROP),
        "last_used_at as a string": variant(last_used_at="yesterday"),
        "validation.status 5": variant(validation={"status": 5, "similarity": 0.9, "threshold": 0.9,
                                                   "confidence_quality": "high", "failed_metrics": [],
                                                   "errors": {}, "validated_at": 1.0}),
        "negative sample rate": variant(audio__samplerate=-44100),
        "zero sample rate": variant(audio__samplerate=0),
        "0 channels": variant(audio__channels=0),
        "negative size": variant(size=-5),
        "1e999 duration": variant(audio__duration_s=1e999).replace("Infinity", "1e999"),
        "NaN value": variant(streaming__values__tempo_bpm=float("nan")),
        "huge value": variant(streaming__values__tempo_bpm=10**400),
        "confidence 7": variant(streaming__confidence__tempo_bpm=7),
        "paths not a list": variant(paths="/music/a.wav"),
        "empty path": variant(paths=[{"path": "", "mtime_ns": 1}]),
        "digest not hex": variant(digest="z" * 32),
        "bool size": variant(size=True),
        "schema 99": variant(schema=99),
        "extra dim": variant(streaming__values__bogus=1.0),
        "batch with wrong dims": variant(batch={"values": {"x": 1}, "reasons": {}}),
        "failure with negative size": json.dumps({"type": "failure", "data": {**valid_failure, "size": -9}}),
        "failure without path": json.dumps({"type": "failure", "data": {**valid_failure, "path": None}}),
        "not JSON": "{'type': 'record'",
        "binary garbage": "\x00\x01\x02\xff",
        "deeply nested": "[" * 100000 + "]" * 100000,
        "a number": "42",
        "unknown type": json.dumps({"type": "pickle", "data": "gASVAAAA"}),
        "a second header": json.dumps({"type": "fpcli-store-export", "version": 2}),
        "over-long line": json.dumps({"type": "record", "data": {"pad": "x" * (1 << 21)}}),
    }
    return lines


_DROP = object()
