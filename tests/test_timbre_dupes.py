"""Fingerprint v2: the timbre Gaussian (streaming vs batch parity, silence, the
record's checks), the timbre distance and its prefilter, the octave-aware tempo, and
duplicates (another codec or sample rate of one recording)."""

from __future__ import annotations

import base64
import dataclasses
import json
import math

import numpy as np
import pytest
import scipy.fft
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly
from typer.testing import CliRunner

from fpcli import synth
from fpcli.batch import BatchAnalyzer
from fpcli.cli import app
from fpcli.dsp.dupes import bit_errors, same_recording
from fpcli.dsp.timbre import N_MFCC, Timbre, dct_matrix
from fpcli.errors import BadEntryError
from fpcli.fingerprint import STREAMING_DIMS
from fpcli.library import RunOptions, run_library
from fpcli.params import FINGERPRINT_VERSION, AnalysisParams
from fpcli.search import Index, dim_weights, search, top_k
from fpcli.search.index import tempo_point
from fpcli.search.rank import default_weights, exact_distances
from fpcli.search.timbre import TIMBRE_COLUMNS, js_divergence, pack
from fpcli.store import FingerprintStore
from fpcli.store.records import PathSeen
from fpcli.store.schema import parse_record, record_to_json
from fpcli.store.timbre_block import pack_timbre
from fpcli.streaming import StreamingAnalyzer
from tests.conftest import write

SR = 22050
CLIP = synth.music_like(6.0, SR, seed=3, bpm=100)


def _push(analyzer: StreamingAnalyzer | BatchAnalyzer, x: np.ndarray, cuts: list[int]) -> None:
    start = 0
    for cut in [*sorted(set(cuts)), len(x)]:
        if cut > start:
            analyzer.push(x[start:cut])
            start = cut


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, len(CLIP)), max_size=8), st.lists(st.integers(0, len(CLIP)), max_size=8))
def test_streaming_timbre_equals_batch_for_any_chunking(stream_cuts, batch_cuts):
    """Running sums (streaming) and np.cov of the kept frames (batch) agree to rounding."""
    streaming, batch = StreamingAnalyzer(SR, 2), BatchAnalyzer(SR, 2)
    _push(streaming, CLIP, stream_cuts)
    _push(batch, CLIP, batch_cuts)
    s, b = streaming.finish().timbre, batch.finish().timbre
    assert s is not None and b is not None and s.frames == b.frames > 100
    (ms, cs), (mb, cb) = s.arrays(), b.arrays()
    np.testing.assert_allclose(ms, mb, rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(cs, cb, rtol=1e-6, atol=1e-6 * np.abs(cb).max())


def test_mfcc_basis_is_the_orthonormal_dct_ii():
    log_mel = np.random.default_rng(0).normal(size=(5, 64))
    expected = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, :N_MFCC]
    np.testing.assert_allclose(log_mel @ dct_matrix(64), expected, atol=1e-12)


def test_silent_frames_are_skipped():
    tone = synth.music_like(20.0, SR, seed=1)
    padded = np.concatenate([np.zeros((SR * 3, 2), np.float32), tone, np.zeros((SR * 3, 2), np.float32)])
    plain, with_silence = StreamingAnalyzer(SR, 2), StreamingAnalyzer(SR, 2)
    plain.push(tone)
    with_silence.push(padded)
    a, b = plain.finish().timbre, with_silence.finish().timbre
    assert a is not None and b is not None
    # Six seconds of digital silence add ~258 frames; only the few straddling the edges count,
    # and the timbre moves far less than to another clip.
    assert abs(a.frames - b.frames) <= 8
    other = StreamingAnalyzer(SR, 2)
    other.push(synth.music_like(20.0, SR, seed=2, bpm=90))
    c = other.finish().timbre
    assert c is not None
    assert js_divergence(pack(a), pack(b)[None, :])[0] < 0.2 * js_divergence(pack(a), pack(c)[None, :])[0]
    silent = StreamingAnalyzer(SR, 1)
    silent.push(np.zeros((SR * 2, 1), np.float32))
    assert silent.finish().timbre is None


def test_timbre_tells_instruments_apart():
    """A noise timbre and a tonal one are far apart; another stretch of the same noise
    is near (c0 carries the level, so the level is kept)."""
    rng = np.random.default_rng(5)
    noise = (0.1 * rng.normal(size=(SR * 4, 1))).astype(np.float32)
    tonal = synth.sine(440.0, 4.0, SR)

    def timbre(x: np.ndarray) -> np.ndarray:
        s = StreamingAnalyzer(SR, 1)
        s.push(x)
        t = s.finish().timbre
        assert t is not None
        return pack(t)

    other_noise = (0.1 * rng.normal(size=(SR * 4, 1))).astype(np.float32)
    a, b, a_again = timbre(noise), timbre(tonal), timbre(other_noise)
    near = js_divergence(a, a_again[None, :])[0]
    far = js_divergence(a, b[None, :])[0]
    assert js_divergence(a, a[None, :])[0] == pytest.approx(0.0, abs=1e-9)
    assert far == pytest.approx(js_divergence(b, a[None, :])[0], rel=1e-9)
    assert far > 10 * near


def _record(tmp_path):
    with FingerprintStore.open(tmp_path / "store") as store:
        path = write(tmp_path / "a.flac", CLIP, SR)
        run_library([path], store, RunOptions(jobs=1))
        return store.record_for_path(path)



def test_packed_timbre_is_made_once_and_never_outlives_a_change():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(N_MFCC, N_MFCC))
    t = Timbre.rounded(rng.normal(size=N_MFCC), a @ a.T, 50)
    packed = t.packed()
    rows, cols = np.triu_indices(N_MFCC)
    assert np.array_equal(packed, np.concatenate([t.mean, np.array(t.cov)[rows, cols]]))
    assert t.packed() is packed and not packed.flags.writeable
    again = Timbre.from_packed(packed, np.array(t.cov), 50)
    assert again == t and np.array_equal(again.packed(), packed)
    changed = dataclasses.replace(t, mean=(0.0,) * N_MFCC)
    assert np.array_equal(changed.packed()[:N_MFCC], np.zeros(N_MFCC))

def test_record_round_trips_and_checks_the_timbre_block(tmp_path):
    record = _record(tmp_path)
    assert record.fingerprint_version == FINGERPRINT_VERSION == 6 and record.timbre is not None
    stored = json.loads(json.dumps(record_to_json(record)))
    assert set(stored["timbre"]) == {"packed", "frames"} and parse_record(record.key, stored) == record
    # the plain-list form (hand-written imports, records stored before packing) reads the same
    data = json.loads(json.dumps({**stored, "timbre": record.timbre.to_dict()}))
    assert len(data["timbre"]["mean"]) == N_MFCC and len(data["timbre"]["cov"][0]) == N_MFCC
    assert parse_record(record.key, data) == record

    def broken(change) -> list[str]:
        bad = json.loads(json.dumps(data))
        change(bad["timbre"])
        with pytest.raises(BadEntryError) as caught:
            parse_record(record.key, bad)
        return caught.value.problems

    assert any("not symmetric" in p for p in broken(lambda t: t["cov"][0].__setitem__(1, t["cov"][0][1] + 5.0)))
    assert any("mean" in p for p in broken(lambda t: t["mean"].pop()))
    assert any("cov" in p for p in broken(lambda t: t["cov"][2].__setitem__(2, "x")))
    assert any("frames" in p for p in broken(lambda t: t.__setitem__("frames", 0)))

    def not_psd(t):
        t["cov"] = (-np.eye(N_MFCC)).tolist()
    assert any("positive semi-definite" in p for p in broken(not_psd))
    for packed in ("not base64!", stored["timbre"]["packed"][:-8], 7):
        bad_packed = json.loads(json.dumps(stored))
        bad_packed["timbre"]["packed"] = packed
        with pytest.raises(BadEntryError, match="timbre.packed"):
            parse_record(record.key, bad_packed)
    nan_packed = json.loads(json.dumps(stored))
    nan_packed["timbre"] = pack_timbre(dataclasses.replace(record.timbre, mean=(math.nan,) * N_MFCC))
    with pytest.raises(BadEntryError, match="finite"):
        parse_record(record.key, nan_packed)
    bad_key = json.loads(json.dumps(data))
    bad_key["dupe_key"]["bits"] = "zz"
    with pytest.raises(BadEntryError, match="dupe_key.bits"):
        parse_record(record.key, bad_key)


def test_a_timbre_is_single_precision_fresh_stored_and_shown(tmp_path):
    # Single precision is what search ranks by; the stored block is half the bytes of
    # doubles (the largest part of a record, and of a Redis store's memory).
    record = _record(tmp_path)
    values = record.timbre.packed()
    assert np.array_equal(values, values.astype(np.float32).astype(np.float64))
    stored = record_to_json(record)
    assert len(base64.b64decode(stored["timbre"]["packed"])) == 4 * TIMBRE_COLUMNS   # float32
    # a record stored when timbres were doubles still reads, rounded to the same values
    doubles = np.array(values) * (1 + 1e-9)
    old = {**stored, "timbre": {"packed": base64.b64encode(doubles.astype("<f8").tobytes()).decode(),
                                "frames": record.timbre.frames}}
    assert parse_record(record.key, old) == record
    # what --json shows reads back to the same timbre, and a cached answer shows the same
    path = write(tmp_path / "b.flac", CLIP, SR)
    fresh, cached = (CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "analyze", path, "--json"])
                     for _ in range(2))
    assert fresh.exit_code == cached.exit_code == 0, fresh.output + cached.output
    shown = [json.loads(out.stdout.splitlines()[0]) for out in (fresh, cached)]
    assert shown[0]["cached"] is False and shown[1]["cached"] is True
    assert shown[0]["timbre"] == shown[1]["timbre"]
    assert Timbre.from_dict(shown[0]["timbre"]) == Timbre.from_dict(Timbre.from_dict(shown[0]["timbre"]).to_dict())
    rng = np.random.default_rng(5)
    spread = rng.normal(size=(N_MFCC, N_MFCC)) * 10.0 ** rng.integers(-6, 6, size=(N_MFCC, 1))
    random = Timbre.rounded(rng.normal(size=N_MFCC) * 1e3, spread @ spread.T, 9)
    assert Timbre.from_dict(json.loads(json.dumps(random.to_dict()))) == random


def test_a_fresh_timbre_equals_one_stored_in_double_precision_before():
    """Records of fpcli before single precision hold each value to 9 significant digits
    as float64; rounded to float32 they must equal a fresh analysis of the same audio
    (rounded straight to float32, a fresh one differed in the last bit of a few values)."""
    from fpcli.store.timbre_block import packed_values, symmetric_layout

    rng = np.random.default_rng(8)
    for _ in range(50):
        a = rng.normal(size=(N_MFCC, N_MFCC)) * rng.uniform(0.01, 100)
        mean, cov = rng.normal(size=N_MFCC) * 50, a @ a.T
        fresh = Timbre.of((mean, cov), 100)
        rows, cols = np.triu_indices(N_MFCC)
        before = np.array([float(f"{v:.9g}") for v in np.concatenate([mean, cov[rows, cols]])])  # as v5 stored it
        stored = packed_values(base64.b64encode(before.astype("<f8").tobytes()).decode())
        assert Timbre.from_packed(stored, stored[N_MFCC:][symmetric_layout()], 100) == fresh


def test_v1_records_still_parse_and_are_a_miss(tmp_path):
    record = _record(tmp_path)
    data = record_to_json(record)
    data.pop("timbre")
    data.pop("dupe_key")
    data["fingerprint_version"] = 1
    data["params_key"] = "v1-" + data["params_key"].split("-", 1)[1]   # a v1 record's key names v1
    old = parse_record(f"rec:{data['digest']}:{data['params_key']}", data)   # stored under its own key
    assert old.timbre is None and old.fingerprint_version == 1
    assert AnalysisParams().key().startswith("v6-")


def test_json_output_has_the_timbre_block(tmp_path):
    path = write(tmp_path / "a.flac", CLIP, SR)
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "analyze", path, "--json"])
    assert result.exit_code == 0, result.output
    timbre = json.loads(result.stdout.splitlines()[0])["timbre"]
    assert timbre["frames"] > 0 and np.array(timbre["cov"]).shape == (N_MFCC, N_MFCC)


# -- distances --------------------------------------------------------------------------------

def test_tempo_is_octave_aware_and_weighted_by_confidence():
    points = tempo_point(np.array([70.0, 140.0, 280.0, 99.0, 120.0, np.nan]), np.array([1, 1, 1, 1, 0, 1.0]))
    np.testing.assert_allclose(points[0], points[1], atol=1e-6)
    np.testing.assert_allclose(points[0], points[2], atol=1e-6)
    # 70 vs 99 BPM is half an octave: the farthest two confident tempi can be.
    assert np.linalg.norm(points[0] - points[3]) == pytest.approx(1.0, abs=1e-3)
    assert np.linalg.norm(points[4]) == 0 and np.linalg.norm(points[5]) == 0  # unsure / null: the centre


def _gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """Packed Gaussians scattered around a common timbre."""
    base = rng.normal(size=(N_MFCC, N_MFCC))
    rows = []
    for _ in range(n):
        a = base + 0.6 * rng.normal(size=base.shape)
        t = Timbre(tuple(rng.normal(0, 3, N_MFCC)), tuple(map(tuple, a @ a.T / N_MFCC)), 100)
        rows.append(pack(t))
    return np.array(rows, dtype=np.float32)


def _timbre_index(n: int, seed: int) -> Index:
    rng = np.random.default_rng(seed)
    values = rng.random((n, len(STREAMING_DIMS))).astype(np.float32) * 100
    index = Index("streaming", "k", values, np.array([f"k{i}" for i in range(n)]),
                  np.array([f"/m/{i:05d}.flac" for i in range(n)]), np.array([f"c{i}" for i in range(n)]),
                  np.zeros(0), np.zeros(0), timbre=_gaussians(n, rng))
    index.fit()
    return index


def _js_reference(a: np.ndarray, b: np.ndarray) -> float:
    """JS of two packed Gaussians written out from the definition (moment-matched mixture)."""
    def unpacked(row):
        cov = np.zeros((N_MFCC, N_MFCC))
        cov[np.triu_indices(N_MFCC)] = row[N_MFCC:]
        cov = cov + np.triu(cov, 1).T + 1e-3 * np.eye(N_MFCC)
        return row[:N_MFCC].astype(np.float64), cov
    (m1, s1), (m2, s2) = unpacked(a), unpacked(b)
    mixture = (s1 + s2) / 2 + np.outer(m1 - m2, m1 - m2) / 4
    return 0.5 * (np.log(np.linalg.det(mixture)) - 0.5 * (np.log(np.linalg.det(s1)) + np.log(np.linalg.det(s2))))


def test_timbre_term_is_the_scaled_js_and_the_exhaustive_rerank_is_exact():
    index = _timbre_index(60, seed=1)
    weights = dim_weights(index.dims, default_weights(), index.low, index.high)
    q, qt = index.values[0], index.timbre_rows()[0]
    hits = top_k(index, q, 10, weights, query_timbre=qt, timbre_weight=3.0, candidates=len(index))
    named = exact_distances(index, q, weights, np.arange(len(index))) ** 2
    assert index.timbre_fit is not None
    js = np.array([_js_reference(qt, row) for row in index.timbre_rows()])
    expected = np.sqrt(named + 3.0 * np.minimum(js / index.timbre_fit.js_scale, 1.0))
    order = np.argsort(expected)[:10]
    assert [h.path for h in hits] == list(index.paths[order])
    np.testing.assert_allclose([h.distance for h in hits], expected[order], rtol=1e-4)


def test_prefilter_keeps_most_of_the_true_neighbours():
    """With the named dims off, the embedding prefilter (1000 of 3000 rows) must hold
    most of the exact JS top 10."""
    index = _timbre_index(3000, seed=2)
    weights = np.zeros(len(index.dims))
    recalls = []
    for i in range(0, 100, 10):
        qt = index.timbre_rows()[i]
        fast = top_k(index, index.values[i], 10, weights, query_timbre=qt, timbre_weight=1.0)
        exact = np.argsort(js_divergence(qt, index.timbre_rows()))[:10]
        recalls.append(len({h.path for h in fast} & set(index.paths[exact])) / 10)
    assert np.mean(recalls) >= 0.9


def test_explain_has_one_timbre_line():
    index = _timbre_index(30, seed=3)
    weights = np.zeros(len(index.dims))
    hits = top_k(index, index.values[0], 3, weights, query_timbre=index.timbre_rows()[0], timbre_weight=1.0,
                 explain=True, exclude_content="c0")
    assert [line["dim"] for line in hits[0].explain] == ["timbre"]
    assert hits[0].explain[0]["divergence"] > 0


def test_rows_without_timbre_pay_the_null_penalty():
    index = _timbre_index(20, seed=4)
    index.timbre_rows()[5] = np.nan
    index.fit()
    weights = np.zeros(len(index.dims))
    hits = top_k(index, index.values[0], 20, weights, query_timbre=index.timbre_rows()[0], timbre_weight=1.0)
    assert dict((h.path, h.distance) for h in hits)[index.paths[5]] == pytest.approx(0.5)
    assert TIMBRE_COLUMNS == 104


# -- duplicates -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """One recording as WAV, FLAC, MP3 and a 22.05 kHz FLAC; two other recordings."""
    root = tmp_path_factory.mktemp("dupes")
    x = synth.music_like(20.0, 44100, seed=11, bpm=96)
    write(root / "song.wav", x, 44100)
    write(root / "song.flac", x, 44100)
    write(root / "song.mp3", x, 44100, format="MP3")
    write(root / "song-22k.flac", resample_poly(x, 1, 2, axis=0).astype(np.float32), 22050)
    write(root / "other.flac", synth.music_like(20.0, 44100, seed=12, bpm=131), 44100)
    write(root / "third.flac", synth.music_like(20.0, 44100, seed=13, bpm=84), 44100)
    return root


SONG = ("song.wav", "song.flac", "song.mp3", "song-22k.flac")


def _keys(root):
    out = {}
    for path in sorted(root.iterdir()):
        from fpcli.analyze import analyze_streaming

        fp, _ = analyze_streaming(path)
        out[path.name] = (fp.dupe_key, fp.seconds)
    return out


def test_dupe_key_survives_codecs_and_resampling_but_tells_tracks_apart(copies):
    keys = _keys(copies)
    for a in keys:
        for b in keys:
            (ka, sa), (kb, sb) = keys[a], keys[b]
            expected = (a in SONG) == (b in SONG) and (a in SONG or a == b)
            assert same_recording(ka, kb, sa, sb) == expected, (a, b, bit_errors(ka, kb))


def test_cache_dupes_and_search_exclusion(copies, tmp_path):
    store_dir = str(tmp_path / "store")
    with FingerprintStore.open(store_dir) as store:
        run_library([str(copies)], store, RunOptions(jobs=1))
    runner = CliRunner()
    listed = runner.invoke(app, ["--store", store_dir, "cache", "dupes", "--json"])
    assert listed.exit_code == 0, listed.output
    groups = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [sorted(p.rsplit("/", 1)[1] for p in g["paths"]) for g in groups] == [sorted(SONG)]
    with FingerprintStore.open(store_dir) as store:
        query = str(copies / "song.flac")
        default = search(store, query, k=10, strategy="fast")
        assert {h.path.rsplit("/", 1)[1] for h in default.hits} == {"other.flac", "third.flac"}
        everything = search(store, query, k=10, strategy="fast", include_duplicates=True)
        assert {"song.mp3", "song-22k.flac"} <= {h.path.rsplit("/", 1)[1] for h in everything.hits}
    weighted = runner.invoke(app, ["--store", store_dir, "search", query, "--weights", "timbre=2", "--explain",
                                   "--json", "--include-duplicates"])
    assert weighted.exit_code == 0, weighted.output
    assert any(line["dim"] == "timbre" for hit in json.loads(weighted.stdout)["hits"] for line in hit["explain"])
    assert math.isfinite(json.loads(weighted.stdout)["hits"][0]["distance"])


def test_refresh_carries_the_embedding_and_log_determinants_over_exactly():
    """An incremental refresh embeds (and factorises) only changed and new rows; the
    result equals doing every row again."""
    from fpcli.search.index import _carried
    from fpcli.search.timbre import embed, logdets

    old = _timbre_index(50, seed=6)
    rng = np.random.default_rng(7)
    keep = np.ones(50, dtype=bool)
    keep[[3, 17]] = False
    timbres = old.timbre_rows().copy()
    timbres[[5, 20]] = _gaussians(2, rng)            # two changed rows
    added = _gaussians(4, rng)
    new = Index("streaming", "k", np.concatenate([old.values[keep], old.values[:4]]),
                np.arange(52).astype(str), np.arange(52).astype(str), np.arange(52).astype(str), old.low, old.high,
                timbre=np.concatenate([timbres[keep], added]), timbre_fit=old.timbre_fit)
    fit = old.timbre_fit
    assert fit is not None
    carried = _carried(old.embedded(), lambda rows: embed(rows, fit), old, new, keep, [5, 20], 4)
    np.testing.assert_allclose(carried, embed(new.timbre_rows(), fit), atol=1e-5)
    carried = _carried(old.timbre_logdets(), logdets, old, new, keep, [5, 20], 4)
    np.testing.assert_array_equal(carried, logdets(new.timbre_rows()))


def test_more_duplicates_than_the_slack_still_leave_k_hits(copies, tmp_path, monkeypatch):
    """Candidates are k + DUPLICATE_SLACK; when more of them than that are duplicates
    (15 encodings of one track left 8 of 10 hits, 800 left none, without a word), more
    are asked for until k remain or the rows run out. Here the slack is 0 and the
    query's three other encodings are its nearest rows."""
    import fpcli.search.query

    store_dir = str(tmp_path / "store")
    with FingerprintStore.open(store_dir) as store:
        run_library([str(copies)], store, RunOptions(jobs=1))
        monkeypatch.setattr(fpcli.search.query, "DUPLICATE_SLACK", 0)
        result = search(store, str(copies / "song.flac"), k=2, strategy="fast")
    assert sorted(h.path.rsplit("/", 1)[1] for h in result.hits) == ["other.flac", "third.flac"]
    assert result.stats["duplicates_dropped"] >= 1


def test_duplicate_groups_do_not_chain_different_tracks(tmp_path):
    """A like B and B like C (each 14 of 160 bits apart) but A unlike C (28): A and B
    are one recording, C is not theirs. Union-find put all three in one group."""
    from fpcli.dsp.dupes import DupeKey
    from fpcli.search.dupes import duplicate_groups

    def key(flipped: range) -> DupeKey:
        bits = np.zeros(160, dtype=bool)
        bits[list(flipped)] = True
        return DupeKey(np.packbits(bits).tobytes().hex(), np.packbits(np.ones(160, dtype=bool)).tobytes().hex(), 10)

    base = _record(tmp_path)
    records = [dataclasses.replace(base, digest=f"{i:032x}", dupe_key=k, paths=(PathSeen(f"/m/{name}.flac", 1),))
               for i, (name, k) in enumerate([("a", key(range(0))), ("b", key(range(14))), ("c", key(range(28)))])]
    groups = duplicate_groups(records)
    assert [g.paths for g in groups] == [("/m/a.flac", "/m/b.flac")]


def test_bit_errors_on_packed_bits_count_as_the_bits_do():
    """bit_errors works on the keys' packed bytes (parsed once per key); the share and
    count are those of the unpacked bits, for keys of other lengths too."""
    from fpcli.dsp.dupes import DupeKey

    rng = np.random.default_rng(5)

    def key(windows):
        bits, mask = rng.integers(0, 2, 16 * windows).astype(bool), rng.random(16 * windows) < 0.6
        return DupeKey(np.packbits(bits).tobytes().hex(), np.packbits(mask).tobytes().hex(), windows), bits, mask

    for wa, wb in [(119, 119), (40, 119), (3, 2), (1, 1)]:
        (a, bits_a, mask_a), (b, bits_b, mask_b) = key(wa), key(wb)
        n = 16 * min(wa, wb)
        shared = mask_a[:n] & mask_b[:n]
        share, count = bit_errors(a, b)
        assert count == shared.sum()
        assert share == pytest.approx((bits_a[:n] != bits_b[:n])[shared].mean()) if count else np.isnan(share)


def test_embeddings_computed_in_threads_equal_one_pass(monkeypatch):
    from fpcli.search import timbre

    rng = np.random.default_rng(3)
    draws = rng.standard_normal((300, timbre.N_MFCC, 30))
    covs = draws @ draws.transpose(0, 2, 1) / 30
    upper = np.triu_indices(timbre.N_MFCC)
    rows = np.concatenate([rng.standard_normal((300, timbre.N_MFCC)), covs[:, upper[0], upper[1]]], axis=1)
    rows[[5, 77]] = np.nan
    fit = timbre.fit_timbre(rows)
    assert fit is not None
    known = ~np.isnan(rows).any(axis=1)
    whole = (timbre.full_embedding(rows[known], fit.whiten) - fit.centre) @ fit.axes / np.sqrt(fit.embed_scale)
    monkeypatch.setattr(timbre, "SLICE_ROWS", 7)      # 43 slices, embedded by up to 4 threads
    monkeypatch.setattr(timbre, "_usable_cores", lambda: 4)
    sliced = timbre.embed(rows, fit)
    assert np.isnan(sliced[~known]).all()
    np.testing.assert_allclose(sliced[known], whole.astype(np.float32), rtol=1e-5, atol=1e-5)
