/* Graceful shutdown of the HTTP server through the C API, on both backends: every response
 * given before or after aloop_http_server_shutdown reaches its client whole, whatever the order
 * of the calls. Answered then shut down in the handler (raw socket and aloop_http_client), shut
 * down then answered, answered from a timer after the shutdown began, answered from a timer
 * that then shuts down, a chunked body in progress, pipelined requests some of which were
 * answered before the call; a keep-alive idle connection is closed at once; when the grace
 * expires what is left is closed (its abort callback runs) and the stopped callback runs once.
 * The raw clients are blocking sockets on another thread that read to EOF and parse every
 * response byte they got. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <ctype.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "check.h"
#include "dial.h"

static const aloop_http_header_t text_plain[] = {{"Content-Type", "text/plain"}};

/* One scenario: a loop, a server on it, what the callbacks saw. */
struct sc {
    aloop_loop_t *loop;
    aloop_http_server_t *server;
    int port;
    uint64_t grace_ms;
    int stopped;  /* stopped callbacks run */
    int aborted;  /* abort callbacks run */
    int abort_rc; /* what answering in the abort callback returned */
    aloop_http_request_t *held;
    int client_done; /* aloop_http_client case: its callback ran */
};

/* ---- server side ------------------------------------------------------------------------ */

static void on_stopped(aloop_http_server_t *s, void *ud) {
    struct sc *sc = ud;
    CHECK(s == sc->server);
    sc->stopped++;
}

static void stop(struct sc *sc) {
    CHECK_RC(aloop_http_server_shutdown(sc->server, sc->grace_ms, on_stopped, sc), 0);
}

/* Answers with the request's own target as the body. */
static void answer(aloop_http_request_t *req) {
    char body[128];
    snprintf(body, sizeof body, "%s", aloop_http_request_target(req));
    CHECK_RC(aloop_http_respond(req, 200, text_plain, 1, body, strlen(body)), 0);
}

struct later {
    struct sc *sc;
    aloop_http_request_t *req;
    int stop_after; /* shut the server down right after answering */
    int step;       /* chunked: chunks written so far */
};

static void later_fired(aloop_timer_t *t, void *ud) {
    struct later *l = ud;
    answer(l->req);
    if (l->stop_after)
        stop(l->sc);
    aloop_timer_free(t);
}

static void answer_in(struct sc *sc, aloop_http_request_t *req, uint64_t ms, int stop_after) {
    struct later *l = calloc(1, sizeof *l);
    l->sc = sc;
    l->req = req;
    l->stop_after = stop_after;
    aloop_timer_t *t;
    CHECK_RC(aloop_timer_new(sc->loop, &t), 0);
    CHECK_RC(aloop_timer_start(t, ms, 0, later_fired, l, free), 0);
}

static void on_now(aloop_http_request_t *req, void *ud) {
    (void)ud;
    answer(req);
}

/* Answers, then shuts down. */
static void on_stop(aloop_http_request_t *req, void *ud) {
    answer(req);
    stop(ud);
}

/* Shuts down, then answers. */
static void on_stop_first(aloop_http_request_t *req, void *ud) {
    stop(ud);
    answer(req);
}

static void on_later(aloop_http_request_t *req, void *ud) {
    answer_in(ud, req, 400, 0);
}

/* Shuts down, answers 100 ms later from a timer. */
static void on_stop_later(aloop_http_request_t *req, void *ud) {
    stop(ud);
    answer_in(ud, req, 100, 0);
}

/* A timer answers 200 ms later, then shuts down. */
static void on_later_stop(aloop_http_request_t *req, void *ud) {
    answer_in(ud, req, 200, 1);
}

static void chunk_step(aloop_timer_t *t, void *ud) {
    struct later *l = ud;
    static const char *const rest[] = {"two ", "three "};
    if (l->step < 2) {
        CHECK_RC(aloop_http_chunk(l->req, rest[l->step], strlen(rest[l->step])), 0);
        l->step++;
    } else {
        CHECK_RC(aloop_http_chunk_end(l->req), 0);
        aloop_timer_free(t);
    }
}

/* A chunked body: one chunk, then the shutdown, then two more chunks and the end from a timer. */
static void on_chunked_stop(aloop_http_request_t *req, void *ud) {
    struct sc *sc = ud;
    CHECK_RC(aloop_http_respond_chunked(req, 200, text_plain, 1), 0);
    CHECK_RC(aloop_http_chunk(req, "one ", 4), 0);
    stop(sc);
    struct later *l = calloc(1, sizeof *l);
    l->sc = sc;
    l->req = req;
    aloop_timer_t *t;
    CHECK_RC(aloop_timer_new(sc->loop, &t), 0);
    CHECK_RC(aloop_timer_start(t, 50, 50, chunk_step, l, free), 0);
}

static void on_held_abort(aloop_http_request_t *req, void *ud) {
    struct sc *sc = ud;
    sc->aborted++;
    sc->abort_rc = aloop_http_respond(req, 200, text_plain, 1, "too late", 8);
    sc->held = NULL;
}

/* Kept unanswered (the client thread may have it answered with answer_held); shuts down. */
static void on_hold(aloop_http_request_t *req, void *ud) {
    struct sc *sc = ud;
    sc->held = req;
    CHECK_RC(aloop_http_request_on_abort(req, on_held_abort, sc, NULL), 0);
    stop(sc);
}

static void answer_held(aloop_loop_t *lp, void *ud) {
    (void)lp;
    struct sc *sc = ud;
    CHECK(sc->held != NULL);
    if (sc->held) {
        answer(sc->held);
        sc->held = NULL;
    }
}

/* ---- client side: blocking sockets ------------------------------------------------------ */

/* A new connection to the scenario's server, `requests` sent on it in one write (so the server
 * reads them together). */
static int open_with(struct sc *sc, const char *requests) {
    int fd = dial(sc->port);
    CHECK(fd >= 0);
    size_t n = strlen(requests);
    CHECK(write(fd, requests, n) == (ssize_t)n);
    return fd;
}

struct resp {
    int status;
    char body[512];
    size_t body_len;
    int close; /* Connection: close */
};

/* The value of header `name` in the head [p, end), or NULL. */
static const char *find_header(const char *p, const char *end, const char *name, size_t *vlen) {
    size_t nl = strlen(name);
    while (p < end) {
        const char *eol = strstr(p, "\r\n");
        if (!eol || eol > end)
            break;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            *vlen = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Parses one complete response at `p` (Content-Length or chunked body); returns the bytes it
 * took, or 0 if what is there is not a complete, well-formed response. */
static size_t parse_response(const char *p, size_t len, struct resp *r) {
    memset(r, 0, sizeof *r);
    const char *end = p + len;
    const char *head_end = strstr(p, "\r\n\r\n");
    if (len < 12 || !head_end || strncmp(p, "HTTP/1.1 ", 9) != 0)
        return 0;
    r->status = atoi(p + 9);
    const char *first = strstr(p, "\r\n") + 2;
    size_t vlen;
    const char *v = find_header(first, head_end + 2, "connection", &vlen);
    r->close = v && vlen == 5 && strncasecmp(v, "close", 5) == 0;
    const char *body = head_end + 4;
    v = find_header(first, head_end + 2, "content-length", &vlen);
    if (v) {
        size_t n = (size_t)strtoul(v, NULL, 10);
        if ((size_t)(end - body) < n || n >= sizeof r->body)
            return 0;
        memcpy(r->body, body, n);
        r->body_len = n;
        return (size_t)(body + n - p);
    }
    v = find_header(first, head_end + 2, "transfer-encoding", &vlen);
    if (!v || vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
        return 0;
    const char *q = body;
    for (;;) {
        const char *eol = strstr(q, "\r\n");
        if (!eol || !isxdigit((unsigned char)*q))
            return 0;
        size_t n = (size_t)strtoul(q, NULL, 16);
        q = eol + 2;
        if ((size_t)(end - q) < n + 2 || r->body_len + n >= sizeof r->body || q[n] != '\r' || q[n + 1] != '\n')
            return 0;
        if (n == 0)
            return (size_t)(q + 2 - p);
        memcpy(r->body + r->body_len, q, n);
        r->body_len += n;
        q += n + 2;
    }
}

struct buf {
    char data[16384];
    size_t len;
    int eof; /* the server closed (read returned 0) rather than a timeout or error */
};

/* Reads until the server closes the connection (or 5 s of silence), or with `one` only until
 * one whole response has arrived. */
static void read_into(int fd, struct buf *b, int one) {
    b->len = 0;
    b->eof = 0;
    struct resp r;
    while (b->len < sizeof b->data - 1) {
        ssize_t n = read(fd, b->data + b->len, sizeof b->data - 1 - b->len);
        if (n == 0)
            b->eof = 1;
        if (n <= 0)
            break;
        b->len += (size_t)n;
        b->data[b->len] = 0;
        if (one && parse_response(b->data, b->len, &r) == b->len)
            break;
    }
    b->data[b->len] = 0;
}

/* Checks that `b` holds exactly `n` complete 200 responses with these bodies, then EOF; the
 * last one says Connection: close if `last_close` is 1 (-1: either). */
static void expect(const struct buf *b, const char *const *bodies, size_t n, int last_close) {
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        struct resp r;
        size_t used = parse_response(b->data + off, b->len - off, &r);
        CHECK(used > 0);
        if (used == 0) {
            fprintf(stderr, "response %zu of %zu missing or cut; got %zu bytes:\n%s\n", i + 1, n, b->len, b->data);
            return;
        }
        CHECK(r.status == 200);
        CHECK(r.body_len == strlen(bodies[i]) && memcmp(r.body, bodies[i], r.body_len) == 0);
        if (i + 1 == n && last_close >= 0)
            CHECK(r.close == last_close);
        off += used;
    }
    CHECK(off == b->len);
    CHECK(b->eof);
}

/* One connection, these requests in one write, these bodies back, then EOF. */
static void exchange(struct sc *sc, const char *requests, const char *const *bodies, size_t n, int last_close) {
    int fd = open_with(sc, requests);
    struct buf *b = malloc(sizeof *b);
    read_into(fd, b, 0);
    expect(b, bodies, n, last_close);
    free(b);
    close(fd);
}

#define GET(target) "GET " target " HTTP/1.1\r\nHost: t\r\n\r\n"

static void *respond_then_shutdown(void *arg) {
    static const char *const want[] = {"/stop"};
    exchange(arg, GET("/stop"), want, 1, -1);
    return NULL;
}

static void *shutdown_then_respond(void *arg) {
    static const char *const want[] = {"/stop-first"};
    exchange(arg, GET("/stop-first"), want, 1, 1);
    return NULL;
}

static void *answered_from_timer_after_shutdown(void *arg) {
    static const char *const want[] = {"/stop-later"};
    exchange(arg, GET("/stop-later"), want, 1, 1);
    return NULL;
}

static void *timer_answers_then_shuts_down(void *arg) {
    static const char *const want[] = {"/later-stop"};
    exchange(arg, GET("/later-stop"), want, 1, -1);
    return NULL;
}

static void *chunked_in_progress(void *arg) {
    static const char *const want[] = {"one two three "};
    exchange(arg, GET("/chunked-stop"), want, 1, -1);
    return NULL;
}

/* /now?1 answered before the shutdown; /stop?3 answered (out of order, held behind /later?2)
 * just before its handler shuts down; /later?2 answered after. */
static void *pipelined_out_of_order(void *arg) {
    static const char *const want[] = {"/now?1", "/later?2", "/stop?3"};
    exchange(arg, GET("/now?1") GET("/later?2") GET("/stop?3"), want, 3, -1);
    return NULL;
}

/* /stop?2 answers and shuts down while /now?3 and /later?4 are still waiting to be handed to
 * their handlers: they are answered after the call, the last with Connection: close. */
static void *pipelined_shutdown_mid_pipeline(void *arg) {
    static const char *const want[] = {"/now?1", "/stop?2", "/now?3", "/later?4"};
    exchange(arg, GET("/now?1") GET("/stop?2") GET("/now?3") GET("/later?4"), want, 4, 1);
    return NULL;
}

/* /later-stop?1 is answered from a timer that then shuts down; /now?2 was answered long
 * before (held behind it), /later?3 is answered after. */
static void *pipelined_timer_shutdown(void *arg) {
    static const char *const want[] = {"/later-stop?1", "/now?2", "/later?3"};
    exchange(arg, GET("/later-stop?1") GET("/now?2") GET("/later?3"), want, 3, 1);
    return NULL;
}

/* A keep-alive connection with nothing pending is closed as soon as the shutdown starts, while
 * another connection's request is still held (it is answered only after that close was seen:
 * with a grace of 10 s, an idle connection closed only when the grace ends fails the read). */
static void *idle_connection_closed_at_once(void *arg) {
    struct sc *sc = arg;
    int idle = open_with(sc, GET("/now?idle"));
    struct buf *b = malloc(sizeof *b);
    read_into(idle, b, 1);
    struct resp r;
    CHECK(b->len > 0 && parse_response(b->data, b->len, &r) == b->len && r.status == 200 && !r.close);
    int busy = open_with(sc, GET("/hold"));
    char c;
    CHECK(read(idle, &c, 1) == 0); /* closed by the shutdown, not by a timeout */
    close(idle);
    CHECK_RC(aloop_loop_post(sc->loop, answer_held, sc, NULL), 0);
    read_into(busy, b, 0);
    static const char *const want[] = {"/hold"};
    expect(b, want, 1, 1);
    free(b);
    close(busy);
    return NULL;
}

/* /hold is never answered: when the grace ends its connection is closed with nothing sent. */
static void *grace_expires(void *arg) {
    struct sc *sc = arg;
    int fd = open_with(sc, GET("/hold"));
    struct buf *b = malloc(sizeof *b);
    read_into(fd, b, 0);
    CHECK(b->len == 0 && b->eof);
    free(b);
    close(fd);
    return NULL;
}

/* ---- client side: aloop_http_client on the server's loop -------------------------------- */

static aloop_http_client_t *loop_client;

static void free_client(aloop_loop_t *lp, void *ud) {
    (void)lp;
    (void)ud;
    aloop_http_client_free(loop_client);
    loop_client = NULL;
}

static void on_client_response(int status, const aloop_http_response_t *r, void *ud) {
    struct sc *sc = ud;
    sc->client_done = 1;
    CHECK_RC(status, 0);
    if (status == 0) {
        size_t len = 0;
        const char *body = aloop_http_response_body(r, &len);
        CHECK(aloop_http_response_status(r) == 200);
        CHECK(len == 5 && memcmp(body, "/stop", 5) == 0);
    }
    CHECK_RC(aloop_loop_post(sc->loop, free_client, NULL, NULL), 0);
}

static void start_loop_client(struct sc *sc) {
    CHECK_RC(aloop_http_client_new(sc->loop, NULL, &loop_client), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/stop", sc->port);
    CHECK_RC(aloop_http_client_request(loop_client, "GET", url, NULL, 0, NULL, 0, on_client_response, sc, NULL, NULL), 0);
}

/* ---- scenarios -------------------------------------------------------------------------- */

struct scenario {
    const char *name;
    uint64_t grace_ms;
    void *(*client)(void *);      /* on a thread, with blocking sockets */
    void (*on_loop)(struct sc *); /* or on the loop, before it runs */
    int aborted;                  /* abort callbacks expected */
};

static const struct scenario scenarios[] = {
    {"respond then shutdown", 2000, respond_then_shutdown, NULL, 0},
    {"respond then shutdown (aloop_http_client)", 2000, NULL, start_loop_client, 0},
    {"shutdown then respond", 2000, shutdown_then_respond, NULL, 0},
    {"answered from a timer after the shutdown", 2000, answered_from_timer_after_shutdown, NULL, 0},
    {"a timer answers, then shuts down", 2000, timer_answers_then_shuts_down, NULL, 0},
    {"chunked body in progress", 2000, chunked_in_progress, NULL, 0},
    {"pipelined, answered out of order", 2000, pipelined_out_of_order, NULL, 0},
    {"pipelined, shutdown mid-pipeline", 2000, pipelined_shutdown_mid_pipeline, NULL, 0},
    {"pipelined, shutdown from a timer", 2000, pipelined_timer_shutdown, NULL, 0},
    {"idle keep-alive connection closed at once", 10000, idle_connection_closed_at_once, NULL, 0},
    {"grace expires", 200, grace_expires, NULL, 1},
};

static void run(int backend, const struct scenario *s) {
    int failed_before = check_failed;
    struct sc sc;
    memset(&sc, 0, sizeof sc);
    sc.grace_ms = s->grace_ms;
    aloop_loop_options_t lo;
    aloop_loop_options_init(&lo);
    lo.backend = backend;
    CHECK_RC(aloop_loop_new(&lo, &sc.loop), 0);
    CHECK_RC(aloop_http_server_new(sc.loop, NULL, &sc.server), 0);
    struct {
        const char *path;
        aloop_http_handler_cb cb;
    } routes[] = {
        {"/now", on_now},
        {"/stop", on_stop},
        {"/stop-first", on_stop_first},
        {"/later", on_later},
        {"/stop-later", on_stop_later},
        {"/later-stop", on_later_stop},
        {"/chunked-stop", on_chunked_stop},
        {"/hold", on_hold},
    };
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        CHECK_RC(aloop_http_server_route(sc.server, "GET", routes[i].path, routes[i].cb, &sc, NULL), 0);
    sc.port = aloop_http_server_listen(sc.server, "127.0.0.1", 0);
    CHECK(sc.port > 0);
    pthread_t th;
    if (s->client)
        pthread_create(&th, NULL, s->client, &sc);
    if (s->on_loop)
        s->on_loop(&sc);
    CHECK(aloop_loop_run(sc.loop, ALOOP_RUN_DEFAULT) >= 0);
    if (s->client)
        pthread_join(th, NULL);
    if (s->on_loop)
        CHECK(sc.client_done == 1);
    CHECK(sc.stopped == 1);
    CHECK(sc.aborted == s->aborted);
    if (s->aborted)
        CHECK_RC(sc.abort_rc, ALOOP_E_CANCELLED);
    CHECK(sc.held == NULL);
    CHECK(aloop_http_server_connections(sc.server) == 0);
    CHECK_RC(aloop_http_server_free(sc.server), 0);
    /* A client freed from a posted job may leave its closing connection for another turn. */
    aloop_loop_run(sc.loop, ALOOP_RUN_DEFAULT);
    CHECK_RC(aloop_loop_free(sc.loop), 0);
    if (check_failed != failed_before)
        fprintf(stderr, "  in scenario \"%s\" on %s\n", s->name, aloop_backend_name(backend));
}

int main(void) {
    for (size_t b = 0; b < sizeof all_backends / sizeof *all_backends; b++)
        for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++)
            run(all_backends[b], &scenarios[i]);
    return check_summary("test_shutdown");
}
