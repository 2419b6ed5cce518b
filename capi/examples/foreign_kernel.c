/* rightsize from C with an engine's own kernel: a runtime whose policy gives one tenant a
 * static window of 32 SMs, a module the program brings (PTX text, compiled by the driver),
 * and its kernel launched through the runtime twice — once with a fixed grid, once by work
 * units, the runtime picking the grid for the window. The kernel computes y = 2x + 1 and
 * each block writes the id of the SM it ran on (%smid): every output is checked here, and
 * every block must have run on at most 32 distinct SMs. Exits 0 when all holds; prints why
 * and exits 1 otherwise.
 *
 *   cc foreign_kernel.c -I capi -L <dir of librightsize_c.so> -lrightsize_c -o foreign_kernel
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rightsize.h"

/* The PTX of this CUDA kernel (nvcc -ptx -arch=compute_70, trimmed):
 *
 *   extern "C" __global__ void scale_probe(const float *x, float *y, unsigned long long n,
 *                                          unsigned *sm) {
 *       unsigned s;
 *       asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
 *       if (threadIdx.x == 0) sm[blockIdx.x] = s;
 *       for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
 *            i < n; i += (unsigned long long)gridDim.x * blockDim.x)
 *           y[i] = 2.0f * x[i] + 1.0f;
 *   }
 */
static const char PTX[] =
    ".version 7.0\n"
    ".target sm_70\n"
    ".address_size 64\n"
    ".visible .entry scale_probe(.param .u64 x, .param .u64 y, .param .u64 n, .param .u64 sm)\n"
    "{\n"
    "  .reg .pred %p<4>;\n"
    "  .reg .f32 %f<3>;\n"
    "  .reg .b32 %r<8>;\n"
    "  .reg .b64 %rd<22>;\n"
    "  ld.param.u64 %rd8, [x];\n"
    "  ld.param.u64 %rd9, [y];\n"
    "  ld.param.u64 %rd10, [n];\n"
    "  ld.param.u64 %rd11, [sm];\n"
    "  mov.u32 %r3, %smid;\n"
    "  mov.u32 %r2, %tid.x;\n"
    "  setp.ne.s32 %p1, %r2, 0;\n"
    "  @%p1 bra AFTER_SM;\n"
    "  cvta.to.global.u64 %rd12, %rd11;\n"
    "  mov.u32 %r4, %ctaid.x;\n"
    "  mul.wide.u32 %rd13, %r4, 4;\n"
    "  add.s64 %rd14, %rd12, %rd13;\n"
    "  st.global.u32 [%rd14], %r3;\n"
    "AFTER_SM:\n"
    "  mov.u32 %r5, %ctaid.x;\n"
    "  mov.u32 %r6, %ntid.x;\n"
    "  cvt.u64.u32 %rd1, %r6;\n"
    "  mul.wide.u32 %rd15, %r5, %r6;\n"
    "  cvt.u64.u32 %rd16, %r2;\n"
    "  add.s64 %rd21, %rd15, %rd16;\n"
    "  setp.ge.u64 %p2, %rd21, %rd10;\n"
    "  @%p2 bra DONE;\n"
    "  mov.u32 %r7, %nctaid.x;\n"
    "  cvt.u64.u32 %rd17, %r7;\n"
    "  mul.lo.s64 %rd3, %rd17, %rd1;\n"
    "  cvta.to.global.u64 %rd4, %rd9;\n"
    "  cvta.to.global.u64 %rd5, %rd8;\n"
    "LOOP:\n"
    "  shl.b64 %rd18, %rd21, 2;\n"
    "  add.s64 %rd19, %rd5, %rd18;\n"
    "  ld.global.f32 %f1, [%rd19];\n"
    "  fma.rn.f32 %f2, %f1, 0f40000000, 0f3F800000;\n"
    "  add.s64 %rd20, %rd4, %rd18;\n"
    "  st.global.f32 [%rd20], %f2;\n"
    "  add.s64 %rd21, %rd21, %rd3;\n"
    "  setp.lt.u64 %p3, %rd21, %rd10;\n"
    "  @%p3 bra LOOP;\n"
    "DONE:\n"
    "  ret;\n"
    "}\n";

enum { N = 1 << 22, MAX_BLOCKS = 4096, QUOTA = 32 };

/* Checks y = 2x + 1 and counts the distinct SMs of `blocks` blocks; returns the wrong outputs. */
static unsigned check(const char *how, const float *x, const float *y, const unsigned *sm, unsigned blocks,
                      unsigned *distinct) {
    unsigned wrong = 0;
    for (unsigned i = 0; i < N; i++) {
        float want = 2.0f * x[i] + 1.0f;
        if (y[i] != want && wrong++ < 5) fprintf(stderr, "%s: y[%u] = %g, want %g\n", how, i, y[i], want);
    }
    static unsigned char seen[1024];
    memset(seen, 0, sizeof seen);
    *distinct = 0;
    for (unsigned b = 0; b < blocks; b++) {
        unsigned s = sm[b] < 1024 ? sm[b] : 1023;
        *distinct += !seen[s];
        seen[s] = 1;
    }
    return wrong;
}

int main(void) {
    RsTenantSpec spec = {RS_CLASS_BEST_EFFORT, QUOTA, 0, 0};
    RsRuntimeOptions options = {0, "static", &spec, 1, NULL, 0};
    RsRuntime *rt = NULL;
    CHECK(rightsize_runtime_create(&options, &rt));

    /* A module that does not compile is refused with the compiler's reason. */
    RsModule *bad = NULL;
    static const char BROKEN[] = ".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry k() { nonsense; }\n";
    if (rightsize_module_load(rt, BROKEN, sizeof BROKEN, &bad) != RS_STATUS_INVALID_ARGUMENT ||
        strstr(rightsize_last_error(), "module") == NULL) {
        fprintf(stderr, "broken PTX was not refused: %s\n", rightsize_last_error());
        return 1;
    }
    printf("broken PTX refused: %s\n", rightsize_last_error());

    RsModule *module = NULL;
    CHECK(rightsize_module_load(rt, PTX, sizeof PTX, &module));
    RsKernelSpec ks = {module, "scale_probe", NULL, 256, 1, 1, 0, 0};
    RsKernel *kernel = NULL;
    CHECK(rightsize_kernel_create(rt, &ks, &kernel));
    ks.name = "no_such_kernel";
    RsKernel *missing = NULL;
    if (rightsize_kernel_create(rt, &ks, &missing) != RS_STATUS_INVALID_ARGUMENT ||
        strstr(rightsize_last_error(), "no_such_kernel") == NULL) {
        fprintf(stderr, "a missing kernel was not refused: %s\n", rightsize_last_error());
        return 1;
    }
    /* Kernels keep their module loaded. */
    rightsize_module_destroy(module);

    float *x = malloc(N * 4), *y = malloc(N * 4);
    unsigned *sm = malloc(MAX_BLOCKS * 4);
    srand(7);
    for (unsigned i = 0; i < N; i++) x[i] = (float)(rand() % 20001 - 10000) / 64.0f;
    RsBuffer *dx = NULL, *dy = NULL, *dsm = NULL;
    CHECK(rightsize_buffer_create(rt, N * 4, &dx));
    CHECK(rightsize_buffer_create(rt, N * 4, &dy));
    CHECK(rightsize_buffer_create(rt, MAX_BLOCKS * 4, &dsm));
    CHECK(rightsize_buffer_write(dx, x, N * 4));

    RsTenant *t = NULL;
    CHECK(rightsize_tenant_create(rt, 0, &t));
    unsigned long long ax = rightsize_buffer_address(dx), ay = rightsize_buffer_address(dy),
                       asm_ = rightsize_buffer_address(dsm), n = N;
    void *args[] = {&ax, &ay, &n, &asm_};
    int failed = 0;

    /* A fixed grid: as many blocks as given, on the tenant's window. */
    RsGrid fixed = {MAX_BLOCKS, 1, 1, 0};
    CHECK(rightsize_launch_kernel(t, kernel, &fixed, args));
    CHECK(rightsize_tenant_synchronize(t));
    CHECK(rightsize_buffer_read(dy, y, N * 4));
    CHECK(rightsize_buffer_read(dsm, sm, MAX_BLOCKS * 4));
    unsigned distinct = 0, wrong = check("fixed grid", x, y, sm, MAX_BLOCKS, &distinct);
    printf("scale_probe, fixed grid of %d blocks: %u wrong, on %u distinct SMs (window %d)\n", MAX_BLOCKS, wrong,
           distinct, QUOTA);
    failed |= wrong != 0 || distinct == 0 || distinct > QUOTA;

    /* By work units: the runtime sizes the grid for the window (all blocks resident). */
    memset(sm, 0xff, MAX_BLOCKS * 4);
    memset(y, 0xff, N * 4); /* stale outputs (NaN) the launch must overwrite */
    CHECK(rightsize_buffer_write(dsm, sm, MAX_BLOCKS * 4));
    CHECK(rightsize_buffer_write(dy, y, N * 4));
    RsGrid by_units = {0, 0, 0, N};
    CHECK(rightsize_launch_kernel(t, kernel, &by_units, args));
    CHECK(rightsize_tenant_synchronize(t));
    CHECK(rightsize_buffer_read(dy, y, N * 4));
    CHECK(rightsize_buffer_read(dsm, sm, MAX_BLOCKS * 4));
    unsigned blocks = 0;
    while (blocks < MAX_BLOCKS && sm[blocks] != 0xffffffffu) blocks++;
    wrong = check("by units", x, y, sm, blocks, &distinct);
    printf("scale_probe by %d units: the runtime launched %u blocks: %u wrong, on %u distinct SMs (window %d)\n", N,
           blocks, wrong, distinct, QUOTA);
    failed |= wrong != 0 || blocks == 0 || blocks >= MAX_BLOCKS || distinct > QUOTA;

    /* A grid of no blocks is refused. */
    RsGrid none = {0, 1, 1, 0};
    if (rightsize_launch_kernel(t, kernel, &none, args) != RS_STATUS_INVALID_ARGUMENT) {
        fprintf(stderr, "an empty grid was not refused\n");
        failed = 1;
    }
    RsTenantStats stats;
    CHECK(rightsize_tenant_stats(t, &stats));
    printf("%llu launch(es), %llu on a partition, the last on %u SMs\n", (unsigned long long)stats.launches,
           (unsigned long long)stats.on_partitions, stats.last_sms);
    failed |= stats.launches != 2 || stats.on_partitions != 2 || stats.last_sms != QUOTA;

    CHECK(rightsize_tenant_destroy(t));
    rightsize_kernel_destroy(kernel);
    rightsize_buffer_destroy(dx);
    rightsize_buffer_destroy(dy);
    rightsize_buffer_destroy(dsm);
    rightsize_runtime_destroy(rt);
    free(x);
    free(y);
    free(sm);
    if (failed) {
        fprintf(stderr, "FAILED\n");
        return 1;
    }
    return 0;
}
