/* The loop through the C API, on both backends: creation and options, run modes, timers
 * (order, repeat, stop and free inside callbacks, destructors), posts and stop from another
 * thread, the error codes of bad arguments. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int dtor_calls;
static void count_dtor(void *p) {
    (void)p;
    dtor_calls++;
}

static char order[16];
static int order_len;
static void record(aloop_timer_t *t, void *ud) {
    (void)t;
    order[order_len++] = *(const char *)ud;
}

static void test_timers(aloop_loop_t *loop) {
    aloop_timer_t *a, *b, *c;
    CHECK_RC(aloop_timer_new(loop, &a), 0);
    CHECK_RC(aloop_timer_new(loop, &b), 0);
    CHECK_RC(aloop_timer_new(loop, &c), 0);
    order_len = 0;
    dtor_calls = 0;
    CHECK_RC(aloop_timer_start(a, 30, 0, record, "a", count_dtor), 0);
    CHECK_RC(aloop_timer_start(b, 10, 0, record, "b", count_dtor), 0);
    CHECK_RC(aloop_timer_start(c, 20, 0, record, "c", count_dtor), 0);
    CHECK(aloop_timer_is_active(a) == 1);
    CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_DEFAULT), 0);
    CHECK(order_len == 3 && memcmp(order, "bca", 3) == 0);
    CHECK(dtor_calls == 3); /* one-shot timers end their registration when they fire */
    CHECK(aloop_timer_is_active(a) == 0);
    /* Restart replaces the callback: the old destructor runs at once. */
    CHECK_RC(aloop_timer_start(a, 1000, 0, record, "x", count_dtor), 0);
    CHECK_RC(aloop_timer_start(a, 1, 0, record, "y", count_dtor), 0);
    CHECK(dtor_calls == 4);
    CHECK_RC(aloop_timer_stop(b), 0); /* stopping a stopped timer is fine */
    CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_DEFAULT), 0);
    CHECK(order_len == 4 && order[3] == 'y');
    CHECK(dtor_calls == 5);
    CHECK(aloop_timer_loop(a) == loop);
    aloop_timer_free(a);
    aloop_timer_free(b);
    aloop_timer_free(c);
    aloop_timer_free(NULL);
}

static int ticks;
static void tick_then_free(aloop_timer_t *t, void *ud) {
    (void)ud;
    if (++ticks == 3)
        aloop_timer_free(t); /* freeing a timer inside its own callback is allowed */
}

static void test_repeat_and_free_in_callback(aloop_loop_t *loop) {
    aloop_timer_t *t;
    ticks = 0;
    dtor_calls = 0;
    CHECK_RC(aloop_timer_new(loop, &t), 0);
    CHECK_RC(aloop_timer_start(t, 1, 2, tick_then_free, NULL, count_dtor), 0);
    CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_DEFAULT), 0);
    CHECK(ticks == 3);
    CHECK(dtor_calls == 1);
}

struct post_state {
    aloop_loop_t *loop;
    int ran;
    pthread_t loop_thread;
    int wrong_thread;
};

static void on_post(aloop_loop_t *loop, void *ud) {
    struct post_state *s = ud;
    if (!pthread_equal(pthread_self(), s->loop_thread))
        s->wrong_thread++;
    if (++s->ran == 4000)
        aloop_loop_stop(loop);
}

static void *poster(void *arg) {
    struct post_state *s = arg;
    for (int i = 0; i < 1000; i++)
        if (aloop_loop_post(s->loop, on_post, s, NULL) != 0)
            return (void *)1;
    return NULL;
}

static void on_keepalive(aloop_timer_t *t, void *ud) {
    (void)t;
    (void)ud;
}

static void test_post_from_threads(aloop_loop_t *loop) {
    struct post_state s = {loop, 0, pthread_self(), 0};
    aloop_timer_t *keep; /* keeps the loop alive while the threads post */
    CHECK_RC(aloop_timer_new(loop, &keep), 0);
    CHECK_RC(aloop_timer_start(keep, 10000, 0, on_keepalive, NULL, NULL), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, poster, &s);
    CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_DEFAULT), 1);
    void *ret;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], &ret);
        CHECK(ret == NULL);
    }
    CHECK(s.ran == 4000);
    CHECK(s.wrong_thread == 0);
    aloop_timer_free(keep);
}

static void *stopper(void *arg) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    aloop_loop_stop(arg);
    return NULL;
}

static void test_stop_from_thread(aloop_loop_t *loop) {
    aloop_timer_t *t;
    CHECK_RC(aloop_timer_new(loop, &t), 0);
    CHECK_RC(aloop_timer_start(t, 30000, 0, on_keepalive, NULL, NULL), 0);
    pthread_t th;
    pthread_create(&th, NULL, stopper, loop);
    time_t start = time(NULL);
    CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_DEFAULT), 1); /* the timer is still armed */
    CHECK(time(NULL) - start < 5);
    pthread_join(th, NULL);
    aloop_timer_free(t);
}

static void test_bad_arguments(void) {
    aloop_loop_t *loop = NULL;
    aloop_loop_options_t opts;
    CHECK_RC(aloop_loop_options_init(NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_loop_new(NULL, NULL), ALOOP_E_NULL);
    aloop_loop_options_init(&opts);
    opts.backend = 42;
    CHECK_RC(aloop_loop_new(&opts, &loop), ALOOP_E_INVALID);
    CHECK(loop == NULL);
    CHECK_RC(aloop_loop_run(NULL, ALOOP_RUN_DEFAULT), ALOOP_E_NULL);
    CHECK_RC(aloop_loop_stop(NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_loop_free(NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_loop_post(NULL, on_post, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_timer_new(NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_timer_start(NULL, 1, 0, record, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_timer_stop(NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_poll_set(NULL, ALOOP_READABLE), ALOOP_E_NULL);
    CHECK(aloop_backend_name(7) == NULL);
    CHECK(strcmp(aloop_backend_name(ALOOP_BACKEND_EPOLL), "epoll") == 0);
    /* Every code has a name and a message. */
    CHECK(strcmp(aloop_err_name(ALOOP_E_CANCELLED), "ALOOP_E_CANCELLED") == 0);
    CHECK(strcmp(aloop_err_name(0), "OK") == 0);
    CHECK(strcmp(aloop_strerror(-111), "Connection refused") == 0);
    CHECK(strcmp(aloop_err_name(-111), "ECONNREFUSED") == 0);
    CHECK(strcmp(aloop_strerror(-123456), "unknown error") == 0);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", ALOOP_VERSION_MAJOR, ALOOP_VERSION_MINOR, ALOOP_VERSION_PATCH);
    CHECK(strcmp(aloop_version(), want) == 0);
}

static void test_free_with_open_handles(int backend) {
    aloop_loop_options_t opts;
    aloop_loop_options_init(&opts);
    opts.backend = backend;
    aloop_loop_t *loop;
    CHECK_RC(aloop_loop_new(&opts, &loop), 0);
    aloop_timer_t *t;
    CHECK_RC(aloop_timer_new(loop, &t), 0);
    CHECK_RC(aloop_loop_free(loop), ALOOP_E_BUSY);
    aloop_timer_free(t);
    /* A job still queued when the loop is freed is dropped: its destructor runs, not cb. */
    dtor_calls = 0;
    struct post_state s = {loop, 0, pthread_self(), 0};
    CHECK_RC(aloop_loop_post(loop, on_post, &s, count_dtor), 0);
    CHECK_RC(aloop_loop_free(loop), 0);
    CHECK(dtor_calls == 1);
    CHECK(s.ran == 0);
}

int main(void) {
    test_bad_arguments();
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++) {
        aloop_loop_options_t opts;
        aloop_loop_options_init(&opts);
        opts.backend = all_backends[i];
        aloop_loop_t *loop = NULL;
        CHECK_RC(aloop_loop_new(&opts, &loop), 0);
        if (!loop)
            continue;
        CHECK(aloop_loop_backend(loop) == all_backends[i]);
        /* Nothing to do: returns at once, not alive. */
        CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_NOWAIT), 0);
        CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_ONCE), 0);
        CHECK_RC(aloop_loop_run(loop, 99), ALOOP_E_INVALID);
        test_timers(loop);
        test_repeat_and_free_in_callback(loop);
        test_post_from_threads(loop);
        test_stop_from_thread(loop);
        CHECK_RC(aloop_loop_free(loop), 0);
        test_free_with_open_handles(all_backends[i]);
    }
    return check_summary("test_loop");
}
