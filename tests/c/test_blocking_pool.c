/* Blocking work (host name lookups, PostgreSQL cancel requests) runs on one bounded pool per
 * process: a burst of 2,000 lookups and of cancels never runs on more than
 * ASYNCLOOP_THREADPOOL_SIZE threads. The test counts the process's threads itself, from
 * /proc/self/task, on a sampler thread, while the burst runs (io_uring's own kernel workers,
 * "iou-wrk-*", are not ours and not counted). Both backends. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <asyncloop.h>

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

#define POOL_SIZE 4
#define LOOKUPS 2000
#define CANCELS 64

static atomic_int sampling = 1;
static atomic_int peak_threads, peak_workers;

/* Threads of this process that are not io_uring's kernel workers, and how many of them are
 * the library's blocking-work threads. */
static void count_threads(int *ours, int *workers) {
    *ours = *workers = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(comm, sizeof comm, f))
            comm[0] = 0;
        fclose(f);
        if (strncmp(comm, "iou-wrk", 7) == 0 || strncmp(comm, "iou-sqp", 7) == 0)
            continue;
        (*ours)++;
        if (strncmp(comm, "asyncloop-block", 15) == 0)
            (*workers)++;
    }
    closedir(d);
}

static void *sampler(void *arg) {
    (void)arg;
    struct timespec ts = {0, 500 * 1000};
    while (atomic_load(&sampling)) {
        int ours, workers;
        count_threads(&ours, &workers);
        if (ours > atomic_load(&peak_threads))
            atomic_store(&peak_threads, ours);
        if (workers > atomic_load(&peak_workers))
            atomic_store(&peak_workers, workers);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

struct burst {
    aloop_loop_t *loop;
    int pending;
    int answered;
};

static void on_lookup_done(int status, const aloop_http_response_t *resp, void *ud) {
    struct burst *b = ud;
    (void)resp;
    (void)status; /* refused, DNS or any other answer: the lookup ran */
    b->answered++;
    if (--b->pending == 0)
        aloop_loop_stop(b->loop);
}

static void on_timed_out(int status, const aloop_pg_result_t *r, void *ud) {
    struct burst *b = ud;
    if (status != ALOOP_E_TIMEOUT)
        fprintf(stderr, "query: %s %s %s\n", aloop_err_name(status), aloop_pg_result_sqlstate(r),
                aloop_pg_result_error_message(r));
    CHECK_RC(status, ALOOP_E_TIMEOUT);
    b->answered++;
    if (--b->pending == 0)
        aloop_loop_stop(b->loop);
}

static void run(int backend, const char *pg) {
    aloop_loop_options_t o;
    aloop_loop_options_init(&o);
    o.backend = backend;
    struct burst b = {0};
    CHECK_RC(aloop_loop_new(&o, &b.loop), 0);

    /* 2,000 origins, each a host name to resolve: every request needs its own lookup. */
    aloop_http_client_options_t co;
    aloop_http_client_options_init(&co);
    co.request_timeout_ms = 10000;
    co.connect_timeout_ms = 2000;
    aloop_http_client_t *client;
    CHECK_RC(aloop_http_client_new(b.loop, &co, &client), 0);
    for (int i = 0; i < LOOKUPS; i++) {
        char url[64];
        snprintf(url, sizeof url, "http://localhost:%d/", 1 + i);
        if (aloop_http_client_request(client, "GET", url, NULL, 0, NULL, 0, on_lookup_done, &b, NULL, NULL) == 0)
            b.pending++;
    }
    CHECK(b.pending == LOOKUPS);

    /* Cancels: queries past their timeout are cancelled on the server with PQcancel, on the
     * same pool. */
    aloop_pg_pool_options_t po;
    aloop_pg_pool_options_init(&po);
    po.conninfo = pg;
    po.size = 8;
    po.query_timeout_ms = 300;
    aloop_pg_pool_t *pool;
    CHECK_RC(aloop_pg_pool_new(b.loop, &po, &pool), 0);
    for (int i = 0; i < CANCELS; i++)
        if (aloop_pg_query(pool, "SELECT pg_sleep(30)", 0, NULL, on_timed_out, &b, NULL) == 0)
            b.pending++;

    aloop_loop_run(b.loop, ALOOP_RUN_DEFAULT);
    CHECK(b.pending == 0);
    CHECK(b.answered == LOOKUPS + CANCELS);

    CHECK_RC(aloop_http_client_free(client), 0);
    CHECK_RC(aloop_pg_pool_free(pool), 0);
    aloop_loop_run(b.loop, ALOOP_RUN_DEFAULT);
    CHECK_RC(aloop_loop_free(b.loop), 0);
}

int main(void) {
    const char *pg = getenv("ALOOP_TEST_PG");
    if (!pg) {
        CHECK(!"ALOOP_TEST_PG is not set (scripts/run-c-tests.sh sets it)");
        return check_summary("test_blocking_pool");
    }
    char size[8];
    snprintf(size, sizeof size, "%d", POOL_SIZE);
    setenv("ASYNCLOOP_THREADPOOL_SIZE", size, 1); /* read once, at the pool's first use */
    int base, workers;
    count_threads(&base, &workers);
    CHECK(workers == 0);
    pthread_t th;
    pthread_create(&th, NULL, sampler, NULL);
    base++; /* the sampler */
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i], pg);
    atomic_store(&sampling, 0);
    pthread_join(th, NULL);
    printf("threads: %d before, at most %d during the bursts, at most %d blocking workers\n", base,
           atomic_load(&peak_threads), atomic_load(&peak_workers));
    CHECK(atomic_load(&peak_workers) >= 1);
    CHECK(atomic_load(&peak_workers) <= POOL_SIZE);
    CHECK(atomic_load(&peak_threads) <= base + POOL_SIZE);
    return check_summary("test_blocking_pool");
}
