// Weight-streaming W4A16 GEMM for small M through shared memory (AWQ-like [K, N/8] layouts):
// y[M, N] = x[M, K] @ W[K, N], W = (q - z[g]) * s[g], fp32 accumulation on tensor cores, fp16 output.
//
// Why a second small-M kernel (run 10, benchmarks/gemm/NOTES.md): the register-loading skinny kernel
// (w4a16_gemm.cu) keeps one unit of loads in flight per warp; ncu showed its warps waiting on global loads
// (long-scoreboard ~2 of ~7 cycles per issue) at 0.6 of the copy rate, and a deeper register prefetch
// spills. Here every warp streams its units through a cp.async pipeline of STAGES stages in shared memory
// (16-byte copies, no registers held), and ldmatrix hands out the mma fragments:
//
//   weights  a unit = 32 rows (k) x 64 columns = 32 x 32 bytes. ldmatrix.x4.trans on four 8 x 16-byte
//            tiles gives lane (g, q) = (lane / 4, lane % 4) the 16-bit half g (and g + 8) of rows 2q, 2q + 1
//            side by side: a k-pair of four columns. The lop3 / 0x64006400 step then picks nibble j of both
//            rows, i.e. the A-fragment register of mma tile j (x16 for odd j, undone in the scale). The
//            interleaved and the natural order differ only in which column a nibble holds (col tables).
//   tokens   x [8 tokens x 32 k] per token tile; plain ldmatrix.x4 gives the B fragments directly.
//   dequant  (1024 + q) - (1024 + z) exactly in fp16 (hsub2), scale per unit in fp32 after the mma (as the
//            skinny kernel's chk = 0).
//   layout   row r of a stage's weight tile holds its two 16-byte chunks swapped when (r / 4) is odd, the
//            token rows their four chunks XOR (t / 2) % 4: both ldmatrix patterns are bank-conflict free.
// Work split, reduction and split-K completion as in w4a16_gemm.cu (block = 8 warps on one 64-column
// tile, warps take units round-robin; fp32 workspace + counters, zero on entry and exit).
// Host requirements: K % 32 == 0, N % 64 == 0, all tensors 16-byte aligned, no act-order.

#include "w4a16_common.cuh"

namespace awqfmt_ldsm {

// Column (0..7 within a word) held by nibble e, and its inverse.
template <int LAYOUT>
__device__ __forceinline__ constexpr int nib_col(int e) {
    return LAYOUT == AWQFMT_L_AWQ ? ((e < 4) ? 2 * e : 2 * (e - 4) + 1) : e;
}
template <int LAYOUT>
__device__ __forceinline__ constexpr int col_nib(int col) {
    return LAYOUT == AWQFMT_L_AWQ ? ((col & 1) ? 4 + (col >> 1) : (col >> 1)) : col;
}

__device__ __forceinline__ void ldsm_x4(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}
__device__ __forceinline__ void mma16816(float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// nibble j of each 16-bit half of r as fp16 1024 + q (x16 for odd j)
template <int J>
__device__ __forceinline__ u32 nib(u32 r) {
    return lop3_and_or((J >= 2) ? (r >> 8) : r, (J & 1) ? 0x00F000F0u : 0x000F000Fu, AWQFMT_MAGIC);
}

}  // namespace awqfmt_ldsm

template <int LAYOUT, int NT, int BF16, int STAGES>
__global__ void __launch_bounds__(256, 2)
w4a16_ldsm(const u16* __restrict__ x,        // [M, K] fp16
           const u32* __restrict__ qw,       // [K, N/8]
           const u32* __restrict__ qz,       // [n_g, N/8]
           const u16* __restrict__ sc,       // [n_g, N] fp16 or bf16 bits
           u16* __restrict__ y,              // [M, N] fp16
           float* __restrict__ ws,           // [M, N] fp32 split-K workspace (zero on entry and exit)
           u32* __restrict__ counters,       // [gridDim.z * gridDim.x] (zero on entry and exit)
           int M, int K, int N, u32 gm, u32 gmask, int units_per_split)
{
    using namespace awqfmt_ldsm;
    static_assert(LAYOUT == AWQFMT_L_AWQ || LAYOUT == AWQFMT_L_NAT_LOP3, "AWQ-like layouts with the lop3 decode");
    static_assert(NT == 1 || NT == 2 || NT == 4, "NT is 1, 2 or 4 token tiles");
    static_assert(STAGES >= 2 && STAGES <= 6, "2 to 6 stages");
    constexpr int OX = 1024;                 // weights: 32 rows x 32 bytes
    constexpr int OZ = OX + 512 * NT;        // tokens: NT x 8 tokens x 64 bytes
    constexpr int OS = OZ + 32;              // zeros: 8 words
    constexpr int STAGE_BYTES = OS + 128;    // scales: 64 x 2 bytes
    constexpr int FRAG = 4 * NT * 4 * 32;    // accumulator floats of one warp
    extern __shared__ __align__(16) unsigned char dsmem[];  // 8 warps x STAGES x STAGE_BYTES; then the reduction
    __shared__ int s_last;

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2;  // mma row group of this lane (its k-pair index lane % 4 is implicit in ldmatrix)
    const int tile = blockIdx.x;
    const int col0 = tile * 64;
    const int tok0 = blockIdx.z * 8 * NT;
    const int n_units = K >> 5;
    const int NW = N >> 3;
    const int u_begin = blockIdx.y * units_per_split;
    const int u_end = min(n_units, u_begin + units_per_split);
    const u32 stage0 = smem_addr(dsmem) + (u32)(warp * STAGES * STAGE_BYTES);

    // ---- per-lane copy sources and destinations (32-bit offsets from opaque bases)
    const u32* qw_t = opaque(qw + (col0 >> 3));
    const u16* x_t = opaque(x);
    const u32* qz_t = opaque(qz + (col0 >> 3));
    const u16* sc_t = opaque(sc + col0);
    // weights: lane copies chunks j = lane and lane + 32 (row j / 2, 16-byte chunk j % 2)
    const int wr0 = lane >> 1, wc16 = lane & 1;
    const u32 wdst0 = (u32)(wr0 * 32 + ((wc16 ^ ((wr0 >> 2) & 1)) << 4));
    const u32 wdst1 = (u32)((wr0 + 16) * 32 + ((wc16 ^ (((wr0 + 16) >> 2) & 1)) << 4));
    const u32 wsrc0 = (u32)(wr0 * NW + 4 * wc16), wsrc1 = (u32)((wr0 + 16) * NW + 4 * wc16);
    // tokens: lane copies token lane / 4 (clamped to M - 1: its outputs are never stored), k-chunk lane % 4
    const int xt = lane >> 2, xc = lane & 3;
    const u32 xdst = (u32)(OX + xt * 64 + ((xc ^ ((xt >> 1) & 3)) << 4));
    u32 xsrc[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) xsrc[nt] = (u32)min(tok0 + 8 * nt + xt, M - 1) * (u32)K + (u32)(8 * xc);

    auto load_async = [&](int u, u32 sb) {
        const u32 ro = (u32)u * 32u * (u32)NW;
        cp_async<16>(sb + wdst0, qw_t + (ro + wsrc0), true);
        cp_async<16>(sb + wdst1, qw_t + (ro + wsrc1), true);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
            cp_async<16>(sb + xdst + (u32)(nt * 512), x_t + (xsrc[nt] + (u32)(u << 5)), true);
        const u32 gg = (u32)group_of(u, gm, gmask);
        if (lane < 2) cp_async<16>(sb + OZ + (u32)(16 * lane), qz_t + (gg * (u32)NW + (u32)(4 * lane)), true);
        else if (lane < 10) cp_async<16>(sb + OS + (u32)(16 * (lane - 2)), sc_t + (gg * (u32)N + (u32)(8 * (lane - 2))), true);
    };

    // ---- per-lane ldmatrix addresses (stage-relative)
    // A: matrix m = lane / 8 (rows 8 (m / 2) .. +7 of the k16 step, chunk m % 2), row lane % 8
    const int am = lane >> 3, ar = (lane & 7) + 8 * (am >> 1);
    const u32 aoff0 = (u32)(ar * 32 + (((am & 1) ^ ((ar >> 2) & 1)) << 4));
    const u32 aoff1 = (u32)((ar + 16) * 32 + (((am & 1) ^ (((ar + 16) >> 2) & 1)) << 4));
    // B: matrix m = k-octet lane / 8, token lane % 8
    const int bt = lane & 7, bm = lane >> 3;
    const u32 boff = (u32)(OX + bt * 64 + ((bm ^ ((bt >> 1) & 3)) << 4));
    // zeros / scales of this lane's rows: half g (rows g of each tile) and half g + 8 (rows g + 8)
    const u32 zsel = (g & 1) ? 0x3232u : 0x1010u;

    float acc[4][NT][4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[j][nt][e] = 0.f;

    constexpr float ODD_SCALE = 0.0625f;  // odd nibbles decode as 16 (q - z)
    auto compute = [&](u32 sb) {
        // zeros (1024 + z, x16 for odd j) of rows g / g + 8 in both halves
        u32 zA[4], zB[4];
        {
            const u32 zwA = lds_u32(sb + OZ + (u32)(4 * (g >> 1)));
            const u32 zwB = lds_u32(sb + OZ + (u32)(4 * ((g + 8) >> 1)));
            const u32 dA = __byte_perm(zwA, 0u, zsel), dB = __byte_perm(zwB, 0u, zsel);
            zA[0] = nib<0>(dA); zA[1] = nib<1>(dA); zA[2] = nib<2>(dA); zA[3] = nib<3>(dA);
            zB[0] = nib<0>(dB); zB[1] = nib<1>(dB); zB[2] = nib<2>(dB); zB[3] = nib<3>(dB);
        }
        // scales of rows g / g + 8 of tile j: column nib_col(4 (h % 2) + j) of word h / 2, h = g or g + 8
        float sA[4], sB[4];
        {
            const uint4 vA = lds_v4(sb + OS + (u32)(16 * (g >> 1)));
            const uint4 vB = lds_v4(sb + OS + (u32)(16 * ((g + 8) >> 1)));
            const u32 hA[4] = {vA.x, vA.y, vA.z, vA.w}, hB[4] = {vB.x, vB.y, vB.z, vB.w};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                // g even: nibble j; g odd: nibble 4 + j. Same column parity for both words (g + 8 has g's parity).
                const int c0 = nib_col<LAYOUT>(j), c1 = nib_col<LAYOUT>(4 + j);
                const u16 a = (g & 1) ? (u16)((c1 & 1) ? (hA[c1 >> 1] >> 16) : (hA[c1 >> 1] & 0xFFFFu))
                                      : (u16)((c0 & 1) ? (hA[c0 >> 1] >> 16) : (hA[c0 >> 1] & 0xFFFFu));
                const u16 b = (g & 1) ? (u16)((c1 & 1) ? (hB[c1 >> 1] >> 16) : (hB[c1 >> 1] & 0xFFFFu))
                                      : (u16)((c0 & 1) ? (hB[c0 >> 1] >> 16) : (hB[c0 >> 1] & 0xFFFFu));
                const float f = (j & 1) ? ODD_SCALE : 1.0f;
                sA[j] = scale_f<BF16>(a) * f;
                sB[j] = scale_f<BF16>(b) * f;
            }
        }
        // B fragments: bx[nt][m] = k-octet m of token tile nt
        u32 bx[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) ldsm_x4(sb + boff + (u32)(nt * 512), bx[nt][0], bx[nt][1], bx[nt][2], bx[nt][3]);
        float d[4][NT][4];
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) d[j][nt][e] = 0.f;
#pragma unroll
        for (int s = 0; s < 2; ++s) {
            u32 R0, R1, R2, R3;  // half g / g + 8 of rows (2q, 2q + 1) / (8 + 2q, 9 + 2q) of k16 step s
            ldsm_x4_trans(sb + (s ? aoff1 : aoff0), R0, R1, R2, R3);
#define AWQFMT_LDSM_TILE(J)                                                                                 \
            {                                                                                              \
                const u32 a0 = hsub2(nib<J>(R0), zA[J]), a1 = hsub2(nib<J>(R1), zB[J]);                    \
                const u32 a2 = hsub2(nib<J>(R2), zA[J]), a3 = hsub2(nib<J>(R3), zB[J]);                    \
                _Pragma("unroll") for (int nt = 0; nt < NT; ++nt)                                          \
                    mma16816(d[J][nt], a0, a1, a2, a3, bx[nt][2 * s], bx[nt][2 * s + 1]);                  \
            }
            AWQFMT_LDSM_TILE(0)
            AWQFMT_LDSM_TILE(1)
            AWQFMT_LDSM_TILE(2)
            AWQFMT_LDSM_TILE(3)
#undef AWQFMT_LDSM_TILE
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                acc[j][nt][0] += sA[j] * d[j][nt][0];
                acc[j][nt][1] += sA[j] * d[j][nt][1];
                acc[j][nt][2] += sB[j] * d[j][nt][2];
                acc[j][nt][3] += sB[j] * d[j][nt][3];
            }
    };

    // ---- main loop: warp w takes units u_begin + w, + 8, + 16, ...; STAGES - 1 units in flight
    {
        auto unit_of = [&](int i) { return u_begin + warp + 8 * i; };
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (unit_of(s) < u_end) load_async(unit_of(s), stage0 + (u32)(s * STAGE_BYTES));
            cp_async_commit();
        }
        int slot = 0;                   // stage of unit i
        int fill = STAGES - 1;          // stage that unit i + STAGES - 1 goes to
        for (int i = 0; unit_of(i) < u_end; ++i) {
            const int un = unit_of(i + STAGES - 1);
            if (un < u_end) load_async(un, stage0 + (u32)(fill * STAGE_BYTES));
            cp_async_commit();
            cp_async_wait<STAGES - 1>();
            __syncwarp();               // every lane's copies of unit i have landed
            compute(stage0 + (u32)(slot * STAGE_BYTES));
            __syncwarp();               // everyone has read the stage before it is refilled
            slot = (slot + 1 == STAGES) ? 0 : slot + 1;
            fill = (fill + 1 == STAGES) ? 0 : fill + 1;
        }
        cp_async_wait<0>();
    }
    __syncthreads();

    // ---- block reduction in fragment order (reusing the stage memory): warps 4-7 store, warps 0-3 add
    float* red = reinterpret_cast<float*>(dsmem);
    {
        float* mine = red + (warp & 3) * FRAG;
        if (warp >= 4) {
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) mine[((j * NT + nt) * 4 + e) * 32 + lane] = acc[j][nt][e];
        }
        __syncthreads();
        if (warp < 4) {
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) mine[((j * NT + nt) * 4 + e) * 32 + lane] += acc[j][nt][e];
        }
        __syncthreads();
    }

    const int ntok = min(8 * NT, M - tok0);
    const bool whole = (u_begin == 0 && u_end == n_units);  // this block alone covers the tile's K
    for (int i = tid; i < ntok * 64; i += 256) {
        const int lt = i >> 6, lc = i & 63;
        // column lc = word w, column cw -> nibble e -> half h = 2 w + e / 4 -> tile e % 4, row h (h < 8) or h - 8
        const int e = col_nib<LAYOUT>(lc & 7);
        const int h = 2 * (lc >> 3) + (e >> 2);
        const int idx = (((e & 3) * NT + (lt >> 3)) * 4 + 2 * (h >> 3) + (lt & 1)) * 32 + 4 * (h & 7) + ((lt & 7) >> 1);
        const float v = red[idx] + red[FRAG + idx] + red[2 * FRAG + idx] + red[3 * FRAG + idx];
        const size_t o = (size_t)(tok0 + lt) * N + col0 + lc;
        if (whole) y[o] = f2h(v);
        else atomicAdd(&ws[o], v);
    }
    if (!whole) {
        // ---- split K: the block that completes the tile's units converts the workspace to fp16 and zeroes it
        __threadfence();
        __syncthreads();
        const int ctr = blockIdx.z * gridDim.x + tile;
        if (tid == 0) {
            const u32 done = (u32)(u_end - u_begin);
            const u32 prev = atomicAdd(&counters[ctr], done);
            s_last = (prev + done == (u32)n_units);
        }
        __syncthreads();
        if (s_last) {
            __threadfence();
            for (int i = tid; i < ntok * 64; i += 256) {
                const size_t o = (size_t)(tok0 + (i >> 6)) * N + col0 + (i & 63);
                y[o] = f2h(ld_cg_f32(&ws[o]));
                st_cg_f32(&ws[o], 0.f);
            }
            if (tid == 0) counters[ctr] = 0u;
        }
    }
}

#ifdef AWQFMT_INSTANTIATE_ALL
#define AWQFMT_LDSM_INST(L, NT, BF, ST)                                                                     \
    template __global__ void w4a16_ldsm<L, NT, BF, ST>(const u16*, const u32*, const u32*, const u16*, u16*, \
                                                       float*, u32*, int, int, int, u32, u32, int);
AWQFMT_LDSM_INST(0, 1, 0, 4)
AWQFMT_LDSM_INST(0, 2, 0, 4)
AWQFMT_LDSM_INST(0, 2, 1, 3)
AWQFMT_LDSM_INST(0, 4, 0, 3)
AWQFMT_LDSM_INST(1, 2, 0, 4)
AWQFMT_LDSM_INST(1, 1, 1, 2)
#endif
