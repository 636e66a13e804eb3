"""Run-15e probe (2026-11-25 session 12): how much work after the PDL wait can two co-resident launches hide?

probe15 (run 15a) found a read-only kernel at 4096x4096 taking 3.43 us per launch with PDL (4.64 us without),
but that kernel is light enough for up to 8 launches to share an SM. A GEMM's blocks are heavy (the GEMV: half
the register file; the skinny kernel at M = 16: all of it). Here the same read (packed weights + zeros + scales
of 4096x4096, 16-byte loads, all issued before the wait) runs one block of 256 threads per SM, with dynamic
shared memory sized so that at most 2 blocks (light: any number) fit on an SM, and after the wait thread 0 spins
for `post` ns (the stand-in for a GEMM's work after the wait: x, mma, reduction, y) before the block's one
write. Per launch: if two launches overlap (the next one's reads during this one's post-wait work), the time
stays near the read floor until `post` exceeds it; if not, it grows by `post`.

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/probe15e.py   (writes $OUT/probe15e.json)
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

SRC = r"""
extern "C" __global__ void __launch_bounds__(256) staged(const uint4* __restrict__ p, long long n_per_block,
                                                         unsigned* out, unsigned long long post_ns, int pdl) {
    extern __shared__ unsigned char occupancy_only[];  // sized by the host: limits blocks per SM
    if (pdl) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    const uint4* q = p + (long long)blockIdx.x * n_per_block;
    unsigned acc = 0;
    long long i = threadIdx.x;
    for (; i + 3 * 256 < n_per_block; i += 4 * 256) {
        uint4 v[4];
        #pragma unroll
        for (int j = 0; j < 4; ++j) asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
            : "=r"(v[j].x), "=r"(v[j].y), "=r"(v[j].z), "=r"(v[j].w) : "l"(q + i + j * 256));
        #pragma unroll
        for (int j = 0; j < 4; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
    }
    for (; i < n_per_block; i += 256) { uint4 v = q[i]; acc ^= v.x ^ v.y ^ v.z ^ v.w; }
    acc = __reduce_xor_sync(0xffffffffu, acc);
    if (pdl) asm volatile("griddepcontrol.wait;" ::: "memory");
    if (threadIdx.x == 0 && post_ns) {
        unsigned long long t0, t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
        do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < post_ns);
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) atomicXor(out + blockIdx.x, acc ^ (unsigned)threadIdx.x);
    occupancy_only[threadIdx.x] = (unsigned char)acc;
}
"""


def main() -> int:
    import cupy as cp

    from awqfmt.gpu.bench import device_info, time_cupy
    from awqfmt.gpu.launch import launch_pdl

    info = device_info()
    l2 = info["l2_bytes"] or (50 << 20)
    sms = cp.cuda.runtime.getDeviceProperties(0)["multiProcessorCount"]
    kern = cp.RawKernel(SRC, "staged", options=("-std=c++17",))
    kern.max_dynamic_shared_size_bytes = 110 * 1024
    K = N = 4096
    nbytes = K * N // 2 + (K // 128) * N * 2 + (K // 128) * N // 2
    per_block = -(-nbytes // (16 * sms))  # uint4 per block, one block per SM
    n_rot = max(1, min(16, math.ceil(3 * l2 / (per_block * 16 * sms))))
    bufs = [cp.random.randint(0, 2 ** 31, per_block * 4 * sms, dtype=cp.int32) for _ in range(n_rot)]
    sink = cp.zeros(sms, cp.uint32)
    rows = []
    for smem_kb in (1, 100):  # light (many launches per SM) / at most two blocks per SM
        for post in (0, 500, 1000, 2000, 3000):
            row = {"smem_kb": smem_kb, "post_ns": post}
            for pdl in (0, 1):
                args = [(b, np.int64(per_block), sink, np.uint64(post), np.int32(pdl)) for b in bufs]
                if pdl:
                    fns = [lambda a=a: launch_pdl(kern, (sms,), (256,), a, smem_kb * 1024) for a in args]
                else:
                    fns = [lambda a=a: kern((sms,), (256,), a, shared_mem=smem_kb * 1024) for a in args]
                row["pdl_us" if pdl else "plain_us"] = time_cupy(fns, 100)["ms"] * 1e3
            rows.append(row)
            print(f"smem {smem_kb:3d} KB  post {post:5d} ns   plain {row['plain_us']:6.2f} us   "
                  f"PDL {row['pdl_us']:6.2f} us", flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe15e.json"), "w") as f:
            json.dump({"device": info, "bytes": nbytes, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
