"""Run-14e probe (2026-11-25 session 11; needs the source of commit fe25f54, where AWQFMT_ZS_PREFETCH existed
before it was reverted): the skinny kernel with its zeros/scales requested two units ahead
(AWQFMT_ZS_PREFETCH = 1: into L1, 2: into L2) against none (0), same data, alternating rounds, with cuBLAS fp16
(torch, graph-timed) in the same rounds. M = 16 with the configurations of the last benchmark (RESULTS.md).
Each variant's output is checked against float64 first. Writes $OUT/probe14b.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import numpy as np

CFG16 = {(8192, 28672): {"wc": 1, "nt": 2, "pf": 2, "chk": 0}}
CFG16_DEFAULT = {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,8192x8192,8192x28672,28672x8192")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--reps", type=int, default=60)
    args = ap.parse_args()

    import cupy as cp
    import torch

    from awqfmt.gpu.bench import device_info, make_module, prepared_copies, time_cupy, time_torch
    from awqfmt.gpu.gemm import gemm_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(15)
    results = []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        module = make_module(K, N, 128, rng)
        preps = prepared_copies(module, "awq", l2)
        n_rot = max(2, min(8, -(-3 * l2 // (K * N * 2))))
        Wt = [torch.randn((K, N), device="cuda", dtype=torch.float16) for _ in range(n_rot)]
        M = 16
        xh = rng.standard_normal((M, K)).astype(np.float16)
        x, y = cp.asarray(xh), cp.empty((M, N), cp.float16)
        xt, yt = torch.as_tensor(x, device="cuda"), torch.as_tensor(y, device="cuda")
        cfg = CFG16.get((K, N), CFG16_DEFAULT)
        ref = xh.astype(np.float64) @ module.dequantize(np.float64)

        def ours(z):
            os.environ["AWQFMT_ZS_PREFETCH"] = z
            return time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y, method="skinny", config=cfg)
                              for p in preps], args.reps)["ms"]

        for z in ("0", "1", "2"):
            os.environ["AWQFMT_ZS_PREFETCH"] = z
            y.fill(cp.nan)
            gemm_packed("awq", preps[0], x, group_size=128, out=y, method="skinny", config=cfg, check=True)
            got = cp.asnumpy(y).astype(np.float64)
            print(f"{K}x{N} zs={z} rel_err={np.linalg.norm(got - ref) / np.linalg.norm(ref):.2e}", flush=True)
        fns = {f"zs={z}": (lambda z=z: ours(z)) for z in ("0", "1", "2")}
        fns["torch"] = lambda: time_torch([lambda w=w: torch.matmul(xt, w, out=yt) for w in Wt], args.reps)["ms"]
        times = {k: [] for k in fns}
        for r in range(args.rounds):
            for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                times[k].append(fns[k]())
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in med.items():
            print(f"{K}x{N} M=16 {k:6s} {v * 1000:8.2f} us  x cuBLAS {med['torch'] / v:5.2f}  /zs=0 "
                  f"{v / med['zs=0']:.3f}  [{', '.join(f'{t * 1000:.2f}' for t in times[k])}]", flush=True)
        results.append({"K": K, "N": N, "M": M, "config": cfg, "times_ms": times, "median_ms": med})
    os.environ.pop("AWQFMT_ZS_PREFETCH", None)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe14b.json"), "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
