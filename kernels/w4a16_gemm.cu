// Weight-streaming W4A16 GEMM for small M (decode / skinny batches): y[M, N] = x[M, K] @ W[K, N].
//
// x fp16 row-major; W = (q - z[g]) * s[g], q/z 4-bit packed, s fp16 or bf16 (raw bits), g = k / G.
// fp32 accumulation (tensor cores, mma.sync m16n8k16 f16 -> f32), fp16 output.
//
// Work split
//   block   = 8 warps sharing one column tile of 64*WC output columns and a range of K ("split").
//   unit    = 32 consecutive k (always inside one quantization group: the host requires G % 32 == 0 or
//             one group for all of K). Warps of a block take chunks of 2^ch_log consecutive units (inside one
//             group) round-robin.
//   thread  = lane (r = lane / 4, c = lane % 4): 8*WC columns (fixed by r) x the 8 k of the unit at
//             k0 + 8c .. k0 + 8c + 7 (AWQ-style layouts; GPTQ: the one packed word row k0/8 + c).
//   mma     = D[16 columns, 8 tokens] += A[16 columns, 16 k] * B[16 k, 8 tokens]; the weights are the A
//             operand, so a row of A is an output column and the 8 tokens of a token tile are mma's N.
//             The k order inside a unit is permuted freely (weights and activations identically), so the
//             A fragment's k-pairs are whatever pairs the decoder produces cheaply.
//   dequant = CHK 1: A holds 1024 + q straight from the lop3 (x16 for odd nibbles), exact in fp16; a second
//             mma with A = 1.0 sums x. Once per chunk, in fp32: acc += s * (sum x (1024 + q) - (1024 + z) sum x),
//             so zero point and scale cost nothing per weight, fp16 and bf16 scales are handled alike,
//             and no precision is lost to an fp16 product. CHK 0: A = (1024 + q) - (1024 + z) exactly (hsub2),
//             the scale applied per unit in fp32 (fewer registers).
//   loads   = PF 0-2: straight into registers, the next PF units' loads in flight while one computes
//             (FAST + PF 2: the weights two units ahead, zeros/scales/x one); PF 3-4: a per-warp cp.async
//             pipeline of PF stages through shared memory.
//             KF 1 (K % 32 == 0) with AWQ-like words and register loads = FAST: no bounds tests and 32-bit
//             offsets from per-thread base pointers in the unit loop (run 10: that arithmetic was ~45% of
//             the loop's instructions); the group index is a multiply-high (group_of), never a division.
//   reduce  = per block in shared memory (fragment order: no bank conflicts, no atomics); across up to
//             AWQFMT_FX_SPLITS_MAX splits by one 64-bit fixed-point atomic per output whose last arriver writes
//             y (split_add_fx: deterministic), beyond that through an fp32 workspace (atomicAdd) that the
//             block completing a column tile converts to fp16 and zeroes again; one launch either way
//             (workspaces and counters start zeroed and are left zeroed).
//   PDL     = launched with programmatic dependent launch (awqfmt/gpu/launch.py), FAST + PF 2 requests its first
//             two units' weights before waiting for the kernel before it (pdl_wait); the other paths wait first.
//             x is read through L2 (ldx_*), never the read-only path (see pdl_wait).
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

// Nibble (0..7) holding column col of a word (the inverse of nib_col).
template <int LAYOUT>
__device__ __forceinline__ constexpr int col_nib(int col) {
    return LAYOUT == AWQFMT_L_AWQ ? ((col & 1) ? 4 + (col >> 1) : (col >> 1)) : col;
}

}  // namespace awqfmt

// W = 8 warps per block (256 threads), or 16 (512: WC * NT <= 2 with register loads, one block per SM; the two
// halves of the block take the two halves of its K range, so a 64-column tile fills an SM without a K split
// across blocks and its workspace round trip; run 11: that round trip cost 10-23% of the M = 16 time).
template <int LAYOUT, int WC, int NT, int BF16, int ZOFF, int PF, int CHK, int KF, int W = 8>
__global__ void __launch_bounds__(32 * W, (W == 8 && WC * NT <= 2) ? 2 : 1)
w4a16_skinny(const u16* __restrict__ x,        // [M, K] fp16
             const u32* __restrict__ qw,       // AWQ-like: [K, N/8]; GPTQ: [K/8, N]
             const u32* __restrict__ qz,       // [n_g, N/8]
             const u16* __restrict__ sc,       // [n_g, N] fp16 or bf16 bits
             u16* __restrict__ y,              // [M, N] fp16
             float* __restrict__ ws,           // [M, N] fp32 split-K workspace (zero on entry and exit)
             unsigned long long* __restrict__ ws64,  // [M, N] fixed-point split-K words (zero on entry and exit)
             u32* __restrict__ counters,       // [gridDim.z * gridDim.x] (zero on entry and exit)
             int M, int K, int N, u32 gm, u32 gmask, int units_per_split, int ch_log)
{
    static_assert(WC == 1 || WC == 2 || WC == 4, "WC is 1, 2 or 4");
    static_assert(WC * NT <= 4, "shared staging holds WC * NT <= 4");
    static_assert(W == 8 || (W == 16 && WC * NT <= 2 && PF <= 2), "16 warps: WC * NT <= 2, register loads");
    constexpr bool GPTQ = (LAYOUT == AWQFMT_L_GPTQ);
    constexpr bool ASYNC = PF >= 3;  // cp.async pipeline of PF stages (else register prefetch depth PF)
    constexpr int STAGES = ASYNC ? PF : 1;
    constexpr int COLS = 8 * WC;     // output columns per thread
    constexpr int TILES = 4 * WC;    // mma tiles (16 columns each across the warp) per k16 step
    constexpr int BCOLS = 64 * WC;   // columns per block
    constexpr int TOK = 8 * NT;      // tokens per block
    constexpr int WR = GPTQ ? 2 * WC : 8;   // weight words of one unit: [WR][WV]
    constexpr int WV = GPTQ ? 4 : WC;
    constexpr int ZR = GPTQ ? 2 * WC : WC;  // zero words
    constexpr int SR = 4 * WC;              // scale words (two 16-bit scales each)
    constexpr int FRAG = TILES * NT * 4 * 32;  // accumulator floats of one warp
    // The x16 factor of odd nibbles in the lop3 decoders (never for GPTQ, which decodes with shifts).
    constexpr float ODD_SCALE = (LAYOUT == AWQFMT_L_AWQ || LAYOUT == AWQFMT_L_NAT_LOP3) ? 0.0625f : 1.0f;
    // cp.async staging, per warp and stage, lane-major vectors: weights | zeros | scales | x
    constexpr int OZ = GPTQ ? 1024 * WC : 1024 * WC;
    constexpr int OS = GPTQ ? OZ + 256 * WC : OZ + 128 * WC;
    constexpr int OX = OS + 512 * WC;
    constexpr int STAGE_BYTES = OX + 512 * NT;

    __shared__ float red[4 * FRAG];
    __shared__ int s_last;
    extern __shared__ __align__(16) unsigned char dsmem[];  // ASYNC: 8 warps x STAGES x STAGE_BYTES

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int r = lane >> 2, c = lane & 3;
    const int tok0 = blockIdx.z * TOK;
    const int n_units = (K + 31) >> 5;
    const int NW = N >> 3;  // words per row of qweight (AWQ-like) and of qzeros
    const u32 stage_base = ASYNC ? smem_addr(dsmem) + (u32)(warp * STAGES * STAGE_BYTES) : 0u;

    // Everything one unit reads from memory. AWQ-like w[i][v] = row k0 + 8c + i, word wc0 + v;
    // GPTQ w[q][i] = word row k0/8 + c, column col0 + 32q + 4r + i.
    struct Stage {
        u32 w[WR][WV];
        uint4 x[NT];
        u32 z[ZR];
        u32 s[SR];
    };

    // ---- this block: column tile blockIdx.x, units [blockIdx.y * units_per_split, + units_per_split) -----
    // (blocks with consecutive blockIdx.x run together and read neighbouring columns of the same rows)
    {
    const int tile = blockIdx.x;
    // CHK 0 applies zero and scale per unit: chunks of one unit (the host passes ch_log = 0), fixed here at
    // compile time so that the halves below and unit_of are plain multiply-adds (run 11g)
    if constexpr (!CHK) ch_log = 0;
    const int bu_begin = blockIdx.y * units_per_split;  // the block's units
    const int bu_end = min(n_units, bu_begin + units_per_split);
    // this warp's half of them (16 warps: warps 8-15 take the second half, in whole chunks of 1 << ch_log)
    const int half_units = W == 16 ? ((units_per_split + (2 << ch_log) - 1) / (2 << ch_log)) << ch_log : 0;
    const int u_begin = W == 16 ? min(bu_end, bu_begin + (warp >> 3) * half_units) : bu_begin;
    const int u_end = W == 16 ? min(bu_end, u_begin + half_units) : bu_end;
    const int col0 = tile * BCOLS;

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

    // FAST (AWQ-like layouts, KF: K % 32 == 0, register loads): the unit loop's loads need no bounds tests and
    // no 64-bit index arithmetic. Lanes past N read column 0 and tokens past M re-read token M - 1 instead
    // (finite values whose outputs are never stored), every row of every unit lies inside K, and each
    // address is a per-thread base plus a 32-bit offset (one tensor < 16 GiB). Measured reason (run 10):
    // the generic loads cost ~200 of the ~460 instructions of a unit, mostly IMAD/LEA/ISETP.
    constexpr bool FAST = KF && !GPTQ && !ASYNC;
    const int wcl = awq_cols_ok ? wc0 : 0;
    const u32* qw_t = opaque(qw + (size_t)(8 * c) * NW + wcl);
    const u32* qz_t = opaque(qz + wcl);
    const u16* sc_t = opaque(sc + 8 * wcl);
    const u16* x_t = opaque(x);
    const u32 rows32 = 32u * (u32)NW;
    u32 xo[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) xo[nt] = (u32)min(tok0 + 8 * nt + r, M - 1) * (u32)K + (u32)(8 * c);

    // FAST loads, split so that the weights can run further ahead than the rest (PF = 2): 32-bit offsets
    // from per-thread bases, no bounds tests (see FAST above).
    auto load_w = [&](int u, u32 (&w)[WR][WV]) {
        u32 o = (u32)u * rows32;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            ldg_stream_words<WC>(qw_t + o, w[i]);
            o += (u32)NW;
        }
    };
    auto load_rest = [&](int u, Stage& st) {  // zeros, scales and x of unit u
        const int g = group_of(u, gm, gmask);
        ldg_words<WC>(qz_t + (u32)g * (u32)NW, st.z);
        const u16* ps = sc_t + (u32)g * (u32)N;
#pragma unroll
        for (int v = 0; v < WC; ++v) {
            const uint4 sv = ldg_v4(ps + 8 * v);
            st.s[4 * v] = sv.x; st.s[4 * v + 1] = sv.y; st.s[4 * v + 2] = sv.z; st.s[4 * v + 3] = sv.w;
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) st.x[nt] = ldx_v4(x_t + (xo[nt] + (u32)(u << 5)));
    };

    auto load = [&](int u, Stage& st) {
        const int k0 = u << 5;
        const int g = group_of(u, gm, gmask);
        if constexpr (FAST) {
            load_w(u, st.w);
            load_rest(u, st);
        } else if constexpr (!GPTQ) {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int row = k0 + 8 * c + i;
                const bool ok = awq_cols_ok && row < K;
                ldg_stream_words<WC>(qw + (size_t)row * NW + wc0, st.w[i], ok);
            }
            ldg_words<WC>(qz + (size_t)g * NW + wc0, st.z, awq_cols_ok);
#pragma unroll
            for (int v = 0; v < WC; ++v) {
                const uint4 sv = awq_cols_ok ? ldg_v4(sc + (size_t)g * N + 8 * (wc0 + v)) : u4(0, 0, 0, 0);
                st.s[4 * v] = sv.x; st.s[4 * v + 1] = sv.y; st.s[4 * v + 2] = sv.z; st.s[4 * v + 3] = sv.w;
            }
        } else {
            const int kw = (k0 >> 3) + c;
#pragma unroll
            for (int q = 0; q < 2 * WC; ++q) {
                const int col = col0 + 32 * q + 4 * r;
                const bool cok = col < N;
                const bool ok = cok && (kw < (K >> 3));
                const uint4 v = ok ? ldg_stream_v4(qw + (size_t)kw * N + col) : u4(0, 0, 0, 0);
                st.w[q][0] = v.x; st.w[q][1] = v.y; st.w[q][2] = v.z; st.w[q][3] = v.w;
                st.z[q] = cok ? ldg_u32(qz + (size_t)g * NW + (col >> 3)) : 0u;
                const uint2 s2 = cok ? ldg_v2(sc + (size_t)g * N + col) : u2(0, 0);
                st.s[2 * q] = s2.x; st.s[2 * q + 1] = s2.y;
            }
        }
        if constexpr (!FAST) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const int tok = tok0 + 8 * nt + r;
            const int kx = k0 + 8 * c;
            uint4 xv = u4(0, 0, 0, 0);
            if (tok < M && kx < K) {
                const u16* px = x + (size_t)tok * K + kx;
                if ((K & 7) == 0) {
                    xv = ldx_v4(px);
                } else {
                    u32 e[8];
#pragma unroll
                    for (int j = 0; j < 8; ++j) e[j] = (kx + j < K) ? (u32)ldx_u16(px + j) : 0u;
                    xv = u4(e[0] | (e[1] << 16), e[2] | (e[3] << 16), e[4] | (e[5] << 16), e[6] | (e[7] << 16));
                }
            }
            st.x[nt] = xv;
        }
        }
    };

    // The same loads as `load`, issued as cp.async into this lane's slots of stage buffer `sb`.
    auto load_async = [&](int u, u32 sb) {
        const int k0 = u << 5;
        const int g = group_of(u, gm, gmask);
        const u32 l4 = (u32)lane;
        if constexpr (!GPTQ) {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int row = k0 + 8 * c + i;
                const bool ok = awq_cols_ok && row < K;
                const u32* p = ok ? qw + (size_t)row * NW + wc0 : qw;
                cp_async<4 * WC>(sb + (u32)(i * 128 * WC) + l4 * (4 * WC), p, ok);
            }
            cp_async<4 * WC>(sb + OZ + l4 * (4 * WC), awq_cols_ok ? qz + (size_t)g * NW + wc0 : qz, awq_cols_ok);
#pragma unroll
            for (int v = 0; v < WC; ++v)
                cp_async<16>(sb + OS + (u32)(v * 512) + l4 * 16,
                             awq_cols_ok ? sc + (size_t)g * N + 8 * (wc0 + v) : sc, awq_cols_ok);
        } else {
            const int kw = (k0 >> 3) + c;
#pragma unroll
            for (int q = 0; q < 2 * WC; ++q) {
                const int col = col0 + 32 * q + 4 * r;
                const bool cok = col < N;
                const bool ok = cok && (kw < (K >> 3));
                cp_async<16>(sb + (u32)(q * 512) + l4 * 16, ok ? qw + (size_t)kw * N + col : qw, ok);
                cp_async<4>(sb + OZ + (u32)(q * 128) + l4 * 4, cok ? qz + (size_t)g * NW + (col >> 3) : qz, cok);
                cp_async<8>(sb + OS + (u32)(q * 256) + l4 * 8, cok ? sc + (size_t)g * N + col : sc, cok);
            }
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const int tok = tok0 + 8 * nt + r;
            const int kx = k0 + 8 * c;
            const bool ok = tok < M && kx < K;  // host guarantees K % 8 == 0 for ASYNC
            cp_async<16>(sb + OX + (u32)(nt * 512) + l4 * 16, ok ? x + (size_t)tok * K + kx : x, ok);
        }
    };

    auto read_stage = [&](u32 sb, Stage& st) {
        const u32 l4 = (u32)lane;
        if constexpr (!GPTQ) {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                lds_words<WC>(sb + (u32)(i * 128 * WC) + l4 * (4 * WC), st.w[i]);
            }
            lds_words<WC>(sb + OZ + l4 * (4 * WC), st.z);
#pragma unroll
            for (int v = 0; v < WC; ++v) {
                const uint4 sv = lds_v4(sb + OS + (u32)(v * 512) + l4 * 16);
                st.s[4 * v] = sv.x; st.s[4 * v + 1] = sv.y; st.s[4 * v + 2] = sv.z; st.s[4 * v + 3] = sv.w;
            }
        } else {
#pragma unroll
            for (int q = 0; q < 2 * WC; ++q) {
                const uint4 v = lds_v4(sb + (u32)(q * 512) + l4 * 16);
                st.w[q][0] = v.x; st.w[q][1] = v.y; st.w[q][2] = v.z; st.w[q][3] = v.w;
                st.z[q] = lds_u32(sb + OZ + (u32)(q * 128) + l4 * 4);
                const uint2 s2 = lds_v2(sb + OS + (u32)(q * 256) + l4 * 8);
                st.s[2 * q] = s2.x; st.s[2 * q + 1] = s2.y;
            }
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) st.x[nt] = lds_v4(sb + OX + (u32)(nt * 512) + l4 * 16);
    };

    // Raw tensor-core sums of the current chunk (consecutive units of one group): dacc = sum x * (1024 + q)
    // (x16 for odd nibbles of the lop3 decoders), xs = sum x per token (an mma with A = 1.0). The zero point
    // and the scale are applied once per chunk, in fp32: acc += s * (dacc - (1024 + z) * xs).
    constexpr int DT = CHK ? TILES : 1;
    float dacc[DT][NT][4];
    float xs[NT][4];
#pragma unroll
    for (int t = 0; t < DT; ++t)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 4; ++j) dacc[t][nt][j] = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int j = 0; j < 4; ++j) xs[nt][j] = 0.f;

    auto mma = [](float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    };

    // ---- pieces shared by the per-chunk (accumulate + finish) and the per-unit (compute_unit) paths
    // B fragments: b[s][nt][0..1] for k16 step s of the unit and token tile nt.
    auto b_frags = [&](const Stage& st, u32 (&b)[2][NT][2]) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const uint4 xv = st.x[nt];
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
    };
    // k-pairs of two words (rows a, b of one word column) as 1024 + q, with this layout's decoder.
    auto dec_kpair = [](u32 a, u32 b, u32 (&h)[8]) {
        if constexpr (LAYOUT == AWQFMT_L_NAT_SHIFT) dec_kpair_shift(a, b, h);
        else dec_kpair_lop3(a, b, h);
    };
    // AWQ-like: the unit's 8 rows of word column v as the A registers of k16 steps 0 (hl0, hh0) and 1 (hl1, hh1).
    auto dec_unit = [&](const Stage& st, int v, u32 (&hl0)[8], u32 (&hh0)[8], u32 (&hl1)[8], u32 (&hh1)[8]) {
        dec_kpair(st.w[0][v], st.w[1][v], hl0);
        dec_kpair(st.w[2][v], st.w[3][v], hh0);
        dec_kpair(st.w[4][v], st.w[5][v], hl1);
        dec_kpair(st.w[6][v], st.w[7][v], hh1);
    };
    // AWQ-like: scales of tile t's two rows in word column v, nibble 2t (A row r) and 2t+1 (A row r+8, whose
    // x16 from the lop3 decoders is undone here).
    auto tile_scales = [&](const Stage& st, int v, int t, float& sA, float& sB) {
        const int cA = awqfmt::nib_col<LAYOUT>(2 * t), cB = awqfmt::nib_col<LAYOUT>(2 * t + 1);
        const u32 swA = st.s[4 * v + (cA >> 1)], swB = st.s[4 * v + (cB >> 1)];
        sA = scale_f<BF16>((u16)((cA & 1) ? (swA >> 16) : (swA & 0xFFFFu)));
        sB = scale_f<BF16>((u16)((cB & 1) ? (swB >> 16) : (swB & 0xFFFFu))) * ODD_SCALE;
    };
    // GPTQ: scales of the 4 columns of word group q.
    auto gptq_scales = [&](const Stage& st, int q, float (&s4)[4]) {
        s4[0] = scale_f<BF16>((u16)(st.s[2 * q] & 0xFFFFu));
        s4[1] = scale_f<BF16>((u16)(st.s[2 * q] >> 16));
        s4[2] = scale_f<BF16>((u16)(st.s[2 * q + 1] & 0xFFFFu));
        s4[3] = scale_f<BF16>((u16)(st.s[2 * q + 1] >> 16));
    };

    auto accumulate = [&](const Stage& st) {
      if constexpr (CHK) {
        u32 b[2][NT][2];
        b_frags(st, b);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const u32 one = 0x3C003C00u;  // fp16 1.0 in both halves
            mma(xs[nt], one, one, one, one, b[0][nt][0], b[0][nt][1]);
            mma(xs[nt], one, one, one, one, b[1][nt][0], b[1][nt][1]);
        }
        if constexpr (!GPTQ) {
#pragma unroll
            for (int v = 0; v < WC; ++v) {
                u32 hl0[8], hh0[8], hl1[8], hh1[8];
                dec_unit(st, v, hl0, hh0, hl1, hh1);
#pragma unroll
                for (int t = 0; t < 4; ++t)
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        float (&d)[4] = dacc[4 * v + t][nt];
                        mma(d, hl0[2 * t], hl0[2 * t + 1], hh0[2 * t], hh0[2 * t + 1], b[0][nt][0], b[0][nt][1]);
                        mma(d, hl1[2 * t], hl1[2 * t + 1], hh1[2 * t], hh1[2 * t + 1], b[1][nt][0], b[1][nt][1]);
                    }
            }
        } else {
#pragma unroll
            for (int q = 0; q < 2 * WC; ++q) {
                u32 P[4][4];  // P[i][j]: column i, k-pair j = (8c + j, 8c + j + 4), as 1024 + q
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const u32 wv = st.w[q][i];
                    P[i][0] = lop3_and_or(wv, 0x000F000Fu, AWQFMT_MAGIC);
                    P[i][1] = lop3_and_or(wv >> 4, 0x000F000Fu, AWQFMT_MAGIC);
                    P[i][2] = lop3_and_or(wv >> 8, 0x000F000Fu, AWQFMT_MAGIC);
                    P[i][3] = lop3_and_or(wv >> 12, 0x000F000Fu, AWQFMT_MAGIC);
                }
#pragma unroll
                for (int t = 0; t < 2; ++t)
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        const int iA = 2 * t, iB = 2 * t + 1;
                        float (&d)[4] = dacc[2 * q + t][nt];
                        mma(d, P[iA][0], P[iB][0], P[iA][1], P[iB][1], b[0][nt][0], b[0][nt][1]);
                        mma(d, P[iA][2], P[iB][2], P[iA][3], P[iB][3], b[1][nt][0], b[1][nt][1]);
                    }
            }
        }
      }
    };

    // End of a chunk: fold zero point and scale of its group into acc, reset the raw sums.
    auto finish = [&](const Stage& st) {
      if constexpr (CHK) {
        if constexpr (!GPTQ) {
#pragma unroll
            for (int v = 0; v < WC; ++v) {
                u32 zc[8];  // (1024 + z) (x16 for odd nibbles of the lop3 decoders) in both halves
                dec_kpair(st.z[v], st.z[v], zc);
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    float sA, sB;
                    tile_scales(st, v, t, sA, sB);
                    const float zA = h2f_lo(zc[2 * t]), zB = h2f_lo(zc[2 * t + 1]);
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        float (&d)[4] = dacc[4 * v + t][nt];
                        float (&a)[4] = acc[4 * v + t][nt];
                        a[0] += sA * (d[0] - zA * xs[nt][0]);
                        a[1] += sA * (d[1] - zA * xs[nt][1]);
                        a[2] += sB * (d[2] - zB * xs[nt][0]);
                        a[3] += sB * (d[3] - zB * xs[nt][1]);
                        d[0] = d[1] = d[2] = d[3] = 0.f;
                    }
                }
            }
        } else {
#pragma unroll
            for (int q = 0; q < 2 * WC; ++q) {
                const int zsh = 16 * (r & 1);  // 4 columns start at nibble 4 * (r & 1) of their zeros word
                float zf[4], s4[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) zf[i] = (float)(1024u + ((st.z[q] >> (zsh + 4 * i)) & 0xFu) + ZOFF);
                gptq_scales(st, q, s4);
#pragma unroll
                for (int t = 0; t < 2; ++t)
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        const int iA = 2 * t, iB = 2 * t + 1;
                        float (&d)[4] = dacc[2 * q + t][nt];
                        float (&a)[4] = acc[2 * q + t][nt];
                        a[0] += s4[iA] * (d[0] - zf[iA] * xs[nt][0]);
                        a[1] += s4[iA] * (d[1] - zf[iA] * xs[nt][1]);
                        a[2] += s4[iB] * (d[2] - zf[iB] * xs[nt][0]);
                        a[3] += s4[iB] * (d[3] - zf[iB] * xs[nt][1]);
                        d[0] = d[1] = d[2] = d[3] = 0.f;
                    }
            }
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 4; ++j) xs[nt][j] = 0.f;
      }
    };

    // Per-unit variant (CHK = 0): A = (1024 + q) - (1024 + z) exactly (hsub2), scale per unit in fp32.
    auto compute_unit = [&](const Stage& st) {
        u32 b[2][NT][2];
        b_frags(st, b);
        if constexpr (!GPTQ) {
#pragma unroll
            for (int v = 0; v < WC; ++v) {
                u32 zc[8], hl0[8], hh0[8], hl1[8], hh1[8];
                dec_kpair(st.z[v], st.z[v], zc);
                dec_unit(st, v, hl0, hh0, hl1, hh1);
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    hl0[e] = hsub2(hl0[e], zc[e]);
                    hh0[e] = hsub2(hh0[e], zc[e]);
                    hl1[e] = hsub2(hl1[e], zc[e]);
                    hh1[e] = hsub2(hh1[e], zc[e]);
                }
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    float sA, sB;
                    tile_scales(st, v, t, sA, sB);
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        float d[4] = {0.f, 0.f, 0.f, 0.f};
                        mma(d, hl0[2 * t], hl0[2 * t + 1], hh0[2 * t], hh0[2 * t + 1], b[0][nt][0], b[0][nt][1]);
                        mma(d, hl1[2 * t], hl1[2 * t + 1], hh1[2 * t], hh1[2 * t + 1], b[1][nt][0], b[1][nt][1]);
                        const int ti = 4 * v + t;
                        acc[ti][nt][0] += sA * d[0];
                        acc[ti][nt][1] += sA * d[1];
                        acc[ti][nt][2] += sB * d[2];
                        acc[ti][nt][3] += sB * d[3];
                    }
                }
            }
        } else {
#pragma unroll
            for (int q = 0; q < 2 * WC; ++q) {
                const int zsh = 16 * (r & 1);  // 4 columns start at nibble 4 * (r & 1) of their zeros word
                u32 P[4][4];  // P[i][j]: column i, k-pair j = (8c + j, 8c + j + 4), minus zero
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const u32 z = ((st.z[q] >> (zsh + 4 * i)) & 0xFu) + ZOFF;
                    const u32 zc = (0x6400u + z) * 0x00010001u;
                    const u32 wv = st.w[q][i];
                    P[i][0] = hsub2(lop3_and_or(wv, 0x000F000Fu, AWQFMT_MAGIC), zc);
                    P[i][1] = hsub2(lop3_and_or(wv >> 4, 0x000F000Fu, AWQFMT_MAGIC), zc);
                    P[i][2] = hsub2(lop3_and_or(wv >> 8, 0x000F000Fu, AWQFMT_MAGIC), zc);
                    P[i][3] = hsub2(lop3_and_or(wv >> 12, 0x000F000Fu, AWQFMT_MAGIC), zc);
                }
                float s4[4];
                gptq_scales(st, q, s4);
#pragma unroll
                for (int t = 0; t < 2; ++t) {
                    const int iA = 2 * t, iB = 2 * t + 1;
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        float d[4] = {0.f, 0.f, 0.f, 0.f};
                        mma(d, P[iA][0], P[iB][0], P[iA][1], P[iB][1], b[0][nt][0], b[0][nt][1]);
                        mma(d, P[iA][2], P[iB][2], P[iA][3], P[iB][3], b[1][nt][0], b[1][nt][1]);
                        const int ti = 2 * q + t;
                        acc[ti][nt][0] += s4[iA] * d[0];
                        acc[ti][nt][1] += s4[iA] * d[1];
                        acc[ti][nt][2] += s4[iB] * d[2];
                        acc[ti][nt][3] += s4[iB] * d[3];
                    }
                }
            }
        }
    };

    // ---- main loop. Warp w takes chunks w, w + 8, w + 16, ... (w mod 8) of CH = 1 << ch_log consecutive units
    // (inside one group) of its half; unit i of the warp is unit_of(i). PF = 1, 2: the next one or two units'
    // loads are in flight (registers) while one computes; PF >= 3: a cp.async pipeline of PF stages per warp.
    const int CH = 1 << ch_log;
    const int wq = W == 16 ? (warp & 7) : warp;  // the warp's place among the 8 of its half
    auto unit_of = [&](int i) { return u_begin + ((wq + 8 * (i >> ch_log)) << ch_log) + (i & (CH - 1)); };
    auto step = [&](int i, int u, const Stage& st) {
        if constexpr (CHK) {
            accumulate(st);
            if ((i & (CH - 1)) == CH - 1 || u + 1 >= u_end) finish(st);
        } else {
            compute_unit(st);
        }
    };
    pdl_trigger();
    if constexpr (ASYNC) {
        pdl_wait(x, x_t);  // stages hold x next to the weights: nothing is loaded before the earlier kernels finish
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            const int us = unit_of(s);
            if (us < u_end) load_async(us, stage_base + (u32)(s * STAGE_BYTES));
            cp_async_commit();
        }
        for (int i = 0;; ++i) {
            const int u = unit_of(i);
            if (u >= u_end) break;
            const int un = unit_of(i + STAGES - 1);
            if (un < u_end) load_async(un, stage_base + (u32)(((i + STAGES - 1) % STAGES) * STAGE_BYTES));
            cp_async_commit();
            cp_async_wait<STAGES - 1>();
            Stage st;
            read_stage(stage_base + (u32)((i % STAGES) * STAGE_BYTES), st);
            step(i, u, st);
        }
        cp_async_wait<0>();
    } else {
        constexpr bool SPLIT2 = FAST && PF == 2;
        Stage cur, n1, n2;
        if constexpr (!SPLIT2) pdl_wait(x, x_t);  // x is loaded with the weights
        if constexpr (PF >= 1 && !SPLIT2) {
            if (unit_of(0) < u_end) load(unit_of(0), cur);
        }
        if constexpr (PF >= 2 && !SPLIT2) {
            if (unit_of(1) < u_end) load(unit_of(1), n1);
        }
        if constexpr (SPLIT2) {
            // weights two units ahead, zeros/scales/x one unit ahead: 3 + 2 rotating buffers, six units per
            // trip so that every buffer index is a compile-time constant (no register copies)
            u32 w0[WR][WV], w1[WR][WV], w2[WR][WV];
            Stage r0, r1;
            // the first two units' weights are requested before waiting for the kernel before this one (they
            // are the module's, which no kernel writes: see pdl_wait), x from the first unit's load_rest on
            if (unit_of(0) < u_end) load_w(unit_of(0), w0);
            if (unit_of(1) < u_end) load_w(unit_of(1), w1);
            pdl_wait(x, x_t);
            if (unit_of(0) < u_end) load_rest(unit_of(0), r0);
#define AWQFMT_FAST2_STEP(K6, WCUR, WNXT2, RCUR, RNXT)                                                     \
            {                                                                                              \
                const int uu = unit_of(i + K6);                                                            \
                if (uu >= u_end) break;                                                                    \
                if (unit_of(i + K6 + 2) < u_end) load_w(unit_of(i + K6 + 2), WNXT2);                       \
                if (unit_of(i + K6 + 1) < u_end) load_rest(unit_of(i + K6 + 1), RNXT);                     \
                Stage st;                                                                                  \
                _Pragma("unroll") for (int a = 0; a < WR; ++a)                                             \
                    _Pragma("unroll") for (int b = 0; b < WV; ++b) st.w[a][b] = WCUR[a][b];                \
                _Pragma("unroll") for (int a = 0; a < NT; ++a) st.x[a] = RCUR.x[a];                        \
                _Pragma("unroll") for (int a = 0; a < ZR; ++a) st.z[a] = RCUR.z[a];                        \
                _Pragma("unroll") for (int a = 0; a < SR; ++a) st.s[a] = RCUR.s[a];                        \
                step(i + K6, uu, st);                                                                      \
            }
            for (int i = 0;; i += 6) {
                AWQFMT_FAST2_STEP(0, w0, w2, r0, r1)
                AWQFMT_FAST2_STEP(1, w1, w0, r1, r0)
                AWQFMT_FAST2_STEP(2, w2, w1, r0, r1)
                AWQFMT_FAST2_STEP(3, w0, w2, r1, r0)
                AWQFMT_FAST2_STEP(4, w1, w0, r0, r1)
                AWQFMT_FAST2_STEP(5, w2, w1, r1, r0)
            }
#undef AWQFMT_FAST2_STEP
        } else if constexpr (PF == 1) {
            // two units per trip, the buffers swap roles: no register copies between units
            for (int i = 0;; i += 2) {
                const int u = unit_of(i);
                if (u >= u_end) break;
                if (unit_of(i + 1) < u_end) load(unit_of(i + 1), n1);
                step(i, u, cur);
                const int u1 = unit_of(i + 1);
                if (u1 >= u_end) break;
                if (unit_of(i + 2) < u_end) load(unit_of(i + 2), cur);
                step(i + 1, u1, n1);
            }
        } else {
            for (int i = 0;; ++i) {
                const int u = unit_of(i);
                if (u >= u_end) break;
                if constexpr (PF == 0) {
                    load(u, cur);
                } else {
                    if (unit_of(i + 2) < u_end) load(unit_of(i + 2), n2);
                }
                step(i, u, cur);
                if constexpr (PF >= 2) {
                    cur = n1;
                    n1 = n2;
                }
            }
        }
    }

    // ---- block reduction: accumulators in fragment order (lane fastest: no bank conflicts, no atomics);
    // warps 4-7 store, the further quads of warps (8-11, 12-15) add theirs one quad at a time, warps 0-3 last;
    // then the four slices are summed per output element.
    {
        float* mine = red + (warp & 3) * FRAG;
        auto put = [&](bool add) {
#pragma unroll
            for (int ti = 0; ti < TILES; ++ti)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        float& slot = mine[((ti * NT + nt) * 4 + j) * 32 + lane];
                        slot = add ? slot + acc[ti][nt][j] : acc[ti][nt][j];
                    }
        };
#pragma unroll
        for (int q = 1; q < W / 4; ++q) {
            if (W == 8 ? warp >= 4 : (warp >> 2) == q) put(q > 1);
            __syncthreads();
        }
        if (warp < 4) put(true);
        __syncthreads();
    }

    const int ntok = min(TOK, M - tok0);
    const int ncol = min(BCOLS, N - col0);
    const bool whole = (bu_begin == 0 && bu_end == n_units);  // this block alone covers the tile's K
    // 2..AWQFMT_FX_SPLITS_MAX blocks per tile: one fixed-point atomic per output, whose last arriver writes y
    // (split_add_fx; run 16i); more: the fp32 workspace and the tile counter below
    const bool fx = !whole && gridDim.y <= AWQFMT_FX_SPLITS_MAX;
    // output element (lt, lc) of the block -> its slot in fragment order
    for (int i = tid; i < ntok * BCOLS; i += 32 * W) {
        const int lt = i / BCOLS, lc = i - lt * BCOLS;
        if (lc >= ncol) continue;
        int ti, ab, rr;
        if constexpr (!GPTQ) {
            rr = lc / COLS;
            const int rem = lc - rr * COLS;
            const int e = awqfmt::col_nib<LAYOUT>(rem & 7);
            ti = 4 * (rem >> 3) + (e >> 1);
            ab = e & 1;
        } else {
            rr = (lc & 31) >> 2;
            ti = 2 * (lc >> 5) + ((lc & 3) >> 1);
            ab = lc & 1;
        }
        const int idx = ((ti * NT + (lt >> 3)) * 4 + 2 * ab + (lt & 1)) * 32 + 4 * rr + ((lt & 7) >> 1);
        const float v = red[idx] + red[FRAG + idx] + red[2 * FRAG + idx] + red[3 * FRAG + idx];
        const size_t o = (size_t)(tok0 + lt) * N + col0 + lc;
        if (whole) y[o] = f2h(v);
        else if (fx) split_add_fx(v, o, gridDim.y, ws64, ws, y);
        else atomicAdd(&ws[o], v);
    }
    if (!whole && !fx) {
        // ---- split K: the block that completes the tile's units converts the workspace to fp16 and zeroes it
        __syncthreads();
        const int ctr = blockIdx.z * gridDim.x + tile;
        if (tid == 0) s_last = split_arrive(&counters[ctr], (u32)(bu_end - bu_begin), (u32)n_units);
        __syncthreads();
        if (s_last) {
            for (int i = tid; i < ntok * BCOLS; i += 32 * W) {
                const int lt = i / BCOLS, lc = i - lt * BCOLS;
                if (lc < ncol) {
                    const size_t o = (size_t)(tok0 + lt) * N + col0 + lc;
                    y[o] = f2h(ld_cg_f32(&ws[o]));
                    st_cg_f32(&ws[o], 0.f);
                }
            }
            if (tid == 0) counters[ctr] = 0u;
        }
    }
    }
}

#ifdef AWQFMT_INSTANTIATE_ALL
// Explicit instantiations so that an offline nvcc build (tests/test_kernels_compile.py) checks the template
// bodies; at run time NVRTC instantiates only what is launched.
#define AWQFMT_INSTA(L, WC, NT, BF, Z)                                                                       \
    template __global__ void w4a16_skinny<L, WC, NT, BF, Z, 3, 0, 0>(const u16*, const u32*, const u32*, const u16*, \
                                                            u16*, float*, unsigned long long*, u32*, int, int, int, u32, u32, int, int);   \
    template __global__ void w4a16_skinny<L, WC, NT, BF, Z, 4, 1, 0>(const u16*, const u32*, const u32*, const u16*, \
                                                            u16*, float*, unsigned long long*, u32*, int, int, int, u32, u32, int, int);
#define AWQFMT_INST(L, WC, NT, BF, Z)                                                                        \
    template __global__ void w4a16_skinny<L, WC, NT, BF, Z, 1, 1, 1>(const u16*, const u32*, const u32*, const u16*, \
                                                            u16*, float*, unsigned long long*, u32*, int, int, int, u32, u32, int, int);   \
    template __global__ void w4a16_skinny<L, WC, NT, BF, Z, 2, 0, 1>(const u16*, const u32*, const u32*, const u16*, \
                                                            u16*, float*, unsigned long long*, u32*, int, int, int, u32, u32, int, int);   \
    template __global__ void w4a16_skinny<L, WC, NT, BF, Z, 0, 1, 1>(const u16*, const u32*, const u32*, const u16*, \
                                                            u16*, float*, unsigned long long*, u32*, int, int, int, u32, u32, int, int);  \
    template __global__ void w4a16_skinny<L, WC, NT, BF, Z, 1, 0, 0>(const u16*, const u32*, const u32*, const u16*, \
                                                            u16*, float*, unsigned long long*, u32*, int, int, int, u32, u32, int, int);
AWQFMT_INST(0, 4, 1, 0, 0)
AWQFMT_INSTA(0, 2, 1, 0, 0)
AWQFMT_INSTA(0, 1, 2, 0, 0)
AWQFMT_INSTA(0, 1, 4, 1, 0)
AWQFMT_INSTA(0, 4, 1, 0, 0)
AWQFMT_INSTA(3, 2, 1, 0, 1)
AWQFMT_INSTA(3, 1, 4, 1, 0)
AWQFMT_INSTA(2, 2, 2, 0, 0)
AWQFMT_INST(0, 2, 1, 0, 0)
AWQFMT_INST(0, 2, 2, 0, 0)
AWQFMT_INST(0, 1, 4, 1, 0)
AWQFMT_INST(0, 1, 1, 0, 0)
AWQFMT_INST(0, 1, 2, 0, 0)
AWQFMT_INST(3, 1, 2, 0, 1)
AWQFMT_INST(2, 1, 2, 0, 0)
AWQFMT_INST(1, 4, 1, 0, 0)
AWQFMT_INST(1, 2, 2, 0, 0)
AWQFMT_INST(2, 4, 1, 0, 0)
AWQFMT_INST(2, 2, 2, 1, 0)
AWQFMT_INST(3, 4, 1, 0, 1)
AWQFMT_INST(3, 2, 2, 1, 0)
AWQFMT_INST(3, 1, 4, 0, 1)
#define AWQFMT_INST16(L, WC, NT, PF, CHK, KF)                                                                 \
    template __global__ void w4a16_skinny<L, WC, NT, 0, 0, PF, CHK, KF, 16>(const u16*, const u32*, const u32*,    \
        const u16*, u16*, float*, unsigned long long*, u32*, int, int, int, u32, u32, int, int);
AWQFMT_INST16(0, 1, 2, 2, 0, 1)
AWQFMT_INST16(0, 1, 2, 1, 1, 0)
AWQFMT_INST16(3, 2, 1, 0, 0, 1)
AWQFMT_INST16(2, 1, 1, 2, 1, 1)
#endif
