// Tensor-core W4A16 GEMM for up to 16 tokens on weights pre-arranged in mma fragment order ("frag" layout):
// y[M, N] = x[M, K] @ W[K, N], M <= 16, fp32 accumulation, fp16 output.
//
// Why a second layout: the skinny kernel (w4a16_gemm.cu) reads the checkpoint's words as they are, so each
// thread gathers one 4-byte word from each of 8 rows per 32 k (8 loads), byte-permutes rows into k-pairs, and
// applies zero point and scale every 32 k; at M = 16 that kernel is latency- and issue-bound (NOTES run 10-13).
// Here the words were rearranged once, on the GPU, when the module was prepared (awqfmt/gpu/fragment.py), so
// that one 16-byte load per lane is exactly its B fragments for 8 mma (16 k x 64 columns per warp), decoded by
// the lop3 / 0x64006400 trick with no byte permute, and zero point and scale are applied once per group.
// It is a device-side copy: the checkpoint's layout (AWQ, natural, GPTQ) is unchanged; the other kernels keep
// reading it directly.
//
// mma    = m16n8k16 with the weights as A (16 columns x 16 k) and x as B (16 k x 8 tokens; NT token tiles of 8),
//          C = 16 columns x 8 tokens. Lane (r = lane / 4, c = lane % 4): a0 = W[col r][k-pair 2c], a1 = W[col r+8][2c],
//          a2 = W[col r][2c+8], a3 = W[col r+8][2c+8]; b0 = x[token r][k-pair 2c], b1 = x[token r][2c+8]; c0, c1 =
//          (col r, tokens 2c, 2c+1), c2, c3 = (col r+8, the same). Both operands come out of one load each in the
//          register order mma wants: a_p is one lop3 of the lane's word, (b0, b1) two adjacent words of its x load
//          (with x as the A operand, ptxas copied 4 registers into place before every mma: run 14b).
// k order = a 64-k block ("kb") is 4 mma steps s. At step s, mma k-pair 2c (a0, a1, b0) and 2c + 8 (a2, a3, b1)
//          stand for k = 64 kb + 32(s / 2) + 8c + 4(s % 2) + {0, 1} and + {2, 3}: a lane's x for a kb is two 16-byte
//          loads per token row, x[token][64 kb + 8c .. + 7] and [64 kb + 32 + 8c .. + 7], and the 4 lanes of a row
//          read 64 contiguous bytes per load (run 14c: with 16c + 0..15 they read half of each 32-byte sector twice,
//          x's L2 traffic doubled), words 2(s % 2), 2(s % 2) + 1 of load s / 2 at step s.
// frag   = qf [N/64][K/64][4 steps][32 lanes] of 16 bytes (4 words). Word w of lane (r, c) at step s is the A
//          fragment of column tile w (columns 64 T + 16w + 0..15): nibble e = 4h + 2b + u holds W[k][col] for
//          k = 64 kb + 32(s / 2) + 8c + 4(s % 2) + 2b + h, col = 64 T + 16w + 8u + r, so (word >> 4p) & 0x000F000F | 0x64006400
//          is (1024 + q) of a_p. zf [N/64][n_g][8 r][8 j] bytes, j = 2w + u: the zero point of column
//          64 T + 16w + 8u + r (any value 0..255: GPTQ v1's stored z - 1 is already undone); sf the same for the
//          16-bit scales (fp16 or bf16 bits). The lane's 8 columns are the same for A's rows and C's rows.
// work   = block = W warps on one 64-column tile T (blockIdx.x) and a range of kb (blockIdx.y: the K split);
//          each warp takes a contiguous share of the block's kb. Per kb a lane loads 4 x 16 bytes of weights and
//          4 x 16 bytes of x; PF kb of loads are in flight (registers) while one is computed.
// dequant= B = (1024 + q) - (1024 + z), exact in fp16 (hsub2); the mma sums x (q - z) in fp32 per group into
//          `part`, and at the group's end acc += s * part in fp32: no precision lost to an fp16 product, fp16
//          and bf16 scales alike, and per group (not per 32 k) zero and scale work.
// reduce = the W warps' fragments summed in shared memory; K splits through the fp32 workspace and tile
//          counters shared with the other kernels (split_arrive), in the same launch.
// PDL    = a block requests its first PF kb of weights, zeros and scales (which no kernel writes), then waits
//          (pdl_wait) before it reads x (through L2: ldx_*) or writes anything.
//
// Host requirements (awqfmt/gpu/gemm.py checks them): K % 64 == 0, N % 64 == 0, G % 64 == 0 or one group,
// 1 <= M <= 16, 16-byte aligned x rows (K % 8 == 0).

#include "w4a16_common.cuh"

// (1024 + z) in both fp16 halves, from byte j (0..3) of a zeros word: bytes (z, 0x64, z, 0x64).
template <int J>
__device__ __forceinline__ u32 zero_pair(u32 zw) {
    return prmt<(u32)(J | (4 << 4) | (J << 8) | (4 << 12))>(zw, 0x64u);
}

// MB = blocks per SM the registers are capped for (65536 / (32 W MB) each): more resident warps hide more
// latency, fewer registers per thread may spill.
template <int BF16, int NT, int D, int PF, int W, int MB>
__global__ void __launch_bounds__(32 * W, MB)
w4a16_frag(const u16* __restrict__ x,        // [M, K] fp16
           const uint4* __restrict__ qf,     // [N/64][K/64][4][32] (16 bytes each)
           const uint2* __restrict__ zf,     // [N/64][n_g][8]
           const uint4* __restrict__ sf,     // [N/64][n_g][8]
           u16* __restrict__ y,              // [M, N] fp16
           float* __restrict__ ws,           // [M, N] fp32 split-K workspace (zero on entry and exit)
           u32* __restrict__ counters,       // [gridDim.x] (zero on entry and exit)
           int M, int K, int N, int n_g, int kbg, int kb_per_split)
{
    static_assert(D >= 2 && D <= 8, "D is 2 to 8 shared-memory stages of weights per warp");
    static_assert(PF == 1 || PF == 2, "PF is 1 or 2 kb of x, zeros and scales in flight (registers)");
    static_assert(W == 4 || W == 8, "4 or 8 warps (the reduction buffer is 4 KiB per warp)");
    static_assert(NT == 1 || NT == 2, "1 or 2 tiles of 8 tokens");
    static_assert(MB >= 1 && W * MB <= 16, "at most 16 warps per SM");
    constexpr int S = PF + 1;  // register stages
    constexpr u32 KB_BYTES = 4 * 32 * 16;  // one warp's weights of one kb

    __shared__ float red[W][16 * NT][32];  // [warp][fragment register][lane]
    __shared__ int s_last;
    extern __shared__ __align__(16) unsigned char dsmem[];  // [W][D][KB_BYTES]: each lane's own 16-byte slots

    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int r = lane >> 2, c = lane & 3;
    const int T = blockIdx.x;
    const int n_kb = K >> 6;

    pdl_trigger();

    // this warp's kb: a contiguous share of the block's range
    const int b_lo = blockIdx.y * kb_per_split;
    const int b_hi = min(n_kb, b_lo + kb_per_split);
    const int per_warp = (b_hi - b_lo + W - 1) / W;
    const int w_lo = min(b_hi, b_lo + warp * per_warp);
    const int n = min(b_hi, w_lo + per_warp) - w_lo;

    // per-thread bases, 32-bit offsets from them (see `opaque`)
    const uint4* q_t = opaque(qf + ((size_t)T * n_kb + w_lo) * 128 + lane);
    const uint2* z_t = opaque(zf + (size_t)T * n_g * 8 + r);
    const uint4* s_t = opaque(sf + (size_t)T * n_g * 8 + r);
    const u16* x_t = x;
    const u32 ring = smem_addr(dsmem) + (u32)warp * (D * KB_BYTES) + 16u * lane;

    // Weights stream through a per-warp ring of D shared-memory stages filled by cp.async: D - 1 kb in flight
    // without holding registers (run 14: with the weights in registers, 8 warps per SM kept too few bytes in
    // flight). Each lane copies and reads back only its own 16-byte slots, so no barrier is needed.
    // the kb whose weights are loaded next (lw) and its stage's shared address (ls), advanced by load_w
    int lw = 0;
    u32 ls = ring;
    auto load_w = [&]() {  // weights of kb lw, one commit group (empty past the end)
        if (lw < n) {
#pragma unroll
            for (int s = 0; s < 4; ++s) cp_async<16>(ls + 512u * s, q_t + ((u32)lw * 128u + 32u * s), true);
        }
        cp_async_commit();
        ++lw;
        ls = (ls + KB_BYTES == ring + D * KB_BYTES) ? ring : ls + KB_BYTES;
    };

    struct Stage {
        uint4 x[NT][2];  // token r (+ 8 nt): the lane's 16 k, words 0-3 and 4-7
        uint2 z;         // zeros of the kb's group (loaded at a group's first kb, or the warp's first)
        uint4 s;         // scales of the same group
    };
    // Groups are kbg consecutive kb. Two cursors walk them without divisions: (lg, lp) = group and position
    // in it of the kb whose zeros/scales load next, cp = position of the kb computed next.
    const int p0 = w_lo % kbg;
    u32 lg = (u32)(w_lo / kbg);
    int lp = p0, cp = p0;
    auto load_zs = [&](int i, Stage& st) {  // zeros and scales at a group's first kb (or the warp's first)
        if (i == 0 || lp == 0) {
            st.z = ldg_v2(z_t + lg * 8u);
            st.s = ldg_v4(s_t + lg * 8u);
        }
        if (++lp == kbg) { lp = 0; ++lg; }
    };
    // this lane's x rows (set after pdl_wait: an earlier kernel may write x), as opaque per-thread bases
    const u16* x_lo = nullptr;
    const u16* x_hi = nullptr;
    auto load_x = [&](int i, Stage& st) {
        const u32 o = (u32)i * 64u;
        st.x[0][0] = ldx_v4(x_lo + o);
        st.x[0][1] = ldx_v4(x_lo + (o + 32u));
        if constexpr (NT == 2) {
            st.x[NT - 1][0] = ldx_v4(x_hi + o);
            st.x[NT - 1][1] = ldx_v4(x_hi + (o + 32u));
        }
    };

    float acc[4][NT][4], part[4][NT][4];  // [column tile w][token tile][C register]
#pragma unroll
    for (int w = 0; w < 4; ++w)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int v = 0; v < 4; ++v) acc[w][nt][v] = part[w][nt][v] = 0.f;
    u32 zc[8];    // (1024 + z) pairs of the current group: column 16w + 8u + r at 2w + u
    float sc[8];  // its scales, the same columns

    auto mma = [](float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    };
    // d = A B, the accumulator's old value dropped: a group's first step (no 32 moves to zero `part`)
    auto mma_fresh = [](float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
            : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(0.f));
    };

    u32 cs = ring;  // shared address of the stage computed next
    auto compute = [&](int i, const Stage& st) {
        const bool first = (i == 0 || cp == 0), last = (i == n - 1 || cp == kbg - 1);
        if (++cp == kbg) cp = 0;
        if (first) {
            zc[0] = zero_pair<0>(st.z.x); zc[1] = zero_pair<1>(st.z.x);
            zc[2] = zero_pair<2>(st.z.x); zc[3] = zero_pair<3>(st.z.x);
            zc[4] = zero_pair<0>(st.z.y); zc[5] = zero_pair<1>(st.z.y);
            zc[6] = zero_pair<2>(st.z.y); zc[7] = zero_pair<3>(st.z.y);
#pragma unroll
            for (int j = 0; j < 8; ++j) sc[j] = scale_f<BF16>(half_of(st.s, j));
        }
        const u32 src = cs;
        cs = (cs + KB_BYTES == ring + D * KB_BYTES) ? ring : cs + KB_BYTES;
        auto step = [&](int s, auto fresh) {
            const uint4 wq = lds_v4(src + 512u * s);
            const u32 wv[4] = {wq.x, wq.y, wq.z, wq.w};
            u32 b[NT][2];  // words 2(s % 2), 2(s % 2) + 1 of x load s / 2: adjacent registers
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const uint4& xv = st.x[nt][s >> 1];
                b[nt][0] = (s & 1) ? xv.z : xv.x;
                b[nt][1] = (s & 1) ? xv.w : xv.y;
            }
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                const u32 a0 = hsub2(lop3_and_or(wv[w], 0x000F000Fu, AWQFMT_MAGIC), zc[2 * w]);
                const u32 a1 = hsub2(lop3_and_or(wv[w] >> 4, 0x000F000Fu, AWQFMT_MAGIC), zc[2 * w + 1]);
                const u32 a2 = hsub2(lop3_and_or(wv[w] >> 8, 0x000F000Fu, AWQFMT_MAGIC), zc[2 * w]);
                const u32 a3 = hsub2(lop3_and_or(wv[w] >> 12, 0x000F000Fu, AWQFMT_MAGIC), zc[2 * w + 1]);
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    if constexpr (decltype(fresh)::value) mma_fresh(part[w][nt], a0, a1, a2, a3, b[nt][0], b[nt][1]);
                    else mma(part[w][nt], a0, a1, a2, a3, b[nt][0], b[nt][1]);
                }
            }
        };
        if (first) step(0, awqfmt::flag<true>{});
        else step(0, awqfmt::flag<false>{});
#pragma unroll
        for (int s = 1; s < 4; ++s) step(s, awqfmt::flag<false>{});
        if (last) {
#pragma unroll
            for (int w = 0; w < 4; ++w)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    acc[w][nt][0] += sc[2 * w] * part[w][nt][0];
                    acc[w][nt][1] += sc[2 * w] * part[w][nt][1];
                    acc[w][nt][2] += sc[2 * w + 1] * part[w][nt][2];
                    acc[w][nt][3] += sc[2 * w + 1] * part[w][nt][3];
                }
        }
    };

    // ---- main loop: weights D - 1 kb ahead (shared memory), x, zeros and scales PF kb ahead (registers)
    Stage st[S];
    for (int i = 0; i < D - 1; ++i) load_w();
#pragma unroll
    for (int p = 0; p < PF; ++p)
        if (p < n) load_zs(p, st[p]);
    pdl_wait(x_t);
    x_lo = opaque(x_t + ((size_t)min(r, M - 1) * K + 64 * w_lo + 8 * c));
    x_hi = opaque(x_t + ((size_t)min(r + 8, M - 1) * K + 64 * w_lo + 8 * c));
#pragma unroll
    for (int p = 0; p < PF; ++p)
        if (p < n) load_x(p, st[p]);
    for (int i0 = 0; i0 < n; i0 += S) {
#pragma unroll
        for (int p = 0; p < S; ++p) {
            const int i = i0 + p;
            if (i < n) {
                if (i + PF < n) {
                    load_zs(i + PF, st[(p + PF) % S]);
                    load_x(i + PF, st[(p + PF) % S]);
                }
                cp_async_wait<D - 2>();  // this lane's copies of kb i have landed (D - 2 younger groups may not)
                compute(i, st[p]);
                load_w();                // kb i + D - 1 into the stage of kb i - 1 (read back in the last round)
            }
        }
    }

    // ---- block reduction: fragments in shared memory (lane fastest: no bank conflicts), summed over warps
#pragma unroll
    for (int w = 0; w < 4; ++w)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int v = 0; v < 4; ++v) red[warp][(w * NT + nt) * 4 + v][lane] = acc[w][nt][v];
    __syncthreads();

    const int col0 = T * 64;
    const bool whole = (b_lo == 0 && b_hi == n_kb);  // this block alone covers the tile's K
    for (int e = tid; e < M * 64; e += 32 * W) {
        const int tok = e >> 6, col = e & 63;
        // column 16w + 8u + r, token 8 nt + 2c + t: register (w, nt, 2u + t) of lane 4r + c
        const int slot = ((col >> 4) * NT + (tok >> 3)) * 4 + 2 * ((col >> 3) & 1) + (tok & 1);
        const int ln = 4 * (col & 7) + ((tok & 7) >> 1);
        float sum = 0.f;
#pragma unroll
        for (int ww = 0; ww < W; ++ww) sum += red[ww][slot][ln];
        const size_t o = (size_t)tok * N + col0 + col;
        if (whole) y[o] = f2h(sum);
        else atomicAdd(&ws[o], sum);
    }
    if (!whole) {
        // ---- split K: the block that completes the tile's kb converts the workspace to fp16 and zeroes it
        __syncthreads();
        if (tid == 0) s_last = split_arrive(&counters[T], (u32)(b_hi - b_lo), (u32)n_kb);
        __syncthreads();
        if (s_last) {
            for (int e = tid; e < M * 64; e += 32 * W) {
                const size_t o = (size_t)(e >> 6) * N + col0 + (e & 63);
                y[o] = f2h(ld_cg_f32(&ws[o]));
                st_cg_f32(&ws[o], 0.f);
            }
            if (tid == 0) counters[T] = 0u;
        }
    }
}

#ifdef AWQFMT_INSTANTIATE_ALL
// Explicit instantiations so that an offline nvcc build (tests/test_kernels_compile.py) checks the template
// body; at run time NVRTC instantiates only what is launched.
#define AWQFMT_FRAG(BF, NT, D, PF, W, MB)                                                                            \
    template __global__ void w4a16_frag<BF, NT, D, PF, W, MB>(const u16*, const uint4*, const uint2*, const uint4*,   \
                                                             u16*, float*, u32*, int, int, int, int, int, int);
AWQFMT_FRAG(0, 2, 4, 1, 8, 1) AWQFMT_FRAG(0, 2, 4, 2, 8, 1) AWQFMT_FRAG(0, 2, 8, 1, 8, 1) AWQFMT_FRAG(0, 1, 2, 1, 4, 2)
AWQFMT_FRAG(1, 2, 4, 1, 8, 1) AWQFMT_FRAG(1, 1, 6, 2, 4, 2) AWQFMT_FRAG(0, 1, 6, 2, 4, 4) AWQFMT_FRAG(0, 2, 4, 1, 4, 3)
AWQFMT_FRAG(0, 2, 4, 1, 8, 2)
#endif
