"""Long fuzz run of `awqfmt check`: random mutations of real checkpoints (bytes, header JSON, configs, index) for
a fixed time, in several processes. Same mutators and contract as tests/test_fuzz.py (see tests/fuzzlib.py):
check terminates, returns 0 or 1, never raises (report and JSON included), and reports an error on every file
the reference safetensors library refuses.

    .venv/bin/python benchmarks/fuzz/run_fuzz.py --minutes 15 --jobs 2 [--seed 1] [--crashes DIR]

Each crash (exception, hang, contract violation) is kept as a checkpoint directory plus its traceback under
--crashes, to reproduce with `awqfmt check DIR`. Prints a JSON summary; --markdown prints a RESULTS.md row.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import REAL_CHECKPOINTS  # noqa: E402
from fuzzlib import RandomChooser, fuzz_one, make_seeds  # noqa: E402


def worker(args) -> dict:
    index, seed, seconds, crash_dir = args
    rng = random.Random(seed * 1000 + index)
    tmp = Path(tempfile.mkdtemp(prefix=f"awqfmt-fuzz-{index}-"))
    try:
        seeds = make_seeds(REAL_CHECKPOINTS, tmp / "seeds")
        work = tmp / "work"
        stats = Counter()
        crashes = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            state = rng.getstate()
            try:
                o = fuzz_one(seeds, work, RandomChooser(rng))
                stats["inputs"] += 1
                stats[f"kind.{o.kind}"] += 1
                stats[f"exit.{o.status}"] += 1
                stats["library_rejects"] += bool(o.library_rejects)
            except Exception as exc:  # noqa: BLE001 - every escape is a crash to record
                stats["inputs"] += 1
                stats["crashes"] += 1
                where = Path(crash_dir) / f"crash-{index}-{stats['inputs']}"
                if work.exists():
                    shutil.copytree(work, where)
                    (where / "TRACEBACK.txt").write_text(traceback.format_exc())
                    (where / "RNG_STATE.json").write_text(json.dumps(state, default=list))
                crashes.append({"type": type(exc).__name__, "message": str(exc)[:300], "dir": str(where)})
        return {"stats": dict(stats), "crashes": crashes}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--crashes", default=str(Path(tempfile.gettempdir()) / "awqfmt-fuzz-crashes"))
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    Path(a.crashes).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with mp.get_context("fork").Pool(a.jobs) as pool:
        results = pool.map(worker, [(i, a.seed, a.minutes * 60, a.crashes) for i in range(a.jobs)])
    total = Counter()
    crashes = []
    for r in results:
        total.update(r["stats"])
        crashes += r["crashes"]
    summary = {"minutes": round((time.time() - t0) / 60, 2), "jobs": a.jobs, "seed": a.seed, "inputs": total["inputs"],
               "crashes": total["crashes"], "library_rejected_inputs": total["library_rejects"],
               "by_kind": {k[5:]: v for k, v in sorted(total.items()) if k.startswith("kind.")},
               "exit_status": {k[5:]: v for k, v in sorted(total.items()) if k.startswith("exit.")},
               "crash_list": crashes[:50], "python": platform.python_version(), "machine": platform.machine(),
               "cpus": os.cpu_count()}
    print(json.dumps(summary, indent=2))
    if a.markdown:
        print(f"| {time.strftime('%Y-%m-%d')} | {summary['minutes']} | {a.jobs} | {a.seed} | {summary['inputs']} | "
              f"{summary['library_rejected_inputs']} | {summary['crashes']} |")
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
