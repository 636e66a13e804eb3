"""Old vs new skinny-kernel configurations at one M (default 16), AWQ layout, group 128, against cuBLAS fp16.

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/compare_chk.py [--m 16] [--reps 50]
Every configuration of candidate_configs(M) (plus any extra given as JSON with --extra) is timed as CUDA-graph
replays over weight copies rotated past L2 (bench.time_cupy), and its output checked against a float64
reference on 128 columns; cuBLAS = graph-timed torch.matmul (the faster baseline at small M) in the same run.
Prints one line per configuration and writes $OUT/compare_chk.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--extra", default="[]", help="JSON list of further configurations")
    ap.add_argument("--shapes", default="4096x4096,8192x8192,8192x28672,28672x8192")
    args = ap.parse_args()

    import cupy as cp

    from awqfmt.gpu.bench import (_reference_check, device_info, make_module, prepared_copies, time_cupy,
                                  torch_matmul_ms)
    from awqfmt.gpu.gemm import candidate_configs, gemm_packed

    info = device_info()
    print(info["name"], flush=True)
    l2 = info["l2_bytes"] or (50 << 20)
    M = args.m
    configs = candidate_configs(M) + json.loads(args.extra)
    rng = np.random.default_rng(3)
    rows = []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        module = make_module(K, N, 128, rng)
        preps = prepared_copies(module, "awq", l2)
        x_host = rng.standard_normal((M, K), dtype=np.float32).astype(np.float16)
        x = cp.asarray(x_host)
        y = cp.empty((M, N), cp.float16)
        cub = torch_matmul_ms(x, N, args.reps, l2)
        cols = np.unique(np.concatenate([np.arange(64), np.arange(N - 64, N)]))
        print(f"== {K}x{N} M={M} cuBLAS (torch, graph) {cub:.4f} ms", flush=True)
        for cfg in configs:
            try:
                y.fill(cp.nan)
                gemm_packed("awq", preps[0], x, group_size=128, out=y, method="skinny", config=cfg, check=True)
                err = _reference_check(module, x_host, y, cols)
                t = time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y, method="skinny",
                                                       config=cfg) for p in preps], args.reps)["ms"]
            except Exception as exc:
                print(f"  {cfg}: FAILED {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                rows.append({"K": K, "N": N, "M": M, "cfg": cfg, "error": str(exc)[:200]})
                continue
            rows.append({"K": K, "N": N, "M": M, "cfg": cfg, "ms": t, "cublas_ms": cub, "speedup": cub / t,
                         "rel_err": err})
            print(f"  {json.dumps(cfg):60s} {t:.4f} ms  x{cub / t:.2f}  err {err:.1e}", flush=True)
        del preps
        cp.get_default_memory_pool().free_all_blocks()
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "compare_chk.json"), "w") as f:
            json.dump({"device": info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
