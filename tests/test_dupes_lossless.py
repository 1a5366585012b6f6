"""Lossless copies (the same decoded samples in another container) of steady or short
tracks are duplicates: their duplicate keys share too few reliable bits for the key's
rule (white noise, a sine and a click track have 0-37 in 5 s, music of 2-3 s 38-60,
against the 64 it needs), so such a copy came back as search hit 1 at distance 0 and
``cache dupes`` did not list it. Other audio of the same length (another noise,
another pitch, another gain, a shift by one sample) is not the same decoded audio."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fpcli import synth
from fpcli.analyze import analyse
from fpcli.dsp.dupes import same_recording
from fpcli.library import RunOptions, run_library
from fpcli.search import search
from fpcli.search.dupes import duplicate_groups, same
from fpcli.store import FingerprintStore, Record
from fpcli.store.records import FileIdentity, record_from_result
from tests.conftest import write

SR = 44100


def _pcm16(x: np.ndarray) -> np.ndarray:
    """16-bit samples, so that WAV and FLAC hold exactly the same ones (libsndfile
    rounds float data to 16 bits differently for the two: one step apart in about
    half the samples, which is another rounding, not a lossless copy)."""
    return np.round(np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def _noise(seed: int, seconds: float) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1


MUSIC = synth.music_like(3.0, SR, seed=53)

# Steady or short tracks, each stored as WAV and FLAC of the same samples.
COPIED = {
    "noise": _noise(0, 5.0),
    "sine": synth.sine(440, 5.0, SR),
    "clicks": synth.click_track(120, 5.0, SR),
    "music": MUSIC,
    "drums": synth.drum_pattern(120, 2.0, SR, seed=3),
}
# The same length as one of them, and other audio (FLAC only).
OTHERS = {
    "noise-other-seed": _noise(1, 5.0),
    "sine-660": synth.sine(660, 5.0, SR),
    "music-shifted-1-sample": np.concatenate([np.zeros((1, 2)), MUSIC[:-1]]),
}
# The music's samples 1 dB quieter, as float (rounded to 16 bits, the quieter copy's
# keys would differ already): its keys and streaming values are the music's.
QUIETER = (_pcm16(MUSIC) / 32768 * 10 ** (-1 / 20)).astype(np.float32)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """(folder, store folder, records by file name) of COPIED as WAV and FLAC and OTHERS as FLAC."""
    root = tmp_path_factory.mktemp("lossless")
    music = root / "music"
    music.mkdir()
    for name, x in COPIED.items():
        write(music / f"{name}.wav", _pcm16(x), SR)
        write(music / f"{name}.flac", _pcm16(x), SR)
    for name, x in OTHERS.items():
        write(music / f"{name}.flac", _pcm16(x), SR)
    write(music / "music-1dB-quieter.wav", QUIETER, SR, subtype="FLOAT")
    store_dir = str(root / "store")
    with FingerprintStore.open(store_dir) as store:
        run_library([str(music)], store, RunOptions(jobs=1))
        records = {r.path.rsplit("/", 1)[1]: r for r in store.records()}
    return music, store_dir, records


def test_the_copies_share_too_few_reliable_bits_for_the_keys_rule(library):
    """The premise: the key's own rule cannot tell these copies (the cause of the bug)."""
    _, _, records = library
    for name in COPIED:
        wav, flac = records[f"{name}.wav"], records[f"{name}.flac"]
        assert wav.dupe_key == flac.dupe_key and wav.digest != flac.digest
        assert not same_recording(wav.dupe_key, flac.dupe_key, wav.audio.duration_s, flac.audio.duration_s), name


def test_cache_dupes_groups_each_lossless_copy_and_nothing_else(library):
    _, _, records = library
    groups = duplicate_groups(records.values())
    assert sorted(tuple(p.rsplit("/", 1)[1] for p in g.paths) for g in groups) == sorted(
        (f"{name}.flac", f"{name}.wav") for name in COPIED)


@pytest.mark.parametrize("name", ["noise", "sine", "music"])
def test_search_leaves_the_querys_lossless_copy_out(library, name):
    music, store_dir, _ = library
    with FingerprintStore.open(store_dir) as store:
        result = search(store, str(music / f"{name}.flac"), k=3, strategy="fast")
    assert result.hits and f"{name}.wav" not in {h.path.rsplit("/", 1)[1] for h in result.hits}
    assert result.stats["duplicates_dropped"] >= 1


@pytest.mark.parametrize(("a", "b"), [("noise.flac", "noise-other-seed.flac"), ("sine.flac", "sine-660.flac"),
                                      ("music.flac", "music-1dB-quieter.wav"),
                                      ("music.flac", "music-shifted-1-sample.flac")])
def test_other_audio_of_the_same_length_is_judged_as_before(library, a, b):
    """Not identical audio: the key's rule alone decides, as before (for these short
    tracks: not the same recording)."""
    from fpcli.search.dupes import same_decoded_audio

    _, _, records = library
    ra, rb = records[a], records[b]
    assert ra.audio.duration_s == rb.audio.duration_s
    assert not same_decoded_audio(ra, rb)
    assert same(ra, rb) == same_recording(ra.dupe_key, rb.dupe_key, ra.audio.duration_s, rb.audio.duration_s)
    assert not same(ra, rb)


def test_another_gain_is_told_apart_by_the_timbres_level(library):
    """Keys and streaming values do not see a gain change (they are level differences
    and ratios); the timbre's c0, the level, does."""
    from fpcli.search.dupes import Recording, _values_agree, same_decoded_audio

    _, _, records = library
    music, quieter = records["music.flac"], records["music-1dB-quieter.wav"]
    assert music.dupe_key == quieter.dupe_key
    assert _values_agree(Recording.of(music).values, Recording.of(quieter).values)
    assert music.timbre is not None and quieter.timbre is not None
    assert abs(music.timbre.mean[0] - quieter.timbre.mean[0]) > 0.5
    assert not same_decoded_audio(music, quieter)


def _record(path: str, block_frames: int) -> Record:
    result = analyse(path, block_frames=block_frames)
    return record_from_result(FileIdentity(path, 1, 1, "c" * 32, f"{block_frames:032x}"), result, 0.0)


def test_float_rounding_of_another_block_size_is_tolerated(library):
    """A decoder may hand the same samples over in other blocks, which moves the
    analysers' sums by float rounding only (up to 1e-6 relative measured)."""
    from fpcli.search.dupes import same_decoded_audio

    music, _, _ = library
    for name in ("noise", "music"):
        path = str(music / f"{name}.wav")
        whole, cut = _record(path, 65536), _record(path, 777)
        assert whole.streaming.values != cut.streaming.values   # rounding differs...
        assert same_decoded_audio(whole, cut)                    # ...and is tolerated


def test_the_exact_rule_needs_rate_channels_length_and_the_whole_track(library):
    """Each condition matters: a record that differs in one of them is not the same
    decoded audio (a preview has not heard the whole track)."""
    from fpcli.search.dupes import same_decoded_audio

    _, _, records = library
    wav, flac = records["noise.wav"], records["noise.flac"]
    assert same_decoded_audio(wav, flac)
    audio = flac.audio
    for changed in (dataclasses.replace(flac, audio=dataclasses.replace(audio, samplerate=48000)),
                    dataclasses.replace(flac, audio=dataclasses.replace(audio, channels=2)),
                    dataclasses.replace(flac, audio=dataclasses.replace(audio, duration_s=audio.duration_s + 1 / SR)),
                    dataclasses.replace(flac, complete=False),
                    dataclasses.replace(flac, params_key="other")):
        assert not same_decoded_audio(wav, changed)


def test_lossless_copies_of_a_clip_too_short_for_a_key_are_duplicates(tmp_path):
    """A clip of 0.1 s has no duplicate key (two key windows need 1 s): its WAV and FLAC
    copies were search hits at distance 0 and no `cache dupes` group. Another clip of
    the same length is not one of them."""
    clip = _pcm16(synth.music_like(0.1, SR, seed=61))
    other = _pcm16(synth.music_like(0.1, SR, seed=62))
    music = tmp_path / "music"
    music.mkdir()
    write(music / "clip.wav", clip, SR)
    write(music / "clip.flac", clip, SR)
    write(music / "other.flac", other, SR)
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([str(music)], store, RunOptions(jobs=1))
        records = {r.path.rsplit("/", 1)[1]: r for r in store.records()}
        assert records["clip.wav"].dupe_key is None and records["clip.flac"].dupe_key is None
        groups = duplicate_groups(records.values())
        assert [tuple(p.rsplit("/", 1)[1] for p in g.paths) for g in groups] == [("clip.flac", "clip.wav")]
        result = search(store, str(music / "clip.flac"), k=3, strategy="fast")
    assert [h.path.rsplit("/", 1)[1] for h in result.hits] == ["other.flac"]
