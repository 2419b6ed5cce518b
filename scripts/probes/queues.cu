// queues.cu — which streams share a hardware work queue (CUDA_DEVICE_MAX_CONNECTIONS), and
// whether the order in which streams are made decides it, green contexts' streams included.
//
// Two streams share a queue where a kernel on one waits on work queued before it on the other:
// stream A gets a kernel that spins for SPIN_MS, then a kernel that only writes the global timer
// (it waits for the spin: same stream); then stream B gets such a timer kernel. B's timer is
// written at once where B has a queue of its own and after the spin where B's kernel sits in
// A's queue behind A's second kernel. Each case prints the streams (by the order they were
// made) that wait behind stream 0.
//
// Cases: streams of the primary context (does stream i share stream 0's queue where i is a
// multiple of the queue count?); streams of priority alternating; streams of two green contexts
// of 16 SMs made in turn with the primary context's (one order for all contexts, or one per
// context?); streams made and destroyed in between (does a destroyed stream's turn count?); a
// green context made before each stream (does making one take a turn?).
//
// Built and run by run.sh (`queues`), once with the driver's 8 queues and once with 32.
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"

constexpr double SPIN_MS = 4.0;

__device__ __forceinline__ unsigned long long now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__global__ void spin(unsigned long long ns) {
    const unsigned long long t0 = now();
    while (now() - t0 < ns) {
    }
}

__global__ void stamp(unsigned long long* out) { *out = now(); }

// Whether a kernel on `b` waits behind `a`'s queued work.
static bool waits_behind(CUstream a, CUstream b, unsigned long long* stamps) {
    spin<<<1, 32, 0, (cudaStream_t)a>>>((unsigned long long)(SPIN_MS * 1e6));
    stamp<<<1, 1, 0, (cudaStream_t)a>>>(stamps);
    stamp<<<1, 1, 0, (cudaStream_t)b>>>(stamps + 1);
    if (cudaGetLastError() != cudaSuccess) {
        fprintf(stderr, "launch failed\n");
        exit(1);
    }
    CKD(cuStreamSynchronize(a));
    CKD(cuStreamSynchronize(b));
    unsigned long long h[2];
    CKD(cuMemcpyDtoH(h, (CUdeviceptr)stamps, sizeof h));
    // B's stamp within a quarter of the spin of A's (written as the spin ends): it waited.
    const long long gap = (long long)h[0] - (long long)h[1];
    return gap < (long long)(SPIN_MS * 1e6 / 4);
}

struct Made {
    CUstream s;
    std::string what;
};

static void report(const char* name, const std::vector<Made>& streams, unsigned long long* stamps) {
    printf("%s: %zu streams; behind stream 0 (%s):", name, streams.size(), streams[0].what.c_str());
    int n = 0;
    for (size_t i = 1; i < streams.size(); ++i) {
        if (!streams[i].s) continue;
        if (waits_behind(streams[0].s, streams[i].s, stamps)) {
            printf(" %zu(%s)", i, streams[i].what.c_str());
            ++n;
        }
    }
    printf("  [%d]\n", n);
}

int main() {
    CKD(cuInit(0));
    CUdevice dev;
    CKD(cuDeviceGet(&dev, 0));
    CUcontext ctx;
    CKD(cuDevicePrimaryCtxRetain(&ctx, dev));
    CKD(cuCtxSetCurrent(ctx));
    const char* env = getenv("CUDA_DEVICE_MAX_CONNECTIONS");
    printf("CUDA_DEVICE_MAX_CONNECTIONS=%s\n", env ? env : "(unset: 8)");
    int least, greatest;
    CKD(cuCtxGetStreamPriorityRange(&least, &greatest));
    CUdeviceptr stamps;
    CKD(cuMemAlloc(&stamps, 64));
    unsigned long long* st = (unsigned long long*)stamps;
    // Warm up the kernels.
    {
        CUstream a, b;
        CKD(cuStreamCreate(&a, CU_STREAM_NON_BLOCKING));
        CKD(cuStreamCreate(&b, CU_STREAM_NON_BLOCKING));
        waits_behind(a, b, st);
        CKD(cuStreamDestroy(a));
        CKD(cuStreamDestroy(b));
    }

    // 1. 40 streams of the primary context.
    {
        std::vector<Made> v;
        for (int i = 0; i < 40; ++i) {
            CUstream s;
            CKD(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
            v.push_back({s, "p"});
        }
        report("primary", v, st);
        for (auto& m : v) CKD(cuStreamDestroy(m.s));
    }
    // 2. Priorities alternating.
    {
        std::vector<Made> v;
        for (int i = 0; i < 40; ++i) {
            CUstream s;
            const int pr = i % 2 ? greatest : least;
            CKD(cuStreamCreateWithPriority(&s, CU_STREAM_NON_BLOCKING, pr));
            v.push_back({s, i % 2 ? "hi" : "lo"});
        }
        report("priorities", v, st);
        for (auto& m : v) CKD(cuStreamDestroy(m.s));
    }
    // 3. Green contexts of 16 SMs, streams made in turn: primary, green 0, green 1, ...
    {
        CUdevResource sm;
        CKD(cuDeviceGetDevResource(dev, &sm, CU_DEV_RESOURCE_TYPE_SM));
        CUdevResource groups[2], rest;
        unsigned n = 2;
        CKD(cuDevSmResourceSplitByCount(groups, &n, &sm, &rest, 0, 16));
        CUgreenCtx g[2];
        for (unsigned i = 0; i < 2; ++i) {
            CUdevResourceDesc d;
            CKD(cuDevResourceGenerateDesc(&d, &groups[i], 1));
            CKD(cuGreenCtxCreate(&g[i], d, dev, CU_GREEN_CTX_DEFAULT_STREAM));
        }
        std::vector<Made> v;
        for (int i = 0; i < 42; ++i) {
            CUstream s;
            const int k = i % 3;
            if (k == 0) {
                CKD(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
            } else {
                CKD(cuGreenCtxStreamCreate(&s, g[k - 1], CU_STREAM_NON_BLOCKING, 0));
            }
            v.push_back({s, k == 0 ? "p" : k == 1 ? "g0" : "g1"});
        }
        report("green in turn", v, st);
        // The same from green context 0's first stream.
        std::vector<Made> w(v.begin() + 1, v.end());
        report("green in turn, from g0's first", w, st);
        for (auto& m : v) CKD(cuStreamDestroy(m.s));
        // 4. Made and destroyed between: stream 0, then 40 times (make a stream, destroy it,
        // make the one kept).
        std::vector<Made> u;
        for (int i = 0; i < 40; ++i) {
            CUstream s, t;
            if (i > 0) {
                CKD(cuGreenCtxStreamCreate(&t, g[0], CU_STREAM_NON_BLOCKING, 0));
                CKD(cuStreamDestroy(t));
            }
            CKD(cuGreenCtxStreamCreate(&s, g[i % 2], CU_STREAM_NON_BLOCKING, 0));
            u.push_back({s, i % 2 ? "g1" : "g0"});
        }
        report("one made and destroyed before each", u, st);
        for (auto& m : u) CKD(cuStreamDestroy(m.s));
        // 5. A green context made before each stream (with its default stream), as a pool
        // makes its partitions: does making one take a turn?
        std::vector<Made> gs;
        std::vector<CUgreenCtx> made;
        CUdevResourceDesc d0;
        CKD(cuDevResourceGenerateDesc(&d0, &groups[0], 1));
        for (int i = 0; i < 40; ++i) {
            CUgreenCtx x;
            CKD(cuGreenCtxCreate(&x, d0, dev, CU_GREEN_CTX_DEFAULT_STREAM));
            made.push_back(x);
            CUstream s;
            CKD(cuGreenCtxStreamCreate(&s, x, CU_STREAM_NON_BLOCKING, 0));
            gs.push_back({s, "new g"});
        }
        report("a green context made before each", gs, st);
        for (auto& m : gs) CKD(cuStreamDestroy(m.s));
        for (auto& x : made) CKD(cuGreenCtxDestroy(x));
        for (auto& x : g) CKD(cuGreenCtxDestroy(x));
    }
    CKD(cuMemFree(stamps));
    CKD(cuDevicePrimaryCtxRelease(dev));
    return 0;
}
