// Run 14g microbenchmark (probe14d.py): how fast can one SM issue the tensor-core work of the M = 16 skinny kernel?
// Register-only loops, results only kept alive (written once), values meaningless.
//   mma_chain<C, S>: each warp runs C independent accumulators, each fed S dependent m16n8k16 per round
//                    (the skinny kernel: C = 8 (4 tiles x 2 token tiles), S = 2 k16 steps per unit).
//   mma_decode<C, S>: the same with the skinny kernel's per-fragment decode (lop3 + hsub2) in front of every mma.
//   wgmma_rate<NW, CONST_A>: a warpgroup issuing NW m64n16k16 wgmma per round (A from registers, B from shared
//                    memory), one commit per round; CONST_A 0: new A registers every round, so each round waits for
//                    the last (wait_group 0), 1: the same A, no wait until the end (the pipe's own rate).
//                    One m64n16k16 is the work of 8 m16n8k16.
// Built with nvcc -arch=sm_90a -cubin (wgmma needs the arch-specific target).

typedef unsigned int u32;

__device__ __forceinline__ void mma(float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ u32 lop3(u32 a, u32 b, u32 c) {
    u32 r;
    asm volatile("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
__device__ __forceinline__ u32 hsub2(u32 a, u32 b) {
    u32 r;
    asm volatile("sub.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

template <int C, int S, int DECODE>
__global__ void mma_chain(float* out, int rounds, u32 seed) {
    float acc[C][4];
#pragma unroll
    for (int c = 0; c < C; ++c) acc[c][0] = acc[c][1] = acc[c][2] = acc[c][3] = 0.f;
    u32 w = seed ^ threadIdx.x;
    const u32 b0 = 0x3c003c00u, b1 = 0x3c003c00u ^ (seed & 1u);
    for (int it = 0; it < rounds; ++it) {
#pragma unroll
        for (int s = 0; s < S; ++s) {
#pragma unroll
            for (int c = 0; c < C; ++c) {
                u32 a0 = w + c, a1 = w ^ c, a2 = w + s, a3 = w ^ (c + s);
                if (DECODE) {
                    a0 = hsub2(lop3(a0, 0x000F000Fu, 0x64006400u), 0x64086408u);
                    a1 = hsub2(lop3(a1 >> 4, 0x000F000Fu, 0x64006400u), 0x64086408u);
                    a2 = hsub2(lop3(a2 >> 8, 0x000F000Fu, 0x64006400u), 0x64086408u);
                    a3 = hsub2(lop3(a3 >> 12, 0x000F000Fu, 0x64006400u), 0x64086408u);
                } else {
                    a0 &= 0x3bff3bffu; a1 &= 0x3bff3bffu; a2 &= 0x3bff3bffu; a3 &= 0x3bff3bffu;
                }
                mma(acc[c], a0, a1, a2, a3, b0, b1);
            }
        }
        w = w * 1664525u + 1013904223u;
    }
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < C; ++c) s += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
    if (s == 12345.f) out[threadIdx.x] = s;  // practically never: keeps the work alive
}

__device__ __forceinline__ unsigned long long smem_desc(u32 addr) {
    // no-swizzle K-major: start >> 4 (bits 0-13), LBO 128 B (bits 16-29), SBO 256 B (bits 32-45)
    return (unsigned long long)((addr >> 4) & 0x3FFF) | ((unsigned long long)(128 >> 4) << 16)
         | ((unsigned long long)(256 >> 4) << 32);
}

template <int NW, int CONST_A>
__global__ void wgmma_rate(float* out, int rounds, u32 seed) {
    __shared__ __align__(128) unsigned short B[16 * 16 * NW];
    for (int i = threadIdx.x; i < 16 * 16 * NW; i += blockDim.x) B[i] = (unsigned short)(0x3c00 ^ (i & 7));
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    u32 base;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(base) : "l"(B));
    float d[NW][8];
#pragma unroll
    for (int n = 0; n < NW; ++n)
#pragma unroll
        for (int j = 0; j < 8; ++j) d[n][j] = 0.f;
    u32 w = seed ^ threadIdx.x;
    u32 a[NW][4];
    for (int it = 0; it < rounds; ++it) {
        if (!CONST_A || it == 0) {
#pragma unroll
            for (int n = 0; n < NW; ++n) {
                a[n][0] = (w + n) & 0x3bff3bffu; a[n][1] = (w ^ n) & 0x3bff3bffu;
                a[n][2] = (w + 2 * n) & 0x3bff3bffu; a[n][3] = (w ^ 3 * n) & 0x3bff3bffu;
            }
        }
        asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
        for (int n = 0; n < NW; ++n) {
            const unsigned long long desc = smem_desc(base + 512u * n);
            asm volatile(
                "{\n .reg .pred p;\n setp.ne.b32 p, %13, 0;\n"
                " wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7}, {%8,%9,%10,%11}, %12, p, 1, 1, 0;\n}\n"
                : "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3]), "+f"(d[n][4]), "+f"(d[n][5]),
                  "+f"(d[n][6]), "+f"(d[n][7])
                : "r"(a[n][0]), "r"(a[n][1]), "r"(a[n][2]), "r"(a[n][3]), "l"(desc), "r"(1));
        }
        asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
        if (!CONST_A) asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
        w = w * 1664525u + 1013904223u;
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
    float s = 0.f;
#pragma unroll
    for (int n = 0; n < NW; ++n)
#pragma unroll
        for (int j = 0; j < 8; ++j) s += d[n][j];
    if (s == 12345.f) out[threadIdx.x] = s;
}

template __global__ void mma_chain<8, 2, 0>(float*, int, u32);
template __global__ void mma_chain<8, 2, 1>(float*, int, u32);
template __global__ void mma_chain<16, 2, 0>(float*, int, u32);
template __global__ void mma_chain<4, 4, 0>(float*, int, u32);
template __global__ void wgmma_rate<4, 0>(float*, int, u32);
template __global__ void wgmma_rate<8, 0>(float*, int, u32);
template __global__ void wgmma_rate<4, 1>(float*, int, u32);
