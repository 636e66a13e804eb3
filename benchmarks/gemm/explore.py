"""Tuning sweep for the skinny kernel (tile shape, prefetch, grid size) and the skinny/dequant crossover.

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/explore.py [--quick]
Prints one line per configuration (median ms, CUDA-graph timed, weights rotated past L2) and writes JSON to
$OUT/explore.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()

    import cupy as cp

    from awqfmt.gpu.bench import device_info, make_module, time_cupy
    from awqfmt.gpu.gemm import dequantize_packed, gemm_packed, prepare
    from awqfmt.logical import encode
    from awqfmt.spec import get_spec

    info = device_info()
    print(info, flush=True)
    sms = info["sm_count"]
    l2 = info["l2_bytes"]
    shapes = [(4096, 4096), (8192, 8192), (8192, 28672), (28672, 8192)]
    if args.quick:
        shapes = shapes[:2]
    rng = np.random.default_rng(1)
    out = []
    for K, N in shapes:
        module = make_module(K, N, 128, rng)
        preps = {}
        for layout in ("awq", "gptq"):
            host = {n: a for n, (a, _) in encode(get_spec(layout), module).items()}
            dev = {n: cp.asarray(a) for n, a in host.items()}
            n_rot = max(1, min(16, math.ceil(3 * l2 / (K * N // 2))))
            preps[layout] = [prepare(layout, dev if i == 0 else {n: a.copy() for n, a in dev.items()}, group_size=128)
                             for i in range(n_rot)]
        n16 = max(1, min(8, math.ceil(3 * l2 / (K * N * 2))))
        Ws = [cp.random.standard_normal((K, N), dtype=cp.float32).astype(cp.float16) for _ in range(n16)]

        def t_ours(layout, x, y, method, config=None):
            return time_cupy([lambda p=p: gemm_packed(layout, p, x, group_size=128, out=y, method=method,
                                                      config=config) for p in preps[layout]], args.reps)["ms"]

        for M in (1, 16, 32, 64, 256, 4096):
            x = cp.asarray(rng.standard_normal((M, K)).astype(np.float16))
            y = cp.empty((M, N), cp.float16)
            cub = time_cupy([lambda W=W: cp.matmul(x, W, out=y) for W in Ws], args.reps)["ms"]
            print(f"== {K}x{N} M={M} cublas {cub:.4f} ms", flush=True)
            if M <= 16:
                nt = 1 if M <= 8 else 2
                if nt == 1:
                    cfgs = [(2, 1), (2, 3), (2, 4), (1, 2), (1, 3), (1, 4), (4, 3), (4, 4)]
                else:
                    cfgs = [(1, 1), (1, 3), (1, 4), (2, 1), (2, 3)]
                for wc, pf in cfgs:
                    for tb in (None, sms, 2 * sms, 4 * sms):
                        cfg = {"wc": wc, "nt": nt, "pf": pf, "target_blocks": tb}
                        try:
                            t = t_ours("awq", x, y, "skinny", cfg)
                        except Exception as exc:
                            print("  fail", cfg, exc, flush=True)
                            continue
                        out.append({"K": K, "N": N, "M": M, "cfg": cfg, "ms": t, "cublas": cub, "layout": "awq"})
                        print(f"  awq  wc={wc} nt={nt} pf={pf} tb={tb}: {t:.4f} ms  x{cub / t:.2f}", flush=True)
                for wc, pf in ((1, 3), (2, 3)):
                    cfg = {"wc": wc, "nt": nt, "pf": pf}
                    t = t_ours("gptq", x, y, "skinny", cfg)
                    out.append({"K": K, "N": N, "M": M, "cfg": cfg, "ms": t, "cublas": cub, "layout": "gptq"})
                    print(f"  gptq wc={wc} nt={nt} pf={pf} tb=auto : {t:.4f} ms  x{cub / t:.2f}", flush=True)
            elif M <= 256:
                cfgs = [{"wc": 1, "nt": 4, "pf": 3}] if M == 256 else \
                    [{"wc": 1, "nt": 4, "pf": 1}, {"wc": 1, "nt": 4, "pf": 3}, {"wc": 1, "nt": 4, "pf": 4},
                     {"wc": 2, "nt": 2, "pf": 3}]
                for cfg in cfgs:
                    t = t_ours("awq", x, y, "skinny", cfg)
                    out.append({"K": K, "N": N, "M": M, "cfg": cfg, "ms": t, "cublas": cub, "layout": "awq"})
                    print(f"  awq skinny {cfg}: {t:.4f} ms  x{cub / t:.2f}", flush=True)
                t = t_ours("awq", x, y, "dequant")
                out.append({"K": K, "N": N, "M": M, "cfg": "dequant", "ms": t, "cublas": cub, "layout": "awq"})
                print(f"  awq dequant+cublas: {t:.4f} ms  x{cub / t:.2f}", flush=True)
            else:
                t = t_ours("awq", x, y, "dequant")
                out.append({"K": K, "N": N, "M": M, "cfg": "dequant", "ms": t, "cublas": cub, "layout": "awq"})
                print(f"  awq dequant+cublas: {t:.4f} ms  x{cub / t:.2f}", flush=True)
                Wd = cp.empty((K, N), cp.float16)
                for layout in ("awq", "gptq"):
                    td = time_cupy([lambda p=p: dequantize_packed(layout, p, group_size=128, out=Wd)
                                    for p in preps[layout]], args.reps)["ms"]
                    gbs = (K * N * 2.5 + 3 * K * N / 128) / (td * 1e-3) / 1e9
                    print(f"  {layout} dequant only: {td:.4f} ms  {gbs:.0f} GB/s", flush=True)
                    out.append({"K": K, "N": N, "M": M, "cfg": "dequant-only", "ms": td, "cublas": cub,
                                "layout": layout})
                del Wd
        del preps, Ws
        cp.get_default_memory_pool().free_all_blocks()
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "explore.json"), "w") as f:
            json.dump({"device": info, "rows": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
