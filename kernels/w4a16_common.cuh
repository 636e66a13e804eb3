// Shared helpers for the W4A16 kernels (fp16 activations x 4-bit packed weights).
//
// No #include of any kind: every file here compiles both with nvcc (CI: tests/test_kernels_compile.py) and
// with NVRTC through cupy.RawModule (awqfmt/gpu/gemm.py). fp16 values travel as raw 16-bit patterns
// (unsigned short) and pairs of them as one 32-bit register ("half2"); all f16 arithmetic is inline PTX.
#pragma once

typedef unsigned int u32;
typedef unsigned short u16;

// Layout / decode variants (template parameter LAYOUT).
#define AWQFMT_L_AWQ 0         // [K, N/8] words, nibble i holds column [0,2,4,6,1,3,5,7][i]; lop3 decode
#define AWQFMT_L_NAT_LOP3 1    // [K, N/8] words, natural order (nibble i = column i); same lop3 decode
#define AWQFMT_L_NAT_SHIFT 2   // [K, N/8] words, natural order; decoded with per-nibble shifts and masks
#define AWQFMT_L_GPTQ 3        // [K/8, N] words packed along K, natural order

namespace awqfmt {
// A compile-time yes/no passed to a generic lambda (`if constexpr (decltype(arg)::value)`): NVRTC has no
// <type_traits> for std::integral_constant.
template <bool B>
struct flag {
    static constexpr bool value = B;
};
}  // namespace awqfmt

// fp16 1024.0 in both halves. An fp16 with bits 0x6400 | v (v < 1024) equals 1024 + v.
#define AWQFMT_MAGIC 0x64006400u

// (a & b) | c in one instruction.
__device__ __forceinline__ u32 lop3_and_or(u32 a, u32 b, u32 c) {
    u32 r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

// Byte permute: result byte i = byte sel[i] of the 8-byte value {b, a} (a = bytes 0-3, b = bytes 4-7).
template <u32 SEL>
__device__ __forceinline__ u32 prmt(u32 a, u32 b) {
    u32 r;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "n"(SEL));
    return r;
}

__device__ __forceinline__ u32 hsub2(u32 a, u32 b) {
    u32 r;
    asm("sub.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

__device__ __forceinline__ u32 hmul2(u32 a, u32 b) {
    u32 r;
    asm("mul.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

// a * b + c on two fp16 lanes (one HFMA2).
__device__ __forceinline__ u32 hfma2(u32 a, u32 b, u32 c) {
    u32 r;
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

// v summed with the value of lane (lane ^ mask), all 32 lanes taking part.
__device__ __forceinline__ float shfl_xor_add(float v, int mask) {
    float r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(mask));
    return v + r;
}

__device__ __forceinline__ float h2f(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ float h2f_lo(u32 h2) { return h2f((u16)(h2 & 0xFFFFu)); }
__device__ __forceinline__ float h2f_hi(u32 h2) { return h2f((u16)(h2 >> 16)); }

__device__ __forceinline__ u16 f2h(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// (lo, hi) floats -> one register of two fp16 (lo in bits 0-15).
__device__ __forceinline__ u32 f2h2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float bf2f(u16 b) { return __uint_as_float(((u32)b) << 16); }

// A scale (fp16 or bf16 raw bits) as float.
template <int BF16>
__device__ __forceinline__ float scale_f(u16 s) {
    return BF16 ? bf2f(s) : h2f(s);
}

// Half j (0..7) of a 16-byte vector.
// A pointer the compiler must treat as an opaque register: `opaque(p) + u32_offset` then compiles to one
// IMAD.WIDE.U32 per address, instead of being re-associated into 64-bit index arithmetic on the kernel
// parameter (four instructions per load, seen in the SASS of run 10).
template <class T>
__device__ __forceinline__ const T* opaque(const T* p) {
    asm("" : "+l"(p));
    return p;
}

// Group index of a row (or unit) index i without a division: g = hi32(i * gm) + (i & gmask). The host picks
// (gm, gmask) per divisor d and checks exactness over the whole index range (awqfmt.gpu.gemm._group_magic):
// d = 1: (0, ~0); one group: (0, 0); else gm = floor(2^32 / d) + 1, gmask = 0, exact while i * d < 2^32.
__device__ __forceinline__ int group_of(int i, u32 gm, u32 gmask) {
    return (int)(__umulhi((u32)i, gm) + ((u32)i & gmask));
}

__device__ __forceinline__ uint4 u4(u32 a, u32 b, u32 c, u32 d) {
    uint4 r;
    r.x = a; r.y = b; r.z = c; r.w = d;
    return r;
}
__device__ __forceinline__ uint2 u2(u32 a, u32 b) {
    uint2 r;
    r.x = a; r.y = b;
    return r;
}

__device__ __forceinline__ u16 half_of(const uint4& v, int j) {
    u32 w = (j < 2) ? v.x : (j < 4) ? v.y : (j < 6) ? v.z : v.w;
    return (u16)((j & 1) ? (w >> 16) : (w & 0xFFFFu));
}

// ---- loads -------------------------------------------------------------------------------------------
// Weights are streamed once: read-only path, no L1 allocation, and an L2 prefetch-size hint of
// AWQFMT_L2_PREFETCH bytes (0: none). Neighbouring blocks read neighbouring 32-64-byte pieces of a row; with
// 128 the M = 16 kernel ran 2-5% faster on the H100 and M = 1 the same (run 10j; 256 was mixed).
#ifndef AWQFMT_L2_PREFETCH
#define AWQFMT_L2_PREFETCH 128
#endif
#if AWQFMT_L2_PREFETCH == 256
#define AWQFMT_LDG_L2_HINT ".L2::256B"
#elif AWQFMT_L2_PREFETCH == 128
#define AWQFMT_LDG_L2_HINT ".L2::128B"
#elif AWQFMT_L2_PREFETCH == 64
#define AWQFMT_LDG_L2_HINT ".L2::64B"
#else
#define AWQFMT_LDG_L2_HINT ""
#endif
__device__ __forceinline__ uint4 ldg_stream_v4(const void* p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate" AWQFMT_LDG_L2_HINT ".v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}
__device__ __forceinline__ uint2 ldg_stream_v2(const void* p) {
    uint2 r;
    asm("ld.global.nc.L1::no_allocate" AWQFMT_LDG_L2_HINT ".v2.u32 {%0,%1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
    return r;
}
__device__ __forceinline__ u32 ldg_stream_u32(const void* p) {
    u32 r;
    asm("ld.global.nc.L1::no_allocate" AWQFMT_LDG_L2_HINT ".u32 %0, [%1];" : "=r"(r) : "l"(p));
    return r;
}
// Small, reused data that no kernel writes (scales, zeros): read-only cached path.
__device__ __forceinline__ uint4 ldg_v4(const void* p) {
    uint4 r;
    asm("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}
__device__ __forceinline__ uint2 ldg_v2(const void* p) {
    uint2 r;
    asm("ld.global.nc.v2.u32 {%0,%1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
    return r;
}
__device__ __forceinline__ u32 ldg_u32(const void* p) {
    u32 r;
    asm("ld.global.nc.u32 %0, [%1];" : "=r"(r) : "l"(p));
    return r;
}
__device__ __forceinline__ u16 ldg_u16(const void* p) {
    u16 r;
    asm("ld.global.nc.u16 %0, [%1];" : "=h"(r) : "l"(p));
    return r;
}
__device__ __forceinline__ int ldg_i32(const void* p) {
    int r;
    asm("ld.global.nc.s32 %0, [%1];" : "=r"(r) : "l"(p));
    return r;
}
// Activations: L2-coherent loads (.cg), not the read-only path. With PDL (see pdl_wait) x may still be being
// written by the kernel before this one while this one starts, and `.nc` data must stay unchanged for the whole
// kernel: ptxas moved an `ld.global.nc` of x above griddepcontrol.wait (run 13c), a `.cg` load it keeps after.
__device__ __forceinline__ uint4 ldx_v4(const void* p) {
    uint4 r;
    asm("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}
__device__ __forceinline__ uint2 ldx_v2(const void* p) {
    uint2 r;
    asm("ld.global.cg.v2.u32 {%0,%1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
    return r;
}
__device__ __forceinline__ u32 ldx_u32(const void* p) {
    u32 r;
    asm("ld.global.cg.u32 %0, [%1];" : "=r"(r) : "l"(p));
    return r;
}
__device__ __forceinline__ u16 ldx_u16(const void* p) {
    u16 r;
    asm("ld.global.cg.u16 %0, [%1];" : "=h"(r) : "l"(p));
    return r;
}
// L2-coherent load/store of the split-K workspace (written by other blocks' atomics).
__device__ __forceinline__ float ld_cg_f32(const float* p) {
    float r;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(r) : "l"(p));
    return r;
}
__device__ __forceinline__ void st_cg_f32(float* p, float v) {
    asm volatile("st.global.cg.f32 [%0], %1;" ::"l"(p), "f"(v));
}
__device__ __forceinline__ void st_v4(void* p, u32 a, u32 b, u32 c, u32 d) {
    asm volatile("st.global.v4.u32 [%0], {%1,%2,%3,%4};" ::"l"(p), "r"(a), "r"(b), "r"(c), "r"(d));
}

// How a load goes: the read-only path, L1-cached (scales, zeros: reused); the read-only path without L1
// allocation (weights: read once); L2-coherent (x, which the kernel before may write, see ldx_v4).
enum LoadPath { LD_CACHED = 0, LD_STREAM = 1, LD_COHERENT = 2 };

// N (1, 2 or 4) consecutive 32-bit words at p into out[0 .. N) with one vector load (16-, 8- or 4-byte aligned);
// when !ok, zeros and nothing is read.
template <int N, int PATH = LD_CACHED>
__device__ __forceinline__ void ldg_words(const void* p, u32* out, bool ok = true) {
    static_assert(N == 1 || N == 2 || N == 4, "1, 2 or 4 words");
    if constexpr (N == 4) {
        const uint4 v = !ok ? u4(0, 0, 0, 0) : PATH == LD_STREAM ? ldg_stream_v4(p)
                                             : PATH == LD_COHERENT ? ldx_v4(p) : ldg_v4(p);
        out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
    } else if constexpr (N == 2) {
        const uint2 v = !ok ? u2(0, 0) : PATH == LD_STREAM ? ldg_stream_v2(p)
                                       : PATH == LD_COHERENT ? ldx_v2(p) : ldg_v2(p);
        out[0] = v.x; out[1] = v.y;
    } else {
        out[0] = !ok ? 0u : PATH == LD_STREAM ? ldg_stream_u32(p) : PATH == LD_COHERENT ? ldx_u32(p) : ldg_u32(p);
    }
}
template <int N>
__device__ __forceinline__ void ldg_stream_words(const void* p, u32* out, bool ok = true) {
    ldg_words<N, LD_STREAM>(p, out, ok);
}
template <int N>
__device__ __forceinline__ void ldx_words(const void* p, u32* out) {
    ldg_words<N, LD_COHERENT>(p, out);
}

// ---- programmatic dependent launch (sm_90+) ------------------------------------------------------------------
// A kernel launched with programmatic stream serialization (awqfmt/gpu/launch.py) may start while the kernel
// before it in the stream is still finishing. It may then read only what no kernel writes (the prepared
// module's weights, zeros, scales) before pdl_wait(), which returns once every earlier kernel has completed
// and its writes are visible; x, the split-K workspace, the counters and y are touched only after it. Without
// that launch attribute pdl_wait() returns at once. pdl_trigger() lets the next such launch start as soon as
// SM resources free up (its blocks then wait in pdl_wait, with their first weight loads in flight).
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
template <class P>
__device__ __forceinline__ void launder_ptr(P& p) {
    asm volatile("" : "+l"(p)::"memory");
}
// Waits, then passes each of `after` (the pointers of data an earlier kernel may write: x) through an empty
// volatile asm. The loads after the wait take their addresses from there, so the compiler cannot hoist them
// above it: the ld.global.nc helpers are asm statements that it sees as pure functions of their address,
// free to move across the wait's memory clobber (run 13c: with the first weights loaded before the wait, the
// GEMV's first x load moved above it and read the previous kernel's x).
template <class... P>
__device__ __forceinline__ void pdl_wait(P&... after) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
    (launder_ptr(after), ...);
}

// ---- L2 prefetch of a block's slice (l2pf launches) ---------------------------------------------------------
// Requests rows [r0, r1) of `bytes` (> 0) bytes each, at p + r * pitch, into L2 (cp.async.bulk.prefetch: no
// registers, no completion to wait for), spread over the block's threads. The host passes l2pf only where p and
// pitch are 16-byte aligned and bytes is a multiple of 16. Issued before pdl_wait (the module's data only): with PDL a
// block that starts while the kernel before it still runs pulls its whole slice from HBM during that kernel
// instead of two batches at a time after it (run 15).
__device__ __forceinline__ void prefetch_rows_l2(const void* p, size_t pitch, int r0, int r1, u32 bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    for (int r = r0 + (int)threadIdx.x; r < r1; r += (int)blockDim.x)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;"
                     :: "l"(static_cast<const char*>(p) + (size_t)r * pitch), "r"(bytes) : "memory");
#endif
}

// ---- split-K completion ------------------------------------------------------------------------------------
// Called by thread 0 of a block after a __syncthreads() that follows every thread's workspace atomics: counts
// the block's `add` into the tile counter and returns true for the block that brings it to `total`. The counter
// update is one acquire-release atomic at GPU scope: its release half is cumulative over the writes the barrier
// ordered before it (a release for the whole block, the CUTLASS semaphore pattern), its acquire half orders the
// completing block's workspace reads, done after the next __syncthreads(), after every other block's release.
// SASS: MEMBAR.ALL.GPU + ATOM + CCTL.IVALL, where __threadfence() + atomicAdd + __threadfence() is two
// MEMBAR.SC.GPU (sequentially consistent, which this pattern does not need). One thread fences, not all 256
// or 512: the all-thread fences were 2-5% of the M = 1 GEMV's time (run 12d what-if).
__device__ __forceinline__ bool split_arrive(u32* counter, u32 add, u32 total) {
    u32 prev;
    asm volatile("atom.add.acq_rel.gpu.u32 %0, [%1], %2;" : "=r"(prev) : "l"(counter), "r"(add) : "memory");
    return prev + add == total;
}

// Split-K completion per output, by one 64-bit fixed-point atomic (GEMV and skinny launches of 2 to
// AWQFMT_FX_SPLITS_MAX K splits; run 16h, i). A block's partial sum v of output o is one atomic add to the word w64[o]:
//   bits 0-7    arrivals (each add: 1); the add that brings them to `splits` is the last one
//   bits 8-15   special partials (|v| > 32768, inf or NaN): their exact fp32 value goes to ws[o] instead
//   bits 16-63  the sum of round(v * 2^24) over the other partials (two's complement)
// The thread whose add completes the arrivals holds the whole sum in the value its atomic returned: it writes y
// and zeroes the word (and ws[o] when a special partial went there). So there is no barrier, fence, tile counter
// or read-back pass (the tail above): one atomic round trip. Integer adds do not depend on their order, so y is
// the same bit for bit on every run. No carries between the fields: at most 255 arrivals and 255 specials, and
// 255 partials of |v| <= 32768 at 2^-24 sum to under 2^47. Precision: each partial is rounded to 2^-24 (6e-8,
// fp16's smallest subnormal step); fp16 outputs above ~1e-3 come out as with fp32 adds.
#define AWQFMT_FX_SPLITS_MAX 255
__device__ __forceinline__ void split_add_fx(float v, size_t o, u32 splits, unsigned long long* w64, float* ws,
                                             u16* y) {
    unsigned long long add;
    if (fabsf(v) <= 32768.f) {
        add = ((unsigned long long)__float2ll_rn(v * 16777216.f) << 16) + 1ull;
    } else {  // large, inf or NaN: added exactly in fp32, announced by the special count
        atomicAdd(&ws[o], v);
        __threadfence();  // pairs with the completing thread's fence: this add is visible to it
        add = (1ull << 8) + 1ull;
    }
    const unsigned long long tot = atomicAdd(&w64[o], add) + add;
    if ((u32)(tot & 0xFFull) != splits) return;
    float r = (float)((long long)tot >> 16) * 5.9604644775390625e-8f;  // 2^-24
    if ((tot >> 8) & 0xFFull) {
        __threadfence();
        r += atomicExch(&ws[o], 0.f);
    }
    y[o] = f2h(r);
    w64[o] = 0ull;
}

// ---- cp.async (Ampere+) and shared-memory access by 32-bit shared addresses ------------------------------
__device__ __forceinline__ u32 smem_addr(const void* p) {
    unsigned long long a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (u32)a;
}
// BYTES (4, 8 or 16) from global src to shared dst; zero-filled when !ok (src is then not read).
template <int BYTES>
__device__ __forceinline__ void cp_async(u32 dst, const void* src, bool ok) {
    const int n = ok ? BYTES : 0;
    if (BYTES == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(n) : "memory");
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(dst), "l"(src), "n"(BYTES), "r"(n) : "memory");
    }
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }
__device__ __forceinline__ uint4 lds_v4(u32 a) {
    uint4 r;
    asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "r"(a) : "memory");
    return r;
}
__device__ __forceinline__ uint2 lds_v2(u32 a) {
    uint2 r;
    asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];" : "=r"(r.x), "=r"(r.y) : "r"(a) : "memory");
    return r;
}
__device__ __forceinline__ u32 lds_u32(u32 a) {
    u32 r;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(r) : "r"(a) : "memory");
    return r;
}
// N (1, 2 or 4) consecutive 32-bit words at shared address a into out[0 .. N).
template <int N>
__device__ __forceinline__ void lds_words(u32 a, u32* out) {
    static_assert(N == 1 || N == 2 || N == 4, "1, 2 or 4 words");
    if constexpr (N == 4) {
        const uint4 v = lds_v4(a);
        out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
    } else if constexpr (N == 2) {
        const uint2 v = lds_v2(a);
        out[0] = v.x; out[1] = v.y;
    } else {
        out[0] = lds_u32(a);
    }
}

// ---- int4 -> fp16 decoders ---------------------------------------------------------------------------
//
// K-paired decode for the tensor-core kernel: from two words a (row k) and b (row k+1) of the same 8
// columns, h[e] = fp16x2 (1024 + field e of a, 1024 + field e of b), i.e. one k-pair of the column held by
// nibble e. Two byte permutes put a's and b's low (high) 16 bits side by side; then each of the four
// lop3 steps of the 0x64006400 trick yields one k-pair. Odd e come out multiplied by 16
// ((1024 + 16 q): nibble in bits 4-7), which the caller folds into its fp32 scale.
__device__ __forceinline__ void dec_kpair_lop3(u32 a, u32 b, u32 (&h)[8]) {
    const u32 lo = prmt<0x5410>(a, b);  // a.b0 a.b1 b.b0 b.b1: nibbles 0-3 of a | nibbles 0-3 of b
    const u32 hi = prmt<0x7632>(a, b);  // nibbles 4-7
    h[0] = lop3_and_or(lo, 0x000F000Fu, AWQFMT_MAGIC);
    h[1] = lop3_and_or(lo, 0x00F000F0u, AWQFMT_MAGIC);
    h[2] = lop3_and_or(lo >> 8, 0x000F000Fu, AWQFMT_MAGIC);
    h[3] = lop3_and_or(lo >> 8, 0x00F000F0u, AWQFMT_MAGIC);
    h[4] = lop3_and_or(hi, 0x000F000Fu, AWQFMT_MAGIC);
    h[5] = lop3_and_or(hi, 0x00F000F0u, AWQFMT_MAGIC);
    h[6] = lop3_and_or(hi >> 8, 0x000F000Fu, AWQFMT_MAGIC);
    h[7] = lop3_and_or(hi >> 8, 0x00F000F0u, AWQFMT_MAGIC);
}

// The same k-pairs, the textbook way: shift each nibble down, mask it, place it. No x16 factor.
__device__ __forceinline__ void dec_kpair_shift(u32 a, u32 b, u32 (&h)[8]) {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const u32 qa = (a >> (4 * e)) & 0xFu;
        const u32 qb = (b >> (4 * e)) & 0xFu;
        h[e] = qa | (qb << 16) | AWQFMT_MAGIC;
    }
}

// N-paired decode for the dequantize kernel (one word = 8 columns of one row -> 4 fp16x2 of adjacent
// columns (2p, 2p+1), value 1024 + q).
// AWQ order: nibbles p and p+4 hold columns 2p and 2p+1, so (w >> 4p) & 0x000F000F is the pair directly.
__device__ __forceinline__ void dec_npair_awq(u32 w, u32 (&h)[4]) {
    h[0] = lop3_and_or(w, 0x000F000Fu, AWQFMT_MAGIC);
    h[1] = lop3_and_or(w >> 4, 0x000F000Fu, AWQFMT_MAGIC);
    h[2] = lop3_and_or(w >> 8, 0x000F000Fu, AWQFMT_MAGIC);
    h[3] = lop3_and_or(w >> 12, 0x000F000Fu, AWQFMT_MAGIC);
}
// Natural order, lop3 after byte permutes: nibbles 2p, 2p+1 share byte p; put byte p of w and of w >> 4
// side by side, then one lop3.
__device__ __forceinline__ void dec_npair_nat_lop3(u32 w, u32 (&h)[4]) {
    const u32 w4 = w >> 4;
    h[0] = lop3_and_or(prmt<0x4400>(w, w4), 0x000F000Fu, AWQFMT_MAGIC);
    h[1] = lop3_and_or(prmt<0x5511>(w, w4), 0x000F000Fu, AWQFMT_MAGIC);
    h[2] = lop3_and_or(prmt<0x6622>(w, w4), 0x000F000Fu, AWQFMT_MAGIC);
    h[3] = lop3_and_or(prmt<0x7733>(w, w4), 0x000F000Fu, AWQFMT_MAGIC);
}
// Natural order, shifts and masks.
__device__ __forceinline__ void dec_npair_nat_shift(u32 w, u32 (&h)[4]) {
#pragma unroll
    for (int p = 0; p < 4; ++p) {
        const u32 q0 = (w >> (8 * p)) & 0xFu;
        const u32 q1 = (w >> (8 * p + 4)) & 0xFu;
        h[p] = q0 | (q1 << 16) | AWQFMT_MAGIC;
    }
}

template <int LAYOUT>
__device__ __forceinline__ void dec_npair(u32 w, u32 (&h)[4]) {
    if (LAYOUT == AWQFMT_L_AWQ) dec_npair_awq(w, h);
    else if (LAYOUT == AWQFMT_L_NAT_LOP3) dec_npair_nat_lop3(w, h);
    else dec_npair_nat_shift(w, h);
}
