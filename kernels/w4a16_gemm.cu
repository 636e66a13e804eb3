// Weight-streaming W4A16 GEMM for small M (decode / skinny batches): y[M, N] = x[M, K] @ W[K, N].
//
// x fp16 row-major; W = (q - z[g]) * s[g], q/z 4-bit packed, s fp16 or bf16 (raw bits), g = k / G.
// fp32 accumulation (tensor cores, mma.sync m16n8k16 f16 -> f32), fp16 output.
//
// Work split
//   block   = 8 warps sharing one column tile of 64*WC output columns and a range of K ("split").
//   unit    = 32 consecutive k (always inside one quantization group: the host requires G % 32 == 0 or
//             one group for all of K). Warps of a block take units round-robin.
//   thread  = lane (r = lane / 4, c = lane % 4): 8*WC columns (fixed by r) x the 8 k of the unit at
//             k0 + 8c .. k0 + 8c + 7 (AWQ-style layouts; GPTQ: the one packed word row k0/8 + c).
//   mma     = D[16 columns, 8 tokens] += A[16 columns, 16 k] * B[16 k, 8 tokens]; the weights are the A
//             operand, so a row of A is an output column and the 8 tokens of a token tile are mma's N.
//             The k order inside a unit is permuted freely (weights and activations identically), so the
//             A fragment's k-pairs are whatever pairs the decoder produces cheaply.
//   dequant = A holds (q - z) exactly (fp16 of small integers: 1024 + q minus 1024 + z); the scale is
//             applied once per unit in fp32 to the unit's partial sums, so fp16 and bf16 scales are
//             handled identically and no precision is lost to an fp16 product.
//   reduce  = per block through shared-memory atomics; across splits through an fp32 workspace
//             (atomicAdd) that the last block of a column tile converts to fp16 and zeroes again, so
//             one launch does everything (workspace and counters must start zeroed, and stay so).
//
// Layouts (see w4a16_common.cuh): AWQ-interleaved and natural-order [K, N/8] words decoded with the
// lop3 / 0x64006400 trick (dec_kpair_lop3), natural order with shifts and masks (dec_kpair_shift), and
// GPTQ [K/8, N] words (packed along K: a word's nibbles are already k-pairs).

#include "w4a16_common.cuh"

namespace awqfmt {

// Column (0..7 within a word) held by nibble e.
template <int LAYOUT>
__device__ __forceinline__ constexpr int nib_col(int e) {
    return LAYOUT == AWQFMT_L_AWQ ? ((e < 4) ? 2 * e : 2 * (e - 4) + 1) : e;
}

}  // namespace awqfmt

template <int LAYOUT, int WC, int NT, int BF16, int ZOFF, int PF>
__global__ void __launch_bounds__(256)
w4a16_skinny(const u16* __restrict__ x,        // [M, K] fp16
             const u32* __restrict__ qw,       // AWQ-like: [K, N/8]; GPTQ: [K/8, N]
             const u32* __restrict__ qz,       // [n_g, N/8]
             const u16* __restrict__ sc,       // [n_g, N] fp16 or bf16 bits
             u16* __restrict__ y,              // [M, N] fp16
             float* __restrict__ ws,           // [M, N] fp32 split-K workspace (zero on entry and exit)
             u32* __restrict__ counters,       // [gridDim.z * gridDim.x] (zero on entry and exit)
             int M, int K, int N, int G, int units_per_split)
{
    constexpr bool GPTQ = (LAYOUT == AWQFMT_L_GPTQ);
    constexpr int COLS = 8 * WC;     // output columns per thread
    constexpr int TILES = 4 * WC;    // mma tiles (16 columns each across the warp) per k16 step
    constexpr int BCOLS = 64 * WC;   // columns per block
    constexpr int TOK = 8 * NT;      // tokens per block
    // The x16 factor of odd nibbles in the lop3 decoders (never for GPTQ, which decodes with shifts).
    constexpr float ODD_SCALE = (LAYOUT == AWQFMT_L_AWQ || LAYOUT == AWQFMT_L_NAT_LOP3) ? 0.0625f : 1.0f;

    __shared__ float red[TOK * BCOLS];
    __shared__ int s_last;

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int r = lane >> 2, c = lane & 3;
    const int col0 = blockIdx.x * BCOLS;
    const int tok0 = blockIdx.z * TOK;
    const int n_units = (K + 31) >> 5;
    const int u_begin = blockIdx.y * units_per_split;
    const int u_end = min(n_units, u_begin + units_per_split);
    const int NW = N >> 3;  // words per row of qweight (AWQ-like) and of qzeros

    for (int i = tid; i < TOK * BCOLS; i += 256) red[i] = 0.f;

    float acc[TILES][NT][4];
#pragma unroll
    for (int t = 0; t < TILES; ++t)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[t][nt][j] = 0.f;

    // AWQ-like: this thread's words are qw[row, wc0 .. wc0 + WC - 1] (WC divides N/8: chunk all in or out).
    const int wc0 = (col0 >> 3) + r * WC;
    const bool awq_cols_ok = wc0 < NW;

    // Weight words of one unit: AWQ-like w[i][v] = row k0 + 8c + i, word wc0 + v;
    // GPTQ w[q][i] = word row k0/8 + c, column col0 + 32q + 4r + i.
    constexpr int WR = GPTQ ? 2 * WC : 8;
    constexpr int WV = GPTQ ? 4 : WC;
    u32 w[WR][WV], wn[WR][WV];

    auto load_w = [&](int u, u32 (&dst)[WR][WV]) {
        const int k0 = u << 5;
        if constexpr (!GPTQ) {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int row = k0 + 8 * c + i;
                const bool ok = awq_cols_ok && row < K;
                const u32* p = qw + (size_t)row * NW + wc0;
                if constexpr (WC == 4) {
                    const uint4 v = ok ? ldg_stream_v4(p) : u4(0, 0, 0, 0);
                    dst[i][0] = v.x; dst[i][1] = v.y; dst[i][2] = v.z; dst[i][3] = v.w;
                } else if constexpr (WC == 2) {
                    const uint2 v = ok ? ldg_stream_v2(p) : u2(0, 0);
                    dst[i][0] = v.x; dst[i][1] = v.y;
                } else {
                    dst[i][0] = ok ? ldg_stream_u32(p) : 0u;
                }
            }
        } else {
            const int kw = (k0 >> 3) + c;
#pragma unroll
            for (int q = 0; q < 2 * WC; ++q) {
                const int col = col0 + 32 * q + 4 * r;
                const bool ok = (kw < (K >> 3)) && col < N;
                const uint4 v = ok ? ldg_stream_v4(qw + (size_t)kw * N + col) : u4(0, 0, 0, 0);
                dst[q][0] = v.x; dst[q][1] = v.y; dst[q][2] = v.z; dst[q][3] = v.w;
            }
        }
    };

    if (PF && u_begin + warp < u_end) load_w(u_begin + warp, w);

    for (int u = u_begin + warp; u < u_end; u += 8) {
        const int k0 = u << 5;
        const int g = k0 / G;
        if constexpr (PF) {
            // prefetch the next unit's weights while this one is computed
            if (u + 8 < u_end) load_w(u + 8, wn);
        } else {
            load_w(u, w);
        }

        // B fragments: b[s][nt][0..1] for k16 step s of the unit and token tile nt.
        u32 b[2][NT][2];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const int tok = tok0 + 8 * nt + r;
            const int kx = k0 + 8 * c;
            uint4 xv = u4(0, 0, 0, 0);
            if (tok < M && kx < K) {
                const u16* px = x + (size_t)tok * K + kx;
                if ((K & 7) == 0) {
                    xv = ldg_v4(px);
                } else {
                    u32 e[8];
#pragma unroll
                    for (int j = 0; j < 8; ++j) e[j] = (kx + j < K) ? (u32)ldg_u16(px + j) : 0u;
                    xv = make_uint4(e[0] | (e[1] << 16), e[2] | (e[3] << 16), e[4] | (e[5] << 16), e[6] | (e[7] << 16));
                }
            }
            if constexpr (!GPTQ) {
                // rows (8c+0, 8c+1) | (8c+2, 8c+3) for step 0; (8c+4, 8c+5) | (8c+6, 8c+7) for step 1
                b[0][nt][0] = xv.x; b[0][nt][1] = xv.y;
                b[1][nt][0] = xv.z; b[1][nt][1] = xv.w;
            } else {
                // GPTQ k-pairs are (j, j+4): step 0 uses (0,4) | (1,5), step 1 uses (2,6) | (3,7)
                b[0][nt][0] = prmt<0x5410>(xv.x, xv.z); b[0][nt][1] = prmt<0x7632>(xv.x, xv.z);
                b[1][nt][0] = prmt<0x5410>(xv.y, xv.w); b[1][nt][1] = prmt<0x7632>(xv.y, xv.w);
            }
        }

        if constexpr (!GPTQ) {
            // zeros and scales of this thread's 8*WC consecutive columns
            u32 zw[WC];
            uint4 sv[WC];
            if constexpr (WC == 4) {
                const uint4 z4 = awq_cols_ok ? ldg_v4(qz + (size_t)g * NW + wc0) : u4(0, 0, 0, 0);
                zw[0] = z4.x; zw[1] = z4.y; zw[2] = z4.z; zw[3] = z4.w;
            } else if constexpr (WC == 2) {
                const uint2 z2 = awq_cols_ok ? ldg_v2(qz + (size_t)g * NW + wc0) : u2(0, 0);
                zw[0] = z2.x; zw[1] = z2.y;
            } else {
                zw[0] = awq_cols_ok ? ldg_u32(qz + (size_t)g * NW + wc0) : 0u;
            }
#pragma unroll
            for (int v = 0; v < WC; ++v)
                sv[v] = awq_cols_ok ? ldg_v4(sc + (size_t)g * N + 8 * (wc0 + v)) : u4(0, 0, 0, 0);

#pragma unroll
            for (int v = 0; v < WC; ++v) {
                u32 zc[8], hl0[8], hh0[8], hl1[8], hh1[8];
                if constexpr (LAYOUT == AWQFMT_L_NAT_SHIFT) {
                    dec_kpair_shift(zw[v], zw[v], zc);
                    dec_kpair_shift(w[0][v], w[1][v], hl0);
                    dec_kpair_shift(w[2][v], w[3][v], hh0);
                    dec_kpair_shift(w[4][v], w[5][v], hl1);
                    dec_kpair_shift(w[6][v], w[7][v], hh1);
                } else {
                    dec_kpair_lop3(zw[v], zw[v], zc);
                    dec_kpair_lop3(w[0][v], w[1][v], hl0);
                    dec_kpair_lop3(w[2][v], w[3][v], hh0);
                    dec_kpair_lop3(w[4][v], w[5][v], hl1);
                    dec_kpair_lop3(w[6][v], w[7][v], hh1);
                }
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    hl0[e] = hsub2(hl0[e], zc[e]);
                    hh0[e] = hsub2(hh0[e], zc[e]);
                    hl1[e] = hsub2(hl1[e], zc[e]);
                    hh1[e] = hsub2(hh1[e], zc[e]);
                }
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    // rows of this tile: nibble 2t (A row r) and nibble 2t+1 (A row r+8)
                    const float sA = scale_f<BF16>(half_of(sv[v], awqfmt::nib_col<LAYOUT>(2 * t)));
                    const float sB = scale_f<BF16>(half_of(sv[v], awqfmt::nib_col<LAYOUT>(2 * t + 1))) * ODD_SCALE;
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
                        asm volatile(
                            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                            : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                            : "r"(hl0[2 * t]), "r"(hl0[2 * t + 1]), "r"(hh0[2 * t]), "r"(hh0[2 * t + 1]),
                              "r"(b[0][nt][0]), "r"(b[0][nt][1]));
                        asm volatile(
                            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                            : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                            : "r"(hl1[2 * t]), "r"(hl1[2 * t + 1]), "r"(hh1[2 * t]), "r"(hh1[2 * t + 1]),
                              "r"(b[1][nt][0]), "r"(b[1][nt][1]));
                        const int ti = 4 * v + t;
                        acc[ti][nt][0] += sA * d0;
                        acc[ti][nt][1] += sA * d1;
                        acc[ti][nt][2] += sB * d2;
                        acc[ti][nt][3] += sB * d3;
                    }
                }
            }
        } else {
#pragma unroll
            for (int q = 0; q < 2 * WC; ++q) {
                const int col = col0 + 32 * q + 4 * r;
                const bool ok = col < N;
                // 4 columns: zeros are nibbles (col & 7) .. +3 of qzeros word col / 8
                const u32 zword = ok ? ldg_u32(qz + (size_t)g * NW + (col >> 3)) : 0u;
                const uint2 s2 = ok ? ldg_v2(sc + (size_t)g * N + col) : u2(0, 0);
                const int zsh = 4 * (col & 7);
                u32 P[4][4];  // P[i][j]: column i, k-pair j = (8c + j, 8c + j + 4), minus zero
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const u32 z = ((zword >> (zsh + 4 * i)) & 0xFu) + ZOFF;
                    const u32 zc = (0x6400u + z) * 0x00010001u;
                    const u32 wv = w[q][i];
                    P[i][0] = hsub2(lop3_and_or(wv, 0x000F000Fu, AWQFMT_MAGIC), zc);
                    P[i][1] = hsub2(lop3_and_or(wv >> 4, 0x000F000Fu, AWQFMT_MAGIC), zc);
                    P[i][2] = hsub2(lop3_and_or(wv >> 8, 0x000F000Fu, AWQFMT_MAGIC), zc);
                    P[i][3] = hsub2(lop3_and_or(wv >> 12, 0x000F000Fu, AWQFMT_MAGIC), zc);
                }
                float s4[4];
                s4[0] = scale_f<BF16>((u16)(s2.x & 0xFFFFu));
                s4[1] = scale_f<BF16>((u16)(s2.x >> 16));
                s4[2] = scale_f<BF16>((u16)(s2.y & 0xFFFFu));
                s4[3] = scale_f<BF16>((u16)(s2.y >> 16));
#pragma unroll
                for (int t = 0; t < 2; ++t) {
                    const int iA = 2 * t, iB = 2 * t + 1;
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
                        asm volatile(
                            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                            : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                            : "r"(P[iA][0]), "r"(P[iB][0]), "r"(P[iA][1]), "r"(P[iB][1]),
                              "r"(b[0][nt][0]), "r"(b[0][nt][1]));
                        asm volatile(
                            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                            : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                            : "r"(P[iA][2]), "r"(P[iB][2]), "r"(P[iA][3]), "r"(P[iB][3]),
                              "r"(b[1][nt][0]), "r"(b[1][nt][1]));
                        const int ti = 2 * q + t;
                        acc[ti][nt][0] += s4[iA] * d0;
                        acc[ti][nt][1] += s4[iA] * d1;
                        acc[ti][nt][2] += s4[iB] * d2;
                        acc[ti][nt][3] += s4[iB] * d3;
                    }
                }
            }
        }
        if constexpr (PF) {
#pragma unroll
            for (int i = 0; i < WR; ++i)
#pragma unroll
                for (int v = 0; v < WV; ++v) w[i][v] = wn[i][v];
        }
    }

    __syncthreads();  // red[] zeroed by all threads before anyone adds

    // ---- block reduction into shared memory -------------------------------------------------------
#pragma unroll
    for (int ti = 0; ti < TILES; ++ti) {
        int lcA, lcB;  // local columns (0..BCOLS) of A rows r and r+8 of tile ti
        if constexpr (!GPTQ) {
            const int v = ti >> 2, t = ti & 3;
            lcA = r * COLS + 8 * v + awqfmt::nib_col<LAYOUT>(2 * t);
            lcB = r * COLS + 8 * v + awqfmt::nib_col<LAYOUT>(2 * t + 1);
        } else {
            const int q = ti >> 1, t = ti & 1;
            lcA = 32 * q + 4 * r + 2 * t;
            lcB = lcA + 1;
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const int lt = 8 * nt + 2 * c;
            if (tok0 + lt < M) {
                atomicAdd(&red[lt * BCOLS + lcA], acc[ti][nt][0]);
                atomicAdd(&red[lt * BCOLS + lcB], acc[ti][nt][2]);
            }
            if (tok0 + lt + 1 < M) {
                atomicAdd(&red[(lt + 1) * BCOLS + lcA], acc[ti][nt][1]);
                atomicAdd(&red[(lt + 1) * BCOLS + lcB], acc[ti][nt][3]);
            }
        }
    }
    __syncthreads();

    const int ntok = min(TOK, M - tok0);
    const int ncol = min(BCOLS, N - col0);
    if (gridDim.y == 1) {
        for (int i = tid; i < ntok * BCOLS; i += 256) {
            const int lt = i / BCOLS, lc = i - lt * BCOLS;
            if (lc < ncol) y[(size_t)(tok0 + lt) * N + col0 + lc] = f2h(red[i]);
        }
        return;
    }

    // ---- split-K: accumulate into the fp32 workspace; the last block of this tile finishes ---------
    for (int i = tid; i < ntok * BCOLS; i += 256) {
        const int lt = i / BCOLS, lc = i - lt * BCOLS;
        if (lc < ncol) atomicAdd(&ws[(size_t)(tok0 + lt) * N + col0 + lc], red[i]);
    }
    __threadfence();
    __syncthreads();
    const int tile = blockIdx.z * gridDim.x + blockIdx.x;
    if (tid == 0) {
        const u32 prev = atomicAdd(&counters[tile], 1u);
        s_last = (prev == gridDim.y - 1);
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    for (int i = tid; i < ntok * BCOLS; i += 256) {
        const int lt = i / BCOLS, lc = i - lt * BCOLS;
        if (lc < ncol) {
            float* p = &ws[(size_t)(tok0 + lt) * N + col0 + lc];
            y[(size_t)(tok0 + lt) * N + col0 + lc] = f2h(ld_cg_f32(p));
            st_cg_f32(p, 0.f);
        }
    }
    if (tid == 0) counters[tile] = 0u;
}

#ifdef AWQFMT_INSTANTIATE_ALL
// Explicit instantiations so that an offline nvcc build (tests/test_kernels_compile.py) checks the template
// bodies; at run time NVRTC instantiates only what is launched.
#define AWQFMT_INST(L, WC, NT, BF, Z)                                                                        \
    template __global__ void w4a16_skinny<L, WC, NT, BF, Z, 1>(const u16*, const u32*, const u32*, const u16*, \
                                                            u16*, float*, u32*, int, int, int, int, int);   \
    template __global__ void w4a16_skinny<L, WC, NT, BF, Z, 0>(const u16*, const u32*, const u32*, const u16*, \
                                                            u16*, float*, u32*, int, int, int, int, int);
AWQFMT_INST(0, 4, 1, 0, 0)
AWQFMT_INST(0, 2, 1, 0, 0)
AWQFMT_INST(0, 2, 2, 0, 0)
AWQFMT_INST(0, 1, 4, 1, 0)
AWQFMT_INST(1, 4, 1, 0, 0)
AWQFMT_INST(1, 2, 2, 0, 0)
AWQFMT_INST(2, 4, 1, 0, 0)
AWQFMT_INST(2, 2, 2, 1, 0)
AWQFMT_INST(3, 4, 1, 0, 1)
AWQFMT_INST(3, 2, 2, 1, 0)
AWQFMT_INST(3, 1, 4, 0, 1)
#endif
