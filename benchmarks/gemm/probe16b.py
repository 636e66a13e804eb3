"""Run-16 probe (2026-11-25 session 13): is the benchmark's cuBLAS fp16 baseline the fastest cuBLAS offers at
small M? The benchmark multiplies x [M, K] by W stored [K, N] (torch.matmul / cupy.matmul). A model's nn.Linear
stores W as [N, K] and calls F.linear (x @ W^T, cuBLAS's transposed-B path), which may pick other kernels.
Here both, graph-timed the same way (copies rotated past 3x L2), 5 interleaved rounds, medians, M = 1 and 16.

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/probe16b.py   (writes $OUT/probe16b.json)
"""

from __future__ import annotations

import json
import math
import os
import statistics

SHAPES = [(4096, 4096), (8192, 8192), (8192, 28672), (28672, 8192)]


def main() -> int:
    import torch
    import torch.nn.functional as F

    from awqfmt.gpu.bench import device_info, time_torch

    info = device_info()
    l2 = info["l2_bytes"] or (50 << 20)
    torch.manual_seed(16)
    rows = []
    for K, N in SHAPES:
        n_rot = max(1, min(8, math.ceil(3 * l2 / (K * N * 2))))
        w_kn = [torch.randn((K, N), device="cuda", dtype=torch.float16) for _ in range(n_rot)]
        w_nk = [torch.randn((N, K), device="cuda", dtype=torch.float16) for _ in range(n_rot)]
        for M in (1, 16):
            x = torch.randn((M, K), device="cuda", dtype=torch.float16)
            y = torch.empty((M, N), device="cuda", dtype=torch.float16)
            ways = {"matmul x @ W[K,N]": [lambda W=W: torch.matmul(x, W, out=y) for W in w_kn],
                    "linear x @ W[N,K]^T": [lambda W=W: F.linear(x, W) for W in w_nk],
                    "matmul x @ W[N,K].T": [lambda W=W: torch.matmul(x, W.t(), out=y) for W in w_nk]}
            times = {k: [] for k in ways}
            for _ in range(5):
                for k, fns in ways.items():
                    times[k].append(time_torch(fns, 100)["ms"])
            row = {"K": K, "N": N, "M": M, **{k: statistics.median(v) for k, v in times.items()}, "rounds": times}
            rows.append(row)
            print(f"{K}x{N} M={M}: " + "  ".join(f"{k} {statistics.median(v) * 1e3:7.2f} us" for k, v in times.items()),
                  flush=True)
        del w_kn, w_nk
        torch.cuda.empty_cache()
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe16b.json"), "w") as f:
            json.dump({"device": info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
