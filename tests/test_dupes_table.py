"""The duplicate rules applied to many rows at once (``KeyRows``, ``RecordingTable``)
give exactly what the pair-by-pair rules give (``same_recording``, ``same``), and the
groups of ``cache dupes`` and the hits search keeps are those of the pairwise loops
they replace."""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from fpcli import synth
from fpcli.dsp.dupes import DURATION_TOLERANCE_S, MAX_WINDOWS, DupeKey, KeyRows, same_recording
from fpcli.library import RunOptions, run_library
from fpcli.search.dupes import DupeGroup, Recording, RecordingTable, duplicate_groups, same
from fpcli.store import FingerprintStore, Record
from fpcli.store.records import PathSeen
from tests.conftest import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_dupes import pairwise_groups  # noqa: E402  (benchmarks/bench_dupes.py: the former loop)

SR = 22050


def _hex(bits: np.ndarray) -> str:
    return np.packbits(bits).tobytes().hex()


def _keys(rng: np.random.Generator, n: int) -> list[DupeKey | None]:
    """Keys near the rule's thresholds: a few originals, and copies of them with
    0-20 % of their bits flipped, other window counts and masks as dense as needed
    for 30-200 reliable bits in common (MIN_SHARED_BITS is 64); some None."""
    originals = [(rng.random(16 * (MAX_WINDOWS - 1)) < 0.5, rng.random(16 * (MAX_WINDOWS - 1)) < rng.uniform(0.02, 0.3))
                 for _ in range(4)]
    keys: list[DupeKey | None] = []
    for _ in range(n):
        if rng.random() < 0.05:
            keys.append(None)
            continue
        bits, mask = originals[rng.integers(len(originals))]
        windows = int(rng.integers(1, MAX_WINDOWS))
        flipped = bits ^ (rng.random(len(bits)) < rng.uniform(0.0, 0.2))
        kept = mask & (rng.random(len(mask)) < rng.uniform(0.5, 1.0))
        keys.append(DupeKey(_hex(flipped[:16 * windows]), _hex(kept[:16 * windows]), windows))
    return keys


def test_key_rows_give_same_recording_for_every_row():
    rng = np.random.default_rng(5)
    keys = _keys(rng, 160)
    seconds = [60.0 + float(rng.choice([0.0, 0.5, DURATION_TOLERANCE_S, 1.5, 3.0])) for _ in keys]
    rows = KeyRows(capacity=3)   # grown several times
    for key, s in zip(keys, seconds, strict=True):
        rows.add(key, s)
    outcomes = set()
    for key, s in zip(keys, seconds, strict=True):
        got = rows.matches(key, s)
        want = [a is not None and key is not None and same_recording(a, key, t, s)
                for a, t in zip(keys, seconds, strict=True)]
        assert got.tolist() == want
        assert rows.matches(key, s, 40, 90).tolist() == want[40:90]
        outcomes |= set(want)
    assert outcomes == {True, False}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Record:
    """One real record of a 3 s track."""
    root = tmp_path_factory.mktemp("table")
    path = write(root / "t.flac", synth.music_like(3.0, SR, seed=4), SR)
    with FingerprintStore.open(str(root / "store")) as store:
        run_library([path], store, RunOptions(jobs=1))
        record = store.record_for_path(path)
    assert record is not None and record.dupe_key is not None
    return record


def _records(template: Record, n: int, seed: int) -> list[Record]:
    """Records made to meet every branch of ``same``: a repeated digest, identical keys
    of one decoded audio (steady-track keys too short for the key rule), near keys,
    durations around the tolerance, records without a key."""
    rng = np.random.default_rng(seed)
    keys = _keys(rng, n)
    short = DupeKey("ffff", "0f0f", 1)   # 8 reliable bits: only the decoded-audio rule tells copies
    made = []
    for i, key in enumerate(keys):
        choice = rng.random()
        key = short if choice < 0.1 else key
        digest = f"{rng.integers(n // 3) if choice > 0.9 else 10_000 + i:032x}"
        seconds = float(rng.choice([60.0, 60.5, 61.0, 61.5, 62.6]))
        audio = dataclasses.replace(template.audio, duration_s=seconds,
                                    samplerate=template.audio.samplerate if rng.random() < 0.7 else 48000)
        made.append(dataclasses.replace(template, digest=digest, dupe_key=key, audio=audio,
                                        paths=(PathSeen(f"/m/{i:04d}.flac", i),)))
    return made


def test_first_same_is_the_first_row_same_finds(template):
    records = _records(template, 150, seed=1)
    table = RecordingTable()
    outcomes = set()
    for row, record in enumerate(records):
        for start in (0, row // 2):
            want = next((earlier for earlier in range(start, row) if same(records[earlier], record)), None)
            assert table.first_same(Recording.of(record), start) == want
            outcomes.add(want is None)
        table.add(Recording.of(record))
    assert outcomes == {True, False}


def _pairwise_groups(records: list[Record]) -> list[DupeGroup]:
    """``duplicate_groups`` as it was: each record against each near group's first, in turn."""
    found = [DupeGroup(tuple(sorted({p.path for r in g for p in r.paths})), tuple(sorted({r.digest for r in g})))
             for g in pairwise_groups(records)]
    return sorted((g for g in found if len(g.paths) > 1), key=lambda g: (-len(g.paths), g.paths[0]))


@pytest.mark.parametrize("seed", [2, 3])
def test_duplicate_groups_are_the_pairwise_loops_groups(template, seed):
    records = _records(template, 200, seed)
    random.Random(seed).shuffle(records)
    groups = duplicate_groups(records)
    assert groups == _pairwise_groups(records)
    assert len(groups) >= 5 and any(len(g.digests) > 1 for g in groups)


def test_rows_of_one_key_before_start_are_not_looked_at(template, monkeypatch):
    """Only rows from ``start`` on are compared (the list of a key's rows is entered by
    bisection: walking every earlier row of a key that thousands of tracks share, a
    minute of silence at their start, made ``cache dupes`` quadratic in them; that
    cost is measured in ``benchmarks/scale.md``, not here)."""
    import fpcli.search.dupes

    key = DupeKey("00" * 240, "00" * 240, 120)

    def made(i: int, digest: str) -> Recording:   # one key and length, values of their own: no two alike
        values = {**template.streaming.values, "tempo_bpm": 60.0 + i}
        return Recording.of(dataclasses.replace(template, digest=digest, dupe_key=key, streaming=dataclasses.replace(
            template.streaming, values=values)))

    table = RecordingTable()
    for i in range(200):
        table.add(made(i, f"{i:032x}"))
    looked: list[int] = []
    alike = fpcli.search.dupes._decoded_alike
    monkeypatch.setattr(fpcli.search.dupes, "_decoded_alike", lambda a, b: looked.append(1) or alike(a, b))
    assert table.first_same(made(199, "f" * 32), start=190) == 199 and len(looked) == 10
