"""Run-12 probes (2026-11-25 session 9).

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/probe12.py chunk|cfgs [...]
  chunk  M = 4096 (large-M path): cuBLAS fp16 on random weights against dequantize-all + one cupy.matmul and
         against dequantize + GEMM one slice of `chunk_cols` columns at a time (each slice still in L2 when
         its GEMM reads it). Blocks of --reps calls, every call between CUDA events; the variants' order is
         reversed every other round (ABBA over all variants), medians of the per-round medians. Needs the
         `chunk_cols` option of the dequantize path as committed in b5f67a6 (reverted after run 12a showed no
         gain): run it from that commit.
  cfgs   small M: each configuration of --cfgs for --kind (gemv / skinny) against cuBLAS fp16 (torch,
         graph-timed), in alternating rounds, graph-timed like the bench.
Writes $OUT/probe12-<mode>.json when OUT is set; prints one line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np


def _per_call_ms(cp, fns, n):
    """Median ms of n calls of fns (round-robin), each call between two CUDA events."""
    ev = [cp.cuda.Event() for _ in range(n + 1)]
    ev[0].record()
    for i in range(n):
        fns[i % len(fns)]()
        ev[i + 1].record()
    ev[-1].synchronize()
    return statistics.median(cp.cuda.get_elapsed_time(ev[i], ev[i + 1]) for i in range(n))


def mode_chunk(args, out):
    import cupy as cp

    from awqfmt.gpu.bench import device_info, make_module, prepared_copies
    from awqfmt.gpu.gemm import gemm_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(21)
    M = args.m
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        module = make_module(K, N, 128, rng)
        preps = prepared_copies(module, "awq", l2)
        x = cp.asarray(rng.standard_normal((M, K), dtype=np.float32).astype(np.float16))
        y = cp.empty((M, N), cp.float16)
        B = [cp.asarray(rng.standard_normal((K, N), dtype=np.float32).astype(np.float16)) for _ in range(2)]
        fns = {"cublas": [lambda b=b: cp.matmul(x, b, out=y) for b in B]}
        for nc in [N] + [int(c) for c in args.chunks.split(",") if int(c) < N]:
            fns[f"cols{nc}"] = [lambda p=p, nc=nc: gemm_packed("awq", p, x, group_size=128, out=y, method="dequant",
                                                               config={"chunk_cols": nc}) for p in preps]
        ref = None
        for name, f in fns.items():  # warm-up; each variant's y against the one-piece path's (same x, weights)
            f[0]()
            if name != "cublas":
                got = cp.asnumpy(y).astype(np.float64)
                ref = got if ref is None else ref
                diff = float(np.abs(got - ref).max() / np.abs(ref).max())
                print(f"{shape} {name}: max |y - y_one_piece| / max |y| = {diff:.2e}", flush=True)
            for g in f[1:3]:
                g()
        names = list(fns)
        times = {n: [] for n in names}
        for r in range(args.rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                times[n].append(_per_call_ms(cp, fns[n], args.reps))
        base = statistics.median(times["cublas"])
        for n in names:
            med = statistics.median(times[n])
            out.append({"K": K, "N": N, "M": M, "variant": n, "ms": med, "rounds": times[n], "x_cublas": base / med})
            print(f"{K}x{N} M={M} {n:10s} {med:.4f} ms  x{base / med:.3f} cuBLAS", flush=True)
        del preps, B, fns
        cp.get_default_memory_pool().free_all_blocks()


def mode_cfgs(args, out):
    import cupy as cp

    from probe11 import _case  # the same per-shape setup: module copies past L2, x, y, cuBLAS time

    from awqfmt.gpu.bench import device_info, time_cupy
    from awqfmt.gpu.gemm import gemm_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(22)
    cfgs = json.loads(args.cfgs)
    for shape in args.shapes.split(","):
        K, N, preps, x, y, cub = _case(shape, args.m, rng, l2, args.reps)
        times = [[] for _ in cfgs]
        for r in range(args.rounds):
            order = range(len(cfgs)) if r % 2 == 0 else range(len(cfgs) - 1, -1, -1)
            for i in order:
                times[i].append(time_cupy([lambda p=p, c=cfgs[i]: gemm_packed(
                    "awq", p, x, group_size=128, out=y, method=args.kind, config=c) for p in preps], args.reps)["ms"])
        for cfg, ts in zip(cfgs, times):
            med = statistics.median(ts)
            out.append({"K": K, "N": N, "M": args.m, "kind": args.kind, "cfg": cfg, "ms": med, "rounds": ts,
                        "cublas_ms": cub})
            print(f"{K}x{N} M={args.m} {args.kind} {json.dumps(cfg):60s} {1000 * med:7.2f} us  x{cub / med:.2f}",
                  flush=True)
        del preps
        cp.get_default_memory_pool().free_all_blocks()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["chunk", "cfgs"])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--shapes", default="4096x4096,8192x8192")
    ap.add_argument("--chunks", default="512,1024,2048,4096")
    ap.add_argument("--kind", default="gemv")
    ap.add_argument("--cfgs", default='[{"vw": 2, "fl": 8, "pf": 1, "waves": 1}]')
    args = ap.parse_args()
    out: list = []
    {"chunk": mode_chunk, "cfgs": mode_cfgs}[args.mode](args, out)
    if os.environ.get("OUT") and out:
        with open(os.path.join(os.environ["OUT"], f"probe12-{args.mode}-{args.kind}-m{args.m}.json"), "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
