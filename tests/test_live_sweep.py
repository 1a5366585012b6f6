"""Live and partial fingerprints as a sweep found them: snapshots past the length a
stream states, the duration a followed file reports, --quiet and the seconds heard in
lines, and the player API's checks of its arguments."""

import dataclasses
import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fpcli import BATCH_DIMS, BatchAnalyzer, synth
from fpcli.audio import AudioReader, open_stream
from fpcli.cli import app
from fpcli.errors import AnalysisError, ParameterError
from fpcli.live import LiveFingerprint, follow
from fpcli.store import FingerprintStore
from fpcli.store.records import stream_identity
from tests.conftest import write

SR = 22050
runner = CliRunner()


def _flac_bytes(seconds: float, seed: int = 4) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, synth.music_like(seconds, SR, seed=seed), SR, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _with_stated_frames(flac: bytes, frames: int) -> bytes:
    """``flac`` with the total sample count of its STREAMINFO (the low 36 bits of the
    8 bytes after the block sizes, 18 bytes in) set to ``frames``."""
    packed = int.from_bytes(flac[18:26], "big")
    packed = packed & ~((1 << 36) - 1) | frames
    return flac[:18] + packed.to_bytes(8, "big") + flac[26:]


def _followed(data: bytes, **options):
    """Follow ``data`` as a stream on stdin: (lines shown, results kept, final result)."""
    shown, kept = [], []
    final = follow(open_stream(io.BytesIO(data)), "stream:test", on_snapshot=shown.append, keep=kept.append,
                   **options)
    return shown, kept, final


@pytest.mark.parametrize("stream", ["three files one after another", "a header stating 2 s of 6"])
def test_a_stream_longer_than_its_header_states_goes_on_with_its_snapshots(stream):
    """Past the stated length every snapshot was skipped, shown and stored alike: a
    kill -9 at 9 s of a 12 s stream kept 3 s (the header said 4)."""
    one = _flac_bytes(2.0)
    data = one * 3 if stream.startswith("three") else _with_stated_frames(_flac_bytes(6.0), 2 * SR)
    shown, kept, final = _followed(data, every_s=1.0)
    # The last second is the final result's line alone (it was shown as a snapshot too).
    assert [r.streaming.seconds for r in shown] == pytest.approx([1, 2, 3, 4, 5])
    assert [r.streaming.seconds for r in kept] == pytest.approx([1, 2, 3, 4, 5, 6, 6])  # the last: the final one
    assert final.streaming.complete and final.streaming.seconds == pytest.approx(6.0)
    # Its length is at least what was heard, once the stated one is passed.
    assert [r.duration_s for r in shown] == pytest.approx([2, 2, 3, 4, 5])


def test_a_mark_at_the_stated_end_or_at_the_limit_leaves_the_second_to_the_final_result(tmp_path):
    """"8.0 s, partial" and then "8.0 s, complete" for the same second; a preview's
    limit printed its snapshot and then the same preview as the final result."""
    path = write(tmp_path / "four.wav", synth.music_like(4.0, SR, seed=2), SR)
    shown, kept = [], []
    final = follow(AudioReader(path), path, every_s=1.0, on_snapshot=shown.append, keep=kept.append)
    assert [r.streaming.seconds for r in shown] == pytest.approx([1, 2, 3]) and final.streaming.complete
    shown.clear()
    preview = follow(AudioReader(path), path, every_s=1.0, max_seconds=2.0, on_snapshot=shown.append)
    assert [r.streaming.seconds for r in shown] == pytest.approx([1])
    assert not preview.streaming.complete and preview.streaming.seconds == pytest.approx(2.0)


def test_a_followed_file_reports_its_length_and_its_path_as_given(tmp_path, monkeypatch):
    """``analyze m8.wav --every 2 --seconds 5`` stored and showed 5 s as the track's
    duration (plain ``--seconds 5`` says 8 s), and its JSON named the absolute path."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "eight.wav", synth.music_like(8.0, SR, seed=3), SR)
    store = str(tmp_path / "s")
    run = runner.invoke(app, ["--store", store, "analyze", "eight.wav", "--every", "2", "--seconds", "5", "--json"])
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["seconds"] for r in rows] == pytest.approx([2, 4, 5])
    assert [r["duration_s"] for r in rows] == pytest.approx([8, 8, 8])
    assert {r["path"] for r in rows} == {"eight.wav"}
    plain = json.loads(runner.invoke(app, ["--store", str(tmp_path / "p"), "analyze", "eight.wav", "--seconds",
                                           "5", "--json"]).stdout)
    assert (plain["path"], plain["duration_s"]) == ("eight.wav", rows[-1]["duration_s"])
    with FingerprintStore.open(store) as s:
        [record] = list(s.records())
    assert record.audio.duration_s == pytest.approx(8.0) and record.streaming.seconds == pytest.approx(5.0)
    assert record.path == os.path.join(str(tmp_path), "eight.wav")   # the store knows it by its full path


def test_a_stream_preview_has_the_length_its_header_states_and_no_estimate(tmp_path):
    """A FLAC stream states its length; a WAV written to a pipe leaves placeholder sizes,
    from which FFmpeg estimates one when stdin is a file: not a stated length."""
    _, _, stated = _followed(_flac_bytes(6.0), max_seconds=2.0)
    assert stated.duration_s == pytest.approx(6.0) and stated.streaming.seconds == pytest.approx(2.0)
    wav = bytearray(open(write(tmp_path / "w.wav", synth.music_like(6.0, SR, seed=5), SR), "rb").read())
    data = wav.index(b"data")
    wav[4:8] = wav[data + 4 : data + 8] = b"\xff\xff\xff\xff"
    _, _, estimated = _followed(bytes(wav), max_seconds=2.0)
    assert estimated.duration_s == pytest.approx(2.0) and not estimated.streaming.complete


def test_a_stream_of_unknown_length_lasts_as_long_as_what_was_heard():
    """And its last second is the final result's alone: a mark at the end of a stream
    that states no length printed that second twice, as a snapshot and as the final."""
    pcm = (synth.music_like(3.0, SR, seed=6) * 32767).astype("<i2").tobytes()
    shown: list = []
    kept: list = []
    final = follow(open_stream(io.BytesIO(pcm), raw_format="s16le", samplerate=SR, channels=2), "stream:raw",
                   every_s=1.0, on_snapshot=shown.append, keep=kept.append)
    assert [(r.streaming.seconds, r.duration_s) for r in shown] == [(pytest.approx(s), pytest.approx(s))
                                                                     for s in (1, 2)]
    assert final.duration_s == pytest.approx(3.0) and final.streaming.complete
    assert [r.streaming.seconds for r in kept] == pytest.approx([1, 2, 3, 3])   # stored before shown, as ever


def test_a_stream_cut_short_of_its_stated_length_shows_its_last_second_once(tmp_path):
    """A WAV whose header states 4 s, cut at 2 s, followed every second: "heard 2.0 s"
    came as a snapshot and again as the final result."""
    wav = open(write(tmp_path / "w.wav", synth.music_like(4.0, SR, seed=8), SR, subtype="PCM_16"), "rb").read()
    cut = wav[: wav.index(b"data") + 8 + 2 * SR * 2 * 2]       # 2 s of 16-bit stereo after the data header
    shown, kept, final = _followed(cut, every_s=1.0)
    assert [r.streaming.seconds for r in shown] == pytest.approx([1])
    assert final.streaming.seconds == pytest.approx(2.0)
    assert [r.streaming.seconds for r in kept] == pytest.approx([1, 2, 2])


def test_quiet_keeps_the_snapshots_and_lines_say_the_tenths_heard(tmp_path):
    """With --quiet a followed run printed nothing until it ended (--json kept its
    lines); "heard 0 s" was printed at 0.3 s, "heard 2 s" at 1.5 s."""
    path = write(tmp_path / "three.wav", synth.music_like(3.0, SR, seed=7), SR)
    store = str(tmp_path / "s")
    quiet = runner.invoke(app, ["--store", store, "analyze", path, "--every", "1.5", "--quiet", "--seconds", "2.5"])
    assert quiet.exit_code == 0, quiet.output
    heard = [line for line in quiet.stdout.splitlines() if " heard " in line]
    assert len(heard) == 1 and " heard 1.5 s," in heard[0] and "3.0 s" in heard[0]
    fine = runner.invoke(app, ["--store", store, "analyze", path, "--every", "0.3", "--seconds", "0.5"])
    assert " heard 0.3 s," in fine.stdout


def test_the_player_api_refuses_channel_counts_beyond_any_format():
    """10**9 channels raised MemoryError (29.8 GiB of analyzer state)."""
    from fpcli.dsp.pipeline import MAX_CHANNELS

    for channels in (10**9, MAX_CHANNELS + 1):
        with pytest.raises(ParameterError, match=f"channels: {channels}: a channel count from 1 to {MAX_CHANNELS}"):
            LiveFingerprint(SR, channels)
    with pytest.raises(ParameterError, match="samplerate"):
        LiveFingerprint(10**9, 2)
    from fpcli import BatchAnalyzer, StreamingAnalyzer

    for analyzer in (StreamingAnalyzer, BatchAnalyzer):   # the public analyzers too (MemoryError)
        with pytest.raises(ParameterError, match="a channel count from 1 to"):
            analyzer(SR, 10**9)


def test_the_player_api_stores_no_record_of_nothing_and_names_a_bad_name(tmp_path):
    """``save(store, 123)`` raised TypeError; a save before any audio stored a preview
    of 0 s, which the command line never stores."""
    audio = synth.music_like(1.0, SR, seed=8).astype(np.float32)
    with FingerprintStore.open(tmp_path / "s") as store:
        live = LiveFingerprint(SR, 2, expected_seconds=1.0)
        with pytest.raises(ParameterError, match="name: 123"):
            live.save(store, 123)  # type: ignore[arg-type]
        with pytest.raises(AnalysisError, match="nothing measured yet"):
            live.save(store, "x")
        live.push(audio[:100])   # less than one analysis frame
        with pytest.raises(AnalysisError, match="nothing measured yet"):
            live.save(store, "x")
        assert list(store.records()) == []
        live.push(audio[100:])
        assert not live.save(store, "x").complete
        too_short = LiveFingerprint(SR, 2)
        too_short.push(audio[:100])
        too_short.finish()   # a whole track too short to measure is still a fact about it
        assert too_short.save(store, "short").complete
        empty = LiveFingerprint(SR, 2)
        empty.finish()
        with pytest.raises(AnalysisError, match="nothing measured yet"):
            empty.save(store, "empty")
        assert sorted(r.path for r in store.records()) == ["stream:short", "stream:x"]


def test_the_player_api_stores_only_what_the_store_can_read_back(tmp_path):
    """A stream named with a NUL, or a fingerprint whose values were changed after its
    analysis (a tempo of -5), was stored, and every later read rejected the record as a
    bad entry: the save said nothing. Both are refused now, and nothing is stored."""
    audio = synth.music_like(2.0, SR, seed=8).astype(np.float32)
    with FingerprintStore.open(tmp_path / "s") as store:
        live = LiveFingerprint(SR, 2)
        live.push(audio)
        for name in ("a\x00b", "\ud800x"):
            with pytest.raises(ParameterError, match="without NUL characters or lone surrogates"):
                live.save(store, name)
        live.finish().values["tempo_bpm"] = -5.0      # a copy: the analyzer's own is kept
        assert live.finish().values["tempo_bpm"] != -5.0 and live.snapshot().values["tempo_bpm"] != -5.0
        result = live.result("stream:changed")
        changed = dataclasses.replace(result.streaming, values={**result.streaming.values, "tempo_bpm": -5.0})
        with pytest.raises(ParameterError, match="tempo_bpm is -5.0, outside its domain"):
            store.save(stream_identity("changed"), dataclasses.replace(result, streaming=changed))
        assert list(store.records()) == [] and store.bad_entries == []


def test_a_batch_fingerprint_changed_by_its_caller_stays_the_analyzers_own():
    """``BatchAnalyzer.finish`` gave the object it keeps: a caller's change to its values
    was in every later ``finish``."""
    analyzer = BatchAnalyzer(SR, 2)
    analyzer.push(synth.music_like(2.0, SR, seed=8).astype(np.float32))
    first = analyzer.finish()
    first.values.clear()
    first.reasons["lufs"] = "changed"
    again = analyzer.finish()
    assert again.values.keys() == set(BATCH_DIMS) and again.reasons.get("lufs") != "changed"


def test_a_followed_file_that_fails_is_recorded_as_a_run_over_files_records_it(tmp_path):
    """`analyze FILE --every` on a file that fails midway left an "ok" preview and no
    failure (`cache show` showed the preview alone), and on a file that is not audio
    recorded nothing: a later run over the folder analysed it again."""
    x = np.full((44100 * 5, 2), 0.01, dtype=np.float32)
    x[int(44100 * 3.2)] = 5e6                      # refused once read: not audio scaled to +-1
    huge = tmp_path / "huge.wav"
    sf.write(huge, x, 44100, subtype="FLOAT")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    store = str(tmp_path / "s")
    for path in (huge, text):
        assert runner.invoke(app, ["--store", store, "analyze", str(path), "--every", "1", "-q"]).exit_code == 3
    failures = runner.invoke(app, ["--store", store, "cache", "failures"]).stdout
    assert "huge.wav\tAudioReadError\tfloat samples up to 5e+06" in failures and "notes.wav\tAudioReadError" in failures
    shown = runner.invoke(app, ["--store", store, "cache", "show", str(huge)])
    assert "preview: the first 2.0 s only" in shown.stdout and "the whole file failed: float samples" in shown.stdout


def test_snapshots_past_the_length_a_header_states_are_partial(tmp_path):
    """Two WAVs joined on a pipe: the snapshots past the first one's stated 2 s said
    "ok", and only the final result said partial."""
    one = tmp_path / "a.wav"
    sf.write(one, synth.music_like(2.0, 22050, seed=4), 22050)
    joined = one.read_bytes() * 2
    run = runner.invoke(app, ["--store", str(tmp_path / "s"), "analyze", "-", "--every", "1", "--json"],
                        input=joined)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(line["seconds"], line["status"]) for line in lines] == \
        [(1.0, "ok"), (2.0, "ok"), (3.0, "partial"), (4.0, "partial")]
    assert lines[2]["partial_reason"] == "header says 2.00 s, decoded 3.00 s"
    assert lines[3]["partial_reason"] == "header says 2.00 s, decoded 4.00 s"


def _wait_until_read(pipe, timeout_s: float = 60.0) -> None:
    """Until the reader has taken every byte written to ``pipe`` (FIONREAD counts the
    bytes a pipe holds, from either end)."""
    import fcntl
    import struct
    import termios
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held = struct.unpack("i", fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0" * 4))[0]
        if held == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"the reader took nothing from its pipe in {timeout_s} s")


def test_ctrl_c_before_anything_measurable_says_nothing_was_stored(tmp_path):
    """20 ms of a stream, then Ctrl-C: "interrupted: what was heard is stored", and
    nothing was (less than one analysis frame is no record)."""
    import signal
    import subprocess
    import sys
    import time

    header = io.BytesIO()
    sf.write(header, np.zeros((441, 1), dtype=np.float32), 22050, format="WAV", subtype="PCM_16")
    wav = bytearray(header.getvalue())
    wav[4:8] = (0xFFFFFFFF).to_bytes(4, "little")     # a streamed WAV: sizes unknown, more to come
    wav[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "XDG_CACHE_HOME": str(tmp_path / "home")}
    child = subprocess.Popen([sys.executable, "-m", "fpcli", "--store", str(tmp_path / "s"), "analyze", "-",
                              "--every", "1", "--name", "radio"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                                               signal.SIG_DFL))
    child.stdin.write(bytes(wav))
    child.stdin.flush()
    _wait_until_read(child.stdin)   # past start-up (a fixed 1.5 s was start-up alone on a busy machine)
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130
    assert b"interrupted: nothing stored (nothing measurable was heard)" in err, err
