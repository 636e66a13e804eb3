"""Run-16 probe (2026-11-25 session 13): the GEMV's split-K tail as one 64-bit atomic per output.

Run 16a: the whole tail (fp32 atomics, barrier, the acquire-release tile counter, barrier, the last block's
read-back) costs 0.77 us of the 4096x4096, M = 1 GEMV's 5.35 us; with it gone the kernel meets 3x. Here each
block's partial sum v of an output is added as one 64-bit integer, (round(v * 2^24) << 9) + 1: the high 55
bits accumulate a fixed-point sum, the low 9 count the arrivals (K splits <= 511), and the thread whose add
completes the count holds the whole sum in the value its atomic returned, so it writes y and zeroes the word
itself: no barrier, no fence, no counter, no read-back; one atomic round trip. Integer adds are exact and
order-free, so the output is also deterministic. (Probe only: no handling of partial sums beyond 2^29 or NaN.)

Times the shipped GEMV and this one alternately (same data, benchmark method), checks both against float64.
Run on the GPU:  PYTHONPATH=.:benchmarks/gemm python3 benchmarks/gemm/probe16c.py   (writes $OUT/probe16c.json)
"""

from __future__ import annotations

import json
import os
import statistics

import numpy as np

PATCH = [
    ("            else atomicAdd(&ws[o], v);",
     """            else {
                unsigned long long* w64 = reinterpret_cast<unsigned long long*>(ws);
                const unsigned long long add = ((unsigned long long)__float2ll_rn(v * 16777216.0f) << 9) + 1ull;
                const unsigned long long tot = atomicAdd(&w64[o], add) + add;
                if ((u32)(tot & 511ull) == gridDim.y) {
                    y[o] = f2h((float)((long long)tot >> 9) * 5.9604644775390625e-8f);
                    w64[o] = 0ull;
                }
            }"""),
    ("    if (!whole) {\n        __syncthreads();\n        if (tid == 0) s_last = split_arrive(",
     "    if (false) {\n        __syncthreads();\n        if (tid == 0) s_last = split_arrive("),
]
CFG = {(4096, 4096): {"vw": 2, "fl": 8, "pf": 0, "waves": 1, "l2pf": 1},
       (8192, 8192): {"vw": 2, "fl": 8, "pf": 1, "waves": 1, "l2pf": 0},
       (8192, 28672): {"vw": 2, "fl": 8, "pf": 1, "waves": 1, "l2pf": 0},
       (28672, 8192): {"vw": 2, "fl": 8, "pf": 1, "waves": 1, "l2pf": 0}}


def _use(patched: bool):
    from awqfmt.gpu import gemm

    gemm._sources.pop("w4a16_gemv.cu", None)
    text = gemm._source("w4a16_gemv.cu")
    if patched:
        for old, new in PATCH:
            if text.count(old) != 1:
                raise SystemExit(f"patch: expected one match, found {text.count(old)}")
            text = text.replace(old, new)
    gemm._sources["w4a16_gemv.cu"] = text
    gemm._kernels.clear()


def main() -> int:
    import cupy as cp

    from awqfmt.gpu.bench import _reference_check, device_info, time_cupy
    from awqfmt.gpu.gemm import gemm_packed
    from probe10 import _module
    from probe15 import cell_inputs

    info = device_info()
    l2 = info["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(161)
    rows = []
    for (K, N), cfg in CFG.items():
        module, preps, _ = _module(K, N, rng)
        x_host, x, y, cols, cub = cell_inputs(K, N, 1, rng, l2)
        fns = [lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y, method="gemv", config=cfg) for p in preps]
        err, runs, times = {}, {}, {"shipped": [], "fx64": []}
        for name in times:
            _use(name == "fx64")
            outs = []
            for rep in range(3):  # three launches on the same copy: the workspace must come back zeroed each time
                y.fill(cp.float16(float("nan")))
                info_run: dict = {}
                gemm_packed("awq", preps[0], x, group_size=128, out=y, method="gemv", config=cfg, info=info_run)
                outs.append(cp.asnumpy(y).copy())
            err[name] = _reference_check(module, x_host, y, cols)
            runs[name] = {"grid": info_run.get("grid"), "nan": int(np.isnan(outs[-1]).sum()),
                          "same_each_launch": bool(all(np.array_equal(outs[0], o) for o in outs[1:]))}
            print(f"{K}x{N} {name}: rel err {err[name]:.2e} {runs[name]}", flush=True)
        for _ in range(5):
            for name in times:
                _use(name == "fx64")
                times[name].append(time_cupy(fns, 100)["ms"])
        _use(False)
        for name, ts in times.items():
            med = statistics.median(ts)
            row = {"K": K, "N": N, "M": 1, "cfg": cfg, "variant": name, "ms": med, "rounds": ts, "cublas_ms": cub,
                   "speedup": cub / med, "rel_err": err[name], **runs[name]}
            rows.append(row)
            print(f"{K}x{N} M=1 {name:8s} {med * 1e3:7.2f} us  x{cub / med:.2f} cuBLAS ({cub * 1e3:.2f} us, "
                  f"3x = {cub / 3 * 1e3:.2f} us)", flush=True)
        del preps
        cp.get_default_memory_pool().free_all_blocks()
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe16c.json"), "w") as f:
            json.dump({"device": info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
