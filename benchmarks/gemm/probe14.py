"""Run-14 probe (2026-11-25 session 11; needs the source of commit a677e53, where the frag kernel lived: it was
reverted, see NOTES.md run 14): the frag kernel (weights in mma fragment order, kernels/w4a16_frag.cu)
against the shipped small-M kernels on the same data, and cuBLAS fp16 (torch, graph-timed) in the same rounds.

For each shape and M: every frag candidate configuration (output checked against float64 first), the skinny
kernel with the configuration the last benchmark chose, and at M = 1 the GEMV; `rounds` alternating rounds,
medians printed. Writes $OUT/probe14.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import numpy as np

SKINNY16 = {(8192, 28672): {"wc": 1, "nt": 2, "pf": 2, "chk": 0}}
SKINNY16_DEFAULT = {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}
GEMV1 = {4096: {"vw": 1, "fl": 8, "pf": 1, "waves": 1}}
GEMV1_DEFAULT = {"vw": 2, "fl": 8, "pf": 1, "waves": 1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,8192x8192,8192x28672,28672x8192")
    ap.add_argument("--ms", default="1,16")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=60)
    args = ap.parse_args()

    import cupy as cp
    import torch

    from awqfmt.gpu.bench import device_info, make_module, prepared_copies, time_cupy, time_torch
    from awqfmt.gpu.gemm import frag_candidate_configs, gemm_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(14)
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
            x = cp.asarray(xh)
            y = cp.empty((M, N), cp.float16)
            ref = xh.astype(np.float64) @ W64
            xt, yt = torch.as_tensor(x, device="cuda"), torch.as_tensor(y, device="cuda")
            cands = {}
            for cfg in frag_candidate_configs(M):
                y.fill(cp.nan)
                info: dict = {}
                gemm_packed("awq", preps[0], x, group_size=128, out=y, method="frag", config=cfg, check=True, info=info)
                got = cp.asnumpy(y).astype(np.float64)
                rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref)) if np.isfinite(got).all() else float("nan")
                print(f"{K}x{N} M={M} frag {cfg} grid={info.get('grid')} rel_err={rel:.2e}", flush=True)
                cands[f"frag {cfg}"] = ("frag", cfg)
                pass
            cands["skinny"] = ("skinny", SKINNY16.get((K, N), SKINNY16_DEFAULT) if M > 1 else
                               {"wc": 2, "nt": 1, "pf": 1, "chk": 0})
            if M == 1:
                cands["gemv"] = ("gemv", GEMV1.get(K if K == N else 0, GEMV1_DEFAULT))
            fns = {k: (lambda m=m, c=c: time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y,
                                                                             method=m, config=c) for p in preps],
                                                   args.reps)["ms"]) for k, (m, c) in cands.items()}
            fns["torch"] = lambda: time_torch([lambda w=w: torch.matmul(xt, w, out=yt) for w in Wt], args.reps)["ms"]
            times = {k: [] for k in fns}
            for r in range(args.rounds):
                for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                    times[k].append(fns[k]())
            med = {k: statistics.median(v) for k, v in times.items()}
            for k, v in med.items():
                print(f"{K}x{N} M={M} {k:45s} {v * 1000:8.2f} us  x cuBLAS {med['torch'] / v:5.2f}  "
                      f"[{', '.join(f'{t * 1000:.2f}' for t in times[k])}]", flush=True)
            results.append({"K": K, "N": N, "M": M, "times_ms": times, "median_ms": med})
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe14.json"), "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
