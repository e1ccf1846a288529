/* The HTTP server through the C API on both backends, with a blocking client on another
 * thread: deferred answers (timer), an answer from another thread, answering twice, header
 * injection refused, clients that vanish while their answers are pending (reset: cancelled at
 * once; half-closed: kept until the shutdown closes it, then the abort callback runs),
 * chunked responses, query parameters, graceful shutdown; a connection handed over as a
 * descriptor (one end of a socketpair) with aloop_http_server_serve_fd, and what it refuses. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "dial.h"

static const aloop_http_header_t text_plain[] = {{"Content-Type", "text/plain"}};

struct ctx {
    aloop_loop_t *loop;
    aloop_http_server_t *server;
    int port;
    int aborted;          /* abort callbacks run */
    int cancelled;        /* answers that returned ALOOP_E_CANCELLED */
    int second_answer_rc; /* result of answering twice */
    int inject_rc;        /* result of a header with CR LF */
    int stopped;
    aloop_http_request_t *abandoned;
    int handed_over; /* the client's end of a socketpair the server serves */
};

/* ---- handlers -------------------------------------------------------------------------- */

static void answer_later(aloop_timer_t *t, void *ud) {
    aloop_http_request_t *req = ud;
    CHECK_RC(aloop_http_respond(req, 200, text_plain, 1, "later", 5), 0);
    aloop_timer_free(t);
}

static void on_deferred(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    aloop_timer_t *t;
    CHECK_RC(aloop_timer_new(c->loop, &t), 0);
    CHECK_RC(aloop_timer_start(t, 30, 0, answer_later, req, NULL), 0);
}

static void *answer_from_thread(void *arg) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    aloop_http_request_t *req = arg;
    /* Thread-safe: copied and handed to the request's loop. */
    CHECK_RC(aloop_http_respond(req, 201, text_plain, 1, "from a thread", 13), 0);
    return NULL;
}

static void on_thread(aloop_http_request_t *req, void *ud) {
    (void)ud;
    pthread_t th;
    pthread_create(&th, NULL, answer_from_thread, req);
    pthread_detach(th);
}

static void on_twice(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    const aloop_http_header_t bad[] = {{"X-Evil", "a\r\nSet-Cookie: stolen=1"}};
    c->inject_rc = aloop_http_respond(req, 200, bad, 1, "x", 1);
    const aloop_http_header_t bad_name[] = {{"X Evil", "a"}};
    CHECK_RC(aloop_http_respond(req, 200, bad_name, 1, "x", 1), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_respond(req, 99, text_plain, 1, "x", 1), ALOOP_E_INVALID);
    /* The request is still unanswered: answer it properly, then a second time. */
    char q[32];
    CHECK(aloop_http_request_query_param(req, "name", q, sizeof q) == 5);
    CHECK(strcmp(q, "a b&c") == 0);
    CHECK(aloop_http_request_query_param(req, "name", q, 3) == 5 && strcmp(q, "a ") == 0);
    CHECK(aloop_http_request_query_param(req, "missing", q, sizeof q) == ALOOP_E_NOT_FOUND);
    CHECK(strcmp(aloop_http_request_path(req), "/twice") == 0);
    CHECK(strcmp(aloop_http_request_query(req), "name=a+b%26c") == 0);
    CHECK(strcmp(aloop_http_request_header(req, "x-test"), "yes") == 0);
    CHECK(aloop_http_request_header(req, "x-absent") == NULL);
    CHECK_RC(aloop_http_respond(req, 200, text_plain, 1, q, 2), 0);
    c->second_answer_rc = aloop_http_respond(req, 200, text_plain, 1, "again", 5);
    /* Accessors on an answered request are refused too. */
    CHECK(aloop_http_request_method(req) == NULL);
}

static void on_abort(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    c->aborted++;
    /* Still valid: answering reports the client has gone, and frees it. */
    int rc = aloop_http_respond(req, 200, text_plain, 1, "too late", 8);
    if (rc == ALOOP_E_CANCELLED)
        c->cancelled++;
    CHECK_RC(rc, ALOOP_E_CANCELLED);
}

static void on_hang(aloop_http_request_t *req, void *ud) {
    CHECK_RC(aloop_http_request_on_abort(req, on_abort, ud, NULL), 0);
}

static void answer_abandoned(aloop_timer_t *t, void *ud) {
    struct ctx *c = ud;
    int rc = aloop_http_respond(c->abandoned, 200, text_plain, 1, "late", 4);
    if (rc == ALOOP_E_CANCELLED)
        c->cancelled++;
    CHECK_RC(rc, ALOOP_E_CANCELLED);
    aloop_timer_free(t);
}

static void on_slow(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    c->abandoned = req; /* answered 300 ms later, after the client has gone */
    aloop_timer_t *t;
    CHECK_RC(aloop_timer_new(c->loop, &t), 0);
    CHECK_RC(aloop_timer_start(t, 300, 0, answer_abandoned, c, NULL), 0);
}

static void on_chunked(aloop_http_request_t *req, void *ud) {
    (void)ud;
    CHECK_RC(aloop_http_respond_chunked(req, 200, text_plain, 1), 0);
    CHECK_RC(aloop_http_chunk(req, "hello ", 6), 0);
    CHECK_RC(aloop_http_chunk(req, "", 0), 0);
    CHECK_RC(aloop_http_chunk(req, "world", 5), 0);
    CHECK_RC(aloop_http_chunk_end(req), 0);
    CHECK_RC(aloop_http_chunk(req, "x", 1), ALOOP_E_ALREADY);
}

/* ---- client thread ----------------------------------------------------------------------- */

static void on_stopped(aloop_http_server_t *s, void *ud) {
    (void)s;
    ((struct ctx *)ud)->stopped = 1;
}

static void shut_down(aloop_loop_t *loop, void *ud) {
    (void)loop;
    struct ctx *c = ud;
    CHECK_RC(aloop_http_server_shutdown(c->server, 1000, on_stopped, c), 0);
}

static void *client(void *arg) {
    struct ctx *c = arg;
    /* The connection handed over with serve_fd is served like an accepted one. */
    CHECK(roundtrip(c->handed_over, "GET /deferred HTTP/1.1\r\nHost: t\r\n\r\n", "\r\n\r\nlater"));
    CHECK(roundtrip(c->handed_over, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", "404 Not Found"));
    close(c->handed_over);
    int fd = dial(c->port);
    CHECK(fd >= 0);
    /* Pipelined: the deferred answer must still come first. */
    CHECK(roundtrip(fd,
                    "GET /deferred HTTP/1.1\r\nHost: t\r\n\r\nGET /chunked HTTP/1.1\r\nHost: t\r\n\r\n",
                    "5\r\nworld\r\n0\r\n\r\n"));
    CHECK(roundtrip(fd, "GET /thread HTTP/1.1\r\nHost: t\r\n\r\n", "from a thread"));
    CHECK(roundtrip(fd, "GET /twice?name=a+b%26c HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\n\r\n", "\r\n\r\na "));
    CHECK(roundtrip(fd, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", "404 Not Found"));
    close(fd);
    /* Clients that vanish while their answers are pending. */
    static const char hang[] = "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char slow[] = "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n";
    int h = dial(c->port);
    CHECK(write(h, hang, sizeof hang - 1) == (ssize_t)sizeof hang - 1);
    int s = dial(c->port);
    CHECK(write(s, slow, sizeof slow - 1) == (ssize_t)sizeof slow - 1);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    /* /hang's client half-closes (FIN): it still counts as there (HTTP half-close) until the
     * shutdown below closes it. /slow's client resets (RST): its request is aborted at once. */
    close(h);
    struct linger reset = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close(s);
    ts.tv_nsec = 400 * 1000 * 1000;
    nanosleep(&ts, NULL);
    CHECK_RC(aloop_loop_post(c->loop, shut_down, c, NULL), 0);
    return NULL;
}

static void run(int backend) {
    struct ctx c;
    memset(&c, 0, sizeof c);
    aloop_loop_options_t lo;
    aloop_loop_options_init(&lo);
    lo.backend = backend;
    CHECK_RC(aloop_loop_new(&lo, &c.loop), 0);
    aloop_http_server_options_t so;
    aloop_http_server_options_init(&so);
    CHECK_RC(aloop_http_server_new(c.loop, &so, &c.server), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/deferred", on_deferred, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/thread", on_thread, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/twice", on_twice, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/hang", on_hang, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/slow", on_slow, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, NULL, "/chunked", on_chunked, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "no-slash", on_chunked, &c, NULL), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_listen(c.server, "not an ip", 0), ALOOP_E_ADDRESS);
    c.port = aloop_http_server_listen(c.server, "127.0.0.1", 0);
    CHECK(c.port > 0);
    /* serve_fd: a connected stream socket is taken; anything else is refused and stays ours. */
    int pair[2], pipe_fds[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    CHECK(pipe(pipe_fds) == 0);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(listen(listener, 1) == 0);
    CHECK_RC(aloop_http_server_serve_fd(c.server, -1), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_serve_fd(c.server, pipe_fds[0]), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_serve_fd(c.server, listener), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_serve_fd(NULL, pair[1]), ALOOP_E_NULL);
    CHECK(close(pipe_fds[0]) == 0 && close(pipe_fds[1]) == 0 && close(listener) == 0); /* still ours */
    CHECK_RC(aloop_http_server_serve_fd(c.server, pair[1]), 0);
    c.handed_over = pair[0];
    pthread_t th;
    pthread_create(&th, NULL, client, &c);
    CHECK_RC(aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    CHECK(c.stopped == 1);
    CHECK(c.aborted == 1);
    CHECK(c.cancelled == 2);
    CHECK_RC(c.second_answer_rc, ALOOP_E_ALREADY);
    CHECK_RC(c.inject_rc, ALOOP_E_INVALID);
    CHECK(aloop_http_server_connections(c.server) == 0);
    CHECK_RC(aloop_http_server_free(c.server), 0);
    CHECK_RC(aloop_loop_free(c.loop), 0);
}

int main(void) {
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i]);
    return check_summary("test_http");
}
