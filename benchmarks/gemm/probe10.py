"""Run-10 probes (2026-11-25 session 7): where the missed GEMM targets lose time.

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/probe10.py cublas|gemv|one [...]
  cublas  cuBLAS fp16 at M = 256 / 4096 with the weight as [K, N] (x @ W, what the baseline times) and as
          [N, K] (x @ Wt.T, nn.Linear's layout), through torch (graph-timed) and cupy; plus our
          dequantize + matmul with the matmul through torch, the pair timed inside one torch graph.
  gemv    GEMV configurations at M = 1 beyond gemv_candidate_configs (rows per thread, blocks per SM).
  floor   a trivial kernel's graph-replay time and a device copy of each shape's packed bytes.
  one     launch one kernel configuration a few times (a target for ncu): --kind skinny|gemv --K --N --M --cfg
Writes $OUT/probe10-<mode>.json when OUT is set; prints one line per measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

SHAPES = [(4096, 4096), (8192, 8192), (8192, 28672), (28672, 8192)]


def _module(K, N, rng):
    from awqfmt.gpu.bench import device_info, make_module, prepared_copies

    l2 = device_info()["l2_bytes"] or (50 << 20)
    module = make_module(K, N, 128, rng)
    return module, prepared_copies(module, "awq", l2), l2


def on_torch_stream(fn):
    """Run CuPy work on torch's current stream (so a torch graph capture records it)."""
    import cupy as cp
    import torch

    def run():
        with cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):
            fn()
    return run


def mode_cublas(args, out):
    import cupy as cp
    import torch

    from awqfmt.gpu.bench import _reference_check, time_cupy, time_torch
    from awqfmt.gpu.gemm import dequantize_packed

    rng = np.random.default_rng(10)
    for K, N in SHAPES:
        module, preps, l2 = _module(K, N, rng)
        n16 = max(1, min(8, math.ceil(3 * l2 / (K * N * 2))))
        W = [torch.randn((K, N), device="cuda", dtype=torch.float16) for _ in range(n16)]
        Wt = [torch.randn((N, K), device="cuda", dtype=torch.float16) for _ in range(n16)]
        for M in args.ms:
            x_host = rng.standard_normal((M, K), dtype=np.float32).astype(np.float16)
            xt = torch.as_tensor(x_host, device="cuda")
            yt = torch.empty((M, N), dtype=torch.float16, device="cuda")
            xc, yc = cp.asarray(xt), cp.asarray(yt)
            row = {"K": K, "N": N, "M": M}
            for rep in range(2):  # twice: the spread between the two is the noise
                row[f"torch_nn_{rep}"] = time_torch([lambda w=w: torch.matmul(xt, w, out=yt) for w in W], args.reps)["ms"]
                row[f"torch_tn_{rep}"] = time_torch([lambda w=w: torch.matmul(xt, w.t(), out=yt) for w in Wt], args.reps)["ms"]
                Wc = [cp.asarray(w) for w in W]
                Wtc = [cp.asarray(w) for w in Wt]
                row[f"cupy_nn_{rep}"] = time_cupy([lambda w=w: cp.matmul(xc, w, out=yc) for w in Wc], args.reps)["ms"]
                row[f"cupy_tn_{rep}"] = time_cupy([lambda w=w: cp.matmul(xc, w.T, out=yc) for w in Wtc], args.reps)["ms"]
                # ours: dequantize into one [K, N] buffer, then torch.matmul, both captured in one torch graph
                Wd = dequantize_packed("awq", preps[0], group_size=128, check=True)
                Wdt = torch.as_tensor(Wd, device="cuda")
                fns = [on_torch_stream(lambda p=p: dequantize_packed("awq", p, group_size=128, out=Wd)) for p in preps]
                pair = [lambda f=f: (f(), torch.matmul(xt, Wdt, out=yt)) for f in fns]
                row[f"ours_torch_nn_{rep}"] = time_torch(pair, args.reps)["ms"]
                row[f"dequant_{rep}"] = time_torch(fns, args.reps)["ms"]
                row[f"matmul_on_dequant_{rep}"] = time_torch([lambda: torch.matmul(xt, Wdt, out=yt)], args.reps)["ms"]
            cols = np.unique(np.concatenate([np.arange(64), np.arange(N - 64, N)]))
            torch.cuda.synchronize()
            row["rel_err"] = _reference_check(module, x_host, cp.asarray(yt), cols)
            out.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
            del xt, yt, xc, yc
        del W, Wt, preps
        torch.cuda.empty_cache()
        cp.get_default_memory_pool().free_all_blocks()


def mode_gemv(args, out):
    import cupy as cp

    from awqfmt.gpu.bench import _reference_check, time_cupy, torch_matmul_ms
    from awqfmt.gpu.gemm import gemm_packed

    rng = np.random.default_rng(11)
    configs = json.loads(args.configs)
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        module, preps, l2 = _module(K, N, rng)
        M = args.m
        x_host = rng.standard_normal((M, K), dtype=np.float32).astype(np.float16)
        x = cp.asarray(x_host)
        y = cp.empty((M, N), cp.float16)
        cub = torch_matmul_ms(x_host, N, args.reps, l2)
        cols = np.unique(np.concatenate([np.arange(64), np.arange(N - 64, N)]))
        print(f"== {K}x{N} M={M} cuBLAS (torch, graph) {cub:.4f} ms", flush=True)
        for cfg in configs:
            cfg = dict(cfg)
            method = cfg.pop("method", "gemv")
            try:
                y.fill(cp.nan)
                info = {}
                gemm_packed("awq", preps[0], x, group_size=128, out=y, method=method, config=cfg, check=True, info=info)
                err = _reference_check(module, x_host, y, cols)
                t = time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y, method=method, config=cfg)
                               for p in preps], args.reps)["ms"]
            except Exception as exc:
                print(f"  {method} {cfg}: FAILED {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                continue
            row = {"K": K, "N": N, "M": M, "method": method, "cfg": cfg, "ms": t, "cublas_ms": cub,
                   "speedup": cub / t, "rel_err": err, "grid": info.get("grid")}
            out.append(row)
            print(f"  {method} {json.dumps(cfg):55s} grid {info.get('grid')} {t:.4f} ms x{cub / t:.2f} err {err:.1e}",
                  flush=True)
        del preps
        cp.get_default_memory_pool().free_all_blocks()


def mode_floor(args, out):
    """What a tiny graph-launched kernel costs, and how fast a copy of one module's packed bytes can be."""
    import cupy as cp

    from awqfmt.gpu.bench import time_cupy

    tiny = cp.ElementwiseKernel("float32 a", "float32 b", "b = a + 1.0f", "awqfmt_tiny")
    a = cp.ones(1, cp.float32)
    b = cp.empty_like(a)
    row = {"tiny_kernel_ms": time_cupy([lambda: tiny(a, b)], args.reps)["ms"]}
    # the least a kernel that reads every packed byte once can take: 16-byte streaming loads, grid-stride,
    # XOR-folded, one word written per block (2 blocks of 256 threads per SM, 4 loads in flight per thread)
    from probe15 import READ_SRC  # the same kernel, with a PDL twin (run 15a)

    read = cp.RawKernel(READ_SRC, "read_plain", options=("-std=c++17",))
    sms = cp.cuda.runtime.getDeviceProperties(0)["multiProcessorCount"]
    for K, N in SHAPES:
        nbytes = K * N // 2
        n_rot = max(1, min(16, math.ceil(150e6 / nbytes)))
        src = [cp.ones(nbytes // 4, cp.float32) for _ in range(n_rot)]
        dst = [cp.empty_like(s) for s in src]
        t = time_cupy([lambda s=s, d=d: d.__setitem__(Ellipsis, s) for s, d in zip(src, dst)], args.reps)["ms"]
        row[f"copy_{K}x{N}_packed_ms"] = t
        row[f"copy_{K}x{N}_TBps"] = 2 * nbytes / (t * 1e-3) / 1e12
        sink = cp.zeros(8 * sms, cp.uint32)
        for waves in (1, 2, 4):
            grid = waves * 2 * sms
            t = time_cupy([lambda s=s: read((grid,), (256,), (s, np.int64(nbytes // 16), sink)) for s in src],
                          args.reps)["ms"]
            row[f"read_{K}x{N}_w{waves}_ms"] = t
            row[f"read_{K}x{N}_w{waves}_TBps"] = nbytes / (t * 1e-3) / 1e12
        del src, dst
    out.append(row)
    print(json.dumps(row), flush=True)


def mode_one(args, out):
    import cupy as cp

    from awqfmt.gpu.gemm import gemm_packed

    rng = np.random.default_rng(12)
    module, preps, _ = _module(args.K, args.N, rng)
    x = cp.asarray(rng.standard_normal((args.M, args.K), dtype=np.float32).astype(np.float16))
    y = cp.empty((args.M, args.N), cp.float16)
    cfg = json.loads(args.cfg)
    for i in range(args.launches):
        gemm_packed("awq", preps[i % len(preps)], x, group_size=128, out=y, method=args.kind, config=cfg)
    cp.cuda.Device().synchronize()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["cublas", "gemv", "one", "floor"])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--ms", type=lambda s: [int(v) for v in s.split(",")], default=[4096])
    ap.add_argument("--m", type=int, default=1)
    ap.add_argument("--shapes", default="4096x4096,8192x8192")
    ap.add_argument("--configs", default="[]")
    ap.add_argument("--kind", default="skinny")
    ap.add_argument("--K", type=int, default=8192)
    ap.add_argument("--N", type=int, default=28672)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--cfg", default="{}")
    ap.add_argument("--launches", type=int, default=8)
    args = ap.parse_args()
    out: list = []
    {"cublas": mode_cublas, "gemv": mode_gemv, "one": mode_one, "floor": mode_floor}[args.mode](args, out)
    if os.environ.get("OUT") and out:
        with open(os.path.join(os.environ["OUT"], f"probe10-{args.mode}.json"), "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
