"""Throughput and peak memory of `awqfmt convert`: per module on one core, and end to end on real checkpoints.

    .venv/bin/python benchmarks/convert/bench_convert.py                 # everything; writes results.json + RESULTS.md
    .venv/bin/python benchmarks/convert/bench_convert.py --layers 2      # a smaller "many layers" checkpoint
    .venv/bin/python benchmarks/convert/bench_convert.py --quick         # module-level only, no file written

1. Module level (in process, one core, warm): `awqfmt.convert.convert_module` (decode the small tensors, encode
   them, repack the codes) on in-memory tensors of one Linear, for the 70B shapes and 8192 x 8192, in GB/s of packed
   source data (qweight + qzeros bytes), median of --runs. Baselines in the same run: the logical route
   (`route="logical"`: unpack to one byte per value, encode) and a numpy copy of the same bytes.
2. End to end (a new `awqfmt convert SRC DST --to X --json` process per run): the module8192 checkpoint, one
   Llama-2-70B layer, and --layers layers (~0.44 GB each). Wall time of the process, the library's own time
   (from --json: preflight, conversion, writing with fsync, the check of DST), and peak RSS of the process
   (os.wait4 ru_maxrss). SRC was just written, so it is in the page cache; DST is fsynced, so disk write speed
   counts. GPTQ sources are made from the AWQ ones by awqfmt itself (not timed).

Generated checkpoints and outputs live under --workdir and are deleted at the end (unless --keep).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy is imported

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from awqfmt.convert import ModuleJob, Options, SrcTensor, convert, convert_module  # noqa: E402
import make_checkpoint as mk  # noqa: E402

sys.path.insert(0, str(HERE.parent))  # benchmarks/machine.py
from machine import cpu_model  # noqa: E402

DIRECTIONS = [("awq", "gptq"), ("gptq", "awq"), ("awq", "compressed-tensors")]
SHAPES = {"8192x8192 (q/o)": (8192, 8192), "8192x1024 (k/v)": (8192, 1024), "8192x28672 (gate/up)": (8192, 28672),
          "28672x8192 (down)": (28672, 8192)}
AWQ_CODES = ("qweight", "qzeros")
DTYPE_NAME = {np.dtype(np.int32): "I32", np.dtype(np.float16): "F16"}
LAYER_GB = 0.445


def machine() -> dict:
    mem = next((int(l.split()[1]) * 1024 for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")), 0)
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gb": round(mem / 1e9, 1), "python": platform.python_version(),
            "numpy": np.__version__, "os": f"{platform.system()} {platform.release()}",
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def median(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---- 1. module level ------------------------------------------------------------------------------------------

def in_memory_job(layout: str, tensors: dict[str, np.ndarray], K: int, N: int) -> tuple[ModuleJob, callable]:
    src = {short: SrcTensor(f"m.{short}", "<memory>", 0, a.nbytes, DTYPE_NAME[a.dtype], a.shape) for short, a in tensors.items()}
    job = ModuleJob("m", layout, mk.BITS, mk.GROUP, src)
    return job, lambda t: tensors[t.name.split(".", 1)[1]]


def module_bench(runs: int) -> list[dict]:
    rows = []
    for label, (K, N) in SHAPES.items():
        rng = np.random.default_rng(0)
        awq = mk.awq_module(rng, K, N)
        job, read = in_memory_job("awq", awq, K, N)
        gptq = {k.rsplit(".", 1)[1]: v[0] for k, v in convert_module(job, read, Options("gptq", None, None, False)).items()}
        sources = {"awq": awq, "gptq": gptq}
        for src, dst in DIRECTIONS:
            tensors = sources[src]
            job, read = in_memory_job(src, tensors, K, N)
            packed = sum(tensors[n].nbytes for n in AWQ_CODES)  # same names in awq and gptq
            fast = median(lambda: convert_module(job, read, Options(dst, None, None, False)), runs)
            logical = median(lambda: convert_module(job, read, Options(dst, None, None, False, route="logical")), 1)
            buf = np.empty(packed, dtype=np.uint8)
            src_bytes = np.concatenate([tensors[n].view(np.uint8).reshape(-1) for n in AWQ_CODES])
            copy = median(lambda: np.copyto(buf, src_bytes), runs)
            rows.append({"shape": label, "K": K, "N": N, "conversion": f"{src} -> {dst}", "packed_bytes": packed,
                         "seconds": fast, "gb_s": packed / fast / 1e9, "logical_gb_s": packed / logical / 1e9,
                         "copy_gb_s": packed / copy / 1e9})
            print(f"  {label:22s} {src:>4s} -> {dst:18s} {packed / fast / 1e9:6.2f} GB/s  (logical route "
                  f"{packed / logical / 1e9:5.2f}, numpy copy {packed / copy / 1e9:5.2f})", flush=True)
    return rows


# ---- 2. end to end ---------------------------------------------------------------------------------------------

# `awqfmt convert` exactly as the CLI runs it, reporting its own peak RSS at exit. ru_maxrss from wait4 would not do:
# Linux carries the parent's resident size into a forked child's ru_maxrss across exec, and this benchmark process
# is large. VmHWM is the high-water mark of the converting process' own address space. Worker processes (--jobs)
# report through RUSAGE_CHILDREN (which includes the main process' resident size when it spawned them).
CLI = """
import atexit, resource, sys
def report():
    hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sys.stderr.write(f"\\nAWQFMT_BENCH_RSS {hwm} {kids}\\n")
    sys.stderr.flush()
atexit.register(report)
from awqfmt.cli import main
sys.argv = ["awqfmt", "convert", *sys.argv[1:]]
main()
"""


def run_cli(src: Path, dst: Path, to: str, *extra: str) -> dict:
    cmd = [sys.executable, "-c", CLI, str(src), str(dst), "--to", to, "--json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed: {proc.stdout[-2000:]!r} {proc.stderr[-2000:]!r}")
    doc = json.loads(proc.stdout)
    hwm_kb, workers_kb = map(int, proc.stderr.decode().rsplit("AWQFMT_BENCH_RSS", 1)[1].split())
    return {"wall_s": wall, "library_s": doc["seconds"], "peak_rss_mb": hwm_kb / 1024, "worker_peak_rss_mb": workers_kb / 1024,
            "bytes_out": doc["bytes"], "modules": doc["modules"], "shards": doc["shards"]}


def packed_bytes(path: Path) -> int:
    from awqfmt.checkpoint import open_checkpoint

    ckpt = open_checkpoint(path)
    try:
        return sum(ckpt.entry(n).nbytes for n in ckpt.locations if n.rsplit(".", 1)[-1] in AWQ_CODES)
    finally:
        ckpt.close()


def end_to_end(work: Path, name: str, src_awq: Path, reps: int, extra_cases=()) -> list[dict]:
    gptq = work / f"{name}-gptq-src"
    if not gptq.exists():
        convert(src_awq, gptq, "gptq")
    sources = {"awq": src_awq, "gptq": gptq}
    rows = []
    cases = [(s, d, ()) for s, d in DIRECTIONS] + list(extra_cases)
    for src, dst, extra in cases:
        packed = packed_bytes(sources[src])
        runs = []
        for _ in range(reps):
            out = work / f"{name}-out"
            shutil.rmtree(out, ignore_errors=True)
            runs.append(run_cli(sources[src], out, dst, *extra))
            shutil.rmtree(out, ignore_errors=True)
        best = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
        row = {"checkpoint": name, "conversion": f"{src} -> {dst}", "options": " ".join(extra), "runs": reps,
               "packed_bytes": packed, **best, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
               "worker_peak_rss_mb": max(r["worker_peak_rss_mb"] for r in runs) if "--jobs" in extra else None,
               "gb_s_wall": packed / best["wall_s"] / 1e9, "gb_s_library": packed / best["library_s"] / 1e9}
        rows.append(row)
        print(f"  {name:14s} {row['conversion']:28s} {' '.join(extra):24s} wall {best['wall_s']:6.2f} s "
              f"({row['gb_s_wall']:.2f} GB/s), library {best['library_s']:6.2f} s ({row['gb_s_library']:.2f} GB/s), "
              f"peak RSS {row['peak_rss_mb']:.0f} MB" + (f" (+ workers {row['worker_peak_rss_mb']:.0f} MB each)"
                                                          if row["worker_peak_rss_mb"] else ""), flush=True)
    return rows


def phase_breakdown(src: Path, dst: Path, to: str) -> dict:
    """Where the library's time goes, in process: wrap the functions each phase runs in and sum their time."""
    import awqfmt.convert as C
    import awqfmt.convert_engine as E
    import awqfmt.writer as W

    spent: dict[str, float] = {}
    originals = []

    def timed(owner, attr, phase):
        fn = getattr(owner, attr)
        originals.append((owner, attr, fn))

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[phase] = spent.get(phase, 0.0) + time.perf_counter() - t0
        setattr(owner, attr, wrapper)

    timed(C, "check_and_close", "awqfmt check of SRC and of DST")
    timed(C, "_preflight", "preflight (incl. SRC check)")
    timed(E.Reader, "read", "read SRC tensors (pread)")
    timed(E, "repack_tensor", "repack codes (awqfmt.repack)")
    timed(E, "convert_module", "convert modules (incl. their pread and repack)")
    timed(W.ShardWriter, "_emit", "write DST (write-behind thread: overlaps the above)")
    timed(W.ShardWriter, "close", "fsync shards")
    shutil.rmtree(dst, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        convert(src, dst, to)
    finally:
        for owner, attr, fn in originals:
            setattr(owner, attr, fn)
        shutil.rmtree(dst, ignore_errors=True)
    total = time.perf_counter() - t0
    out = {"total": total, **spent}
    print("  phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in out.items()), flush=True)
    return out


# ---- report ------------------------------------------------------------------------------------------------------

def render(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"Run {doc['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gb']} GB RAM), {m['os']}, "
             f"Python {m['python']}, numpy {m['numpy']}. Load average at start {m['load_average_at_start']}, at end "
             f"{doc.get('load_average_at_end')} (other engineers' jobs share this VM: expect run-to-run noise).", "",
             "### Per module, one core (GB/s of packed source data: qweight + qzeros)", "",
             "| shape K x N | conversion | convert_module | logical route | numpy copy |", "|---|---|---|---|---|"]
    for r in doc["module"]:
        lines.append(f"| {r['shape']} | {r['conversion']} | **{r['gb_s']:.2f}** | {r['logical_gb_s']:.2f} | {r['copy_gb_s']:.2f} |")
    lines += ["", "### End to end (`awqfmt convert ... --json`, one process per run)", "",
              "| checkpoint | conversion | options | packed data | wall | GB/s (wall) | library time | GB/s (library) | peak RSS |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["end_to_end"]:
        lines.append(f"| {r['checkpoint']} | {r['conversion']} | {r['options'] or '-'} | {r['packed_bytes'] / 1e9:.2f} GB | "
                     f"{r['wall_s']:.2f} s | {r['gb_s_wall']:.2f} | {r['library_s']:.2f} s | {r['gb_s_library']:.2f} | "
                     f"**{r['peak_rss_mb']:.0f} MB**" + (f" (+ {r['worker_peak_rss_mb']:.0f} MB per worker)" if r.get("worker_peak_rss_mb") else "")
                     + " |")
    if doc.get("phases"):
        ph = doc["phases"]
        lines += ["", f"### Where the time goes ({ph['case']}, in process, one run)", "", "| phase | seconds |", "|---|---|"]
        for k, v in ph["seconds"].items():
            lines.append(f"| {k} | {v:.2f} |")
    return "\n".join(lines) + "\n"


def write_results(doc: dict) -> None:
    (HERE / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = HERE / "RESULTS.md"
    text = md.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    md.write_text(head + begin + "\n" + render(doc) + end + tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/awqfmt-convert-bench"))
    ap.add_argument("--layers", type=int, default=8, help="layers of the big checkpoint (8 = ~3.5 GB, issue 5)")
    ap.add_argument("--runs", type=int, default=5, help="module-level repetitions (median)")
    ap.add_argument("--reps", type=int, default=3, help="end-to-end repetitions for the small checkpoints (median)")
    ap.add_argument("--quick", action="store_true", help="module level only, nothing written")
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    args = ap.parse_args()
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}
    print("module level (one core):", flush=True)
    doc["module"] = module_bench(args.runs)
    if args.quick:
        return
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        print("generating checkpoints ...", flush=True)
        mk.write_module8192(work / "module8192")
        mk.write_llama70b(work / "llama70b-1", 1)
        mk.write_llama70b(work / f"llama70b-{args.layers}", args.layers)
        print("end to end:", flush=True)
        rows = end_to_end(work, "module8192", work / "module8192", args.reps)
        rows += end_to_end(work, "llama70b-1", work / "llama70b-1", args.reps)
        big = f"llama70b-{args.layers}"
        rows += end_to_end(work, big, work / big, 1, extra_cases=[("awq", "gptq", ("--jobs", "2", "--max-shard-size", "1GB"))])
        doc["end_to_end"] = rows
        doc["layers"] = args.layers
        print("phases:", flush=True)
        doc["phases"] = {"case": f"{big}, awq -> gptq", "seconds": phase_breakdown(work / big, work / f"{big}-phases", "gptq")}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    doc["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_results(doc)
    print(f"wrote {HERE / 'results.json'} and {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
