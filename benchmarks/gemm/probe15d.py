"""Run-15d probe (2026-11-25 session 12): a wider configuration sweep of the three missed cells, now that the
GEMV has l2pf (run 15c): GEMV at 4096x4096, M = 1 over vw x fl x pf x waves x l2pf; the skinny kernel at M = 16
(4096x4096 and 8192x8192) over pf x chk x warps x K splits. Every configuration is launched once and checked
against float64 first, then timed as the benchmark times (time_cupy, PDL as tuned: on), two rounds; prints the
five fastest per cell with the target time. Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/probe15d.py
(writes $OUT/probe15d.json)
"""

from __future__ import annotations

import itertools
import json
import os

import numpy as np


def gemv_configs():
    for vw, fl, pf, waves, l2pf in itertools.product((1, 2, 4), (4, 8), (0, 1), (1, 2), (0, 1)):
        yield {"vw": vw, "fl": fl, "pf": pf, "waves": waves, "l2pf": l2pf}


def skinny_configs():
    for pf, chk, warps, splits in itertools.product((1, 2), (0, 1), (8, 16), (0, 1, 2, 4)):
        c = {"wc": 1, "nt": 2, "pf": pf, "chk": chk, "warps": warps}
        if splits:
            c["splits"] = splits
        yield c


CELLS = [(4096, 4096, 1, "gemv", 3.0), (4096, 4096, 16, "skinny", 2.5), (8192, 8192, 16, "skinny", 2.5)]


def main() -> int:
    import cupy as cp

    from awqfmt.gpu.bench import _reference_check, device_info, time_cupy
    from awqfmt.gpu.gemm import gemm_packed
    from probe10 import _module  # the module and its copies rotated past 3x L2
    from probe15 import cell_inputs

    info = device_info()
    l2 = info["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(154)
    out = []
    for K, N, M, method, target in CELLS:
        module, preps, _ = _module(K, N, rng)
        x_host, x, y, cols, cublas = cell_inputs(K, N, M, rng, l2)
        configs = list(gemv_configs() if method == "gemv" else skinny_configs())
        times: dict[str, list[float]] = {}
        for rnd in range(2):
            for cfg in configs:
                key = json.dumps(cfg)
                try:
                    y.fill(float("nan"))
                    gemm_packed("awq", preps[0], x, group_size=128, out=y, method=method, config=cfg, check=True)
                    err = _reference_check(module, x_host, y, cols)
                    if not err <= 2e-3:
                        print(f"  {key}: rel err {err:.2e}: skipped", flush=True)
                        continue
                    t = time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y, method=method,
                                                           config=cfg) for p in preps], 60)["ms"]
                except Exception as exc:  # a configuration the kernel refuses for this shape
                    print(f"  {key}: {type(exc).__name__}: {str(exc)[:80]}", flush=True)
                    continue
                times.setdefault(key, []).append(t)
        ranked = sorted(((max(v), k, v) for k, v in times.items() if len(v) == 2))
        print(f"\n{K}x{N} M={M} {method}: cuBLAS {cublas * 1e3:.2f} us, target {cublas / target * 1e3:.2f} us "
              f"(x{target}); fastest (worse of two rounds):", flush=True)
        for worst, k, v in ranked[:5]:
            print(f"  {worst * 1e3:6.2f} us  x{cublas / worst:5.2f}  rounds {[round(t * 1e3, 2) for t in v]}  {k}",
                  flush=True)
        out.append({"K": K, "N": N, "M": M, "method": method, "cublas_ms": cublas, "target": target,
                    "times_ms": times})
        del preps
        cp.get_default_memory_pool().free_all_blocks()
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe15d.json"), "w") as f:
            json.dump({"device": info, "cells": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
