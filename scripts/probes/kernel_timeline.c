// kernel_timeline.c — every kernel a process runs, with its GPU start and end, as CSV.
//
// A CUPTI injection library: the CUDA driver loads it at cuInit when CUDA_INJECTION64_PATH
// names it, so any program (rightsize, bench-engine, a PyTorch app) is traced unchanged.
// It records CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, which keeps kernels concurrent (a PDL
// launch shows its real start, before its predecessor's end), and writes one line a kernel
// at exit:
//
//   start_ns,end_ns,context,stream,graph,graph_node,grid,block,dyn_smem,regs,name
//
// to $RS_TIMELINE_OUT.<pid>.csv (default /tmp/kernel-timeline), at most $RS_TIMELINE_MAX
// kernels (default 2,000,000; the rest are counted, not written). scripts/probes/timeline.py
// reads it. Built by scripts/probes/run.sh timeline.
#include <cupti.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUFFER_BYTES (16u << 20)

static FILE* out;
static unsigned long long written, dropped, limit = 2000000ull;
// CUPTI hands buffers back on its own thread as well as in the flush at exit.
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

#define CHECK(call)                                                                     \
    do {                                                                                \
        CUptiResult r_ = (call);                                                        \
        if (r_ != CUPTI_SUCCESS) {                                                      \
            const char* s_ = "?";                                                       \
            cuptiGetResultString(r_, &s_);                                              \
            fprintf(stderr, "kernel_timeline: %s failed: %s\n", #call, s_);             \
            fclose(out);                                                                \
            out = NULL;                                                                 \
            return 0;                                                                   \
        }                                                                               \
    } while (0)

static void CUPTIAPI requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    *buffer = (uint8_t*)aligned_alloc(8, BUFFER_BYTES);
    *size = *buffer ? BUFFER_BYTES : 0;
    *max_records = 0;
}

static void CUPTIAPI completed(CUcontext ctx, uint32_t stream, uint8_t* buffer, size_t size, size_t valid) {
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity* rec = NULL;
    pthread_mutex_lock(&lock);
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
        const CUpti_ActivityKernel10* k = (const CUpti_ActivityKernel10*)rec;
        if (!out || written >= limit) {
            ++dropped;
            continue;
        }
        fprintf(out, "%llu,%llu,%u,%u,%u,%llu,%d,%d,%d,%u,%s\n", (unsigned long long)k->start,
                (unsigned long long)k->end, k->contextId, k->streamId, k->graphId,
                (unsigned long long)k->graphNodeId, k->gridX * k->gridY * k->gridZ,
                k->blockX * k->blockY * k->blockZ, k->dynamicSharedMemory, k->registersPerThread,
                k->name ? k->name : "?");
        ++written;
    }
    pthread_mutex_unlock(&lock);
    size_t lost = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &lost) == CUPTI_SUCCESS && lost)
        fprintf(stderr, "kernel_timeline: CUPTI dropped %zu records\n", lost);
    free(buffer);
}

static void finish(void) {
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    pthread_mutex_lock(&lock);
    if (out) {
        fclose(out);
        out = NULL;
    }
    pthread_mutex_unlock(&lock);
    fprintf(stderr, "kernel_timeline: %llu kernels written, %llu not (RS_TIMELINE_MAX)\n", written, dropped);
}

int InitializeInjection(void) {
    const char* prefix = getenv("RS_TIMELINE_OUT");
    const char* max = getenv("RS_TIMELINE_MAX");
    if (max) limit = strtoull(max, NULL, 10);
    char path[4096];
    snprintf(path, sizeof path, "%s.%d.csv", prefix ? prefix : "/tmp/kernel-timeline", (int)getpid());
    out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "kernel_timeline: cannot write %s\n", path);
        return 0;
    }
    fprintf(out, "start_ns,end_ns,context,stream,graph,graph_node,grid,block,dyn_smem,regs,name\n");
    CHECK(cuptiActivityRegisterCallbacks(requested, completed));
    CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
    atexit(finish);
    return 1;
}
