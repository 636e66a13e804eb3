"""Throughput of awqfmt.repack on one core: fast word-level paths vs the generic oracle vs a numpy copy.

    .venv/bin/python benchmarks/repack/bench_repack.py            # 8192 x 8192, writes results.json beside it
    .venv/bin/python benchmarks/repack/bench_repack.py --quick    # 2048 x 2048, no file written

GB/s = bytes of the packed source tensors (codes + zeros) / seconds, median of --runs runs. The numpy copy
baseline copies exactly those bytes in the same run. Every fast result is checked against the oracle once.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy is imported

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from awqfmt import repack as R  # noqa: E402
from awqfmt.packing import pack, unpack  # noqa: E402
from awqfmt.spec import get_spec  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/machine.py
from machine import cpu_model  # noqa: E402

HERE = Path(__file__).resolve().parent


def median_seconds(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def oracle(stored, src, src_name, dst, dst_name, bits):
    """The generic path: one uint8 per value, transpose, zero offset, pack (no word-level tricks)."""
    s_t = next(t for t in src.tensors if t.name == src_name)
    d_t = next(t for t in dst.tensors if t.name == dst_name)
    vals = unpack(stored, src.packing(bits), axis=s_t.packed_dim)
    if tuple(s_t.dims) != tuple(d_t.dims):
        vals = vals.T
    if s_t.role == "zeros" and dst.zero_offset != src.zero_offset:
        vals = (vals.astype(np.int16) + (dst.zero_offset - src.zero_offset)).astype(np.uint8)
    return pack(vals, dst.packing(bits), axis=d_t.packed_dim)


def make_module(layout: str, K: int, N: int, G: int, bits: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random codes and zero points in 1 .. 2^b - 1 (every layout, GPTQ v1 included, can hold them)."""
    spec = get_spec(layout)
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << bits, size=(K, N), dtype=np.uint8)
    zeros = rng.integers(1, 1 << bits, size=(K // G, N), dtype=np.uint8)
    out = {}
    for role, vals in (("codes", codes), ("zeros", zeros)):
        t = spec.tensor(role)
        stored = vals.T if t.dims[0] == "N" else vals
        stored = (stored.astype(np.int16) + spec.zero_offset).astype(np.uint8) if role == "zeros" else stored
        out[t.name] = pack(np.ascontiguousarray(stored), spec.packing(bits), axis=t.packed_dim)
    return out


def convert(module, src, dst, bits, fn):
    return {dst.tensor(role).name: fn(module[src.tensor(role).name], src, src.tensor(role).name, dst,
                                      dst.tensor(role).name, bits)
            for role in ("codes", "zeros")}


def fast(stored, src, src_name, dst, dst_name, bits):
    return R.repack_tensor(stored, src, src_name, dst, dst_name, bits)


def peak_temp_bytes(fn) -> int:
    """Peak bytes numpy held during fn beyond the arrays it returns (tracemalloc sees numpy's allocations)."""
    tracemalloc.start()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - sum(a.nbytes for a in result.values())


CASES = [  # (name, src layout, dst layout, bits)
    ("AWQ -> GPTQ", "awq", "gptq", 4),
    ("GPTQ -> AWQ", "gptq", "awq", 4),
    ("AWQ -> compressed-tensors", "awq", "compressed-tensors", 4),
    ("compressed-tensors -> AWQ", "compressed-tensors", "awq", 4),
    ("GPTQ -> compressed-tensors", "gptq", "compressed-tensors", 4),
    ("AWQ -> logical (field reorder)", "awq", "logical", 4),
    ("logical -> GPTQ, 2-bit", "logical", "gptq", 2),
    ("logical -> GPTQ, 8-bit", "logical", "gptq", 8),
    ("logical -> compressed-tensors, 2-bit", "logical", "compressed-tensors", 2),
    ("logical -> compressed-tensors, 8-bit", "logical", "compressed-tensors", 8),
    ("GPTQ -> logical, 2-bit", "gptq", "logical", 2),
    ("GPTQ -> logical, 8-bit", "gptq", "logical", 8),
]
ORACLE_CASES = {"AWQ -> GPTQ", "GPTQ -> AWQ", "AWQ -> compressed-tensors"}
# 70B-layer shapes (MLP up/gate and down), fast path only: the memory bound matters here, not the oracle
LARGE = [(8192, 28672), (28672, 8192)]
LARGE_CASES = ["AWQ -> GPTQ", "GPTQ -> AWQ", "AWQ -> compressed-tensors"]


def measure(name, src_name, dst_name, bits, K, N, G, runs, oracle_runs) -> dict:
    """One conversion of one module: fast path (checked against the oracle when oracle_runs), oracle, copy."""
    src, dst = get_spec(src_name), get_spec(dst_name)
    module = make_module(src_name, K, N, G, bits)
    nbytes = sum(a.nbytes for a in module.values())
    if oracle_runs:
        got, want = convert(module, src, dst, bits, fast), convert(module, src, dst, bits, oracle)
        assert all(np.array_equal(got[k], want[k]) for k in want), f"{name}: fast path differs from the oracle"
        del got, want
    routes = sorted({R.repack_route(src.tensor(r), src.packing(bits), dst.tensor(r), dst.packing(bits))
                     for r in ("codes", "zeros")})
    blob = np.concatenate([a.reshape(-1) for a in module.values()])
    # fast and copy runs alternate, so on a shared machine both see the same load; their ratio is the steadiest
    all_fast, all_copy = [], []
    for _ in range(runs):
        all_fast.append(median_seconds(lambda: convert(module, src, dst, bits, fast), 1)[0])
        all_copy.append(median_seconds(lambda: blob.copy(), 1)[0])
    t_fast, t_copy = statistics.median(all_fast), statistics.median(all_copy)
    ratio = statistics.median(c / f for c, f in zip(all_copy, all_fast))
    row = {
        "conversion": name, "bits": bits, "K": K, "N": N, "group_size": G, "packed_bytes": nbytes,
        "routes": routes, "verified_against_oracle": bool(oracle_runs),
        "fast_s": t_fast, "fast_runs_s": all_fast, "fast_GBps": nbytes / t_fast / 1e9,
        "copy_s": t_copy, "copy_GBps": nbytes / t_copy / 1e9, "fast_over_copy": ratio,
        "peak_temp_bytes": peak_temp_bytes(lambda: convert(module, src, dst, bits, fast)),
    }
    if oracle_runs and name in ORACLE_CASES:
        t_or, _ = median_seconds(lambda: convert(module, src, dst, bits, oracle), oracle_runs)
        row.update(oracle_s=t_or, oracle_GBps=nbytes / t_or / 1e9, speedup_vs_oracle=t_or / t_fast)
    print(f"{name:38s} {K:>5}x{N:<5} fast {row['fast_GBps']:5.2f} GB/s"
          + (f"  oracle {row['oracle_GBps']:6.3f} GB/s" if "oracle_GBps" in row else " " * 22)
          + f"  copy {row['copy_GBps']:5.2f} GB/s  temp {row['peak_temp_bytes'] / 2**20:5.1f} MiB  {routes}",
          flush=True)
    return row


def markdown(results: dict) -> str:
    """The measured table for RESULTS.md, from a results.json."""
    m = results["meta"]
    lines = [f"Measured {m['date']} on `{m['cpu']}`, nproc {m['nproc']}, Python {m['python']}, numpy {m['numpy']}, "
             f"1 thread, median of {m['runs']} runs (oracle: {m['oracle_runs']}); load average before/after "
             f"{m['loadavg_before'][0]:.2f} / {m['loadavg_after'][0]:.2f}.", "",
             "| conversion | K x N | packed MB | fast GB/s | oracle GB/s | speed-up | numpy copy GB/s | fast / copy (paired) "
             "| peak temp MiB | routes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["results"]:
        oracle_gbps = f"{r['oracle_GBps']:.3f}" if "oracle_GBps" in r else "-"
        speedup = f"{r['speedup_vs_oracle']:.0f}x" if "speedup_vs_oracle" in r else "-"
        lines.append(f"| {r['conversion']} | {r['K']} x {r['N']} | {r['packed_bytes'] / 1e6:.1f} | "
                     f"**{r['fast_GBps']:.2f}** | {oracle_gbps} | {speedup} | {r['copy_GBps']:.2f} | "
                     f"{r['fast_over_copy']:.2f} | {r['peak_temp_bytes'] / 2**20:.1f} | "
                     f"{', '.join(r['routes'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--K", type=int, default=8192)
    ap.add_argument("--N", type=int, default=8192)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--oracle-runs", type=int, default=5)
    ap.add_argument("--no-large", action="store_true", help="skip the 70B-layer shapes")
    ap.add_argument("--quick", action="store_true", help="2048 x 2048, 5 runs, no large shapes, no results.json")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--markdown", type=Path, help="print the RESULTS.md table of an existing results.json and exit")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    if args.quick:
        args.K = args.N = 2048
        args.runs = args.oracle_runs = 5
        args.no_large = True
    load_before = os.getloadavg()
    rows = [measure(name, s, d, b, args.K, args.N, args.group, args.runs, args.oracle_runs) for name, s, d, b in CASES]
    if not args.no_large:
        by_name = {c[0]: c for c in CASES}
        rows += [measure(name, by_name[name][1], by_name[name][2], by_name[name][3], K, N, args.group, args.runs, 0)
                 for K, N in LARGE for name in LARGE_CASES]
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
        "numpy": np.__version__, "threads": 1, "runs": args.runs, "oracle_runs": args.oracle_runs,
        "tile_words": R.TILE_WORDS, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }
    if not args.quick:
        args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
