"""``fpcli bench``: measure analysis speed, the cache, validation and search; check
the figures against thresholds; compare with an earlier run. Returns plain data;
``cli`` renders it.

Every figure has a unit, a direction (higher or lower is better) and a kind:
``ratio`` figures are relative to something measured in the same run (analysis
speed / decode-only speed, cold / warm time) and so hold on a noisy machine;
``absolute`` figures (latencies, x real time) get thresholds generous enough not to
flap on a shared 2-core machine; ``share`` figures are fractions (hit rate).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import json
import math
import os
import platform
import shutil
import tempfile
import time
import tomllib
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile as sf

from fpcli import synth
from fpcli.audio import AudioReader
from fpcli.batch import BatchAnalyzer
from fpcli.blas import one_blas_thread
from fpcli.errors import FpcliError, ParameterError
from fpcli.extensions import AUDIO_EXTENSIONS
from fpcli.files import read_text
from fpcli.fingerprint import GROUPS, STREAMING_DIMS
from fpcli.library import RunOptions, RunSummary, run_library
from fpcli.params import AnalysisParams
from fpcli.scan import scan
from fpcli.search import Index, dim_weights, search, top_k
from fpcli.search.index import row_of
from fpcli.store import FingerprintStore, Need, StoreSpec
from fpcli.streaming import StreamingAnalyzer
from fpcli.validate import LibraryValidation, validate_library, validate_record

SCHEMA = "fpcli-bench/1"
COMPARE_TOLERANCE = 0.25  # --compare flags a figure more than 25 % worse
# The figures whose regression fails --check: the analyzers' speed over decode-only
# speed (medians of per-round ratios of interleaved rounds) and the hit rate of a fixed
# workload hold on a busy machine. Any other (a wall-clock p50, a speed in x real time,
# cold / warm wall time of one run each: 406 then 163 on the same code) moved by more
# than 25 % between two runs of the same code on the same files, so its regression is
# flagged, never a failed gate.
GATED_REGRESSIONS = ("analysis.streaming_vs_decode", "analysis.batch_vs_decode", "cache.hit_rate")
MIN_TRACKS = 2           # the searches of the workload look for a track other than the query

# Default thresholds of --check: (operator, value). The plan's targets (70 % hit rate,
# < 10 ms retrieval, < 100 ms validation, >= 10x cached speed-up) and ours. Override
# in pyproject.toml under [tool.fpcli.bench.thresholds] or with --thresholds FILE.
DEFAULT_THRESHOLDS: dict[str, tuple[str, float]] = {
    "analysis.streaming_vs_decode": (">=", 0.05),   # ratio: streaming speed / decode speed
    "analysis.batch_vs_decode": (">=", 0.05),       # ratio
    "analysis.streaming_x": (">=", 50.0),           # absolute, generous (target 200x on real music)
    "analysis.batch_x": (">=", 25.0),               # absolute, generous (target 100x)
    "memory.streaming_peak_mib": ("<=", 64.0),      # traced numpy/Python allocations
    "cache.hit_rate": (">=", 0.70),                  # share: the plan's 70 %
    "cache.speedup": (">=", 10.0),                   # ratio cold / warm: the plan's 10x
    # Latencies are gated on CPU time (this thread's): wall-clock p99s on a shared
    # 2-core machine measure the other jobs (a search p99 went from 19 to 78 ms at load 3).
    "cache.lookup_cpu_p99_ms": ("<=", 10.0),         # the plan's < 10 ms (ours: 1 ms)
    "validate.pair_cpu_p99_ms": ("<=", 100.0),       # the plan's < 100 ms (ours: 1 ms)
    "search.library_cpu_p99_ms": ("<=", 50.0),       # absolute, generous
    "search.synthetic_cpu_p99_ms": ("<=", 50.0),     # absolute, generous (target 20 ms at 100k)
}


@dataclasses.dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    better: str  # "higher" or "lower"
    kind: str    # "ratio", "absolute" or "share"
    note: str = ""

    def __post_init__(self) -> None:
        # A Python float: measured as numpy scalars, a value made every comparison with it
        # a numpy bool, which the --json writer refused (``bench --compare F --json R``).
        object.__setattr__(self, "value", float(self.value))


@dataclasses.dataclass
class BenchResult:
    """Everything one ``fpcli bench`` run measured (the --json schema)."""

    date: str
    machine: dict[str, Any]
    library: dict[str, Any]
    quick: bool
    figures: dict[str, Figure]

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "date": self.date, "machine": self.machine, "library": self.library,
                "quick": self.quick, "figures": {k: dataclasses.asdict(v) for k, v in self.figures.items()}}


def machine_facts() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "numpy": np.__version__,
            "soundfile": sf.__version__, "libsndfile": sf.__libsndfile_version__, "platform": platform.platform()}


# -- the library ---------------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parent.parent / "sample_audio"
# The label results name the copy by; saved baselines hold it, so --compare knows them.
SAMPLES_LABEL = "generated from sample_audio/"
# An installed package has no sample_audio/: its results said "generated from
# sample_audio/" of clips it had synthesized.
SYNTHESIZED_LABEL = "4 clips synthesized (no sample_audio/ beside this installation)"


def default_library(folder: Path, samples: Path = SAMPLES) -> tuple[Path, str]:
    """A small library in ``folder`` and what it is (the label a result names it by):
    the clips of ``samples`` when present (a source checkout), else the same kinds
    of clips synthesized now."""
    target = folder / "library"
    target.mkdir(parents=True, exist_ok=True)
    clips = [p for p in samples.glob("*") if p.suffix.lower() in AUDIO_EXTENSIONS] if samples.is_dir() else []
    if clips:
        for clip in clips:
            shutil.copy2(clip, target / clip.name)
        return target, SAMPLES_LABEL
    sf.write(target / "drums.flac", synth.drum_pattern(120.0, 10.0, 44100), 44100)
    sf.write(target / "chords.flac", synth.chord_progression(12.0, 22050), 22050)
    sf.write(target / "music.wav", synth.music_like(10.0, 44100, seed=2), 44100)
    sf.write(target / "mono.ogg", synth.music_like(10.0, 44100, seed=3, stereo=False), 44100)
    return target, SYNTHESIZED_LABEL


# -- measurements ---------------------------------------------------------------------------

def time_file(path: str, make: Callable[[AudioReader], Any] | None) -> tuple[float, float]:
    """(audio seconds, CPU seconds of this process) to decode ``path`` into the analyzer
    ``make`` builds. CPU time, not wall time: on a shared machine the wall time of a
    run includes waiting for a core, which would turn other jobs' load into our figure."""
    started = time.process_time()
    reader = AudioReader(path)
    analyzer = make(reader) if make else None
    for block in reader:
        if analyzer is not None:
            analyzer.push(block)
    if analyzer is not None:
        analyzer.finish()
    return reader.frames_read / reader.info.samplerate, time.process_time() - started


ANALYZERS: dict[str, Callable[[AudioReader], Any] | None] = {
    "decode": None,
    "streaming": lambda r: StreamingAnalyzer(r.info.samplerate, r.info.channels),
    "batch": lambda r: BatchAnalyzer(r.info.samplerate, r.info.channels),
}


def analysis_speed(files: list[str], audio: float, repeats: int) -> dict[str, Figure]:
    """Seconds of audio per CPU second for decode-only, streaming and batch (one
    process), and each analyzer's speed as a ratio to decode-only; ``audio``: the
    seconds the files hold.

    Robust on a busy machine: after a warm-up pass (imports, caches), the three kinds
    are timed back to back in every round (interleaved, in a rotating order), and each
    figure is the median over ``repeats`` rounds; ratios are medians of per-round
    ratios, so a slow round slows both sides of its own ratio.
    """
    kinds = list(ANALYZERS)
    for kind in kinds:  # warm-up: scipy is imported by the first analyzer, not timed
        time_file(files[0], ANALYZERS[kind])
    rounds: dict[str, list[float]] = {kind: [] for kind in kinds}
    for r in range(max(repeats, 1)):
        for kind in kinds[r % len(kinds):] + kinds[: r % len(kinds)]:
            rounds[kind].append(sum(time_file(path, ANALYZERS[kind])[1] for path in files))
    cpu = {kind: float(np.median(times)) for kind, times in rounds.items()}
    totals = {kind: audio / seconds if seconds > 0 else 0.0 for kind, seconds in cpu.items()}
    ratio = {kind: float(np.median([d / t if t > 0 else 0.0 for d, t in zip(rounds["decode"], rounds[kind],
                                                                          strict=True)])) for kind in kinds}
    return {
        "analysis.decode_x": Figure(totals["decode"], "x real time (CPU)", "higher", "absolute"),
        "analysis.streaming_x": Figure(totals["streaming"], "x real time (CPU)", "higher", "absolute"),
        "analysis.batch_x": Figure(totals["batch"], "x real time (CPU)", "higher", "absolute"),
        "analysis.streaming_vs_decode": Figure(ratio["streaming"], "ratio", "higher", "ratio",
                                               "streaming speed / decode-only speed, median of interleaved rounds"),
        "analysis.batch_vs_decode": Figure(ratio["batch"], "ratio", "higher", "ratio",
                                           "batch speed / decode-only speed, median of interleaved rounds"),
    }


def streaming_memory(files: list[str]) -> dict[str, Figure]:
    """Peak traced allocations while streaming each file (the largest)."""
    peak = 0
    for path in files:
        tracemalloc.start()
        try:
            time_file(path, ANALYZERS["streaming"])
            peak = max(peak, tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return {"memory.streaming_peak_mib": Figure(peak / 2**20, "MiB", "lower", "absolute",
                                                "peak traced numpy/Python allocations streaming one file")}


WORKLOAD = (
    "analyze the library (cold), analyze it again, validate it (adds batch fingerprints), "
    "search every track (fast), analyze again, search every track (accurate), validate again"
)


def cache_workload(library: Path, open_store: Callable[[], FingerprintStore], jobs: int) -> dict[str, Figure]:
    """Hit rate over WORKLOAD, cold vs warm analyze wall time, and lookup latency."""
    with open_store() as store:
        options = RunOptions(jobs=jobs)
        started = time.perf_counter()
        _whole(run_library([str(library)], store, options))
        cold = time.perf_counter() - started
        started = time.perf_counter()
        _whole(run_library([str(library)], store, options))
        warm = time.perf_counter() - started
        _whole(validate_library([str(library)], store, options))
        good = _queries(store, scan([str(library)]).files)
        if len(good) < MIN_TRACKS:   # every track too short to measure: nothing to search or look up
            raise FpcliError(f"{library}: {len(good)} track{'s' if len(good) != 1 else ''} long enough to measure "
                             f"(the others are shorter than one analysis frame): the benchmark needs at least "
                             f"{MIN_TRACKS}")
        for path in good:
            search(store, path, k=5, strategy="fast")
        _whole(run_library([str(library)], store, options))
        for path in good:
            search(store, path, k=5, strategy="accurate")
        _whole(validate_library([str(library)], store, options))
        stats = store.stats()
        latencies = _lookup_latencies(store, good)
    p50, p95, p99 = np.percentile(latencies[:, 0], [50, 95, 99])
    return {
        "cache.hit_rate": Figure(stats["hit_rate"] or 0.0, "share", "higher", "share", WORKLOAD),
        "cache.lookups": Figure(float(stats["lookups"]), "lookups", "higher", "absolute"),
        "cache.cold_s": Figure(cold, "s", "lower", "absolute", "analyze of the library, empty store"),
        "cache.warm_s": Figure(warm, "s", "lower", "absolute", "the same analyze, every track in the store"),
        "cache.speedup": Figure(cold / warm if warm > 0 else 0.0, "x", "higher", "ratio", "cold / warm"),
        "cache.lookup_p50_ms": Figure(p50, "ms", "lower", "absolute"),
        "cache.lookup_p95_ms": Figure(p95, "ms", "lower", "absolute"),
        "cache.lookup_p99_ms": Figure(p99, "ms", "lower", "absolute"),
        "cache.lookup_cpu_p99_ms": Figure(float(np.percentile(latencies[:, 1], 99)), "CPU ms", "lower", "absolute"),
    }


Run = TypeVar("Run", RunSummary, LibraryValidation)


def _whole(run: Run) -> Run:
    """A library run or validation that went to its end. Both stop at a Ctrl-C (or
    SIGTERM) and return what they finished, marked ``interrupted``: the benchmark
    timed half a run (a cold analyze of 0.1 s, a "speedup" of 0.2, MISS), went on,
    and wrote the figures as a result, exit 0."""
    if run.interrupted:
        raise KeyboardInterrupt
    return run


def timed(call: Callable[[], Any]) -> tuple[float, float]:
    """(wall ms, this thread's CPU ms) of one call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    call()
    return (time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3


def _percentiles(times: list[tuple[float, float]], name: str, note: str = "") -> dict[str, Figure]:
    """p50 and p99 wall (for reading) and p99 CPU (for the gate) of ``times``."""
    values = np.array(times or [(0.0, 0.0)])
    p50, p99 = np.percentile(values[:, 0], [50, 99])
    return {f"{name}_p50_ms": Figure(float(p50), "ms", "lower", "absolute", note),
            f"{name}_p99_ms": Figure(float(p99), "ms", "lower", "absolute"),
            f"{name}_cpu_p99_ms": Figure(float(np.percentile(values[:, 1], 99)), "CPU ms", "lower", "absolute")}


def _lookup_latencies(store: FingerprintStore, paths: list[str], rounds: int = 200) -> np.ndarray:
    """(n, 2) wall and CPU milliseconds of cached look-ups."""
    need = Need(AnalysisParams().key())
    order = [paths[i % len(paths)] for i in range(max(rounds, len(paths)))]
    return np.array([timed(functools.partial(store.lookup, path, need)) for path in order])


def validation_speed(open_store: Callable[[], FingerprintStore]) -> dict[str, Figure]:
    with open_store() as store:
        records = [r for r in store.records() if r.batch is not None]
    times = [timed(functools.partial(validate_record, record))
             for _ in range(max(1, 2000 // max(len(records), 1))) for record in records]
    return _percentiles(times, "validate.pair")


def search_speed(open_store: Callable[[], FingerprintStore], library: Path,
                 synthetic_rows: int) -> dict[str, Figure]:
    """Query latency on the library's store (warm index) and over synthetic rows."""
    with open_store() as store:
        paths = _queries(store, scan([str(library)]).files)
        # The first query loads (here: builds) the index; it is reported on its own so
        # that the gated p99 is the warm query's, not one index build among 100 queries.
        first = [timed(functools.partial(search, store, paths[0], k=10, strategy="fast"))] if paths else []
        times = [timed(functools.partial(search, store, path, k=10, strategy="fast"))
                 for _ in range(max(1, 100 // max(len(paths), 1))) for path in paths]
        centres = np.array([[np.nan if r.streaming.values[d] is None else r.streaming.values[d]
                             for d in STREAMING_DIMS] for r in store.records()], dtype=np.float32)
    index = synthetic_index(synthetic_rows, centres, np.random.default_rng(0))
    weights = dim_weights(index.dims, dict.fromkeys(GROUPS, 1.0), index.low, index.high)
    # Ranked as ``fpcli search`` ranks: the nearest by mutual proximity.
    top_k(index, index.values[0], 10, weights, exclude_content=index.contents[0], mutual=True)  # warm the index
    synthetic = [timed(functools.partial(top_k, index, index.values[i % len(index)], 10, weights,
                                         exclude_content=index.contents[i % len(index)], mutual=True))
                 for i in range(100)]
    first_ms = first[0][0] if first else 0.0
    return {"search.library_first_ms": Figure(first_ms, "ms", "lower", "absolute",
                                              "first query: builds the index from the store"),
            **_percentiles(times, "search.library", "fpcli search, store of the library, warm index"),
            **_percentiles(synthetic, "search.synthetic",
                           f"{synthetic_rows:,} synthetic streaming fingerprints, warm index")}


def _queries(store: FingerprintStore, paths: list[str]) -> list[str]:
    """The tracks of ``paths`` a search can take as its query: stored, with a streaming
    fingerprint (a track shorter than one analysis frame measures nothing, and its
    search, a failed query, stopped the whole benchmark)."""
    key = AnalysisParams().key()
    return [path for path in paths
            if (record := store.record_for_path(path, key)) is not None and row_of(record, "streaming") is not None]


def synthetic_index(n: int, centres: np.ndarray, rng: np.random.Generator) -> Index:
    """n streaming fingerprints drawn around ``centres`` (15 % jitter, 2 % nulls)."""
    key = AnalysisParams().key()
    if len(centres) == 0:
        centres = np.ones((1, len(STREAMING_DIMS)), dtype=np.float32)
    with warnings.catch_warnings():  # a dim null on every track has no mean: use 1
        warnings.simplefilter("ignore", RuntimeWarning)
        column_means = np.nan_to_num(np.nanmean(centres, axis=0), nan=1.0)
    centres = np.where(np.isnan(centres), column_means, centres)
    base = centres[rng.integers(len(centres), size=n)]
    values = (base * rng.normal(1.0, 0.15, size=base.shape)).astype(np.float32)
    values[rng.random(values.shape) < 0.02] = np.nan
    index = Index("streaming", key, values, np.array([f"k{i}" for i in range(n)]),
                  np.array([f"/music/{i:07d}.flac" for i in range(n)]), np.array([f"{i:032x}" for i in range(n)]),
                  np.zeros(0), np.zeros(0))
    index.fit()
    return index


def run(library: Path | None = None, *, quick: bool = False, jobs: int = 2, redis_url: str | None = None,
        on_step: Callable[[str], None] = lambda step: None) -> BenchResult:
    """Run every measurement; ``on_step`` is told what runs next (for a progress line).

    The store is temporary: a diskcache directory, or with ``redis_url`` a private
    namespace on that Redis server, deleted at the end.
    """
    with tempfile.TemporaryDirectory(prefix="fpcli-bench-") as folder, one_blas_thread():
        work = Path(folder)
        open_store = _temporary_store(work, redis_url)
        source, label = (library, str(library.resolve())) if library else default_library(work)
        files = scan([str(source)]).files
        seconds = {f: _seconds_decoded(f) for f in files}
        decodable = [f for f in files if seconds[f] > 0]
        audio = sum(seconds[f] for f in decodable)
        if len(decodable) < MIN_TRACKS:
            found = f"{len(decodable)} decodable audio file{'s' if len(decodable) != 1 else ''} of {len(files)}"
            raise FpcliError(f"{source}: {found}: the benchmark needs at least {MIN_TRACKS} (its searches look "
                             "for another track)")
        figures: dict[str, Figure] = {}
        on_step("analysis speed")
        figures.update(analysis_speed(decodable, audio, repeats=3 if quick else 5))
        on_step("memory")
        figures.update(streaming_memory(decodable[:3] if quick else decodable))
        on_step("cache workload")
        try:
            figures.update(cache_workload(source, open_store, jobs))
            on_step("validation")
            figures.update(validation_speed(open_store))
            on_step("search")
            figures.update(search_speed(open_store, source, 10_000 if quick else 100_000))
        finally:
            if redis_url:
                from fpcli.store.redis_backend import RedisBackend

                with open_store() as store:
                    store.clear()
                    if isinstance(store.backend, RedisBackend):
                        store.backend.delete_namespace()
                    shutil.rmtree(store.backend.index_dir, ignore_errors=True)
    return BenchResult(date=datetime.datetime.now().isoformat(timespec="seconds"), machine=machine_facts(),
                       # Absolute: --library lib and --library /abs/lib are one library to --compare.
                       library={"path": label,
                                "files": len(files), "decodable": len(decodable), "audio_s": audio,
                                "store": "redis (temporary namespace)" if redis_url else "diskcache (temporary)"},
                       quick=quick, figures=figures)


def _temporary_store(work: Path, redis_url: str | None) -> Callable[[], FingerprintStore]:
    if not redis_url:
        return lambda: FingerprintStore.open(work / "store")
    from fpcli.store.redis_backend import RedisBackend

    namespace = f"fpcli-bench-{os.getpid()}-{os.urandom(4).hex()}"
    return lambda: FingerprintStore(RedisBackend(redis_url, namespace=namespace), StoreSpec(redis_url))


def _seconds_decoded(path: str) -> float:
    """The seconds of audio ``path`` decodes to, read to its end; 0 when it fails: a
    file whose header opens but whose audio does not (a FLAC cut after 3 KB), or whose
    samples turn out not to be audio later on (float samples of 1e7 after 8 s), stopped
    the whole benchmark with its decoding error when it was timed. The run's one
    untimed decode-only pass (its seconds are the audio the speeds divide)."""
    try:
        seconds, _ = time_file(path, None)
    except FpcliError:
        return 0.0
    return seconds


# -- checks and comparisons ------------------------------------------------------------------

RULE_FORM = "'>= NUMBER' or '<= NUMBER'"
# Every figure a run reports (quick or full: the same names; tests hold a run to it), so
# that a threshold naming none is refused before the run, not found a miss after it.
FIGURE_NAMES = frozenset({
    "analysis.decode_x", "analysis.streaming_x", "analysis.batch_x", "analysis.streaming_vs_decode",
    "analysis.batch_vs_decode", "memory.streaming_peak_mib",
    "cache.hit_rate", "cache.lookups", "cache.cold_s", "cache.warm_s", "cache.speedup", "cache.lookup_p50_ms",
    "cache.lookup_p95_ms", "cache.lookup_p99_ms", "cache.lookup_cpu_p99_ms", "search.library_first_ms",
    *(f"{name}_{stat}" for name in ("validate.pair", "search.library", "search.synthetic")
      for stat in ("p50_ms", "p99_ms", "cpu_p99_ms")),
})


class Thresholds(dict[str, tuple[str, float]]):
    """Thresholds by figure name, and the names a file or pyproject.toml gave
    (``given``; the others are DEFAULT_THRESHOLDS)."""

    def __init__(self, *args: Any, given: set[str] | None = None) -> None:
        super().__init__(*args)
        self.given: set[str] = set() if given is None else given


def load_thresholds(path: Path | None = None) -> Thresholds:
    """Defaults, overridden by [tool.fpcli.bench.thresholds] of ./pyproject.toml or by
    ``path`` (TOML with a [thresholds] table, or JSON). Values: ">= 0.7" or "<= 10".

    Everything is validated here, so that a bad file fails before the benchmark runs:
    ParameterError names the file and what is wrong; FpcliError if it cannot be read.
    """
    thresholds = Thresholds(DEFAULT_THRESHOLDS)
    if path is not None:
        source = _source_name(path)
        text = read_text(path)
        json_text = path.suffix == ".json" or (str(path) == "-" and text.lstrip().startswith("{"))
        data = _parse(text, source, "JSON" if json_text else "TOML")
        table = data.get("thresholds", data) if isinstance(data, dict) else data
    elif Path("pyproject.toml").exists():
        source = "pyproject.toml"
        data = _parse(read_text(source), source, "TOML")
        table = _nested(data, ("tool", "fpcli", "bench", "thresholds"), source)
    else:
        return thresholds
    if not isinstance(table, dict):
        raise ParameterError(f"{source}: thresholds must be an object of figure -> rule ({RULE_FORM}), "
                             f"not {_kind(table)}")
    for name, rule in table.items():
        thresholds[name] = _parse_rule(name, rule, source)
        thresholds.given.add(name)
        if name not in FIGURE_NAMES:
            close = difflib.get_close_matches(name, sorted(FIGURE_NAMES), n=1)
            raise ParameterError(f"{source}: threshold {name}: no such figure"
                                 + (f" (did you mean {close[0]}?)" if close else
                                    f"; the figures: {', '.join(sorted(FIGURE_NAMES))}"))
    return thresholds


def _source_name(path: Path) -> str:
    return "stdin" if str(path) == "-" else str(path)


def _parse(text: str, source: str, syntax: str) -> Any:
    """``text`` parsed as JSON or TOML. RecursionError too: ``[[[[...`` nested a
    hundred thousand deep is what a hostile file looks like to both parsers."""
    try:
        return json.loads(text) if syntax == "JSON" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError
        raise ParameterError(f"{source}: not {syntax} ({exc})") from None


def _nested(data: Any, keys: tuple[str, ...], source: str) -> Any:
    """``data[k1][k2]...``, {} where a key is missing; an error where a level is not a table."""
    for depth, key in enumerate(keys):
        if not isinstance(data, dict):
            raise ParameterError(f"{source}: {'.'.join(keys[:depth])} must be a table, not {_kind(data)}")
        data = data.get(key, {})
    return data


def _kind(value: Any) -> str:
    """How a parsed JSON / TOML value is named in an error (a JSON file's "list" is an array)."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)  # TOML's dates and times


def _parse_rule(name: str, rule: Any, source: str = "") -> tuple[str, float]:
    """(">=" or "<=", a finite number) from ">= 0.7". NaN would fail every check and
    infinity pass or fail every one: neither is a threshold."""
    prefix = f"{source}: " if source else ""
    if isinstance(rule, dict):  # TOML reads an unquoted cache.hit_rate = ... as a table "cache"
        raise ParameterError(f"{prefix}threshold {name} is a table, not a rule: quote dotted figure names "
                             f"(\"cache.hit_rate\" = \">= 0.7\")")
    text = rule.strip() if isinstance(rule, str) else ""
    for op in (">=", "<="):
        if text.startswith(op):
            try:
                limit = float(text[len(op):])
            except ValueError:
                break
            if math.isfinite(limit):
                return op, limit
    raise ParameterError(f"{prefix}threshold {name} = {rule!r}: write it as {RULE_FORM} (a finite number)")


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    op: str
    threshold: float
    passed: bool


# Figures whose default thresholds are set for the default library alone: a speed over
# the decode-only speed of the same files depends on how cheaply they decode. On a
# healthy build a --library of 16-bit WAV (decoded at 7,000-11,000x real time) read
# 0.04 against the default library's 0.17, and missed the default 0.05 (exit 4).
DEFAULT_LIBRARY_ONLY = ("analysis.streaming_vs_decode", "analysis.batch_vs_decode")
DEFAULT_LIBRARY_LABELS = (SAMPLES_LABEL, SYNTHESIZED_LABEL)


def check(result: BenchResult, thresholds: dict[str, tuple[str, float]]) -> list[Check]:
    """Each threshold against its figure; a threshold without a figure fails. The
    default thresholds of DEFAULT_LIBRARY_ONLY apply to the default library only (a
    thresholds file that sets them applies them to any library; --compare with an
    earlier result of the same library gates their regression). ``thresholds``: a
    plain dict is all given; ``load_thresholds`` says which were."""
    own_library = result.library.get("path") not in DEFAULT_LIBRARY_LABELS
    given = thresholds.given if isinstance(thresholds, Thresholds) else set(thresholds)
    checks = []
    for name, (op, limit) in thresholds.items():
        if own_library and name in DEFAULT_LIBRARY_ONLY and name not in given:
            continue
        figure = result.figures.get(name)
        value = figure.value if figure else None
        passed = value is not None and (value >= limit if op == ">=" else value <= limit)
        checks.append(Check(name, value, op, limit, passed))
    return checks


@dataclasses.dataclass(frozen=True)
class Change:
    name: str
    before: float
    after: float
    change: float | None  # relative, signed ((after - before) / |before|); None: undefined (before is 0)
    regression: bool      # worse by more than the tolerance
    gated: bool           # a regression of it fails --check (GATED_REGRESSIONS)


def load_earlier(path: Path) -> dict[str, Any]:
    """An earlier ``--json`` result from a file or stdin (``-``), validated (see
    ``check_earlier``) so that a bad file fails before the benchmark runs."""
    source = _source_name(path)
    data = _parse(read_text(path), source, "JSON")
    check_earlier(data, source)
    return data


def check_earlier(data: Any, source: str = "the earlier result") -> None:
    """ParameterError unless ``data`` is a bench result: the schema, and figures an object
    of name -> {"value": number, ...}. Figures this version does not measure are
    allowed (an older or newer fpcli wrote the file); ``compare`` skips them."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else None
        raise ParameterError(f"{source}: not a bench result (schema {schema!r}, expected {SCHEMA})")
    figures = data.get("figures")
    if not isinstance(figures, dict):
        raise ParameterError(f"{source}: figures must be an object of figure -> {{\"value\": number, ...}}, "
                             f"not {_kind(figures)}")
    for name, figure in figures.items():
        if not isinstance(figure, dict) or _number(figure.get("value")) is None:
            raise ParameterError(f"{source}: figure {name} must be an object with a number \"value\"")


def _number(value: Any) -> float | None:
    """``value`` as a float, None if it is not a JSON number. JSON's true is not 1, and an
    integer of 400 digits (exact in Python's json) has no float: both are errors."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    # NaN or Infinity (Python's json reads them) were compared and written back: invalid JSON.
    return number if math.isfinite(number) else None


def relative_change(before: float, after: float) -> float | None:
    """(after - before) / |before|; None where that is undefined: a change from 0 (or
    to or from NaN or infinity) has no relative size, and "+0 %" would claim none."""
    if before == 0 or not (math.isfinite(before) and math.isfinite(after)):
        return None
    return (after - before) / abs(before)


def baseline_differences(result: BenchResult, earlier: dict[str, Any]) -> list[str]:
    """How the earlier result's run differs from this one, in words ([] when it does
    not): its mode, library and machine. A baseline of another library, mode or machine
    was compared without a word, as if its absolute figures could be. A fact the
    earlier result does not hold (an older one) is unknown, not different."""
    differences = []
    if isinstance(earlier.get("quick"), bool) and earlier["quick"] != result.quick:
        differences.append(f"in {'quick' if earlier['quick'] else 'full'} mode (this run: "
                           f"{'quick' if result.quick else 'full'})")
    library = _known(_mapping(earlier.get("library")), ("path", "files", "audio_s", "store"))
    if any(value != result.library.get(key) for key, value in library.items()):
        differences.append("on another library (" + ", ".join(f"{key} {value}" for key, value in library.items())
                           + "; this run: " + ", ".join(f"{key} {result.library.get(key)}" for key in library) + ")")
    machine = _known(_mapping(earlier.get("machine")), ("cores", "cpu"))
    if any(value != result.machine.get(key) for key, value in machine.items()):
        differences.append("on another machine (" + ", ".join(f"{key} {value}" for key, value in machine.items())
                           + "; this run: " + ", ".join(f"{key} {result.machine.get(key)}" for key in machine) + ")")
    return differences


def _known(facts: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The facts among ``keys`` that ``facts`` holds (not None)."""
    return {key: facts[key] for key in keys if facts.get(key) is not None}


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is an object of the JSON, else an empty one (an older result)."""
    return value if isinstance(value, dict) else {}


def compare(result: BenchResult, earlier: dict[str, Any], tolerance: float = COMPARE_TOLERANCE) -> list[Change]:
    """Per figure present in both: the relative change, flagged when it is a regression
    (an undefined change is not one)."""
    check_earlier(earlier)
    changes = []
    for name, figure in result.figures.items():
        old = earlier["figures"].get(name)
        if old is None:
            continue
        before, after = _number(old["value"]) or 0.0, figure.value  # a number: check_earlier said so
        change = relative_change(before, after)
        worse = 0.0 if change is None else -change if figure.better == "higher" else change
        changes.append(Change(name, before, after, change, bool(worse > tolerance), name in GATED_REGRESSIONS))
    return changes
