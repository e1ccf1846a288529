/* Misuse of the C API, the way a new user trips over it: stale and double-freed handles of every
 * kind, handles of the wrong kind, calls from a thread other than the one running the loop,
 * freeing a loop or a client from inside its own callbacks, idle keep-alive connections that
 * held aloop_loop_run, NULL arguments, malformed conninfo and lower-case methods. Each case once
 * crashed, hung, or returned success; each must now give its documented code. Both backends. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int backend;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static aloop_loop_t *new_loop(void) {
    aloop_loop_options_t o;
    aloop_loop_options_init(&o);
    o.backend = backend;
    aloop_loop_t *lp = NULL;
    CHECK_RC(aloop_loop_new(&o, &lp), 0);
    return lp;
}

/* Counts destructor runs in the int `ud` points to (the first member of the contexts below). */
static void count_dtor(void *ud) {
    (*(int *)ud)++;
}

static void never_timer(aloop_timer_t *t, void *ud) {
    (void)t;
    (void)ud;
    CHECK(!"this timer callback must never run");
}

static void never_poll(aloop_poll_t *p, int events, void *ud) {
    (void)p;
    (void)events;
    (void)ud;
    CHECK(!"this poll callback must never run");
}

static void never_connect(aloop_tcp_t *tcp, int status, void *ud) {
    (void)tcp;
    (void)status;
    (void)ud;
    CHECK(!"this connect callback must never run");
}

static void never_post(aloop_loop_t *lp, void *ud) {
    (void)lp;
    (void)ud;
    CHECK(!"this post callback must never run");
}

/* ---- stale handles of every kind ------------------------------------------------------- */

static void on_tcp_closed(aloop_tcp_t *tcp, void *ud) {
    (void)tcp;
    (*(int *)ud)++;
}

static void on_connected(aloop_tcp_t *tcp, int status, void *ud) {
    (void)status;
    CHECK_RC(aloop_tcp_close(tcp, on_tcp_closed, ud), 0);
    /* Closing twice while the first close is under way. */
    CHECK_RC(aloop_tcp_close(tcp, on_tcp_closed, ud), ALOOP_E_ALREADY);
}

static void on_accept(aloop_tcp_listener_t *l, int status, aloop_tcp_t *conn, void *ud) {
    (void)l;
    (void)ud;
    if (status == 0)
        aloop_tcp_close(conn, NULL, NULL);
}

static void on_listener_closed(aloop_tcp_listener_t *l, void *ud) {
    (void)l;
    (*(int *)ud)++;
}

static void stale_handles(void) {
    aloop_loop_t *lp = new_loop();
    int dtors = 0;

    /* Timers: freed twice, used after the free, passed where another kind is expected. */
    aloop_timer_t *t;
    CHECK_RC(aloop_timer_new(lp, &t), 0);
    CHECK_RC(aloop_timer_start(t, 100000, 0, never_timer, &dtors, count_dtor), 0);
    CHECK_RC(aloop_timer_free(t), 0);
    CHECK(dtors == 1);
    CHECK_RC(aloop_timer_free(t), ALOOP_E_STALE);
    CHECK_RC(aloop_timer_start(t, 1, 0, never_timer, &dtors, count_dtor), ALOOP_E_STALE);
    CHECK(dtors == 1); /* a refused call never runs the destructor */
    CHECK_RC(aloop_timer_stop(t), ALOOP_E_STALE);
    CHECK_RC(aloop_timer_is_active(t), ALOOP_E_STALE);
    CHECK(aloop_timer_loop(t) == NULL);
    CHECK_RC(aloop_tcp_close((aloop_tcp_t *)t, NULL, NULL), ALOOP_E_STALE);
    CHECK_RC(aloop_timer_free(NULL), 0);

    aloop_timer_t *live;
    CHECK_RC(aloop_timer_new(lp, &live), 0);
    CHECK_RC(aloop_tcp_write((aloop_tcp_t *)live, "x", 1, NULL, NULL), ALOOP_E_STALE);
    CHECK_RC(aloop_poll_set((aloop_poll_t *)live, ALOOP_READABLE), ALOOP_E_STALE);
    CHECK(aloop_timer_loop(live) == lp);
    /* An address that never was a handle. */
    CHECK_RC(aloop_timer_stop((aloop_timer_t *)(uintptr_t)0x7f0012345678ull), ALOOP_E_STALE);
    CHECK_RC(aloop_timer_free(live), 0);

    /* Generations: a slot reused tens of thousands of times never revives an old handle (the
     * request handles' old 16-bit tags wrapped after 65,536 reuses). */
    aloop_timer_t *old;
    CHECK_RC(aloop_timer_new(lp, &old), 0);
    CHECK_RC(aloop_timer_free(old), 0);
    int revived = 0;
    for (int i = 0; i < 70000; i++) {
        aloop_timer_t *x;
        if (aloop_timer_new(lp, &x) != 0)
            break;
        if (x == old)
            revived++;
        aloop_timer_free(x);
    }
    CHECK(revived == 0);
    CHECK_RC(aloop_timer_stop(old), ALOOP_E_STALE);

    /* Polls. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    aloop_poll_t *p;
    CHECK_RC(aloop_poll_new(lp, fds[0], never_poll, &dtors, count_dtor, &p), 0);
    CHECK_RC(aloop_poll_free(p), 0);
    CHECK(dtors == 2);
    CHECK_RC(aloop_poll_free(p), ALOOP_E_STALE);
    CHECK_RC(aloop_poll_set(p, ALOOP_READABLE), ALOOP_E_STALE);
    close(fds[0]);
    close(fds[1]);

    /* TCP: a connection closed after its close callback ran; a listener closed twice. */
    aloop_tcp_listener_t *l;
    int closed = 0;
    CHECK_RC(aloop_tcp_listen(lp, "127.0.0.1", 0, NULL, on_accept, NULL, NULL, &l), 0);
    int port = aloop_tcp_listener_port(l);
    aloop_tcp_t *tcp;
    CHECK_RC(aloop_tcp_connect(lp, "127.0.0.1", (uint16_t)port, 5000, on_connected, &closed, NULL, &tcp), 0);
    while (closed == 0 && aloop_loop_run(lp, ALOOP_RUN_ONCE) >= 0) {
    }
    CHECK(closed == 1);
    CHECK_RC(aloop_tcp_close(tcp, on_tcp_closed, &closed), ALOOP_E_STALE);
    CHECK_RC(aloop_tcp_write(tcp, "x", 1, NULL, NULL), ALOOP_E_STALE);
    CHECK_RC(aloop_tcp_read_start(tcp, NULL, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_read_stop(tcp), ALOOP_E_STALE);
    CHECK_RC(aloop_tcp_fd(tcp), ALOOP_E_STALE);
    CHECK_RC(aloop_tcp_set_data(tcp, &closed), ALOOP_E_STALE);
    CHECK(aloop_tcp_get_data(tcp) == NULL);
    CHECK(closed == 1);
    int lclosed = 0;
    CHECK_RC(aloop_tcp_listener_close(l, on_listener_closed, &lclosed), 0);
    CHECK_RC(aloop_tcp_listener_close(l, on_listener_closed, &lclosed), ALOOP_E_ALREADY);
    aloop_loop_run(lp, ALOOP_RUN_DEFAULT);
    CHECK(lclosed == 1);
    CHECK_RC(aloop_tcp_listener_close(l, on_listener_closed, &lclosed), ALOOP_E_STALE);
    CHECK_RC(aloop_tcp_listener_port(l), ALOOP_E_STALE);

    /* HTTP server, HTTP client, PostgreSQL pool: each freed twice. */
    aloop_http_server_t *srv;
    CHECK_RC(aloop_http_server_new(lp, NULL, &srv), 0);
    CHECK_RC(aloop_http_server_free(srv), 0);
    CHECK_RC(aloop_http_server_free(srv), ALOOP_E_STALE);
    CHECK_RC(aloop_http_server_listen(srv, "127.0.0.1", 0), ALOOP_E_STALE);
    aloop_http_client_t *client;
    CHECK_RC(aloop_http_client_new(lp, NULL, &client), 0);
    CHECK_RC(aloop_http_client_free(client), 0);
    CHECK_RC(aloop_http_client_free(client), ALOOP_E_STALE);
    CHECK_RC(aloop_http_client_request(client, "GET", "http://127.0.0.1:1/", NULL, 0, NULL, 0, NULL, NULL, NULL, NULL),
             ALOOP_E_NULL);
    aloop_pg_pool_options_t po;
    aloop_pg_pool_options_init(&po);
    po.conninfo = "host=127.0.0.1 port=1 connect_timeout=1";
    po.size = 1;
    aloop_pg_pool_t *pool;
    CHECK_RC(aloop_pg_pool_new(lp, &po, &pool), 0);
    CHECK_RC(aloop_pg_pool_free(pool), 0);
    CHECK_RC(aloop_pg_pool_free(pool), ALOOP_E_STALE);
    CHECK_RC(aloop_pg_prepare(pool, "s", "SELECT 1"), ALOOP_E_STALE);
    aloop_loop_run(lp, ALOOP_RUN_DEFAULT);

    /* The loop itself. */
    CHECK_RC(aloop_loop_free(lp), 0);
    CHECK_RC(aloop_loop_free(lp), ALOOP_E_STALE);
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_NOWAIT), ALOOP_E_STALE);
    CHECK_RC(aloop_loop_post(lp, never_post, NULL, NULL), ALOOP_E_STALE);
    CHECK_RC(aloop_loop_stop(lp), ALOOP_E_STALE);
    CHECK_RC(aloop_timer_new(lp, &t), ALOOP_E_STALE);
}

/* ---- calls from the wrong thread ------------------------------------------------------- */

struct foreign {
    aloop_loop_t *lp;
    aloop_timer_t *timer;
    aloop_http_server_t *srv;
    int rc_timer_new, rc_timer_start, rc_timer_free, rc_connect, rc_listen, rc_run, rc_free,
        rc_backend, rc_client_new, rc_pool_new, rc_post, rc_stop, rc_server_free;
    int posted_ran;
    pthread_t loop_thread;
};

static void on_posted(aloop_loop_t *lp, void *ud) {
    struct foreign *f = ud;
    CHECK(pthread_equal(pthread_self(), f->loop_thread));
    f->posted_ran++;
    (void)lp;
}

static void *foreign_thread(void *arg) {
    struct foreign *f = arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL); /* the loop is inside aloop_loop_run by now */
    aloop_timer_t *t = NULL;
    f->rc_timer_new = aloop_timer_new(f->lp, &t);
    CHECK(t == NULL); /* *out is not written on failure */
    f->rc_timer_start = aloop_timer_start(f->timer, 1, 0, never_timer, NULL, NULL);
    f->rc_timer_free = aloop_timer_free(f->timer);
    aloop_tcp_t *tcp = NULL;
    f->rc_connect = aloop_tcp_connect(f->lp, "127.0.0.1", 9, 1000, never_connect, NULL, NULL, &tcp);
    CHECK(tcp == NULL);
    f->rc_listen = aloop_http_server_listen(f->srv, "127.0.0.1", 0);
    f->rc_run = aloop_loop_run(f->lp, ALOOP_RUN_NOWAIT);
    f->rc_free = aloop_loop_free(f->lp);
    f->rc_backend = aloop_loop_backend(f->lp);
    aloop_http_client_t *c = NULL;
    f->rc_client_new = aloop_http_client_new(f->lp, NULL, &c);
    aloop_pg_pool_t *p = NULL;
    f->rc_pool_new = aloop_pg_pool_new(f->lp, NULL, &p);
    f->rc_server_free = aloop_http_server_free(f->srv);
    /* The thread-safe calls work from here. */
    f->rc_post = aloop_loop_post(f->lp, on_posted, f, NULL);
    nanosleep(&ts, NULL);
    f->rc_stop = aloop_loop_stop(f->lp);
    return NULL;
}

static void *timer_between_runs(void *arg) {
    struct foreign *f = arg;
    aloop_timer_t *t;
    f->rc_timer_new = aloop_timer_new(f->lp, &t);
    f->rc_timer_free = f->rc_timer_new == 0 ? aloop_timer_free(t) : -1;
    return NULL;
}

static void wrong_thread(void) {
    struct foreign f;
    memset(&f, 0, sizeof f);
    f.lp = new_loop();
    f.loop_thread = pthread_self();
    CHECK_RC(aloop_timer_new(f.lp, &f.timer), 0);
    CHECK_RC(aloop_timer_start(f.timer, 60000, 0, never_timer, NULL, NULL), 0); /* keeps it running */
    CHECK_RC(aloop_http_server_new(f.lp, NULL, &f.srv), 0);
    pthread_t th;
    pthread_create(&th, NULL, foreign_thread, &f);
    CHECK_RC(aloop_loop_run(f.lp, ALOOP_RUN_DEFAULT), 1);
    pthread_join(th, NULL);
    CHECK_RC(f.rc_timer_new, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_timer_start, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_timer_free, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_connect, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_listen, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_run, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_free, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_backend, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_client_new, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_pool_new, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_server_free, ALOOP_E_WRONG_THREAD);
    CHECK_RC(f.rc_post, 0);
    CHECK_RC(f.rc_stop, 0);
    CHECK(f.posted_ran == 1);
    /* Nothing was touched: the timer is still armed and ours. */
    CHECK_RC(aloop_timer_is_active(f.timer), 1);
    CHECK_RC(aloop_timer_free(f.timer), 0);
    CHECK_RC(aloop_http_server_free(f.srv), 0);
    /* Between runs the loop may be used from another thread (one at a time). */
    pthread_create(&th, NULL, timer_between_runs, &f);
    pthread_join(th, NULL);
    CHECK_RC(f.rc_timer_new, 0);
    CHECK_RC(f.rc_timer_free, 0);
    CHECK_RC(aloop_loop_free(f.lp), 0);
}

/* ---- freeing a loop from its own callbacks --------------------------------------------- */

struct self_free {
    aloop_loop_t *lp;
    int rc_post, rc_timer, rc_nested;
};

static void free_from_post(aloop_loop_t *lp, void *ud) {
    struct self_free *s = ud;
    s->rc_post = aloop_loop_free(lp);
    s->rc_nested = aloop_loop_run(lp, ALOOP_RUN_NOWAIT);
}

static void free_from_timer(aloop_timer_t *t, void *ud) {
    struct self_free *s = ud;
    CHECK_RC(aloop_timer_free(t), 0); /* a timer may free itself inside its callback */
    s->rc_timer = aloop_loop_free(s->lp);
}

static void loop_free_inside_run(void) {
    /* Nothing else open: the old library freed the loop under its own run. */
    struct self_free s = {new_loop(), 1, 1, 1};
    CHECK_RC(aloop_loop_post(s.lp, free_from_post, &s, NULL), 0);
    CHECK_RC(aloop_loop_run(s.lp, ALOOP_RUN_DEFAULT), 0);
    CHECK_RC(s.rc_post, ALOOP_E_BUSY);
    CHECK_RC(s.rc_nested, ALOOP_E_ALREADY);
    CHECK_RC(aloop_loop_free(s.lp), 0); /* after run returned, the same free succeeds */

    /* From a timer callback, with the timer freeing itself first. */
    s.lp = new_loop();
    aloop_timer_t *t;
    CHECK_RC(aloop_timer_new(s.lp, &t), 0);
    CHECK_RC(aloop_timer_start(t, 5, 0, free_from_timer, &s, NULL), 0);
    CHECK_RC(aloop_loop_run(s.lp, ALOOP_RUN_DEFAULT), 0);
    CHECK_RC(s.rc_timer, ALOOP_E_BUSY);
    CHECK_RC(aloop_loop_free(s.lp), 0);
}

/* ---- the HTTP client: freed in its own callback; idle connections do not hold run ------ */

struct upstream {
    aloop_loop_t *lp;
    aloop_http_server_t *srv;
    int port;
    pthread_t th;
};

static void on_hello(aloop_http_request_t *req, void *ud) {
    (void)ud;
    static const aloop_http_header_t h[] = {{"Content-Type", "text/plain"}};
    CHECK_RC(aloop_http_respond(req, 200, h, 1, "hello", 5), 0);
}

static void *run_upstream(void *arg) {
    struct upstream *u = arg;
    aloop_loop_run(u->lp, ALOOP_RUN_DEFAULT);
    return NULL;
}

/* A keep-alive HTTP server on a loop of its own thread: the client's loop has nothing else. */
static void start_upstream(struct upstream *u) {
    u->lp = new_loop();
    CHECK_RC(aloop_http_server_new(u->lp, NULL, &u->srv), 0);
    CHECK_RC(aloop_http_server_route(u->srv, "GET", "/hello", on_hello, NULL, NULL), 0);
    u->port = aloop_http_server_listen(u->srv, "127.0.0.1", 0);
    CHECK(u->port > 0);
    pthread_create(&u->th, NULL, run_upstream, u);
}

static void upstream_stopped(aloop_http_server_t *srv, void *ud) {
    (void)srv;
    aloop_loop_stop(ud);
}

static void stop_upstream_on_loop(aloop_loop_t *lp, void *ud) {
    struct upstream *u = ud;
    CHECK_RC(aloop_http_server_shutdown(u->srv, 1000, upstream_stopped, lp), 0);
}

static void stop_upstream(struct upstream *u) {
    CHECK_RC(aloop_loop_post(u->lp, stop_upstream_on_loop, u, NULL), 0);
    pthread_join(u->th, NULL);
    aloop_loop_run(u->lp, ALOOP_RUN_DEFAULT);
    CHECK_RC(aloop_http_server_free(u->srv), 0);
    CHECK_RC(aloop_loop_free(u->lp), 0);
}

struct client_ctx {
    int dtors; /* first: count_dtor counts here */
    aloop_http_client_t *client;
    int status;
    int http_status;
    const aloop_http_response_t *kept; /* a response handle kept past its callback */
    int free_rc;
};

static void free_client_in_callback(int status, const aloop_http_response_t *resp, void *ud) {
    struct client_ctx *c = ud;
    c->status = status;
    c->http_status = resp ? aloop_http_response_status(resp) : 0;
    c->kept = resp;
    c->free_rc = aloop_http_client_free(c->client);
}

static void keep_client(int status, const aloop_http_response_t *resp, void *ud) {
    struct client_ctx *c = ud;
    c->status = status;
    c->http_status = resp ? aloop_http_response_status(resp) : 0;
}

static void http_client_lifecycle(void) {
    struct upstream u;
    start_upstream(&u);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", u.port);

    /* Freed inside its own response callback: run returns (it used to block forever). */
    aloop_loop_t *lp = new_loop();
    struct client_ctx c = {0};
    CHECK_RC(aloop_http_client_new(lp, NULL, &c.client), 0);
    CHECK_RC(aloop_http_client_request(c.client, "GET", url, NULL, 0, NULL, 0, free_client_in_callback, &c, count_dtor,
                                       NULL),
             0);
    double t0 = now_s();
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_DEFAULT), 0);
    CHECK(now_s() - t0 < 5.0);
    CHECK_RC(c.status, 0);
    CHECK(c.http_status == 200);
    CHECK_RC(c.free_rc, 0);
    CHECK(c.dtors == 1);
    CHECK_RC(aloop_http_client_free(c.client), ALOOP_E_STALE); /* gone since the callback */
    /* The response handle died with its callback. */
    CHECK_RC(aloop_http_response_status(c.kept), ALOOP_E_STALE);
    CHECK(aloop_http_response_header(c.kept, "Content-Type") == NULL);
    size_t n = 99;
    CHECK(aloop_http_response_body(c.kept, &n) == NULL && n == 0);
    CHECK_RC(aloop_loop_free(lp), 0);

    /* A client kept after one request: its idle keep-alive connection (30 s idle timeout) must
     * not keep aloop_loop_run(ALOOP_RUN_DEFAULT) going. */
    lp = new_loop();
    struct client_ctx k = {0};
    CHECK_RC(aloop_http_client_new(lp, NULL, &k.client), 0);
    CHECK_RC(aloop_http_client_request(k.client, "GET", url, NULL, 0, NULL, 0, keep_client, &k, NULL, NULL), 0);
    t0 = now_s();
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_DEFAULT), 0);
    CHECK(now_s() - t0 < 5.0);
    CHECK(k.http_status == 200);
    /* The pooled connection is still there and reused by the next request. */
    k.http_status = 0;
    CHECK_RC(aloop_http_client_request(k.client, "GET", url, NULL, 0, NULL, 0, keep_client, &k, NULL, NULL), 0);
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_DEFAULT), 0);
    CHECK(k.http_status == 200);
    /* More pooled connections: eight requests at once leave eight idle connections. */
    struct client_ctx many = {0};
    many.client = k.client;
    for (int i = 0; i < 8; i++)
        CHECK_RC(aloop_http_client_request(k.client, "GET", url, NULL, 0, NULL, 0, keep_client, &many, count_dtor, NULL),
                 0);
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_DEFAULT), 0);
    CHECK(many.dtors == 8);
    CHECK_RC(aloop_http_client_free(k.client), 0);
    CHECK_RC(aloop_loop_free(lp), ALOOP_E_BUSY); /* its connections are still closing */
    /* One run finishes closing them all: their reads, unref'd while pooled, count again. */
    CHECK_RC(aloop_loop_run(lp, ALOOP_RUN_DEFAULT), 0);
    CHECK_RC(aloop_loop_free(lp), 0);

    stop_upstream(&u);
}

/* ---- requests: answered twice, NULL arguments, methods ---------------------------------- */

struct req_ctx {
    aloop_http_request_t *answered;
    int twice_rc, query_null_rc, header_at_null_rc, version_after_rc;
    const char *path_after;
    int done;
};

static void on_req(aloop_http_request_t *req, void *ud) {
    struct req_ctx *r = ud;
    const char *n, *v;
    CHECK(aloop_http_request_query_param(NULL, "x", NULL, 0) == ALOOP_E_NULL);
    CHECK(aloop_http_request_query_param(req, NULL, NULL, 0) == ALOOP_E_NULL);
    CHECK_RC(aloop_http_request_header_at(NULL, 0, &n, &v), ALOOP_E_NULL);
    CHECK_RC(aloop_http_request_header_at(req, 0, NULL, &v), ALOOP_E_NULL);
    CHECK_RC(aloop_http_request_version(NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_http_respond(NULL, 200, NULL, 0, NULL, 0), ALOOP_E_NULL);
    CHECK_RC(aloop_http_respond(req, 200, NULL, 0, "ok", 2), 0);
    r->twice_rc = aloop_http_respond(req, 200, NULL, 0, "again", 5);
    r->version_after_rc = aloop_http_request_version(req);
    r->path_after = aloop_http_request_path(req);
    r->answered = req;
    r->done = 1;
}

static void client_done(int status, const aloop_http_response_t *resp, void *ud) {
    (void)resp;
    CHECK_RC(status, 0);
    aloop_loop_stop(ud);
}

static void requests_and_methods(void) {
    aloop_loop_t *lp = new_loop();
    aloop_http_server_t *srv;
    struct req_ctx r = {0};
    int dtors = 0;
    CHECK_RC(aloop_http_server_new(lp, NULL, &srv), 0);
    /* Methods are case-sensitive and upper case; "get" would be a route no request reaches. */
    CHECK_RC(aloop_http_server_route(srv, "get", "/x", on_req, &dtors, count_dtor), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_route(srv, "GE T", "/x", on_req, &dtors, count_dtor), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_route(srv, "", "/x", on_req, &dtors, count_dtor), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_route(srv, "GET", "x", on_req, &dtors, count_dtor), ALOOP_E_INVALID);
    CHECK(dtors == 0);
    CHECK_RC(aloop_http_server_route(srv, "GET", "/x", on_req, &r, NULL), 0);
    CHECK_RC(aloop_http_server_route(srv, "M-SEARCH", "/x", on_req, &r, NULL), 0);
    int port = aloop_http_server_listen(srv, "127.0.0.1", 0);
    CHECK(port > 0);
    aloop_http_client_t *client;
    CHECK_RC(aloop_http_client_new(lp, NULL, &client), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", port);
    CHECK_RC(aloop_http_client_request(client, "get", url, NULL, 0, NULL, 0, client_done, lp, NULL, NULL),
             ALOOP_E_INVALID);
    CHECK_RC(aloop_http_client_request(client, "GET", url, NULL, 0, NULL, 0, client_done, lp, NULL, NULL), 0);
    aloop_loop_run(lp, ALOOP_RUN_DEFAULT);
    CHECK(r.done == 1);
    CHECK_RC(r.twice_rc, ALOOP_E_ALREADY);
    CHECK_RC(r.version_after_rc, ALOOP_E_ALREADY);
    CHECK(r.path_after == NULL);
    CHECK_RC(aloop_http_respond(r.answered, 200, NULL, 0, NULL, 0), ALOOP_E_ALREADY);
    CHECK_RC(aloop_http_client_free(client), 0);
    CHECK_RC(aloop_http_server_shutdown(srv, 100, NULL, NULL), 0);
    /* A second shutdown is refused: its callback would never run. */
    CHECK_RC(aloop_http_server_shutdown(srv, 100, (aloop_http_stopped_cb)NULL, NULL), ALOOP_E_ALREADY);
    aloop_loop_run(lp, ALOOP_RUN_DEFAULT);
    CHECK_RC(aloop_http_server_shutdown(srv, 100, NULL, NULL), ALOOP_E_ALREADY);
    CHECK_RC(aloop_http_server_free(srv), 0);
    CHECK_RC(aloop_loop_free(lp), 0);
}

/* ---- PostgreSQL: malformed conninfo; a pool freed with queries in flight --------------- */

static void malformed_conninfo(void) {
    aloop_loop_t *lp = new_loop();
    aloop_pg_pool_options_t po;
    aloop_pg_pool_options_init(&po);
    aloop_pg_pool_t *pool = NULL;
    po.conninfo = "host=127.0.0.1 this_is_not_a_keyword=1";
    CHECK_RC(aloop_pg_pool_new(lp, &po, &pool), ALOOP_E_INVALID);
    CHECK(pool == NULL);
    CHECK(strstr(aloop_last_error_message(), "this_is_not_a_keyword") != NULL);
    po.conninfo = "host=127.0.0.1 port";
    CHECK_RC(aloop_pg_pool_new(lp, &po, &pool), ALOOP_E_INVALID);
    CHECK(strstr(aloop_last_error_message(), "port") != NULL);
    po.conninfo = "postgresql://[broken";
    CHECK_RC(aloop_pg_pool_new(lp, &po, &pool), ALOOP_E_INVALID);
    CHECK(strlen(aloop_last_error_message()) > 0);
    CHECK(pool == NULL);
    CHECK_RC(aloop_loop_free(lp), 0);
}

struct pg_ctx {
    int dtors; /* first: count_dtor counts here */
    int cancelled, other;
    const aloop_pg_result_t *kept;
};

static void on_query_in_freed_pool(int status, const aloop_pg_result_t *r, void *ud) {
    struct pg_ctx *p = ud;
    (void)r;
    if (status == ALOOP_E_CANCELLED)
        p->cancelled++;
    else {
        fprintf(stderr, "query in a freed pool: %s (%s)\n", aloop_err_name(status), aloop_pg_result_error_message(r));
        p->other++;
    }
    p->kept = r;
}

static void on_first_row(int status, const aloop_pg_result_t *r, void *ud) {
    struct pg_ctx *p = ud;
    CHECK_RC(status, 0);
    CHECK(aloop_pg_result_rows(r) == 1);
    p->kept = r;
}

static void pool_freed_with_queries(const char *url) {
    aloop_loop_t *lp = new_loop();
    aloop_pg_pool_options_t po;
    aloop_pg_pool_options_init(&po);
    po.conninfo = url;
    po.size = 2;
    aloop_pg_pool_t *pool;
    struct pg_ctx p = {0};
    CHECK_RC(aloop_pg_pool_new(lp, &po, &pool), 0);
    CHECK_RC(aloop_pg_query(pool, "SELECT 1", 0, NULL, on_first_row, &p, NULL), 0);
    while (p.kept == NULL && aloop_loop_run(lp, ALOOP_RUN_ONCE) >= 0) {
    }
    const aloop_pg_result_t *first = p.kept;
    p.kept = NULL;
    for (int i = 0; i < 20; i++)
        CHECK_RC(aloop_pg_query(pool, "SELECT pg_sleep(0.2)", 0, NULL, on_query_in_freed_pool, &p, count_dtor), 0);
    /* Let some of them reach the server, then free the pool under them. */
    for (int i = 0; i < 3; i++)
        aloop_loop_run(lp, ALOOP_RUN_NOWAIT);
    CHECK_RC(aloop_pg_pool_free(pool), 0);
    CHECK(p.cancelled + p.other == 0); /* never inside the free */
    aloop_loop_run(lp, ALOOP_RUN_DEFAULT);
    CHECK(p.cancelled == 20);
    CHECK(p.other == 0);
    CHECK(p.dtors == 20);
    /* A result handle kept past its callback is stale: no rows, no values, no crash. */
    CHECK(aloop_pg_result_rows(first) == 0);
    CHECK(aloop_pg_result_value(first, 0, 0) == NULL);
    CHECK(aloop_pg_result_is_null(first, 0, 0) == 1);
    CHECK(strcmp(aloop_pg_result_error_message(first), "") == 0);
    CHECK_RC(aloop_loop_free(lp), 0);
}

int main(void) {
    const char *pg = getenv("ALOOP_TEST_PG");
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++) {
        backend = all_backends[i];
        stale_handles();
        wrong_thread();
        loop_free_inside_run();
        http_client_lifecycle();
        requests_and_methods();
        malformed_conninfo();
        if (pg)
            pool_freed_with_queries(pg);
        else
            CHECK(!"ALOOP_TEST_PG is not set (scripts/run-c-tests.sh sets it)");
    }
    return check_summary("test_misuse");
}
