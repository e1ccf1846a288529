/* Signal handles through the C API, on both backends: raise() on the loop's thread and kill()
 * to the process from another thread while the loop waits (it wakes at once); two loops on two
 * threads watching the same signal; the disposition installed at start and put back at stop;
 * free inside the callback; stale and double frees; refused signal numbers; calls from another
 * thread while the loop runs; a loop with a signal handle still open cannot be freed. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int backend;

static aloop_loop_t *new_loop(void) {
    aloop_loop_options_t o;
    aloop_loop_options_init(&o);
    o.backend = backend;
    aloop_loop_t *lp = NULL;
    CHECK_RC(aloop_loop_new(&o, &lp), 0);
    return lp;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void (*disposition(int sig))(int) {
    struct sigaction cur;
    memset(&cur, 0, sizeof cur); /* sigaction refuses the C library's own signals (32, 33) */
    sigaction(sig, NULL, &cur);
    return cur.sa_handler;
}

static void set_disposition(int sig, void (*h)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sigaction(sig, &sa, NULL);
}

static int dtor_calls;
static void count_dtor(void *p) {
    (void)p;
    dtor_calls++;
}

/* Records the signal and stops its own handle, so the loop runs dry. */
struct seen {
    int calls, signum;
    double at_ms;
};
static void record_and_stop(aloop_signal_t *s, int signum, void *ud) {
    struct seen *seen = ud;
    seen->calls++;
    seen->signum = signum;
    seen->at_ms = now_ms();
    CHECK_RC(aloop_signal_stop(s), 0);
}

/* A timer that stops the loop: no test hangs if a signal never comes. */
static void stop_loop(aloop_timer_t *t, void *ud) {
    (void)t;
    aloop_loop_stop(ud);
}
static aloop_timer_t *watchdog(aloop_loop_t *lp) {
    aloop_timer_t *t = NULL;
    CHECK_RC(aloop_timer_new(lp, &t), 0);
    CHECK_RC(aloop_timer_start(t, 5000, 0, stop_loop, lp, NULL), 0);
    return t;
}

static void test_raise_on_the_loop_thread(void) {
    aloop_loop_t *lp = new_loop();
    aloop_signal_t *s = NULL;
    struct seen seen = {0, 0, 0};
    CHECK_RC(aloop_signal_new(lp, &s), 0);
    CHECK(aloop_signal_signum(s) == 0);
    CHECK(aloop_signal_loop(s) == lp);
    CHECK(disposition(SIGUSR1) == SIG_DFL); /* a new handle changes nothing */
    dtor_calls = 0;
    CHECK_RC(aloop_signal_start(s, SIGUSR1, record_and_stop, &seen, count_dtor), 0);
    CHECK(aloop_signal_signum(s) == SIGUSR1);
    CHECK(disposition(SIGUSR1) != SIG_DFL);
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_NOWAIT), 1); /* a started handle keeps it alive */
    CHECK(raise(SIGUSR1) == 0);                      /* the process survives: it is handled */
    CHECK(seen.calls == 0);                          /* callbacks run on the loop, not in raise */
    aloop_timer_t *w = watchdog(lp);
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_ONCE), 1);
    CHECK(seen.calls == 1 && seen.signum == SIGUSR1);
    CHECK(dtor_calls == 1);
    CHECK(aloop_signal_signum(s) == 0);
    CHECK(disposition(SIGUSR1) == SIG_DFL); /* put back at stop */
    aloop_timer_free(w);
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_DEFAULT), 0);
    CHECK_RC(aloop_signal_free(s), 0);
    CHECK_RC(aloop_loop_free(lp), 0);
}

static void *kill_later(void *arg) {
    double *sent = arg;
    struct timespec d = {0, 150 * 1000 * 1000};
    nanosleep(&d, NULL);
    *sent = now_ms();
    kill(getpid(), SIGUSR2);
    return NULL;
}

static void test_kill_from_another_thread_wakes_the_loop(void) {
    aloop_loop_t *lp = new_loop();
    aloop_signal_t *s = NULL;
    struct seen seen = {0, 0, 0};
    double sent = 0;
    CHECK_RC(aloop_signal_new(lp, &s), 0);
    CHECK_RC(aloop_signal_start(s, SIGUSR2, record_and_stop, &seen, NULL), 0);
    pthread_t th;
    pthread_create(&th, NULL, kill_later, &sent);
    /* Only the signal handle is active: the loop waits with no timeout, and only the signal
     * can end the run. */
    double start = now_ms();
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    CHECK(seen.calls == 1 && seen.signum == SIGUSR2);
    CHECK(seen.at_ms >= sent && seen.at_ms - sent < 500);
    CHECK(now_ms() - start >= 140);
    if (!(seen.at_ms - sent < 500))
        fprintf(stderr, "woken %.1f ms after the kill\n", seen.at_ms - sent);
    CHECK_RC(aloop_signal_free(s), 0);
    CHECK_RC(aloop_loop_free(lp), 0);
}

struct two {
    pthread_barrier_t ready;
    int calls[2];
};
struct two_arg {
    struct two *two;
    int i;
};
static void count_call(aloop_signal_t *s, int signum, void *ud) {
    struct two_arg *a = ud;
    if (signum == SIGUSR1)
        __atomic_fetch_add(&a->two->calls[a->i], 1, __ATOMIC_SEQ_CST);
    aloop_signal_stop(s);
}
static void *watch_on_own_loop(void *arg) {
    struct two_arg *a = arg;
    aloop_loop_t *lp = new_loop();
    aloop_signal_t *s = NULL;
    CHECK_RC(aloop_signal_new(lp, &s), 0);
    CHECK_RC(aloop_signal_start(s, SIGUSR1, count_call, a, NULL), 0);
    aloop_timer_t *w = watchdog(lp);
    pthread_barrier_wait(&a->two->ready);
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_ONCE), 1);
    aloop_timer_free(w);
    CHECK_RC(aloop_signal_free(s), 0);
    CHECK_RC(aloop_loop_free(lp), 0);
    return NULL;
}

static void test_two_loops_on_two_threads(void) {
    struct two two;
    memset(&two, 0, sizeof two);
    pthread_barrier_init(&two.ready, NULL, 3);
    struct two_arg args[2] = {{&two, 0}, {&two, 1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, watch_on_own_loop, &args[i]);
    pthread_barrier_wait(&two.ready);
    kill(getpid(), SIGUSR1); /* to the process: any thread may take it, both loops see it */
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK(two.calls[0] == 1 && two.calls[1] == 1);
    CHECK(disposition(SIGUSR1) == SIG_DFL);
    pthread_barrier_destroy(&two.ready);
}

static void nothing(aloop_signal_t *s, int signum, void *ud) {
    (void)s;
    (void)signum;
    (void)ud;
}

static void test_disposition_put_back(void) {
    aloop_loop_t *lp = new_loop();
    aloop_signal_t *a = NULL, *b = NULL;
    CHECK_RC(aloop_signal_new(lp, &a), 0);
    CHECK_RC(aloop_signal_new(lp, &b), 0);
    set_disposition(SIGUSR1, SIG_IGN);
    CHECK_RC(aloop_signal_start(a, SIGUSR1, nothing, NULL, NULL), 0);
    CHECK_RC(aloop_signal_start(b, SIGUSR1, nothing, NULL, NULL), 0);
    void (*ours)(int) = disposition(SIGUSR1);
    CHECK(ours != SIG_IGN && ours != SIG_DFL);
    CHECK_RC(aloop_signal_stop(a), 0);
    CHECK(disposition(SIGUSR1) == ours); /* b still watches */
    CHECK_RC(aloop_signal_stop(a), 0);   /* stopping a stopped handle is fine */
    CHECK_RC(aloop_signal_free(b), 0);
    CHECK(disposition(SIGUSR1) == SIG_IGN); /* the action from before, not the default */
    /* An action the program installs meanwhile stays. */
    CHECK_RC(aloop_signal_start(a, SIGUSR1, nothing, NULL, NULL), 0);
    set_disposition(SIGUSR1, SIG_DFL);
    CHECK_RC(aloop_signal_stop(a), 0);
    CHECK(disposition(SIGUSR1) == SIG_DFL);
    CHECK_RC(aloop_signal_free(a), 0);
    CHECK_RC(aloop_loop_free(lp), 0);
}

struct self_free {
    aloop_signal_t *s;
    int calls, dtors_seen_inside;
};
static void free_self(aloop_signal_t *s, int signum, void *ud) {
    (void)signum;
    struct self_free *f = ud;
    f->calls++;
    CHECK(s == f->s);
    CHECK_RC(aloop_signal_free(s), 0);
    CHECK_RC(aloop_signal_free(s), ALOOP_E_STALE);
    CHECK(aloop_signal_signum(s) == ALOOP_E_STALE);
    f->dtors_seen_inside = dtor_calls;
}

static void test_free_in_callback_and_stale_handles(void) {
    aloop_loop_t *lp = new_loop();
    struct self_free f = {NULL, 0, -1};
    CHECK_RC(aloop_signal_new(lp, &f.s), 0);
    dtor_calls = 0;
    CHECK_RC(aloop_signal_start(f.s, SIGUSR1, free_self, &f, count_dtor), 0);
    raise(SIGUSR1);
    aloop_timer_t *w = watchdog(lp);
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_ONCE), 1);
    CHECK(f.calls == 1);
    CHECK(f.dtors_seen_inside == 0); /* the destructor waits for the callback to return */
    CHECK(dtor_calls == 1);
    CHECK(disposition(SIGUSR1) == SIG_DFL);
    CHECK_RC(aloop_signal_start(f.s, SIGUSR1, nothing, NULL, NULL), ALOOP_E_STALE);
    CHECK_RC(aloop_signal_stop(f.s), ALOOP_E_STALE);
    CHECK(aloop_signal_loop(f.s) == NULL);
    CHECK_RC(aloop_signal_free(f.s), ALOOP_E_STALE);
    CHECK_RC(aloop_signal_free(NULL), 0);
    CHECK_RC(aloop_signal_stop(NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_signal_new(lp, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_signal_new(NULL, &f.s), ALOOP_E_NULL);
    /* A timer handle is not a signal handle. */
    CHECK_RC(aloop_signal_stop((aloop_signal_t *)w), ALOOP_E_STALE);
    aloop_timer_free(w);
    CHECK_RC(aloop_loop_free(lp), 0);
}

static void test_refused_signals(void) {
    aloop_loop_t *lp = new_loop();
    aloop_signal_t *s = NULL;
    CHECK_RC(aloop_signal_new(lp, &s), 0);
    static const int refused[] = {0, -1, 65, 1000, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, 32};
    dtor_calls = 0;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int n = refused[i];
        void (*before)(int) = n >= 1 && n <= 64 ? disposition(n) : NULL;
        CHECK_RC(aloop_signal_start(s, n, nothing, NULL, count_dtor), ALOOP_E_INVALID);
        CHECK(strstr(aloop_last_error_message(), "signal") != NULL);
        if (n >= 1 && n <= 64)
            CHECK(disposition(n) == before);
        CHECK(aloop_signal_signum(s) == 0);
    }
    CHECK(strstr(aloop_last_error_message(), "reserved") != NULL); /* 32, refused by sigaction */
    CHECK(dtor_calls == 0);
    CHECK_RC(aloop_signal_start(s, SIGUSR1, NULL, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_NOWAIT), 0);
    /* A loop with a signal handle still open is not freed. */
    CHECK_RC(aloop_loop_free(lp), ALOOP_E_BUSY);
    CHECK_RC(aloop_signal_free(s), 0);
    CHECK_RC(aloop_loop_free(lp), 0);
}

struct wrong {
    aloop_loop_t *lp;
    aloop_signal_t *s;
    int running;
    struct seen seen;
};
static void mark_running(aloop_loop_t *lp, void *ud) {
    (void)lp;
    __atomic_store_n(&((struct wrong *)ud)->running, 1, __ATOMIC_SEQ_CST);
}
static void *run_loop(void *arg) {
    struct wrong *w = arg;
    aloop_timer_t *t = watchdog(w->lp);
    CHECK_RC(aloop_loop_run(w->lp, ALOOP_RUN_ONCE), 1);
    while (w->seen.calls == 0 && aloop_timer_is_active(t) == 1)
        aloop_loop_run(w->lp, ALOOP_RUN_ONCE);
    aloop_timer_free(t);
    return NULL;
}

static void test_wrong_thread(void) {
    struct wrong w;
    memset(&w, 0, sizeof w);
    w.lp = new_loop();
    CHECK_RC(aloop_signal_new(w.lp, &w.s), 0);
    CHECK_RC(aloop_signal_start(w.s, SIGUSR2, record_and_stop, &w.seen, NULL), 0);
    CHECK_RC(aloop_loop_post(w.lp, mark_running, &w, NULL), 0);
    pthread_t th;
    pthread_create(&th, NULL, run_loop, &w);
    struct timespec ms = {0, 1000 * 1000};
    while (!__atomic_load_n(&w.running, __ATOMIC_SEQ_CST))
        nanosleep(&ms, NULL);
    /* The loop runs on `th`: its handles refuse this thread. */
    aloop_signal_t *other = NULL;
    CHECK_RC(aloop_signal_new(w.lp, &other), ALOOP_E_WRONG_THREAD);
    CHECK_RC(aloop_signal_start(w.s, SIGUSR1, nothing, NULL, NULL), ALOOP_E_WRONG_THREAD);
    CHECK_RC(aloop_signal_stop(w.s), ALOOP_E_WRONG_THREAD);
    CHECK(aloop_signal_signum(w.s) == ALOOP_E_WRONG_THREAD);
    CHECK_RC(aloop_signal_free(w.s), ALOOP_E_WRONG_THREAD);
    /* Sent to the loop's thread from here: it takes the signal inside its wait. */
    pthread_kill(th, SIGUSR2);
    pthread_join(th, NULL);
    CHECK(w.seen.calls == 1 && w.seen.signum == SIGUSR2);
    CHECK_RC(aloop_signal_free(w.s), 0);
    CHECK_RC(aloop_loop_free(w.lp), 0);
}

int main(void) {
    for (size_t i = 0; i < sizeof all_backends / sizeof all_backends[0]; i++) {
        backend = all_backends[i];
        test_raise_on_the_loop_thread();
        test_kill_from_another_thread_wakes_the_loop();
        test_two_loops_on_two_threads();
        test_disposition_put_back();
        test_free_in_callback_and_stale_handles();
        test_refused_signals();
        test_wrong_thread();
    }
    return check_summary("test_signal");
}
