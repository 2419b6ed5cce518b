/* Two tenants of one runtime, each in a thread of its own, under the krisp policy: each
 * launches vector_add_f16 over its own buffers many times and checks every result. Tenant 0
 * is latency-critical with a 32-SM quota, tenant 1 best-effort. A tenant handle used from the
 * other thread is refused. Exits 0 when every result is right; prints why and exits 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rightsize.h"
#include "vector_add.h"

enum { N = 1 << 18, ROUNDS = 200 };

/* Every thread has served (main then checks), and main has checked (threads then free). */
static pthread_barrier_t served, checked;

typedef struct {
    RsRuntime *rt;
    uint32_t id;
    RsTenant *tenant;    /* made by the thread */
    RsTenantStats stats;
    unsigned wrong;
    char error[512];
} Job;

#define TRY(call)                                                                                   \
    do {                                                                                            \
        RsStatus s_ = (call);                                                                       \
        if (s_ != RS_STATUS_OK) {                                                                   \
            snprintf(job->error, sizeof job->error, "%s: status %d: %s", #call, (int)s_, rightsize_last_error()); \
            return;                                                                                 \
        }                                                                                           \
    } while (0)

static void work(Job *job) {
    uint16_t *a = malloc(N * 2), *b = malloc(N * 2), *c = malloc(N * 2);
    RsBuffer *da, *db, *dc;
    TRY(rightsize_buffer_create(job->rt, N * 2, &da));
    TRY(rightsize_buffer_create(job->rt, N * 2, &db));
    TRY(rightsize_buffer_create(job->rt, N * 2, &dc));
    TRY(rightsize_tenant_create(job->rt, job->id, &job->tenant));
    VectorAddParams p = {rightsize_buffer_address(da), rightsize_buffer_address(db), rightsize_buffer_address(dc), N};
    for (unsigned r = 0; r < ROUNDS; r++) {
        unsigned k = r * 2 + job->id;
        for (unsigned i = 0; i < N; i++) {
            a[i] = half_of((i + k) % 1000u);
            b[i] = half_of((i * 3u + k) % 1000u);
        }
        TRY(rightsize_buffer_write(da, a, N * 2));
        TRY(rightsize_buffer_write(db, b, N * 2));
        TRY(rightsize_launch(job->tenant, "vector_add_f16", &p, sizeof p));
        TRY(rightsize_tenant_synchronize(job->tenant));
        TRY(rightsize_buffer_read(dc, c, N * 2));
        for (unsigned i = 0; i < N; i++)
            if (c[i] != half_of((i + k) % 1000u + (i * 3u + k) % 1000u)) job->wrong++;
    }
    TRY(rightsize_tenant_stats(job->tenant, &job->stats));
    rightsize_buffer_destroy(da);
    rightsize_buffer_destroy(db);
    rightsize_buffer_destroy(dc);
    free(a);
    free(b);
    free(c);
}

static void *serve(void *arg) {
    Job *job = arg;
    work(job);
    pthread_barrier_wait(&served);
    pthread_barrier_wait(&checked);
    /* Freed by the thread that made it. */
    if (job->tenant && rightsize_tenant_destroy(job->tenant) != RS_STATUS_OK && !job->error[0])
        snprintf(job->error, sizeof job->error, "destroy: %s", rightsize_last_error());
    return NULL;
}

int main(void) {
    RsTenantSpec specs[2] = {{RS_CLASS_LATENCY_CRITICAL, 32, 0, 0}, {RS_CLASS_BEST_EFFORT, 0, 0, 0}};
    RsRuntimeOptions options = {0, "krisp", specs, 2, NULL, 0};
    RsRuntime *rt = NULL;
    if (rightsize_runtime_create(&options, &rt) != RS_STATUS_OK) {
        fprintf(stderr, "runtime: %s\n", rightsize_last_error());
        return 1;
    }
    Job jobs[2] = {{rt, 0, NULL, {0, 0, 0, 0}, 0, ""}, {rt, 1, NULL, {0, 0, 0, 0}, 0, ""}};
    pthread_barrier_init(&served, NULL, 3);
    pthread_barrier_init(&checked, NULL, 3);
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) pthread_create(&threads[i], NULL, serve, &jobs[i]);
    pthread_barrier_wait(&served);
    int failed = 0;
    /* A tenant belongs to the thread that made it: from here it is refused. */
    if (jobs[0].tenant && (rightsize_tenant_synchronize(jobs[0].tenant) != RS_STATUS_INVALID_ARGUMENT ||
                           strstr(rightsize_last_error(), "thread") == NULL)) {
        fprintf(stderr, "a tenant used from another thread was not refused\n");
        failed = 1;
    }
    pthread_barrier_wait(&checked);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 2; i++) {
        if (jobs[i].error[0]) {
            fprintf(stderr, "tenant %d: %s\n", i, jobs[i].error);
            failed = 1;
            continue;
        }
        printf("tenant %d: %d rounds, %u wrong; %llu launches, %llu on a partition, the last on %u SMs\n", i, ROUNDS,
               jobs[i].wrong, (unsigned long long)jobs[i].stats.launches,
               (unsigned long long)jobs[i].stats.on_partitions, jobs[i].stats.last_sms);
        if (jobs[i].wrong != 0 || jobs[i].stats.launches != ROUNDS) failed = 1;
    }
    rightsize_runtime_destroy(rt);
    if (failed) fprintf(stderr, "FAILED\n");
    return failed;
}
