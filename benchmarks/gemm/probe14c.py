"""Run-14f probe (2026-11-25 session 11; needs the source of commit 24e56a2, where the GEMV had `pre` configurations,
reverted): the GEMV with each thread's whole slice requested at once before the
PDL wait (config key `pre`) against the configurations the last benchmark chose (RESULTS.md), same data,
alternating rounds, with cuBLAS fp16 (torch, graph-timed) in the same rounds. Every variant's output is checked
against float64 first. Writes $OUT/probe14c.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import numpy as np

SHIPPED = {(4096, 4096): {"vw": 1, "fl": 8, "pf": 1, "waves": 1}}
SHIPPED_DEFAULT = {"vw": 2, "fl": 8, "pf": 1, "waves": 1}
PRE = {"pre4 vw1": {"vw": 1, "fl": 8, "pf": 1, "pre": 4}, "pre2 vw1": {"vw": 1, "fl": 8, "pf": 1, "pre": 2},
       "pre2 vw2": {"vw": 2, "fl": 8, "pf": 1, "pre": 2}, "pre4 vw1 fl4": {"vw": 1, "fl": 4, "pf": 1, "pre": 4}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,8192x8192,8192x28672,28672x8192")
    ap.add_argument("--ms", default="1")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=60)
    args = ap.parse_args()

    import cupy as cp
    import torch

    from awqfmt.gpu.bench import device_info, make_module, prepared_copies, time_cupy, time_torch
    from awqfmt.gpu.gemm import gemm_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(16)
    results = []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        module = make_module(K, N, 128, rng)
        preps = prepared_copies(module, "awq", l2)
        W64 = module.dequantize(np.float64)
        n_rot = max(2, min(8, -(-3 * l2 // (K * N * 2))))
        Wt = [torch.randn((K, N), device="cuda", dtype=torch.float16) for _ in range(n_rot)]
        for M in (int(m) for m in args.ms.split(",")):
            xh = rng.standard_normal((M, K)).astype(np.float16)
            x, y = cp.asarray(xh), cp.empty((M, N), cp.float16)
            xt, yt = torch.as_tensor(x, device="cuda"), torch.as_tensor(y, device="cuda")
            ref = xh.astype(np.float64) @ W64
            cands = {"shipped": SHIPPED.get((K, N), SHIPPED_DEFAULT), **PRE}
            for name, cfg in cands.items():
                y.fill(cp.nan)
                info: dict = {}
                gemm_packed("awq", preps[0], x, group_size=128, out=y, method="gemv", config=cfg, check=True, info=info)
                got = cp.asnumpy(y).astype(np.float64)
                print(f"{K}x{N} M={M} {name} grid={info['grid']} rows={info['rows_per_thread']} "
                      f"rel_err={np.linalg.norm(got - ref) / np.linalg.norm(ref):.2e}", flush=True)
            fns = {k: (lambda c=c: time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y, method="gemv",
                                                                        config=c) for p in preps], args.reps)["ms"])
                   for k, c in cands.items()}
            fns["torch"] = lambda: time_torch([lambda w=w: torch.matmul(xt, w, out=yt) for w in Wt], args.reps)["ms"]
            times = {k: [] for k in fns}
            for r in range(args.rounds):
                for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                    times[k].append(fns[k]())
            med = {k: statistics.median(v) for k, v in times.items()}
            for k, v in med.items():
                print(f"{K}x{N} M={M} {k:13s} {v * 1000:8.2f} us  x cuBLAS {med['torch'] / v:5.2f}  /shipped "
                      f"{v / med['shipped']:.3f}  [{', '.join(f'{t * 1000:.2f}' for t in times[k])}]", flush=True)
            results.append({"K": K, "N": N, "M": M, "configs": cands, "times_ms": times, "median_ms": med})
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe14c.json"), "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
