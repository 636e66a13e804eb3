"""Run-15g probe (2026-11-25 session 12): the weight loads' L2 prefetch-size hint per cell, with the tuned kernels.

Run 10j made `.L2::128B` the default for every weight load (M = 16 +2-5%, M = 1 unchanged; `.L2::256B` mixed),
on the kernels of that time. Since then the 16-warp skinny kernel, PDL and the GEMV's l2pf changed what is in
flight. This times the shipped configurations of the three missed cells (and 8192x8192, M = 1) with the hint at
128 (default), 256, 64 and none (AWQFMT_L2_PREFETCH, a compile-time macro: each setting is its own NVRTC build),
in three interleaved rounds, every output checked against float64 first.

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/probe15g.py   (writes $OUT/probe15g.json)
"""

from __future__ import annotations

import json
import os
import statistics

import numpy as np

CELLS = [(4096, 4096, 1, "gemv", {"vw": 2, "fl": 8, "pf": 0, "waves": 1, "l2pf": 1}),
         (4096, 4096, 16, "skinny", {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}),
         (8192, 8192, 16, "skinny", {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}),
         (8192, 8192, 1, "gemv", {"vw": 2, "fl": 8, "pf": 1, "waves": 1})]
HINTS = ("128", "256", "64", "0")


def main() -> int:
    import cupy as cp

    from awqfmt.gpu.bench import _reference_check, device_info, time_cupy
    from awqfmt.gpu.gemm import gemm_packed
    from probe10 import _module  # the module and its copies rotated past 3x L2
    from probe15 import cell_inputs

    info = device_info()
    l2 = info["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(157)
    out = []
    for K, N, M, method, cfg in CELLS:
        module, preps, _ = _module(K, N, rng)
        x_host, x, y, cols, cublas = cell_inputs(K, N, M, rng, l2)
        times: dict[str, list[float]] = {h: [] for h in HINTS}
        for _ in range(3):
            for h in HINTS:
                os.environ["AWQFMT_L2_PREFETCH"] = h
                y.fill(float("nan"))
                gemm_packed("awq", preps[0], x, group_size=128, out=y, method=method, config=cfg, check=True)
                err = _reference_check(module, x_host, y, cols)
                assert err <= 2e-3, (K, N, M, h, err)
                times[h].append(time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y,
                                                                   method=method, config=cfg) for p in preps],
                                          100)["ms"])
        os.environ.pop("AWQFMT_L2_PREFETCH", None)
        med = {h: statistics.median(v) for h, v in times.items()}
        print(f"{K}x{N} M={M:2d} {method:6s} cuBLAS {cublas * 1e3:6.2f} us | " + "  ".join(
            f"{h:>3s}: {med[h] * 1e3:6.2f} us ({med[h] / med['128']:.3f}x)" for h in HINTS), flush=True)
        out.append({"K": K, "N": N, "M": M, "method": method, "config": cfg, "cublas_ms": cublas, "times_ms": times})
        del preps
        cp.get_default_memory_pool().free_all_blocks()
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe15g.json"), "w") as f:
            json.dump({"device": info, "cells": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
