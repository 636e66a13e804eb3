"""Time `awqfmt check` on a Llama-2-70B-shaped AWQ checkpoint and on a 100k-tensor MoE-shaped one.

    .venv/bin/python benchmarks/scale/run_check_bench.py --label after          # both checkpoints, 5 runs each
    .venv/bin/python benchmarks/scale/run_check_bench.py --only moe100k --runs 3 --label before
    .venv/bin/python benchmarks/scale/run_check_bench.py --clean                 # delete the generated files

The checkpoints are generated (benchmarks/scale/make_checkpoint.py, sparse files) under --dir if missing.
Each measurement is the median of --runs runs with a warm page cache (one untimed warm-up run first):

- library: `awqfmt.check.check_path(path)` in one fresh Python process per checkpoint (imports excluded);
- cli: `awqfmt check PATH --json` end to end (a new process per run: interpreter start, imports, check, JSON);
- peak RSS of each (ru_maxrss of the process; it counts the mapped file pages the check touched, which the
  kernel can drop at any time), and the library's peak heap (tracemalloc, which numpy reports to);
- baselines on the same files in the same run: one memory-mapped pass over every scales and qzeros tensor
  with bit tests (fp16 non-finite = exponent bits all ones; qzeros words compared to all ones), and the same
  tensors copied out with safetensors' `get_tensor` followed by `np.isfinite`.

Children run with cwd benchmarks/scale, so PYTHONPATH=/some/copy of the package (e.g. `git archive` of an older
commit) benchmarks that copy instead of the editable install. Results are merged into results.json under --label, and the table in RESULTS.md is regenerated from it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/machine.py
from machine import cpu_model  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PY = sys.executable
CLI = str(Path(PY).with_name("awqfmt"))
CHECKPOINTS = ("llama70b", "moe100k")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# Runs in a child process so that its peak RSS and imports are its own.
LIBRARY_CHILD = r"""
import json, resource, sys, time
from awqfmt.check import check_path
path, runs, warm = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
if warm:
    r = check_path(path)  # warm-up: page cache and lazy imports
times, cpu = [], []
for _ in range(runs):
    c0, t0 = time.process_time(), time.perf_counter(); r = check_path(path)
    times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
import tracemalloc  # numpy reports its buffers to tracemalloc: this is the heap, without the mapped file pages
tracemalloc.start(); check_path(path); heap = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
import awqfmt
print(json.dumps({"times": times, "cpu_times": cpu, "peak_heap_mib": heap / 2**20, "source": awqfmt.__file__, "errors": r.errors, "warnings": r.warnings, "modules": r.modules, "tensors": r.tensors,
                  "layout": r.layout["detected"], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

MMAP_CHILD = r"""
import json, resource, sys, time
import numpy as np
from awqfmt.checkpoint import open_checkpoint
path, runs = sys.argv[1], int(sys.argv[2])
ck = open_checkpoint(path)
names = [n for n in ck.locations if n.endswith((".scales", ".qzeros"))]
where = [(ck.files[ck.locations[n]].path, ck.files[ck.locations[n]].data_offset + ck.entry(n).begin, ck.entry(n)) for n in names]
ck.close()

def scan():
    maps, bad, nbytes = {}, 0, 0
    for p, off, e in where:
        mm = maps.get(p)
        if mm is None:
            mm = maps[p] = np.memmap(p, dtype=np.uint8, mode="r")
        raw = mm[off: off + e.nbytes]
        nbytes += e.nbytes
        if e.dtype == "F16":
            bad += int(np.count_nonzero((raw.view(np.uint16) & np.uint16(0x7C00)) == np.uint16(0x7C00)))
        else:
            bad += int(np.count_nonzero(raw.view(np.uint32) == np.uint32(0xFFFFFFFF)))
    return bad, nbytes

scan()
times = []
for _ in range(runs):
    t0 = time.perf_counter(); bad, nbytes = scan(); times.append(time.perf_counter() - t0)
print(json.dumps({"times": times, "tensors": len(where), "bytes": nbytes, "hits": bad,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

GET_TENSOR_CHILD = r"""
import json, resource, sys, time
import numpy as np
from safetensors import safe_open
from awqfmt.checkpoint import open_checkpoint
path, runs = sys.argv[1], int(sys.argv[2])
ck = open_checkpoint(path)
by_file = {}
for n in ck.locations:
    if n.endswith((".scales", ".qzeros")):
        by_file.setdefault(str(ck.files[ck.locations[n]].path), []).append(n)
ck.close()

def scan():
    bad, nbytes = 0, 0
    for p, names in by_file.items():
        with safe_open(p, framework="numpy") as f:
            for n in names:
                a = f.get_tensor(n)
                nbytes += a.nbytes
                if a.dtype == np.float16:
                    bad += int(a.size - np.count_nonzero(np.isfinite(a)))
    return bad, nbytes

scan()
times = []
for _ in range(runs):
    t0 = time.perf_counter(); bad, nbytes = scan(); times.append(time.perf_counter() - t0)
print(json.dumps({"times": times, "bytes": nbytes, "hits": bad, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def run_child(code: str, path: Path, runs: int, warm: bool = True) -> dict:
    proc = subprocess.run([PY, "-c", code, str(path), str(runs), "1" if warm else "0"], capture_output=True, text=True, cwd=HERE)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["median_s"] = statistics.median(out["times"])
    if "cpu_times" in out:
        out["median_cpu_s"] = statistics.median(out["cpu_times"])
    return out


def run_cli(path: Path, runs: int) -> dict:
    """Wall time and peak RSS of `awqfmt check PATH --json`, one new process per run (plus one warm-up)."""
    times, cpu, rss, status = [], [], [], None
    for i in range(runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.Popen([CLI, "check", str(path), "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=HERE)
        _, wstatus, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        status = os.waitstatus_to_exitcode(wstatus)
        proc.returncode = status
        if i:  # run 0 warms the page cache
            times.append(elapsed)
            cpu.append(usage.ru_utime + usage.ru_stime)
            rss.append(usage.ru_maxrss / 1024)
    return {"times": times, "cpu_times": cpu, "median_s": statistics.median(times), "median_cpu_s": statistics.median(cpu),
            "exit_status": status, "peak_rss_mib": max(rss)}


def ensure_checkpoint(name: str, directory: Path) -> tuple[Path, dict | None]:
    path = directory / name
    if (path / "model.safetensors.index.json").exists():
        return path, None
    sys.path.insert(0, str(HERE))
    import make_checkpoint  # noqa: E402

    summary = make_checkpoint.make_llama70b(path) if name == "llama70b" else make_checkpoint.make_moe(path)
    return path, summary


def warm_page_cache(path: Path) -> dict:
    """Read every data extent of every shard once (SEEK_DATA / SEEK_HOLE: the holes are skipped, so the real
    ~9 GB of a 37 GB sparse checkpoint end up in the page cache without evicting it with zero pages)."""
    t0, total = time.perf_counter(), 0
    for shard in sorted(path.glob("*.safetensors")):
        fd = os.open(shard, os.O_RDONLY)
        try:
            size, off = os.fstat(fd).st_size, 0
            while off < size:
                try:
                    start = os.lseek(fd, off, os.SEEK_DATA)
                except OSError:  # no data after off
                    break
                end = os.lseek(fd, start, os.SEEK_HOLE)
                while start < end:
                    n = len(os.pread(fd, min(8 << 20, end - start), start))
                    if n == 0:
                        break
                    start += n
                    total += n
                off = end
        finally:
            os.close(fd)
    return {"bytes": total, "seconds": round(time.perf_counter() - t0, 2)}


def checkpoint_facts(path: Path) -> dict:
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    allocated = sum(os.stat(path / s).st_blocks * 512 for s in shards)
    return {"tensors": len(index["weight_map"]), "shards": len(shards), "total_size_gb": round(index["metadata"]["total_size"] / 1e9, 2),
            "allocated_gb": round(allocated / 1e9, 2)}


def machine() -> dict:
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "nproc": os.cpu_count(), "cpu": cpu_model(),
            "python": platform.python_version(), "numpy": __import__("numpy").__version__, "commit": git_commit(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def bench(name: str, directory: Path, runs: int, baselines: bool, warm: bool = True, cli: bool = True) -> dict:
    path, generated = ensure_checkpoint(name, directory)
    res: dict = {"checkpoint": checkpoint_facts(path), "machine": machine()}
    if generated:
        res["generated"] = generated
    res["warm_page_cache"] = warm_page_cache(path)
    print(f"[{name}] {res['checkpoint']}, warmed {res['warm_page_cache']}", flush=True)
    res["library"] = run_child(LIBRARY_CHILD, path, runs, warm)
    res["library"]["warm_up_run"] = warm
    print(f"[{name}] library check_path: median {res['library']['median_s']:.3f} s, errors {res['library']['errors']}", flush=True)
    if cli:
        res["cli"] = run_cli(path, runs)
        print(f"[{name}] cli: median {res['cli']['median_s']:.3f} s, exit {res['cli']['exit_status']}", flush=True)
    if baselines:
        res["baseline_mmap_bit_test"] = run_child(MMAP_CHILD, path, runs)
        res["baseline_get_tensor_isfinite"] = run_child(GET_TENSOR_CHILD, path, runs)
        for key in ("baseline_mmap_bit_test", "baseline_get_tensor_isfinite"):
            print(f"[{name}] {key}: median {res[key]['median_s']:.3f} s over {res[key]['bytes'] / 1e9:.2f} GB", flush=True)
    res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return res


def time_cell(r: dict | None) -> str:
    """median wall time, median CPU time (user + sys) where recorded, number of runs"""
    if not r:
        return "not run"
    cpu = f", cpu {r['median_cpu_s']:.2f} s" if "median_cpu_s" in r else ""
    return f"{r['median_s']:.2f} s{cpu} (n={len(r['times'])})"


def render_table(results: dict) -> str:
    rows = ["| label | checkpoint | tensors | check_path (library) | `awqfmt check --json` (CLI) | peak RSS lib / CLI | peak heap | "
            "mmap bit-test pass | get_tensor + isfinite | errors | machine, load |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, per in results.items():
        for name, r in per.items():
            lib, cli = r["library"], r.get("cli")
            mm, gt = r.get("baseline_mmap_bit_test"), r.get("baseline_get_tensor_isfinite")
            base = (f"{mm['median_s']:.2f} s ({mm['bytes'] / 1e9:.2f} GB)" if mm else "-", f"{gt['median_s']:.2f} s" if gt else "-")
            m = r["machine"]
            rows.append(f"| {label} | {name} ({r['checkpoint']['total_size_gb']} GB, {r['checkpoint']['shards']} shards) | "
                        f"{r['checkpoint']['tensors']:,} | {time_cell(lib)} | "
                        f"{time_cell(cli)} | {lib['peak_rss_mib']:.0f} / {str(round(cli['peak_rss_mib'])) if cli else '-'} MiB | "
                        f"{str(round(lib['peak_heap_mib'])) + ' MiB' if 'peak_heap_mib' in lib else '-'} | "
                        f"{base[0]} | {base[1]} | {lib['errors']} | {m['nproc']} x {m['cpu']}, {m['date'][:10]}, "
                        f"load {m['loadavg_at_start'][0]}-{m.get('loadavg_at_end', ['?'])[0]} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description="awqfmt check at scale")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/awqfmt-scale"), help="where the generated checkpoints live")
    ap.add_argument("--only", choices=CHECKPOINTS, action="append")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--label", default="after", help="key under which results.json stores this run (e.g. before / after)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed library warm-up run (for the slow 'before' code)")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI timing")
    ap.add_argument("--no-write", action="store_true", help="print only; leave results.json / RESULTS.md alone")
    ap.add_argument("--clean", action="store_true", help="delete the generated checkpoints and exit")
    args = ap.parse_args()
    if args.clean:
        shutil.rmtree(args.dir, ignore_errors=True)
        return
    results_path = HERE / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    per = {}
    for name in args.only or CHECKPOINTS:
        per[name] = bench(name, args.dir, args.runs, baselines=not args.no_baselines and name == "llama70b",
                          warm=not args.no_warmup, cli=not args.no_cli)
    if args.no_write:
        print(json.dumps(per, indent=2))
        return
    results.setdefault(args.label, {}).update(per)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    md = HERE / "RESULTS.md"
    text = md.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + BEGIN + "\n" + render_table(results) + "\n" + END + rest.split(END, 1)[1]
        md.write_text(text)


if __name__ == "__main__":
    main()
