"""Run-13 probes (2026-11-25 session 10).

  hold    every timer of the bench with and without the spin kernel in front of each sample (bench.HOLD_NS):
          ours (GEMV at M = 1, skinny at M = 16, dequantize + cupy.matmul at M = 4096) and cuBLAS fp16 (cupy and
          torch), alternating rounds; the ratio ours / cuBLAS under each method.
  pdl     the small-M kernels launched with and without programmatic dependent launch (AWQFMT_PDL=0), same
          data, alternating rounds, against cuBLAS fp16 (torch, graph-timed) in the same rounds.
Writes $OUT/probe13-<mode>.json when OUT is set; prints one line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

CFGS = {1: ("gemv", {"vw": 2, "fl": 8, "pf": 1, "waves": 1}),
        16: ("skinny", {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}),
        4096: ("dequant", None)}


def mode_hold(args, out):
    import cupy as cp
    import torch

    from awqfmt.gpu import bench
    from awqfmt.gpu.bench import device_info, make_module, prepared_copies, time_cupy, time_torch
    from awqfmt.gpu.gemm import gemm_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(21)
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        module = make_module(K, N, 128, rng)
        preps = prepared_copies(module, "awq", l2)
        n_rot = max(2, min(8, -(-3 * l2 // (K * N * 2))))
        Wc = [cp.asarray(rng.standard_normal((K, N), dtype=np.float32).astype(np.float16)) for _ in range(n_rot)]
        Wt = [torch.as_tensor(w, device="cuda") for w in Wc]
        for M in (int(m) for m in args.ms.split(",")):
            method, cfg = CFGS[M]
            x = cp.asarray(rng.standard_normal((M, K), dtype=np.float32).astype(np.float16))
            y = cp.empty((M, N), cp.float16)
            xt, yt = torch.as_tensor(x, device="cuda"), torch.as_tensor(y, device="cuda")
            fns = {
                "ours": lambda: time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y, method=method,
                                                                   config=cfg) for p in preps], args.reps)["ms"],
                "cupy": lambda: time_cupy([lambda w=w: cp.matmul(x, w, out=y) for w in Wc], args.reps)["ms"],
                "torch": lambda: time_torch([lambda w=w: torch.matmul(xt, w, out=yt) for w in Wt], args.reps)["ms"],
            }
            times = {(h, k): [] for h in ("hold", "plain") for k in fns}
            for r in range(args.rounds):
                for h in (("hold", "plain") if r % 2 == 0 else ("plain", "hold")):
                    bench._hold_state["ns"] = bench.HOLD_NS if h == "hold" else 0
                    for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                        times[(h, k)].append(fns[k]())
            bench._hold_state["ns"] = bench.HOLD_NS
            for h in ("hold", "plain"):
                med = {k: statistics.median(times[(h, k)]) for k in fns}
                best = min(med["cupy"], med["torch"])
                row = {"K": K, "N": N, "M": M, "method": method, "timing": h, **{f"{k}_ms": v for k, v in med.items()},
                       "speedup": best / med["ours"], "rounds": {k: times[(h, k)] for k in fns}}
                out.append(row)
                print(f"{K}x{N} M={M} {method:8s} {h:5s}: ours {med['ours']:.4f} cupy {med['cupy']:.4f} "
                      f"torch {med['torch']:.4f} ms -> x{best / med['ours']:.3f}", flush=True)
        del preps, Wc, Wt
        cp.get_default_memory_pool().free_all_blocks()


def mode_pdl(args, out):
    import cupy as cp
    import torch

    from awqfmt.gpu.bench import device_info, make_module, prepared_copies, time_cupy, time_torch
    from awqfmt.gpu.gemm import gemm_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(22)
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        module = make_module(K, N, 128, rng)
        preps = prepared_copies(module, "awq", l2)
        n_rot = max(2, min(8, -(-3 * l2 // (K * N * 2))))
        Wt = [torch.randn(K, N, device="cuda", dtype=torch.float16) for _ in range(n_rot)]
        for M in (int(m) for m in args.ms.split(",")):
            method, cfg = CFGS[M]
            cfgs = json.loads(args.cfgs).get(str(M), [cfg])
            x = cp.asarray(rng.standard_normal((M, K), dtype=np.float32).astype(np.float16))
            y = cp.empty((M, N), cp.float16)
            xt, yt = torch.as_tensor(x, device="cuda"), torch.as_tensor(y, device="cuda")
            for cfg in cfgs:
                times = {"pdl": [], "plain": [], "cublas": []}
                for r in range(args.rounds):
                    for h in (("pdl", "plain", "cublas") if r % 2 == 0 else ("cublas", "plain", "pdl")):
                        if h == "cublas":
                            times[h].append(time_torch([lambda w=w: torch.matmul(xt, w, out=yt) for w in Wt],
                                                       args.reps)["ms"])
                            continue
                        os.environ["AWQFMT_PDL"] = "1" if h == "pdl" else "0"
                        times[h].append(time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y,
                                                                           method=method, config=cfg)
                                                   for p in preps], args.reps)["ms"])
                os.environ.pop("AWQFMT_PDL", None)
                med = {k: statistics.median(v) for k, v in times.items()}
                row = {"K": K, "N": N, "M": M, "method": method, "cfg": cfg, **{f"{k}_ms": v for k, v in med.items()},
                       "speedup_pdl": med["cublas"] / med["pdl"], "speedup_plain": med["cublas"] / med["plain"],
                       "rounds": times}
                out.append(row)
                print(f"{K}x{N} M={M} {method:6s} {json.dumps(cfg)}: plain {med['plain']:.4f} (x{row['speedup_plain']:.3f}) "
                      f"pdl {med['pdl']:.4f} (x{row['speedup_pdl']:.3f}) cuBLAS {med['cublas']:.4f} ms, "
                      f"pdl/plain {med['pdl'] / med['plain']:.3f}", flush=True)
        del preps, Wt
        cp.get_default_memory_pool().free_all_blocks()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["hold", "pdl"])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--ms", default="1,16,4096")
    ap.add_argument("--shapes", default="4096x4096,8192x8192")
    ap.add_argument("--cfgs", default="{}", help='pdl: {"M": [config, ...]} to time instead of CFGS[M]')
    args = ap.parse_args()
    out: list = []
    {"hold": mode_hold, "pdl": mode_pdl}[args.mode](args, out)
    if os.environ.get("OUT") and out:
        with open(os.path.join(os.environ["OUT"], f"probe13-{args.mode}.json"), "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
