"""Run-16 probe (2026-11-25 session 13): a GEMV with no K split whose weights are staged in shared memory before
the PDL wait ("staged GEMV"), against the shipped GEMV, at M = 1.

Why (run 16a what-if, run16/a-gemv.json): at 4096x4096, M = 1, the shipped GEMV with its split-K tail patched
out (every block writes y, wrong outputs) takes 4.6 us (3.01x cuBLAS) against 5.3 us shipped; halving its rows
saves only 3%. So the split tail, not the weight stream, stands between it and 3x. A block here owns 32
columns over all of K (N / 32 blocks: 128 at N = 4096, one per SM), copies its K x 16 bytes of weights, its
zeros and scales into shared memory with cp.async *before* griddepcontrol.wait (module data only), so under PDL
those bytes stream while the kernel before still runs; after the wait it reads its x rows, decodes from shared
memory (rows swizzled so a warp's 16-byte reads are conflict-free), reduces across its threads and writes y:
no workspace, no counter, no second pass. Cost: K * 16 bytes of shared memory per block (64 KiB at K = 4096).

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/probe16.py   (writes $OUT/probe16.json)
"""

from __future__ import annotations

import json
import os
import statistics

import numpy as np

STAGED_SRC = r"""
#include "w4a16_common.cuh"

// One step of a warp transpose-reduce: lanes with bit OFF set keep the upper OFF of their 2 * OFF values and
// send the lower ones to lane ^ OFF (and the other way round), each adding what it receives.
template <int OFF>
__device__ __forceinline__ void xpose_step(float (&a)[32], int lane) {
    const bool upper = (lane & OFF) != 0;
#pragma unroll
    for (int j = 0; j < OFF; ++j) {
        const float send = upper ? a[j] : a[j + OFF];
        const float keep = upper ? a[j + OFF] : a[j];
        a[j] = keep + __shfl_xor_sync(0xffffffffu, send, OFF);
    }
}

// T threads; each owns R = K / T consecutive rows (R a multiple of 8 dividing the group size) of the block's
// 4 words (32 columns). Shared memory: the K rows, 16 bytes each, row r at line r / 8, slot (r % 8) ^ ((r / R) % 8)
// (the 8 threads of a quarter-warp read 8 different 16-byte slots: no bank conflicts) | zeros n_g x 16 B |
// scales n_g x 64 B.
// HINT: the weight copies ask L2 for the whole 128-byte line (neighbouring blocks read its other pieces);
// COMP 0: no decode or arithmetic after the wait (y gets the sum of one staged word per thread: timing only).
template <int HINT>
__device__ __forceinline__ void cp_async16_hint(u32 dst, const void* src) {
    if (HINT) asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
    else asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}

template <int LAYOUT, int T, int R, int HINT, int COMP>
__global__ void __launch_bounds__(T, 1)
gemv_staged(const u16* __restrict__ x, const u32* __restrict__ qw, const u32* __restrict__ qz,
            const u16* __restrict__ sc, u16* __restrict__ y, int K, int N, int G)
{
    extern __shared__ __align__(16) unsigned char sm[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int NW = N >> 3, n_g = K / G;
    const int wb = blockIdx.x * 4;
    const u32 s_w = smem_addr(sm), s_z = s_w + (u32)K * 16u, s_s = s_z + (u32)n_g * 16u;
    pdl_trigger();
    for (int r = tid; r < K; r += T) {
        const u32 slot = (u32)((r & 7) ^ ((r / R) & 7));
        cp_async16_hint<HINT>(s_w + ((u32)(r >> 3) * 8u + slot) * 16u, qw + (size_t)r * NW + wb);
    }
    for (int g = tid; g < n_g; g += T) {
        cp_async<16>(s_z + (u32)g * 16u, qz + (size_t)g * NW + wb, true);
#pragma unroll
        for (int j = 0; j < 4; ++j) cp_async<16>(s_s + (u32)g * 64u + 16u * j, sc + (size_t)g * N + 8 * wb + 8 * j, true);
    }
    cp_async_commit();
    const u16* x_t = x;
    pdl_wait(x_t);
    const int r0 = tid * R;
    u32 xr[R / 2];
#pragma unroll
    for (int j = 0; j < R / 8; ++j) {
        const uint4 v = ldx_v4(x_t + r0 + 8 * j);
        xr[4 * j] = v.x; xr[4 * j + 1] = v.y; xr[4 * j + 2] = v.z; xr[4 * j + 3] = v.w;
    }
    cp_async_wait<0>();
    __syncthreads();
    if (!COMP) {
        const uint4 wv = lds_v4(s_w + (u32)tid * 16u);
        const float v = __shfl_xor_sync(0xffffffffu, (float)(wv.x ^ wv.y ^ xr[0]), 1);
        if (tid < 32) y[8 * wb + tid] = f2h(v);
        return;
    }
    const int g = r0 / G;
    u32 zc[4][4];
    {
        const uint4 zw = lds_v4(s_z + (u32)g * 16u);
        dec_npair<LAYOUT>(zw.x, zc[0]); dec_npair<LAYOUT>(zw.y, zc[1]);
        dec_npair<LAYOUT>(zw.z, zc[2]); dec_npair<LAYOUT>(zw.w, zc[3]);
    }
    float acc[32];
#pragma unroll
    for (int j = 0; j < 32; ++j) acc[j] = 0.f;
    const u32 key = (u32)(tid & 7);
#pragma unroll
    for (int b = 0; b < R / 8; ++b) {
        u32 h[4][4];
#pragma unroll
        for (int v = 0; v < 4; ++v)
#pragma unroll
            for (int p = 0; p < 4; ++p) h[v][p] = 0u;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int row = r0 + 8 * b + i;
            const uint4 wv = lds_v4(s_w + ((u32)(row >> 3) * 8u + ((u32)i ^ key)) * 16u);
            const u32 xv = xr[4 * b + (i >> 1)];
            const u32 xx = (i & 1) ? prmt<0x3232>(xv, xv) : prmt<0x1010>(xv, xv);
            const u32 w4[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
            for (int v = 0; v < 4; ++v) {
                u32 d[4];
                dec_npair<LAYOUT>(w4[v], d);
#pragma unroll
                for (int p = 0; p < 4; ++p) h[v][p] = hfma2(hsub2(d[p], zc[v][p]), xx, h[v][p]);
            }
        }
#pragma unroll
        for (int v = 0; v < 4; ++v)
#pragma unroll
            for (int p = 0; p < 4; ++p) {
                acc[8 * v + 2 * p] += h2f_lo(h[v][p]);
                acc[8 * v + 2 * p + 1] += h2f_hi(h[v][p]);
            }
    }
    // scales once (all R rows lie in group g)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const uint4 sv = lds_v4(s_s + (u32)g * 64u + 16u * q);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[8 * q + j] *= scale_f<0>(half_of(sv, j));
    }
    // transpose-reduce across the warp: lane l ends with column l's warp sum
    xpose_step<16>(acc, lane); xpose_step<8>(acc, lane); xpose_step<4>(acc, lane);
    xpose_step<2>(acc, lane); xpose_step<1>(acc, lane);
    __shared__ float red[T / 32][32];
    red[warp][lane] = acc[0];
    __syncthreads();
    if (tid < 32) {
        float v = 0.f;
#pragma unroll
        for (int w = 0; w < T / 32; ++w) v += red[w][tid];
        y[8 * wb + tid] = f2h(v);
    }
}
"""

# (threads, rows per thread, L2::128B hint, compute)
NAMES = {v: "gemv_staged<0, %d, %d, %d, %d>" % v
         for v in [(256, 16, 0, 1), (256, 16, 1, 1), (512, 8, 1, 1), (256, 16, 1, 0), (256, 16, 0, 0)]}


def _kernels():
    import cupy as cp

    from awqfmt.gpu.gemm import kernels_dir

    common = (kernels_dir() / "w4a16_common.cuh").read_text()
    src = STAGED_SRC.replace('#include "w4a16_common.cuh"', common)
    mod = cp.RawModule(code=src, options=("-std=c++17",), name_expressions=list(NAMES.values()))
    return {k: mod.get_function(n) for k, n in NAMES.items()}


def main() -> int:
    import cupy as cp

    from awqfmt.gpu.bench import _reference_check, device_info, time_cupy
    from awqfmt.gpu.gemm import gemm_packed
    from awqfmt.gpu.launch import launch_pdl
    from probe10 import _module
    from probe15 import cell_inputs

    info = device_info()
    l2 = info["l2_bytes"] or (50 << 20)
    kerns = _kernels()
    rng = np.random.default_rng(16)
    rows = []
    shipped_cfg = {"vw": 2, "fl": 8, "pf": 0, "waves": 1, "l2pf": 1}
    for K, N in [(4096, 4096)]:
        module, preps, _ = _module(K, N, rng)
        x_host, x, y, cols, cub = cell_inputs(K, N, 1, rng, l2)
        n_g = K // 128
        smem = K * 16 + n_g * 16 + n_g * 64
        for k in kerns.values():
            k.max_dynamic_shared_size_bytes = smem
        fns = {"shipped": (lambda pdl: [lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y,
                                                                 config=dict(shipped_cfg, pdl=int(pdl)))
                                         for p in preps])}
        for (T, R, hint, comp), kern in kerns.items():
            if T * R != K:
                continue

            def mk(pdl, kern=kern, T=T):
                out = []
                for p in preps:
                    args = (x, p.qw, p.qz, p.sc, y, np.int32(K), np.int32(N), np.int32(128))
                    if pdl:
                        out.append(lambda a=args: launch_pdl(kern, (N // 32,), (T,), a, smem))
                    else:
                        out.append(lambda a=args: kern((N // 32,), (T,), a, shared_mem=smem))
                return out
            fns[f"staged T={T} hint={hint}" + ("" if comp else " copy-only")] = mk
        errs = {}
        for name, mk in fns.items():
            if "copy-only" in name:
                errs[name] = None
                continue
            y.fill(cp.float16(float("nan")))
            for f in mk(True):
                f()
            cp.cuda.runtime.deviceSynchronize()
            errs[name] = _reference_check(module, x_host, y, cols)
            ynan = int(cp.isnan(y).sum())
            print(f"{name}: rel err {errs[name]:.2e}, NaN outputs {ynan}", flush=True)
        times = {(n, pdl): [] for n in fns for pdl in (True, False)}
        for _ in range(5):
            for name, mk in fns.items():
                for pdl in (True, False):
                    times[(name, pdl)].append(time_cupy(mk(pdl), 100)["ms"])
        for (name, pdl), ts in times.items():
            med = statistics.median(ts)
            row = {"K": K, "N": N, "M": 1, "variant": name, "pdl": pdl, "ms": med, "rounds": ts, "cublas_ms": cub,
                   "speedup": cub / med, "rel_err": errs[name]}
            rows.append(row)
            print(f"{K}x{N} M=1 {name:30s} pdl={int(pdl)} {med * 1e3:6.2f} us  x{cub / med:.2f} cuBLAS "
                  f"(cuBLAS {cub * 1e3:.2f} us, target {cub / 3 * 1e3:.2f})", flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe16.json"), "w") as f:
            json.dump({"device": info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
