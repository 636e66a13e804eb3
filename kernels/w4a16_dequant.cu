// Dequantize packed 4-bit weights to a dense fp16 W[K, N] (row-major), for the large-M path
// (dequantize, then cuBLAS) and for GPTQ act-order (g_idx) at any M.
//
// W[k, n] = (q[k, n] - z[g, n]) * s[g, n], g = g_idx[k] if GIDX else k / G.
// fp16 scales: (q - z) is exact in fp16 (1024 + q minus 1024 + z), one rounding for the product, i.e. the
// same fp16 weight a reference dequantizer produces. bf16 scales: product in fp32, rounded once to fp16.

#include "w4a16_common.cuh"

template <int BF16>
__device__ __forceinline__ u32 apply_scale(u32 qz_diff, u32 s2) {
    if (BF16) {
        return f2h2(h2f_lo(qz_diff) * bf2f((u16)(s2 & 0xFFFFu)), h2f_hi(qz_diff) * bf2f((u16)(s2 >> 16)));
    } else {
        return hmul2(qz_diff, s2);
    }
}

// AWQ-like layouts (LAYOUT 0, 1, 2): one thread per word column x 16 rows -> sixteen 16-byte stores.
// GPTQ (LAYOUT 3): one thread per 8 columns x one packed word row (8 k) -> eight 16-byte stores.
template <int LAYOUT, int BF16, int ZOFF, int GIDX>
__global__ void __launch_bounds__(256)
w4_dequant(const u32* __restrict__ qw, const u32* __restrict__ qz, const u16* __restrict__ sc,
           const int* __restrict__ gidx, u16* __restrict__ W, int K, int N, int G)
{
    const int NW = N >> 3;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (LAYOUT != AWQFMT_L_GPTQ) {
        // one thread: word column wc of rows 16 kb .. 16 kb + 15 (zeros and scales reloaded only when the
        // group changes), one 16-byte store per row
        const int KB = (K + 15) >> 4;
        if (idx >= (long long)KB * NW) return;
        const int kb = (int)(idx / NW), wc = (int)(idx - (long long)kb * NW);
        int g_prev = -1;
        u32 z[4];
        uint4 s;
        u32 words[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            const int k = 16 * kb + i;
            words[i] = (k < K) ? ldg_stream_u32(qw + (size_t)k * NW + wc) : 0u;
        }
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            const int k = 16 * kb + i;
            if (k >= K) break;
            const int g = GIDX ? ldg_i32(gidx + k) : k / G;
            if (g != g_prev) {
                const u32 zw = ldg_u32(qz + (size_t)g * NW + wc);
                dec_npair<LAYOUT>(zw, z);
                s = ldg_v4(sc + (size_t)g * N + 8 * wc);
                g_prev = g;
            }
            u32 h[4];
            dec_npair<LAYOUT>(words[i], h);
            st_v4(W + (size_t)k * N + 8 * wc,
                  apply_scale<BF16>(hsub2(h[0], z[0]), s.x), apply_scale<BF16>(hsub2(h[1], z[1]), s.y),
                  apply_scale<BF16>(hsub2(h[2], z[2]), s.z), apply_scale<BF16>(hsub2(h[3], z[3]), s.w));
        }
    } else {
        const int KW = K >> 3;
        if (idx >= (long long)KW * NW) return;
        const int kw = (int)(idx / NW), nb = (int)(idx - (long long)kw * NW);
        const uint4 wa = ldg_stream_v4(qw + (size_t)kw * N + 8 * nb);
        const uint4 wb = ldg_stream_v4(qw + (size_t)kw * N + 8 * nb + 4);
        const u32 wv[8] = {wa.x, wa.y, wa.z, wa.w, wb.x, wb.y, wb.z, wb.w};
        // kp[p][0] / kp[p][1]: columns (2p, 2p+1), rows 0-3 / rows 4-7 of the word, side by side
        u32 kp[4][2];
#pragma unroll
        for (int p = 0; p < 4; ++p) {
            kp[p][0] = prmt<0x5410>(wv[2 * p], wv[2 * p + 1]);
            kp[p][1] = prmt<0x7632>(wv[2 * p], wv[2 * p + 1]);
        }
        int g_prev = -1;
        u32 z[4];
        uint4 s;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int k = 8 * kw + i;
            const int g = GIDX ? ldg_i32(gidx + k) : k / G;
            if (g != g_prev) {
                const u32 zw = ldg_u32(qz + (size_t)g * NW + nb);
                dec_npair_nat_shift(zw, z);
#pragma unroll
                for (int p = 0; p < 4; ++p) z[p] += (u32)ZOFF * 0x00010001u;  // GPTQ v1: stored z - 1
                s = ldg_v4(sc + (size_t)g * N + 8 * nb);
                g_prev = g;
            }
            const u32 sv[4] = {s.x, s.y, s.z, s.w};
            u32 o[4];
#pragma unroll
            for (int p = 0; p < 4; ++p) {
                const u32 src = kp[p][i >> 2];
                const u32 h = lop3_and_or(src >> (4 * (i & 3)), 0x000F000Fu, AWQFMT_MAGIC);
                o[p] = apply_scale<BF16>(hsub2(h, z[p]), sv[p]);
            }
            st_v4(W + (size_t)k * N + 8 * nb, o[0], o[1], o[2], o[3]);
        }
    }
}

#ifdef AWQFMT_INSTANTIATE_ALL
#define AWQFMT_DQ_INST(L, BF, Z, GI)                                                                      \
    template __global__ void w4_dequant<L, BF, Z, GI>(const u32*, const u32*, const u16*, const int*, u16*, \
                                                      int, int, int);
AWQFMT_DQ_INST(0, 0, 0, 0)
AWQFMT_DQ_INST(0, 1, 0, 0)
AWQFMT_DQ_INST(1, 0, 0, 0)
AWQFMT_DQ_INST(2, 0, 0, 0)
AWQFMT_DQ_INST(2, 1, 0, 0)
AWQFMT_DQ_INST(3, 0, 1, 0)
AWQFMT_DQ_INST(3, 0, 0, 1)
AWQFMT_DQ_INST(3, 1, 1, 1)
#endif
