// Benchmark helper: one thread spins on the GPU's nanosecond clock for `ns` nanoseconds.
//
// awqfmt.gpu.bench launches it before the start event of each timing sample (nvbench's "blocking kernel"
// idea): while it spins, the host queues every launch of the sample, so the sample measures the kernels
// back to back on the GPU, without the host's launch latency in front of the first one or between them.
// That holds for cuBLAS and for our kernels alike, for CUDA-graph replays and for plain launches.

template <int UNUSED>
__global__ void awqfmt_hold(unsigned long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < ns);
}

#ifdef AWQFMT_INSTANTIATE_ALL
template __global__ void awqfmt_hold<0>(unsigned long long);
#endif
