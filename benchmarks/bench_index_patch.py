"""A saved search index at catalogue scale: bringing it up to date after a few new
records, and loading it in a new process (issue: a million tracks).

    python benchmarks/bench_index_patch.py [--rows 1000000] [--changes 1] [--rounds 3] [--out FILE]

Builds a synthetic streaming index of ``--rows`` rows (the timbre of one real record,
perturbed; random named values) in a fresh store, saves it, then imports ``--changes``
new records into the store, so that the saved index is that many records behind.
Each round, on a fresh copy of the saved index, in a new process:

* ``patch``: what ``current_index`` does now: the new rows are written into the saved
  files in place (``fpcli/search/patch.py``);
* ``full refresh``: the refresh that copies every array and saves the whole index again
  (``refresh`` + ``save_index``), what every small change cost before;

and, on the patched index: ``load + query``: a new process maps the saved index and
answers one query with the timbre term and a folder filter (``top_k``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _report import emit, installed_environment  # benchmarks/_report.py (run as a script from this folder)

SETUP = """
import sys, json
from pathlib import Path
import numpy as np
sys.path.insert(0, {bench!r})
import make_records
from fpcli.search.index import KINDS, index_of
from fpcli.search.saved import save_index
from fpcli.search.timbre import pack
from fpcli.store import FingerprintStore, import_store
from fpcli.store.schema import record_to_json

rows, changes, work = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
template = make_records.template_record()
store = FingerprintStore.open(work / "store", size_limit_mb=2000)
generation, epoch = store.generation(), store.index_epoch()
with open(work / "new.jsonl", "w") as out:
    out.write(json.dumps({{"type": "fpcli-store-export", "version": 2}}) + "\\n")
    for record in make_records.records(changes, seed=9, template=template):
        if record.complete:
            out.write(json.dumps({{"type": "record", "data": record_to_json(record)}}) + "\\n")
import_store(store, work / "new.jsonl")
rng = np.random.default_rng(0)
params_key = template.params_key
values = (rng.random((rows, len(KINDS["streaming"])), dtype=np.float32) * 100).astype(np.float32)
keys = np.array([f"rec:{{i:032x}}:{{params_key}}" for i in range(rows)])
paths = np.array([f"/music/artist {{i % 1000}}/album {{i % 37}}/track {{i:07d}}.flac" for i in range(rows)])
contents = np.array([f"{{i:032x}}" for i in range(rows)])
timbre = np.tile(pack(template.timbre), (rows, 1)).astype(np.float32)
timbre[:, :13] *= 1 + 0.05 * rng.standard_normal((rows, 13), dtype=np.float32)
index = index_of("streaming", params_key, values, keys, paths, contents, timbre, generation, epoch)
assert save_index(index, store.backend.index_dir)
print(params_key)
"""

UPDATE = """
import sys, time
from fpcli.search import current_index, load_index, refresh, save_index
from fpcli.store import FingerprintStore
store = FingerprintStore.open(sys.argv[2])
started = time.perf_counter()
if sys.argv[1] == "patch":
    index, info = current_index(store, "streaming", sys.argv[3])
    assert info["index"] == "patched", info
else:
    folder = store.backend.index_dir
    index, _, action = refresh(load_index(folder, "streaming", sys.argv[3]), store)
    assert action == "refreshed" and save_index(index, folder)
print(time.perf_counter() - started)
"""

QUERY = """
import sys, time
started = time.perf_counter()
from pathlib import Path
import numpy as np
from fpcli.fingerprint import GROUPS
from fpcli.search import dim_weights, load_index, top_k
imported = time.perf_counter()
index = load_index(Path(sys.argv[1]), "streaming", sys.argv[2])
weights = dim_weights(index.dims, dict.fromkeys(GROUPS, 1.0), index.low, index.high)
row = len(index) // 2
hits = top_k(index, np.array(index.values[row]), 10, weights, query_timbre=np.array(index.timbre_rows()[row]),
             timbre_weight=2.0, under="/music/artist 7/")
assert len(hits) == 10
print(time.perf_counter() - imported)
"""


def python(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=installed_environment(), check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return done.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {"patch": [], "full refresh": [], "load + query (patched index)": []}
    with tempfile.TemporaryDirectory(prefix="fpcli-index-patch-") as folder:
        work = Path(folder)
        base = work / "base"
        base.mkdir()
        params_key = python(SETUP.format(bench=str(Path(__file__).resolve().parent)), str(args.rows),
                            str(args.changes), str(base))
        for _ in range(args.rounds):
            for mode in ("patch", "full refresh"):
                copy = work / "copy"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(base, copy)
                times[mode].append(float(python(UPDATE, "patch" if mode == "patch" else "full", str(copy / "store"),
                                                params_key)))
                if mode == "patch":
                    times["load + query (patched index)"].append(
                        float(python(QUERY, str(copy / "store" / "index"), params_key)))
    rows = [f"| {name} | {statistics.median(values):.3f} s | {', '.join(f'{v:.3f}' for v in values)} |"
            for name, values in times.items()]
    ratio = statistics.median(times["full refresh"]) / statistics.median(times["patch"])
    report = "\n".join([
        f"# A saved index brought up to date in place ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_index_patch.py --rows {args.rows} --changes {args.changes} "
        f"--rounds {args.rounds}`", "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.", "",
        f"A synthetic streaming index of {args.rows:,} rows, saved; {args.changes} new record(s) in the store "
        "since. Each figure is one new process on a fresh copy of the saved index (median, then every round).", "",
        "| step | median | rounds |", "|---|---|---|", *rows, "",
        f"The patch is {ratio:,.0f}x faster than the full refresh in the same rounds.", "",
    ])
    return emit(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
