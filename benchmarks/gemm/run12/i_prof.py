"""Run 12i: Python cost per gemm_packed call (gemv, skinny, dequant paths), CPU vs GPU time per call, and the
cProfile functions that take it."""
import cProfile, pstats, io, time, statistics
import numpy as np
import cupy as cp
from awqfmt.gpu.bench import make_module, prepared_copies
from awqfmt.gpu.gemm import gemm_packed

rng = np.random.default_rng(7)
module = make_module(4096, 4096, 128, rng)
prep = prepared_copies(module, "awq", 0)[0]
for M, method in [(1, "gemv"), (16, "skinny"), (256, "dequant")]:
    x = cp.asarray(rng.standard_normal((M, 4096), dtype=np.float32).astype(np.float16))
    y = cp.empty((M, 4096), cp.float16)
    f = lambda: gemm_packed("awq", prep, x, group_size=128, out=y, method=method)
    for _ in range(5):
        f()
    cp.cuda.Device().synchronize()
    cpu, gpu = [], []
    for _ in range(5):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record(); t0 = time.perf_counter()
        for _ in range(50):
            f()
        t1 = time.perf_counter(); b.record(); b.synchronize()
        cpu.append((t1 - t0) / 50 * 1e6); gpu.append(cp.cuda.get_elapsed_time(a, b) / 50 * 1e3)
    print(f"M={M} {method}: CPU {statistics.median(cpu):.1f} us/call, GPU {statistics.median(gpu):.1f} us/call", flush=True)
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(200):
        f()
    pr.disable()
    cp.cuda.Device().synchronize()
    st = io.StringIO()
    pstats.Stats(pr, stream=st).sort_stats("tottime").print_stats(12)
    print("\n".join(l for l in st.getvalue().splitlines() if l.strip())[:2500], flush=True)
