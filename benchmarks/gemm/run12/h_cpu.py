"""Run 12h: is the dequantize + cupy.matmul path launch-bound at M = 4096? CPU time per call (Python, no sync)
against GPU time per call (CUDA events over the same calls), for gemm_packed(method="dequant"), its two parts,
and the baseline cupy.matmul / torch.matmul."""
import time, statistics, json, os
import numpy as np
import cupy as cp
from awqfmt.gpu.bench import make_module, prepared_copies, device_info
from awqfmt.gpu.gemm import gemm_packed, dequantize_packed

l2 = device_info()["l2_bytes"] or (50 << 20)
rng = np.random.default_rng(5)
out = []
for K, N, M in [(4096, 4096, 4096), (4096, 4096, 256), (8192, 8192, 4096)]:
    module = make_module(K, N, 128, rng)
    preps = prepared_copies(module, "awq", l2)
    x = cp.asarray(rng.standard_normal((M, K), dtype=np.float32).astype(np.float16))
    y = cp.empty((M, N), cp.float16)
    W = cp.empty((K, N), cp.float16)
    B = cp.asarray(rng.standard_normal((K, N), dtype=np.float32).astype(np.float16))
    fns = {
        "gemm_packed(dequant)": lambda i: gemm_packed("awq", preps[i % len(preps)], x, group_size=128, out=y, method="dequant"),
        "dequantize_packed": lambda i: dequantize_packed("awq", preps[i % len(preps)], group_size=128, out=W),
        "cupy.matmul": lambda i: cp.matmul(x, B, out=y),
    }
    try:
        import torch
        xt, Bt, yt = torch.as_tensor(x, device="cuda"), torch.as_tensor(B, device="cuda"), torch.empty((M, N), dtype=torch.float16, device="cuda")
        fns["torch.matmul (no graph)"] = lambda i: torch.matmul(xt, Bt, out=yt)
    except Exception as exc:
        print("torch:", exc)
    for name, f in fns.items():
        for i in range(5):
            f(i)
        cp.cuda.Device().synchronize()
        cpu, gpu = [], []
        for _ in range(5):
            a, b = cp.cuda.Event(), cp.cuda.Event()
            a.record()
            t0 = time.perf_counter()
            for i in range(20):
                f(i)
            t1 = time.perf_counter()
            b.record(); b.synchronize()
            cpu.append((t1 - t0) / 20 * 1e6); gpu.append(cp.cuda.get_elapsed_time(a, b) / 20 * 1e3)
        row = {"K": K, "N": N, "M": M, "what": name, "cpu_us_per_call": statistics.median(cpu), "gpu_us_per_call": statistics.median(gpu)}
        out.append(row)
        print(f"{K}x{N} M={M} {name:26s} CPU {row['cpu_us_per_call']:8.1f} us/call  GPU {row['gpu_us_per_call']:8.1f} us/call", flush=True)
    del preps
    cp.get_default_memory_pool().free_all_blocks()
if os.environ.get("OUT"):
    json.dump(out, open(os.path.join(os.environ["OUT"], "h-cpu.json"), "w"), indent=1)
