"""Option values at and past their ends: huge numbers (a usage error, or "no limit"
where that is what they mean), output files checked before the work, repeated or
home-relative values; and what ``cache show`` says of a file it has no record of."""

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from fpcli import bench, synth
from fpcli.cli import EXIT_USAGE, app
from fpcli.store.spec import MAX_SIZE_LIMIT_MB, StoreSpec
from tests.conftest import new_store, write

runner = CliRunner()
SR = 22050
HUGE = "1e308"                        # finite, but infinite once multiplied by a sample rate or 2**20
PAST_MAXSIZE = str(10**19)            # an int past sys.maxsize (islice's bound)


@pytest.fixture
def song(tmp_path):
    return write(tmp_path / "song.flac", synth.music_like(3.0, SR, seed=4), SR)


# -- huge numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("size_mb", [HUGE, "1e13", str(MAX_SIZE_LIMIT_MB), "inf"])
def test_a_size_limit_beyond_any_disk_is_no_limit(tmp_path, size_mb):
    """1e308 MiB overflowed to an infinite float, 1e13 MiB past SQLite's integers:
    both are no limit, kept as the largest limit, from the option and the variable.
    So is inf, the plain way to say it (it was "inf is not a finite number")."""
    new_store(tmp_path / "s")
    for args, env in ((["--store-size-mb", size_mb], {}), ([], {"FPCLI_STORE_SIZE_MB": size_mb})):
        stats = runner.invoke(app, ["--store", str(tmp_path / "s"), *args, "cache", "stats"], env=env)
        assert stats.exit_code == 0, stats.output
        assert "(no limit)" in stats.stdout
    as_json = runner.invoke(app, ["--store", str(tmp_path / "s"), "--store-size-mb", size_mb, "cache", "stats",
                                  "--json"])
    assert json.loads(as_json.stdout)["size_limit_bytes"] == MAX_SIZE_LIMIT_MB * 2**20


def test_an_ordinary_size_limit_is_kept_and_shown():
    assert StoreSpec("/tmp/x", 1e308).resolved().size_limit_mb == MAX_SIZE_LIMIT_MB
    assert StoreSpec("/tmp/x", 300).resolved().size_limit_mb == 300
    stats = runner.invoke(app, ["--store-size-mb", "300", "cache", "stats"])
    assert stats.exit_code == 0 and "of 300.0 MiB limit" in stats.stdout


@pytest.mark.parametrize(("split", "shown"), [
    ({"data_bytes": 2 * 2**20, "meta_bytes": 3 * 2**18},
     "2.0 MiB of 2.0 MiB limit; 0.8 MiB more of counters and change journal (never evicted)"),
    ({"data_bytes": int(2.75 * 2**20), "meta_bytes": None},   # Redis: one memory, the server's
     "2.8 MiB of 2.0 MiB limit; the Redis server's memory, every database's"),
])
def test_the_size_is_compared_with_the_limit_it_is_under(split, shown):
    """`cache stats` said "2.3 MiB of 2.0 MiB limit" right after evicting to the limit:
    the size counted the meta part (counters, journal), which the limit does not cover."""
    from fpcli.cli.cache_cmd import size_text

    stats = {"size_bytes": int(2.75 * 2**20), "size_limit_bytes": 2 * 2**20, **split}
    assert size_text(stats) == shown
    assert size_text({**stats, "size_limit_bytes": 0}).endswith("(no limit)" + shown.partition("limit")[2])


def _stored(store: str, *paths: str, seconds: float | None = None) -> None:
    """Analyse ``paths`` into ``store`` in this process (no worker pool to start);
    failures are recorded, as a library run records them."""
    from fpcli.analyze import Want, fingerprint_of
    from fpcli.store import FingerprintStore

    with FingerprintStore.open(store) as opened:
        for path in paths:
            fingerprint_of(opened, path, Want(seconds=seconds))


def test_a_list_limit_past_any_store_lists_everything(tmp_path, song):
    store = str(tmp_path / "s")
    _stored(store, song)
    listed = runner.invoke(app, ["--store", store, "cache", "list", "--limit", PAST_MAXSIZE, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["path"] for line in listed.stdout.splitlines()] == [os.path.realpath(song)]


def test_every_and_seconds_longer_than_any_track_follow_it_to_its_end(tmp_path, song):
    """--every 1e308 (no snapshot before the end) and --seconds 1e308 (all of it) were
    an OverflowError in the frame arithmetic."""
    store = str(tmp_path / "s")
    followed = runner.invoke(app, ["--store", store, "analyze", song, "--every", HUGE, "--json"])
    assert followed.exit_code == 0, followed.output
    [row] = [json.loads(line) for line in followed.stdout.splitlines()]
    assert row["complete"] and row["seconds"] == pytest.approx(3.0)
    audio = open(song, "rb").read()
    streamed = runner.invoke(app, ["--store", store, "analyze", "-", "--seconds", HUGE, "--json", "--no-store"],
                             input=audio)
    assert streamed.exit_code == 0, streamed.output
    assert json.loads(streamed.stdout.splitlines()[-1])["complete"]


def test_seconds_longer_than_any_track_read_a_file_whole(tmp_path, song):
    """`--seconds 1e308` on a file raised OverflowError for every file, recorded as its
    failure, so every later full run skipped it ("failed before"); a search and the
    API raised it too."""
    from fpcli import analyze_streaming

    store = str(tmp_path / "s")
    previewed = runner.invoke(app, ["--store", store, "analyze", song, "--seconds", HUGE, "--json"])
    assert previewed.exit_code == 0, previewed.output
    assert json.loads(previewed.stdout)["complete"]
    again = runner.invoke(app, ["--store", store, "analyze", song, "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["cached"], again.output
    other = write(tmp_path / "other.flac", synth.music_like(3.0, SR, seed=5, bpm=90), SR)
    _stored(store, other)
    found = runner.invoke(app, ["--store", store, "search", song, "--seconds", HUGE, "--json"])
    assert found.exit_code == 0 and json.loads(found.stdout)["stats"]["query_complete"], found.output
    fingerprint, _ = analyze_streaming(song, max_seconds=1e308)
    assert fingerprint.complete


def test_a_stream_query_longer_than_any_track_is_the_whole_stream(tmp_path):
    """The whole stream, complete: its own recording is told (8 s give its duplicate
    key enough bits) and left out."""
    store = str(tmp_path / "s")
    song = write(tmp_path / "song.flac", synth.music_like(8.0, SR, seed=4), SR)
    other = write(tmp_path / "other.flac", synth.music_like(8.0, SR, seed=5, bpm=90), SR)
    _stored(store, song, other)
    found = runner.invoke(app, ["--store", store, "search", "-", "--seconds", HUGE, "--json"],
                          input=open(song, "rb").read())
    assert found.exit_code == 0, found.output
    result = json.loads(found.stdout)
    assert result["stats"]["query_complete"] and [os.path.basename(h["path"]) for h in result["hits"]] == \
        ["other.flac"]


def test_follow_takes_marks_past_any_frame_count():
    from fpcli.live import follow

    pcm = (synth.music_like(2.0, SR, seed=6) * 32767).astype("<i2").tobytes()
    reader = _raw_reader(pcm)
    seen = []
    final = follow(reader, "stream:x", every_s=1e308, max_seconds=1e308, on_snapshot=seen.append)
    assert seen == [] and final.streaming is not None and final.streaming.complete


def _raw_reader(pcm: bytes):
    import io

    from fpcli.audio import open_stream

    return open_stream(io.BytesIO(pcm), raw_format="s16le", samplerate=SR, channels=2)


def test_a_raw_channel_count_past_any_format_is_a_usage_error():
    result = runner.invoke(app, ["analyze", "-", "--raw-format", "s16le", "--rate", "44100", "--channels",
                                 PAST_MAXSIZE, "--no-store"], input=b"\0" * 4000)
    assert result.exit_code == EXIT_USAGE and "1<=x<=65535" in result.output


# -- output files, checked before the work --------------------------------------------------

def _no_benchmark(*args, **kwargs):
    raise AssertionError("the benchmark ran before its output files were checked")


@pytest.mark.parametrize(("args", "reason"), [
    (["--json", "{tmp}"], "Invalid value for --json: cannot write {tmp}: it is a folder"),
    (["--markdown", "{tmp}/missing/b.md"], "Invalid value for --markdown: cannot write {tmp}/missing/b.md: no such "
                                           "folder {tmp}/missing"),
    (["--json", "{tmp}/link.json"], "it is a symbolic link"),
    (["--json", "{tmp}/a.json", "--markdown", "{tmp}/a.json"], "is the --json file too"),
])
def test_bench_checks_every_output_before_it_runs(tmp_path, monkeypatch, args, reason):
    monkeypatch.setattr(bench, "run", _no_benchmark)
    os.symlink(tmp_path / "target.json", tmp_path / "link.json")
    outcome = runner.invoke(app, ["bench", "--quick", *(a.format(tmp=tmp_path) for a in args)],
                            env={"COLUMNS": "400"})
    assert outcome.exit_code == EXIT_USAGE, outcome.output
    assert reason.format(tmp=tmp_path) in outcome.output
    assert not any(name.startswith(".fpcli-") for name in os.listdir(tmp_path))  # the trial file is gone


# -- cache show of a file without a record --------------------------------------------------

def test_cache_show_of_a_recorded_failure_says_why_and_how_to_retry(tmp_path):
    store = str(tmp_path / "s")
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"")
    _stored(store, str(broken))
    shown = runner.invoke(app, ["--store", store, "cache", "show", str(broken)])
    message = str(shown.exception)
    assert shown.exit_code == 1 and "its analysis failed" in message and "empty file" in message
    assert f"fpcli analyze {broken} --retry-failed" in message
    broken.write_bytes(b"still not audio")                           # changed: analyze would try it again
    changed = str(runner.invoke(app, ["--store", store, "cache", "show", str(broken)]).exception)
    assert "has changed since: run fpcli analyze" in changed and "--retry-failed" not in changed


@pytest.mark.parametrize("name", ["README.md", "Makefile"])
def test_cache_show_does_not_send_a_file_that_is_not_audio_to_analyze(tmp_path, name):
    other = tmp_path / name
    other.write_text("# notes\n")
    new_store(tmp_path / "s")
    shown = runner.invoke(app, ["--store", str(tmp_path / "s"), "cache", "show", str(other)])
    assert shown.exit_code == 1 and "fpcli analyses audio files only" in str(shown.exception)
    assert "fpcli analyze" not in str(shown.exception)


def test_cache_show_of_a_missing_path_or_a_folder_is_one_failed_input(tmp_path):
    """Exit 1 (fatal) and nothing on stdout for --json; now as any path without a record."""
    from fpcli.errors import NotStoredError

    new_store(tmp_path / "s")
    for path, reason in ((tmp_path / "gone.wav", "no such file"), (tmp_path, "is a folder")):
        shown = runner.invoke(app, ["--store", str(tmp_path / "s"), "cache", "show", "--json", str(path)])
        assert isinstance(shown.exception, NotStoredError) and reason in str(shown.exception)
        answer = json.loads(shown.stdout)
        assert answer["stored"] is False and answer["failure"] is None and reason in answer["why"]


def test_cache_show_of_an_unanalysed_track_still_says_how(tmp_path, song):
    new_store(tmp_path / "s")
    shown = runner.invoke(app, ["--store", str(tmp_path / "s"), "cache", "show", song])
    assert shown.exit_code == 1 and f"(run: fpcli analyze {song})" in str(shown.exception)


def test_cache_list_shows_a_half_second_preview_as_such(tmp_path, song):
    store = str(tmp_path / "s")
    _stored(store, song, seconds=0.5)
    listed = runner.invoke(app, ["--store", store, "cache", "list"])
    assert "preview 0.5 s" in listed.stdout


# -- the store's location -------------------------------------------------------------------

def test_a_store_location_starting_with_a_tilde_is_in_the_home_folder(tmp_path, monkeypatch):
    """FPCLI_STORE='~/fp' from a config file (no shell expanded it) made ./~/fp."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert StoreSpec("~/fp").resolved().location == str(tmp_path / "home" / "fp")
    new_store(tmp_path / "home" / "by-option")   # --store names an existing store
    for args, env in ((["--store", "~/by-option"], {}), ([], {"FPCLI_STORE": "~/by-variable"})):
        stats = runner.invoke(app, [*args, "cache", "stats", "--json"], env=env)
        assert stats.exit_code == 0, stats.output
        assert json.loads(stats.stdout)["location"].startswith(str(tmp_path / "home") + os.sep)
    assert not (tmp_path / "~").exists()


# -- options a run would ignore ------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["accurate", "batch"])
def test_a_preview_query_refuses_a_strategy_that_ranks_by_batch(tmp_path, song, strategy):
    """`search FILE --seconds 5 -s accurate` ran fast and exited 0; `search -` refused it."""
    store = tmp_path / "s"
    result = runner.invoke(app, ["--store", str(store), "search", song, "--seconds", "1", "-s", strategy])
    assert result.exit_code == EXIT_USAGE
    assert f"{strategy} ranks by batch fingerprints, which a preview query does not have" in result.stderr
    assert "search without --seconds" in result.stderr and not store.exists()  # refused before any work


@pytest.mark.parametrize(("args", "refused"), [
    (["{song}", "--rate", "44100"], "--rate is for a stream on stdin"),
    (["{song}", "--channels", "2", "--name", "x"], "--channels and --name are for a stream on stdin"),
    (["{song}", "--every", "1", "--raw-format", "s16le"], "--raw-format is for a stream on stdin (-)"),
    (["{song}", "--every", "1", "--batch", "--jobs", "2"],
     "--batch and --jobs are for runs over files and folders, not for a file followed with --every"),
    (["-", "--upgrade", "--no-store"], "--upgrade is for runs over files and folders, not for a stream (-)"),
    (["-", "--rate", "44100", "--no-store"], "--rate is for raw PCM, with --raw-format"),
    # Batch values are of whole tracks: dropped without a word, and no run was ever answered by the store.
    (["{song}", "--seconds", "4", "--batch"], "--batch is for whole tracks: a preview (--seconds) has streaming"),
])
def test_an_option_the_run_would_ignore_is_a_usage_error(tmp_path, song, args, refused):
    """`analyze song.flac --rate 44100` analysed the file at its own rate without a word."""
    store = tmp_path / "s"
    argv = ["--store", str(store), "analyze", *[arg.format(song=song) for arg in args]]
    result = runner.invoke(app, argv, input=b"not read")
    assert result.exit_code == EXIT_USAGE and refused in result.stderr
    assert not store.exists()


def test_upgrade_with_seconds_extends_the_previews(tmp_path, song):
    """Not an ignored option: --upgrade --seconds N extends each preview to N s and
    leaves files never analysed alone."""
    store = str(tmp_path / "s")
    other = write(tmp_path / "other.flac", synth.music_like(3.0, SR, seed=5), SR)
    assert runner.invoke(app, ["--store", store, "analyze", song, "--seconds", "1", "-q"]).exit_code == 0
    result = runner.invoke(app, ["--store", store, "analyze", song, other, "--upgrade", "--seconds", "2", "--json"])
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert (line["path"], line["seconds"], line["complete"]) == (song, 2.0, False)
    assert "1 without a preview to finish (new, or changed since)" in result.stderr


@pytest.mark.parametrize("command", ["analyze", "validate"])
@pytest.mark.parametrize(("args", "refused"), [
    (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler is for --executor dask: without it the run is local"),
    (["--executor", "local", "--path-map", "/a=/b"], "--path-map is for --executor dask"),
    (["--path-map", "/a=/b", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler and --path-map are for --executor dask"),
    (["--jobs", "2", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1"],
     "--jobs is for local worker processes: with --executor dask the cluster's workers decide"),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "-j", "1"], "--jobs is for local worker processes"),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--path-map", "/music=mnt"],
     "WORKER_PREFIX must be an absolute path"),
])
def test_an_executor_option_the_run_would_ignore_is_a_usage_error(tmp_path, song, command, args, refused):
    """`analyze DIR --scheduler ...` without `--executor dask` ran locally and exited 0;
    `--jobs 2` on Dask was dropped (the cluster's workers decide). Refused before any
    work, in either order of the options."""
    store = tmp_path / "s"
    target = [song] if command == "analyze" else ["-l", song]
    result = runner.invoke(app, ["--store", str(store), command, *target, *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert refused in " ".join(result.stderr.split())   # rich wraps the message
    assert not store.exists()


# -- a store that is not there ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["file", "link", "link to a file"])
def test_a_store_named_as_a_file_is_a_usage_error(tmp_path, song, kind):
    """`--store notes.txt` exited 1 ("cannot open the store"), as a failure of the run;
    a folder of other files, as a usage error, exits 2."""
    named = tmp_path / "named"
    if kind == "file":
        named.write_text("x")
    elif kind == "link":
        named.symlink_to(tmp_path / "nowhere")
    else:
        (tmp_path / "notes.txt").write_text("x")
        named.symlink_to(tmp_path / "notes.txt")
    for command in (["analyze", str(song)], ["cache", "stats"]):
        refused = runner.invoke(app, ["--store", str(named), *command])
        said = " ".join(refused.stderr.split())
        assert refused.exit_code == EXIT_USAGE, (command, said)
        assert f"{'a link to nothing' if kind == 'link' else 'a file'}, not a folder" in said, command
    assert not (tmp_path / "nowhere").exists()


def test_a_store_named_dash_is_a_usage_error(tmp_path, song, monkeypatch):
    """`--store -` made a store folder named "-" in the current folder, in silence."""
    monkeypatch.chdir(tmp_path)
    refused = runner.invoke(app, ["--store", "-", "analyze", str(song)])
    assert refused.exit_code == EXIT_USAGE and "'-' is no store" in " ".join(refused.stderr.split())
    assert not (tmp_path / "-").exists()


READ_OR_TIDY = (["cache", "stats"], ["cache", "list"], ["cache", "show", "x.flac"], ["cache", "failures"],
                ["cache", "dupes"], ["cache", "verify"], ["cache", "prune"], ["cache", "clear", "--yes"],
                ["cache", "export", "out.jsonl"])


def test_a_store_is_not_made_among_other_files(tmp_path, song):
    """`fpcli analyze ~/Music --store ~/Music` wrote the store's database folders into
    the library. A folder of other files is refused; a new or empty one, or a store, is
    used."""
    music = tmp_path / "music"
    music.mkdir()
    shutil.copy(song, music / "a.flac")
    for command in (["analyze", str(music)], ["validate", "-l", str(music)], ["search", str(music / "a.flac")],
                    ["cache", "import", "-"]):
        header = '{"type": "fpcli-store-export", "version": 2}\n' if command[0] == "cache" else ""
        refused = runner.invoke(app, ["--store", str(music), *command], input=header)
        assert refused.exit_code == EXIT_USAGE and "a folder of other files" in refused.stderr, command
        assert sorted(os.listdir(music)) == ["a.flac"]
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)   # a first run that stopped before its databases: its own folder only
    assert runner.invoke(app, ["--store", str(empty), "analyze", str(music)]).exit_code == 0
    assert runner.invoke(app, ["--store", str(empty), "analyze", str(music)]).exit_code == 0   # now a store


def test_a_mistyped_store_is_named_not_made_empty(tmp_path, monkeypatch):
    """`--store ~/musci-store cache stats` made an empty store there and reported 0
    records, as if the store meant were empty; `cache verify` called it sound."""
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "musci-store"
    for args in READ_OR_TIDY:
        result = runner.invoke(app, ["--store", str(typo), *args])
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert "no store there" in result.output and "--store" in result.output
        assert not typo.exists() and not (tmp_path / "out.jsonl").exists()
    # a folder that exists but holds no store (`--store ~/Music`, `--store .`) is not one either
    music = tmp_path / "Music"
    music.mkdir()
    (music / "notes.txt").write_text("mine")
    for args in READ_OR_TIDY:
        result = runner.invoke(app, ["--store", str(music), *args])
        assert result.exit_code == EXIT_USAGE and "holds no fpcli store" in result.output, (args, result.output)
    assert sorted(p.name for p in music.iterdir()) == ["notes.txt"]
    # an import makes a store, but not when its input cannot be read
    missing = runner.invoke(app, ["--store", str(typo), "cache", "import", "missing.jsonl"])
    assert missing.exit_code == 1 and "cannot read missing.jsonl" in str(missing.exception) and not typo.exists()
    real = tmp_path / "music-store"
    assert runner.invoke(app, ["--store", str(real), "cache", "export", "empty.jsonl"]).exit_code == EXIT_USAGE
    new_store(real)
    assert runner.invoke(app, ["--store", str(real), "cache", "export", "empty.jsonl"]).exit_code == 0
    made = runner.invoke(app, ["--store", str(typo), "cache", "import", "empty.jsonl"])
    assert made.exit_code == 0, made.output
    for args in READ_OR_TIDY[:2]:
        assert runner.invoke(app, ["--store", str(typo), *args]).exit_code == 0


def test_a_mistyped_redis_database_is_named_not_made_empty(redis_url, tmp_path, monkeypatch):
    """`--store redis://host:6379/7 cache stats`, a database number mistyped, reported
    an empty store (0 records, verify sound) and wrote its meta keys there."""
    import redis

    monkeypatch.chdir(tmp_path)
    typo = redis_url.rsplit("/", 1)[0] + "/7"
    for args in READ_OR_TIDY:
        result = runner.invoke(app, ["--store", typo, *args])
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert "--store" in result.output and "no fpcli store in this Redis database" in result.output
    assert redis.Redis.from_url(typo).dbsize() == 0 and not (tmp_path / "out.jsonl").exists()
    new_store(redis_url)
    for args in READ_OR_TIDY:
        assert runner.invoke(app, ["--store", redis_url, *args]).exit_code == (1 if "show" in args else 0), args
    monkeypatch.setenv("FPCLI_STORE", typo)   # set once, for every command: where a first run makes it
    assert runner.invoke(app, ["cache", "stats"]).exit_code == 0


def test_fpcli_store_is_held_to_the_rules_of_store(tmp_path, song, monkeypatch):
    """FPCLI_STORE=~/Music made the store's folders among the audio: the check of
    --store did not apply to the same location named by the environment. The default
    folder is refused too when it holds other files. (Both may be new: see
    test_the_default_store_and_fpcli_store_may_be_new.)"""
    monkeypatch.chdir(tmp_path)
    music = tmp_path / "music"
    music.mkdir()
    shutil.copy(song, music / "a.flac")
    refused = runner.invoke(app, ["analyze", str(music)], env={"FPCLI_STORE": str(music)})
    assert refused.exit_code == EXIT_USAGE and "FPCLI_STORE" in refused.stderr
    assert "a folder of other files" in " ".join(refused.stderr.split())
    assert sorted(os.listdir(music)) == ["a.flac"]
    for args in READ_OR_TIDY:
        result = runner.invoke(app, list(args), env={"FPCLI_STORE": str(music)})
        assert result.exit_code == EXIT_USAGE and "FPCLI_STORE" in result.output, (args, result.output)
    assert sorted(os.listdir(music)) == ["a.flac"]
    cache = tmp_path / "cache"
    default = cache / "fpcli" / "store"
    default.mkdir(parents=True)
    (default / "notes.txt").write_text("mine")
    default_env = {"FPCLI_STORE": None, "XDG_CACHE_HOME": str(cache)}
    result = runner.invoke(app, ["analyze", str(music)], env=default_env)
    assert result.exit_code == EXIT_USAGE and "the default store" in result.stderr, result.output
    (default / "notes.txt").unlink()
    assert runner.invoke(app, ["cache", "stats"], env=default_env).exit_code == 0


@pytest.mark.parametrize("url,says", [
    ("redis://[::1", "not a Redis URL"),                   # urlparse itself raised: a traceback
    ("redis://u:hunter2@[::1/0", "not a Redis URL"),
    ("redis://localhost:notaport/0", "the port must be a number"),
    ("redis://localhost:6379/zero", "the database must be a number"),
    ("redis://localhost:0/0", "the port must be a number"),            # was port 6379, quietly
    ("redis://localhost:99999/0", "the port must be a number"),        # urllib: "Port out of range"
    ("redis://localhost:6379/+2", "the database must be a number"),    # int() read these as 2, 10, 1
    ("redis://localhost:6379/1_0", "the database must be a number"),
    ("redis://localhost:6379/%201", "the database must be a number"),
    ("redis://localhost:6379/-1", "the database must be a number"),    # refused by Redis only, exit 1
    ("redis://", "redis://: not a Redis URL"),                         # it was shown as "redis:"
    ("redis://localhost:6379/0?db=3", "nothing after the database"),
    ("redis:/localhost:6379/0", "write a Redis URL as"),
    ("redis:localhost:6379/0", "write a Redis URL as"),              # made the folder ./redis:localhost:6379/0
    ("rediss:localhost:6379/0", "write a Redis URL as rediss://"),
])
def test_a_malformed_redis_url_is_a_bad_store_value(tmp_path, monkeypatch, url, says):
    """A URL that cannot name a Redis server is a bad option value (exit 2, as the
    exit-code table says), refused before anything connects; it exited 1, and an
    unclosed IPv6 bracket raised a traceback. The password is never echoed."""
    monkeypatch.chdir(tmp_path)
    for env in ({}, {"FPCLI_STORE": url}):
        args = ["cache", "stats"] if env else ["--store", url, "cache", "stats"]
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == EXIT_USAGE, (url, result.output, result.exception)
        assert says in result.output and "hunter2" not in result.output
    assert os.listdir(tmp_path) == []


def test_no_output_is_written_into_the_store(tmp_path, song, monkeypatch):
    """`search --m3u STORE/data/cache.db` replaced the database of every record with the
    playlist (exit 0; after a repair the store held 0 records); `cache export` there
    wrecked it too. Any output inside the store's folder is refused, also when the
    store is reached through a link or named by FPCLI_STORE."""
    store = tmp_path / "store"
    assert runner.invoke(app, ["--store", str(store), "analyze", song]).exit_code == 0
    database = store / "data" / "cache.db"
    before = database.read_bytes()
    link = tmp_path / "link-to-store"
    link.symlink_to(store)
    attempts = [["--store", str(store), "search", song, "--m3u", str(database)],
                ["--store", str(store), "cache", "export", str(database)],
                ["--store", str(link), "cache", "export", str(link / "meta" / "cache.db")],
                ["--store", str(store), "cache", "export", str(store / "backup.jsonl")]]
    for args in attempts:
        result = runner.invoke(app, args)
        assert result.exit_code == EXIT_USAGE and "inside the store's folder" in result.output, (args, result.output)
    monkeypatch.setenv("FPCLI_STORE", str(store))
    assert runner.invoke(app, ["cache", "export", str(database)]).exit_code == EXIT_USAGE
    assert database.read_bytes() == before and not (store / "backup.jsonl").exists()
    assert json.loads(runner.invoke(app, ["--store", str(store), "cache", "stats", "--json"]).stdout)["entries"] == 1
    assert runner.invoke(app, ["--store", str(store), "cache", "export", str(tmp_path / "out.jsonl")]).exit_code == 0


def test_an_output_named_as_a_folder_that_is_not_there_is_a_usage_error(tmp_path, song):
    """`search --m3u newdir/` wrote a playlist named "newdir" (exit 0) and `cache export
    newdir/` failed after reading the store ("Not a directory", exit 1): a name ending
    in a slash names a folder."""
    store = tmp_path / "store"
    assert runner.invoke(app, ["--store", str(store), "analyze", song]).exit_code == 0
    folder = str(tmp_path / "newdir") + os.sep
    for args in (["search", song, "--m3u", folder], ["cache", "export", folder],
                 ["bench", "--quick", "--json", folder], ["search", song, "--m3u", folder + "."],
                 ["cache", "export", folder + ".."]):
        result = runner.invoke(app, ["--store", str(store), *args])
        assert result.exit_code == EXIT_USAGE and "a name ending in / is a folder" in result.output, \
            (args, result.output)
    assert not os.path.exists(tmp_path / "newdir")


def test_a_size_limit_on_a_redis_store_is_a_usage_error(tmp_path):
    """`--store-size-mb 10` with a Redis store was accepted and ignored (stats said "no
    limit" beside it); its limit is Redis's maxmemory. Set in the environment (once,
    for every store) it is no error."""
    url = "redis://127.0.0.1:1/0"   # nothing listens there: the refusal comes before any connection
    given = runner.invoke(app, ["--store", url, "--store-size-mb", "10", "cache", "stats"])
    assert given.exit_code == EXIT_USAGE and "--store-size-mb" in given.output and "maxmemory" in given.output
    from_env = runner.invoke(app, ["--store", url, "cache", "stats"], env={"FPCLI_STORE_SIZE_MB": "10"})
    assert from_env.exit_code == 1 and "cannot connect" in str(from_env.exception)


def test_the_default_store_and_fpcli_store_may_be_new(tmp_path, monkeypatch):
    """Nothing analysed yet on this machine: the default store, or the one FPCLI_STORE
    names for every command, is empty, not missing."""
    monkeypatch.setenv("FPCLI_STORE", str(tmp_path / "new-store"))
    assert json.loads(runner.invoke(app, ["cache", "stats", "--json"]).stdout)["entries"] == 0
    monkeypatch.delenv("FPCLI_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    stats = runner.invoke(app, ["cache", "stats", "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["entries"] == 0 and (tmp_path / "cache").exists()


def test_upgrade_says_a_file_changed_since_its_preview_has_none_to_finish(tmp_path):
    """A file rewritten since its preview was counted as "never analysed"."""
    song = write(tmp_path / "song.flac", synth.music_like(3.0, SR, seed=1), SR)
    store = str(tmp_path / "s")
    assert runner.invoke(app, ["--store", store, "analyze", str(song), "--seconds", "1", "-q"]).exit_code == 0
    write(song, synth.music_like(4.0, SR, seed=2), SR)
    result = runner.invoke(app, ["--store", store, "analyze", str(song), "--upgrade"])
    assert result.exit_code == 0, result.output
    assert "1 without a preview to finish (new, or changed since), left for a full run" in result.stderr


def test_upgrade_with_force_is_a_usage_error(tmp_path):
    """A forced look-up knows no preview: ``--upgrade --force`` counted every preview as
    "without a preview to finish" and did nothing, exit 0."""
    song = write(tmp_path / "song.flac", synth.music_like(3.0, SR, seed=1), SR)
    store = str(tmp_path / "s")
    assert runner.invoke(app, ["--store", store, "analyze", str(song), "--seconds", "1", "-q"]).exit_code == 0
    result = runner.invoke(app, ["--store", store, "analyze", str(song), "--upgrade", "--force"])
    assert result.exit_code == 2 and "--upgrade finishes the previews alone" in result.stderr


def test_usage_errors_name_what_the_option_is_for(tmp_path):
    """"Invalid value for --compute-missing: is for --strategy batch" (no subject),
    and the same of --store-size-mb beside a Redis store."""
    song = tmp_path / "a.wav"
    song.write_bytes(b"never read")
    missing = runner.invoke(app, ["--store", str(tmp_path / "s"), "search", str(song), "--compute-missing"])
    assert missing.exit_code == 2
    assert "--compute-missing: only --strategy batch computes missing batch fingerprints" in missing.output
    sized = runner.invoke(app, ["--store", "redis://127.0.0.1:1/0", "--store-size-mb", "10", "cache", "stats"])
    assert sized.exit_code == 2 and "--store-size-mb: a size limit for a folder store" in sized.output
