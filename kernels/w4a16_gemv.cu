// CUDA-core GEMV for 1-4 tokens (decode): y[M, N] = x[M, K] @ W[K, N], M = MT <= 4.
//
// x fp16 row-major; W = (q - z[g]) * s[g], q/z 4-bit packed, s fp16 or bf16 (raw bits), g = k / G.
//
// Why not the tensor-core skinny kernel at M = 1: an mma there is 8 tokens wide, so 7/8 of every mma and
// of its operand shuffling is wasted, and that kernel is limited by instruction issue. Here every
// instruction serves the one (or few) tokens:
//
//   decode  = one word of 8 columns -> four fp16x2 pairs of ADJACENT columns (2p, 2p+1), value 1024 + q.
//             AWQ order: (w >> 4p) & 0x000F000F | 0x64006400, one lop3 per pair (plus a shift): this is
//             exactly the pairing the [0,2,4,6,1,3,5,7] interleave was made for. Natural order needs a byte
//             permute per pair first (dec_npair_nat_lop3) or shifts and masks (dec_npair_nat_shift).
//             GPTQ words (8 k of one column) are byte-permuted two columns at a time, then the same lop3.
//   product = hsub2 with the pair of (1024 + z): (q - z) exactly in fp16; one HFMA2 per pair and token with
//             x[k] in both halves, accumulated in fp16 over FL rows (a "batch", inside one group), then
//             converted to fp32 and multiplied by the fp32 scale: acc[col] += s * sum_batch (q - z) x.
//             Per 8 weights and token: 3 shifts + 4 lop3 + 4 hsub2 + 4 hfma2 (AWQ), then 2 cvt + 2 FFMA
//             per column and batch. fp16 partial sums of FL <= 8 products: the error is ~2^-11 relative to
//             a batch's partial sum (the reference tests bound the output at 2e-3). Those partial sums stay
//             finite while |x| < ~65504 / (15 * FL) (~550 for FL = 8); real activations have outliers beyond
//             that (a few channels in the thousands), so a thread whose fp32 sums come out inf or NaN redoes
//             its rows with fp32 products (`exact` below): one test per output in the common case, the right
//             answer for any finite input, inf/NaN only where x holds them.
//
// Work split
//   block   = 256 threads = 256 output columns (32 words) x RT = 8 * VW row-threads.
//   warp    = LC = 32 / VW lanes across the 32 words (VW consecutive words = 8 * VW columns each: one
//             128-byte segment of a row per LC lanes, 16-, 8- or 4-byte loads) x VW lane rows.
//   thread  = 8 * VW columns x `rpt` consecutive rows (a multiple of FL); zeros/scales reloaded only when
//             the group changes. PF = 1: the next batch's words and x are loaded before the current batch
//             is computed (two register buffers that swap roles). KF (K % 8 == 0): no bounds tests and
//             32-bit offsets from per-thread base pointers in the batch loop (run 10: -25% instructions).
//   reduce  = lanes of a warp holding the same columns: butterfly shuffles; the 8 warps: shared memory;
//             K splits (gridDim.y > 1): up to AWQFMT_FX_SPLITS_MAX of them, one 64-bit fixed-point atomic
//             per output whose last arriver writes y (split_add_fx: deterministic, no barrier or counter;
//             run 16h: 4096x4096 M = 1 5.34 -> 4.83 us); more: fp32 workspace atomics, and the block that
//             completes a column tile converts it to fp16 and zeroes it again. One launch either way;
//             workspaces and counters start and end zeroed, shared with the skinny kernel.
//   PDL     = launched with programmatic dependent launch (awqfmt/gpu/launch.py), a block requests its first
//             batch of weights, then waits for the kernel before it (pdl_wait) before it reads x, which it reads
//             through L2 (ldx_*: never the read-only path, see pdl_wait).
//   l2pf    = (argument) 1: before that wait the block requests its whole slice of weights, zeros and scales
//             into L2 (prefetch_rows_l2), so a block that starts while the kernel before it still runs pulls its
//             bytes during that kernel (run 15c: 4096x4096, M = 1, 0.91x the time with PDL; larger shapes slower).

#include "w4a16_common.cuh"

template <int LAYOUT, int BF16, int ZOFF, int MT, int VW, int FL, int PF, int KF>
__global__ void __launch_bounds__(256, (VW == 4) ? 1 : 2)
w4a16_gemv(const u16* __restrict__ x,        // [M, K] fp16
           const u32* __restrict__ qw,       // AWQ-like: [K, N/8]; GPTQ: [K/8, N]
           const u32* __restrict__ qz,       // [n_g, N/8]
           const u16* __restrict__ sc,       // [n_g, N] fp16 or bf16 bits
           u16* __restrict__ y,              // [M, N] fp16
           float* __restrict__ ws,           // [M, N] fp32 split-K workspace (zero on entry and exit)
           unsigned long long* __restrict__ ws64,  // [M, N] fixed-point split-K words (zero on entry and exit)
           u32* __restrict__ counters,       // [gridDim.x] (zero on entry and exit)
           int M, int K, int N, u32 gm, u32 gmask, int rpt,
           int l2pf)                         // 1: the block's slice requested into L2 first (prefetch_rows_l2)
{
    static_assert(VW == 1 || VW == 2 || VW == 4, "VW is 1, 2 or 4 words per thread and row");
    static_assert(FL == 2 || FL == 4 || FL == 8, "FL is 2, 4 or 8 rows per batch");
    static_assert(MT >= 1 && MT <= 4, "1 to 4 tokens");
    static_assert(PF == 0 || PF == 1, "PF is 0 or 1");
    constexpr bool GPTQ = (LAYOUT == AWQFMT_L_GPTQ);
    static_assert(!GPTQ || FL == 8, "a GPTQ batch is one packed word row (8 k)");
    constexpr int LC = 32 / VW;     // lanes across the block's 32 words
    constexpr int COLS = 8 * VW;    // columns per thread
    constexpr int RT = 8 * VW;      // row-threads per block
    constexpr int NWB = FL * VW;    // words of one batch (GPTQ: 8 words of 8 k per group of 8 columns)

    __shared__ float red[8][MT][256];
    __shared__ int s_last;

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int lc = lane % LC, lr = lane / LC;
    const int rt = warp * VW + lr;
    const int NW = N >> 3;
    const int w0 = blockIdx.x * 32 + lc * VW;  // first word (group of 8 columns) of this thread
    const bool cols_ok = w0 < NW;              // the host makes VW divide N / 8: all VW words in or out
    const int r_begin = blockIdx.y * (RT * rpt) + rt * rpt;
    const int r_end = min(K, r_begin + rpt);

    // KF (K % 8 == 0): every batch lies inside K and x rows are 16-byte aligned, so the loads need no bounds
    // tests; addresses are opaque per-thread bases plus 32-bit offsets (one IMAD.WIDE.U32 each, not 64-bit
    // index arithmetic: see the notes of run 10).
    const u32* qw_t = opaque(GPTQ ? qw + 8 * w0 : qw + w0);
    const u32* qz_t = opaque(qz + w0);
    const u16* sc_t = opaque(sc + 8 * w0);
    const u16* x_t = opaque(x);

    float acc[MT][COLS];
#pragma unroll
    for (int t = 0; t < MT; ++t)
#pragma unroll
        for (int j = 0; j < COLS; ++j) acc[t][j] = 0.f;

    struct Batch {
        u32 w[NWB];          // AWQ-like: w[i * VW + v] = row b + i, word w0 + v; GPTQ: w[8 v + j] = column 8 (w0 + v) + j
        u32 x[MT][FL / 2];   // x[t][b .. b + FL), two fp16 per register
    };

    // the weights of batch b (pure reads of the module: allowed before pdl_wait)
    auto load_w = [&](int b, Batch& B) {
        if constexpr (KF) {
            if constexpr (!GPTQ) {
                u32 o = (u32)b * (u32)NW;
#pragma unroll
                for (int i = 0; i < FL; ++i) {
                    ldg_stream_words<VW>(qw_t + o, B.w + i * VW);
                    o += (u32)NW;
                }
            } else {
                const u32 o = (u32)(b >> 3) * (u32)N;
#pragma unroll
                for (int v = 0; v < VW; ++v) {
                    const u32* p = qw_t + (o + (u32)(8 * v));
                    const uint4 a = ldg_stream_v4(p), c = ldg_stream_v4(p + 4);
                    B.w[8 * v] = a.x; B.w[8 * v + 1] = a.y; B.w[8 * v + 2] = a.z; B.w[8 * v + 3] = a.w;
                    B.w[8 * v + 4] = c.x; B.w[8 * v + 5] = c.y; B.w[8 * v + 6] = c.z; B.w[8 * v + 7] = c.w;
                }
            }
            return;
        }
        if constexpr (!GPTQ) {
#pragma unroll
            for (int i = 0; i < FL; ++i) {
                const int row = b + i;
                const bool ok = row < K;
                ldg_stream_words<VW>(qw + (size_t)row * NW + w0, B.w + i * VW, ok);
            }
        } else {
            const int kw = b >> 3;
#pragma unroll
            for (int v = 0; v < VW; ++v) {
                const u32* p = qw + (size_t)kw * N + 8 * (w0 + v);
                const uint4 a = ldg_stream_v4(p), c = ldg_stream_v4(p + 4);
                B.w[8 * v] = a.x; B.w[8 * v + 1] = a.y; B.w[8 * v + 2] = a.z; B.w[8 * v + 3] = a.w;
                B.w[8 * v + 4] = c.x; B.w[8 * v + 5] = c.y; B.w[8 * v + 6] = c.z; B.w[8 * v + 7] = c.w;
            }
        }
    };
    // x of batch b (after pdl_wait: the kernel before this one may still be writing it)
    auto load_x = [&](int b, Batch& B) {
#pragma unroll
        for (int t = 0; t < MT; ++t) {
            if constexpr (KF) {
                ldx_words<FL / 2>(x_t + ((u32)t * (u32)K + (u32)b), B.x[t]);
            } else {
                const u16* px = x + (size_t)t * K + b;
                if ((K & 7) == 0) {  // b is a multiple of FL and FL divides 8: the batch lies inside K, aligned
                    ldx_words<FL / 2>(px, B.x[t]);
                } else {
#pragma unroll
                    for (int j = 0; j < FL / 2; ++j) {
                        const u32 e0 = (b + 2 * j < K) ? (u32)ldx_u16(px + 2 * j) : 0u;
                        const u32 e1 = (b + 2 * j + 1 < K) ? (u32)ldx_u16(px + 2 * j + 1) : 0u;
                        B.x[t][j] = e0 | (e1 << 16);
                    }
                }
            }
        }
    };
    auto load = [&](int b, Batch& B) {
        load_w(b, B);
        load_x(b, B);
    };

    u32 zc[VW][4];   // (1024 + z) for the column pairs of the current group
    float s[COLS];   // scales of the current group
    auto load_group = [&](int g) {
        u32 zw[VW];
        ldg_words<VW>(qz_t + (u32)g * (u32)NW, zw);
#pragma unroll
        for (int v = 0; v < VW; ++v) {
            const uint4 sv = ldg_v4(sc_t + ((u32)g * (u32)N + (u32)(8 * v)));
#pragma unroll
            for (int j = 0; j < 8; ++j) s[8 * v + j] = scale_f<BF16>(half_of(sv, j));
            // GPTQ zeros are packed along N in natural order (dec_npair<3> is the shift decoder)
            dec_npair<LAYOUT>(zw[v], zc[v]);
#pragma unroll
            for (int p = 0; p < 4; ++p) zc[v][p] += (u32)ZOFF * 0x00010001u;  // GPTQ v1 stores z - 1
        }
    };

    // Row i of a batch, word v -> four fp16x2 pairs of adjacent columns (2p, 2p+1), each 1024 + q.
    auto decode_row = [&](const Batch& B, int i, int v, u32 (&d)[4]) {
        if constexpr (!GPTQ) {
            dec_npair<LAYOUT>(B.w[i * VW + v], d);
        } else {
            // columns (2p, 2p+1): their k-nibbles 0-3 (or 4-7) side by side, then nibble i & 3 of each
#pragma unroll
            for (int p = 0; p < 4; ++p) {
                const u32 src = (i < 4) ? prmt<0x5410>(B.w[8 * v + 2 * p], B.w[8 * v + 2 * p + 1])
                                        : prmt<0x7632>(B.w[8 * v + 2 * p], B.w[8 * v + 2 * p + 1]);
                d[p] = lop3_and_or(src >> (4 * (i & 3)), 0x000F000Fu, AWQFMT_MAGIC);
            }
        }
    };

    // exact = false: fp16 products summed over the batch (fast); true: fp32 products (the overflow fallback)
    auto compute = [&](const Batch& B, auto exact) {
        if constexpr (decltype(exact)::value) {
#pragma unroll
            for (int i = 0; i < FL; ++i) {
                float xf[MT];
#pragma unroll
                for (int t = 0; t < MT; ++t) {
                    const u32 xv = B.x[t][i >> 1];
                    xf[t] = (i & 1) ? h2f_hi(xv) : h2f_lo(xv);
                }
#pragma unroll
                for (int v = 0; v < VW; ++v) {
                    u32 d[4];
                    decode_row(B, i, v, d);
#pragma unroll
                    for (int p = 0; p < 4; ++p) {
                        const u32 qmz = hsub2(d[p], zc[v][p]);  // small integers: exact in fp16 and fp32
                        const int j = 8 * v + 2 * p;
#pragma unroll
                        for (int t = 0; t < MT; ++t) {
                            acc[t][j] += s[j] * (h2f_lo(qmz) * xf[t]);
                            acc[t][j + 1] += s[j + 1] * (h2f_hi(qmz) * xf[t]);
                        }
                    }
                }
            }
            return;
        }
        u32 h[MT][VW][4];
#pragma unroll
        for (int t = 0; t < MT; ++t)
#pragma unroll
            for (int v = 0; v < VW; ++v)
#pragma unroll
                for (int p = 0; p < 4; ++p) h[t][v][p] = 0u;
#pragma unroll
        for (int i = 0; i < FL; ++i) {
            u32 xx[MT];  // x[t][b + i] in both halves
#pragma unroll
            for (int t = 0; t < MT; ++t) {
                const u32 xv = B.x[t][i >> 1];
                xx[t] = (i & 1) ? prmt<0x3232>(xv, xv) : prmt<0x1010>(xv, xv);
            }
#pragma unroll
            for (int v = 0; v < VW; ++v) {
                u32 d[4];
                decode_row(B, i, v, d);
#pragma unroll
                for (int p = 0; p < 4; ++p) {
                    const u32 qmz = hsub2(d[p], zc[v][p]);  // (q - z) for columns 2p, 2p+1: exact
#pragma unroll
                    for (int t = 0; t < MT; ++t) h[t][v][p] = hfma2(qmz, xx[t], h[t][v][p]);
                }
            }
        }
#pragma unroll
        for (int t = 0; t < MT; ++t)
#pragma unroll
            for (int v = 0; v < VW; ++v)
#pragma unroll
                for (int p = 0; p < 4; ++p) {
                    const int j = 8 * v + 2 * p;
                    acc[t][j] += s[j] * h2f_lo(h[t][v][p]);
                    acc[t][j + 1] += s[j + 1] * h2f_hi(h[t][v][p]);
                }
    };

    pdl_trigger();
    if (l2pf) {  // the block's rows of weights, and their zeros and scales, into L2 before anything waits
        const int rb = blockIdx.y * (RT * rpt), re = min(K, rb + RT * rpt);
        const int wb = blockIdx.x * 32, nwb = min(32, NW - wb);
        if (rb < re && nwb > 0) {
            if constexpr (!GPTQ) prefetch_rows_l2(qw + wb, 4 * (size_t)NW, rb, re, 4u * (u32)nwb);
            else prefetch_rows_l2(qw + 8 * wb, 4 * (size_t)N, rb >> 3, (re + 7) >> 3, 32u * (u32)nwb);
            const int g0 = group_of(rb, gm, gmask), g1 = group_of(re - 1, gm, gmask) + 1;
            prefetch_rows_l2(qz + wb, 4 * (size_t)NW, g0, g1, 4u * (u32)nwb);
            prefetch_rows_l2(sc + 8 * wb, 2 * (size_t)N, g0, g1, 16u * (u32)nwb);
        }
    }
    Batch cur, nxt;
    // PF: the first batch's weights are requested before waiting for the kernel before this one (see pdl_wait)
    const bool first = PF && cols_ok && r_begin < r_end;
    if (first) load_w(r_begin, cur);
    pdl_wait(x, x_t);
    if (first) load_x(r_begin, cur);
    if (cols_ok) {
        int gcur = -1;
        auto batch = [&](int b, const Batch& B, auto exact) {
            const int g = group_of(b, gm, gmask);  // a batch never crosses a group (host: G % 32 == 0 or one group)
            if (g != gcur) {
                load_group(g);
                gcur = g;
            }
            compute(B, exact);
        };
        const awqfmt::flag<false> fast;
        if constexpr (PF) {
            // two batches per trip, the buffers swap roles: no register copies between batches (the first
            // batch was loaded above)
            for (int b = r_begin; b < r_end; b += 2 * FL) {
                if (b + FL < r_end) load(b + FL, nxt);
                batch(b, cur, fast);
                if (b + FL >= r_end) break;
                if (b + 2 * FL < r_end) load(b + 2 * FL, cur);
                batch(b + FL, nxt, fast);
            }
        } else {
            for (int b = r_begin; b < r_end; b += FL) {
                load(b, cur);
                batch(b, cur, fast);
            }
        }
        // an fp16 partial sum overflowed (|x| beyond ~65504 / (15 FL)) or x holds inf/NaN: redo in fp32
        bool finite = true;
#pragma unroll
        for (int t = 0; t < MT; ++t)
#pragma unroll
            for (int j = 0; j < COLS; ++j) finite &= fabsf(acc[t][j]) <= 3.402823466e38f;
        if (!finite) {
#pragma unroll
            for (int t = 0; t < MT; ++t)
#pragma unroll
                for (int j = 0; j < COLS; ++j) acc[t][j] = 0.f;
            for (int b = r_begin; b < r_end; b += FL) {
                load(b, cur);
                batch(b, cur, awqfmt::flag<true>());
            }
        }
    }

    // ---- reduction: lanes holding the same columns (lane ^ 16, lane ^ 8), then the 8 warps
#pragma unroll
    for (int t = 0; t < MT; ++t)
#pragma unroll
        for (int j = 0; j < COLS; ++j) {
            float v = acc[t][j];
            if constexpr (VW >= 2) v = shfl_xor_add(v, 16);
            if constexpr (VW == 4) v = shfl_xor_add(v, 8);
            acc[t][j] = v;
        }
    if (lr == 0) {
#pragma unroll
        for (int t = 0; t < MT; ++t)
#pragma unroll
            for (int j = 0; j < COLS; ++j) red[warp][t][lc * COLS + j] = acc[t][j];
    }
    __syncthreads();

    const int col = blockIdx.x * 256 + tid;
    const bool whole = gridDim.y == 1;  // this block alone covers K
    const bool fx = !whole && gridDim.y <= AWQFMT_FX_SPLITS_MAX;  // split_add_fx: one atomic per output
#pragma unroll
    for (int t = 0; t < MT; ++t) {
        float v = 0.f;
#pragma unroll
        for (int w = 0; w < 8; ++w) v += red[w][t][tid];
        if (col < N && t < M) {
            const size_t o = (size_t)t * N + col;
            if (whole) y[o] = f2h(v);
            else if (fx) split_add_fx(v, o, gridDim.y, ws64, ws, y);
            else atomicAdd(&ws[o], v);
        }
    }
    if (!whole && !fx) {
        __syncthreads();
        if (tid == 0) s_last = split_arrive(&counters[blockIdx.x], 1u, gridDim.y);
        __syncthreads();
        if (s_last) {
            if (col < N) {
#pragma unroll
                for (int t = 0; t < MT; ++t) {
                    if (t < M) {
                        const size_t o = (size_t)t * N + col;
                        y[o] = f2h(ld_cg_f32(&ws[o]));
                        st_cg_f32(&ws[o], 0.f);
                    }
                }
            }
            if (tid == 0) counters[blockIdx.x] = 0u;
        }
    }
}

#ifdef AWQFMT_INSTANTIATE_ALL
// Explicit instantiations so that an offline nvcc build (tests/test_kernels_compile.py) checks the template
// body; at run time NVRTC instantiates only what is launched.
#define AWQFMT_GEMV_INST(L, BF, Z, MT, VW, FL, PF, KF)                                                          \
    template __global__ void w4a16_gemv<L, BF, Z, MT, VW, FL, PF, KF>(const u16*, const u32*, const u32*,    \
                                                                      const u16*, u16*, float*,                 \
                                                                      unsigned long long*, u32*, int, int,      \
                                                                      int, u32, u32, int, int);
AWQFMT_GEMV_INST(0, 0, 0, 1, 2, 8, 1, 1)
AWQFMT_GEMV_INST(0, 0, 0, 1, 2, 8, 1, 0)
AWQFMT_GEMV_INST(0, 0, 0, 1, 4, 8, 0, 1)
AWQFMT_GEMV_INST(0, 0, 0, 1, 4, 8, 0, 0)
AWQFMT_GEMV_INST(0, 1, 0, 2, 1, 4, 1, 1)
AWQFMT_GEMV_INST(0, 1, 0, 2, 1, 4, 1, 0)
AWQFMT_GEMV_INST(0, 0, 0, 4, 2, 2, 0, 1)
AWQFMT_GEMV_INST(0, 0, 0, 4, 2, 2, 0, 0)
AWQFMT_GEMV_INST(1, 0, 0, 1, 2, 8, 1, 1)
AWQFMT_GEMV_INST(1, 0, 0, 1, 2, 8, 1, 0)
AWQFMT_GEMV_INST(2, 0, 0, 3, 2, 8, 1, 1)
AWQFMT_GEMV_INST(2, 0, 0, 3, 2, 8, 1, 0)
AWQFMT_GEMV_INST(3, 0, 1, 1, 2, 8, 1, 1)
AWQFMT_GEMV_INST(3, 0, 1, 1, 2, 8, 1, 0)
AWQFMT_GEMV_INST(3, 1, 0, 4, 4, 8, 0, 1)
AWQFMT_GEMV_INST(3, 1, 0, 4, 4, 8, 0, 0)
#endif
