/* rightsize from C: a runtime whose policy gives one tenant a static window of 32 SMs, one
 * of the library's kernels (vector_add_f16) launched through it on that window, and its
 * output checked against the sums computed here. Exits 0 when every element is right and
 * the kernel ran on the partition; prints why and exits 1 otherwise.
 *
 *   cc vector_add.c -I capi -L <dir of librightsize_c.so> -lrightsize_c -o vector_add
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rightsize.h"
#include "vector_add.h"

int main(void) {
    enum { N = 1 << 20 };
    RsTenantSpec spec = {RS_CLASS_BEST_EFFORT, 32, 0, 0};
    RsRuntimeOptions options = {0, "static", &spec, 1, NULL, 0};
    RsRuntime *rt = NULL;
    CHECK(rightsize_runtime_create(&options, &rt));
    uint32_t sms = 0;
    CHECK(rightsize_runtime_sm_count(rt, &sms));

    uint16_t *a = malloc(N * 2), *b = malloc(N * 2), *c = malloc(N * 2);
    for (unsigned i = 0; i < N; i++) {
        a[i] = half_of((i * 7u) % 1000u);
        b[i] = half_of((i * 13u) % 1000u);
    }
    RsBuffer *da = NULL, *db = NULL, *dc = NULL;
    CHECK(rightsize_buffer_create(rt, N * 2, &da));
    CHECK(rightsize_buffer_create(rt, N * 2, &db));
    CHECK(rightsize_buffer_create(rt, N * 2, &dc));
    CHECK(rightsize_buffer_write(da, a, N * 2));
    CHECK(rightsize_buffer_write(db, b, N * 2));

    RsTenant *t = NULL;
    CHECK(rightsize_tenant_create(rt, 0, &t));
    VectorAddParams p = {rightsize_buffer_address(da), rightsize_buffer_address(db), rightsize_buffer_address(dc), N};
    CHECK(rightsize_launch(t, "vector_add_f16", &p, sizeof p));
    CHECK(rightsize_tenant_synchronize(t));
    RsTenantStats stats;
    CHECK(rightsize_tenant_stats(t, &stats));

    /* A wrong call is refused with a reason, not a crash. */
    if (rightsize_launch(t, "vector_add_f16", &p, sizeof p - 8) != RS_STATUS_INVALID_ARGUMENT ||
        strstr(rightsize_last_error(), "32-byte") == NULL) {
        fprintf(stderr, "a short parameter struct was not refused: %s\n", rightsize_last_error());
        return 1;
    }

    CHECK(rightsize_buffer_read(dc, c, N * 2));
    unsigned wrong = 0;
    for (unsigned i = 0; i < N; i++) {
        uint16_t want = half_of((i * 7u) % 1000u + (i * 13u) % 1000u);
        if (c[i] != want && wrong++ < 5) fprintf(stderr, "c[%u] = 0x%04x, want 0x%04x\n", i, c[i], want);
    }
    printf("vector_add_f16 over %d halves through the C ABI: %u wrong; %llu launch(es), %llu on a partition, "
           "the last on %u of %u SMs\n",
           N, wrong, (unsigned long long)stats.launches, (unsigned long long)stats.on_partitions, stats.last_sms, sms);

    CHECK(rightsize_tenant_destroy(t));
    rightsize_buffer_destroy(da);
    rightsize_buffer_destroy(db);
    rightsize_buffer_destroy(dc);
    rightsize_runtime_destroy(rt);
    free(a);
    free(b);
    free(c);
    if (wrong != 0 || stats.launches != 1 || stats.on_partitions != 1 || stats.last_sms != 32) {
        fprintf(stderr, "FAILED\n");
        return 1;
    }
    return 0;
}
