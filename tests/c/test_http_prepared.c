/* Prepared responses (aloop_http_prepared_new, aloop_http_respond_prepared) on both backends:
 * what preparing refuses, the bytes of an answer (the same as aloop_http_respond's with the
 * same status, headers and body, Date aside), HEAD, Connection: close, an answer from another
 * thread, and misuse when answering: NULL, a freed prepared response, a Content-Length the
 * body does not match (the request stays unanswered), answering twice. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "dial.h"

static const aloop_http_header_t text_plain[] = {{"Content-Type", "text/plain"}, {"X-A", "b"}};

struct ctx {
    aloop_loop_t *loop;
    aloop_http_server_t *server;
    aloop_http_prepared_t *text;   /* 200, text_plain */
    aloop_http_prepared_t *closes; /* 201, Connection: close */
    aloop_http_prepared_t *sized;  /* 200, Content-Length: 5 */
    aloop_http_prepared_t *freed;  /* freed before the run */
    int port;
    int misuse_done;
    int stopped;
};

static void on_prepared(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    CHECK_RC(aloop_http_respond_prepared(req, c->text, "Hello", 5), 0);
}

static void on_plain(aloop_http_request_t *req, void *ud) {
    (void)ud;
    CHECK_RC(aloop_http_respond(req, 200, text_plain, 2, "Hello", 5), 0);
}

static void on_sized(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    /* A HEAD answer may give the length a GET would get; a GET's body must match it. */
    CHECK_RC(aloop_http_respond_prepared(req, c->sized, "", 0), 0);
}

static void on_close(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    CHECK_RC(aloop_http_respond_prepared(req, c->closes, "bye", 3), 0);
}

static void on_misuse(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    CHECK_RC(aloop_http_respond_prepared(req, NULL, "x", 1), ALOOP_E_NULL);
    CHECK_RC(aloop_http_respond_prepared(NULL, c->text, "x", 1), ALOOP_E_NULL);
    CHECK_RC(aloop_http_respond_prepared(req, c->text, NULL, 1), ALOOP_E_NULL);
    CHECK_RC(aloop_http_respond_prepared(req, c->freed, "x", 1), ALOOP_E_STALE);
    CHECK_RC(aloop_http_respond_prepared(req, (aloop_http_prepared_t *)req, "x", 1), ALOOP_E_STALE);
    CHECK_RC(aloop_http_respond_prepared(req, c->sized, "four", 4), ALOOP_E_INVALID);
    /* Still unanswered: answer it, then a second time. */
    CHECK(strcmp(aloop_http_request_path(req), "/misuse") == 0);
    CHECK_RC(aloop_http_respond_prepared(req, c->sized, "right", 5), 0);
    CHECK_RC(aloop_http_respond_prepared(req, c->sized, "right", 5), ALOOP_E_ALREADY);
    c->misuse_done = 1;
}

struct from_thread {
    aloop_http_request_t *req;
    aloop_http_prepared_t *p;
};

static void *answer_from_thread(void *arg) {
    struct from_thread *t = arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    /* Checked here as far as it can be without the request: a length that does not match. */
    CHECK_RC(aloop_http_respond_prepared(t->req, t->p, "four", 4), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_respond_prepared(t->req, t->p, "thread", 6), 0);
    free(t);
    return NULL;
}

static void on_thread(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    aloop_http_prepared_t *p;
    const aloop_http_header_t hs[] = {{"Content-Length", "6"}};
    CHECK_RC(aloop_http_prepared_new(200, hs, 1, &p), 0);
    struct from_thread *t = malloc(sizeof *t);
    t->req = req;
    t->p = p;
    pthread_t th;
    pthread_create(&th, NULL, answer_from_thread, t);
    pthread_join(th, NULL);
    /* The queued answer holds its own reference: freeing it now changes nothing. */
    CHECK_RC(aloop_http_prepared_free(p), 0);
    (void)c;
}

/* Reads until the server closes; returns the bytes (NUL-terminated) in buf. */
static size_t read_all(int fd, char *buf, size_t cap) {
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = 0;
    return got;
}

/* Copies `s` (up to `end`, or its end) into `out` without its Date line. */
static void without_date(const char *s, const char *end, char *out) {
    if (!end)
        end = s + strlen(s);
    while (s < end) {
        const char *eol = strstr(s, "\r\n");
        const char *next = eol && eol < end ? eol + 2 : end;
        if (strncmp(s, "Date: ", 6) != 0) {
            memcpy(out, s, (size_t)(next - s));
            out += next - s;
        }
        s = next;
    }
    *out = 0;
}

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
    static char buf[8192], a[2048], b[2048];
    int fd = dial(c->port);
    CHECK(fd >= 0);
    /* The same bytes as aloop_http_respond's, HTTP/1.0 keep-alive and HEAD included. */
    static const char reqs[] = "GET /p HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /r HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                               "GET /r HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                               "HEAD /p HTTP/1.1\r\nHost: t\r\n\r\n"
                               "HEAD /r HTTP/1.1\r\nHost: t\r\n\r\n"
                               "HEAD /sized HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /misuse HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /thread HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /close HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /p HTTP/1.1\r\nHost: t\r\n\r\n"; /* after the close: unanswered */
    CHECK(write(fd, reqs, sizeof reqs - 1) == (ssize_t)sizeof reqs - 1);
    read_all(fd, buf, sizeof buf);
    close(fd);
    const char *r[11] = {buf};
    int n = 1;
    for (const char *p = buf; n < 11 && (p = strstr(p + 1, "HTTP/1.1 ")) != NULL;)
        r[n++] = p;
    CHECK(n == 10); /* the request after the close is not answered */
    for (int i = 0; i < 6 && n == 10; i += 2) {
        without_date(r[i], r[i + 1], a);
        without_date(r[i + 1], r[i + 2], b);
        CHECK(strcmp(a, b) == 0);
        CHECK(strstr(a, "X-A: b\r\n") != NULL);
    }
    if (n == 10) {
        without_date(r[0], r[1], a);
        CHECK(strcmp(a, "HTTP/1.1 200 OK\r\nServer: asyncloop\r\nContent-Type: text/plain\r\nX-A: b\r\n"
                         "Content-Length: 5\r\n\r\nHello") == 0);
        without_date(r[2], r[3], a);
        CHECK(strstr(a, "Connection: keep-alive\r\n\r\nHello") != NULL);
        without_date(r[4], r[5], a);
        CHECK(strstr(a, "Content-Length: 5\r\n\r\n") != NULL && strstr(a, "Hello") == NULL);
        without_date(r[6], r[7], a);
        CHECK(strcmp(a, "HTTP/1.1 200 OK\r\nServer: asyncloop\r\nContent-Length: 5\r\n\r\n") == 0);
        without_date(r[7], r[8], a);
        CHECK(strcmp(a, "HTTP/1.1 200 OK\r\nServer: asyncloop\r\nContent-Length: 5\r\n\r\nright") == 0);
        without_date(r[8], r[9], a);
        CHECK(strcmp(a, "HTTP/1.1 200 OK\r\nServer: asyncloop\r\nContent-Length: 6\r\n\r\nthread") == 0);
        without_date(r[9], NULL, a);
        CHECK(strcmp(a, "HTTP/1.1 201 Created\r\nServer: asyncloop\r\nContent-Length: 3\r\n"
                         "Connection: close\r\n\r\nbye") == 0);
    }
    CHECK_RC(aloop_loop_post(c->loop, shut_down, c, NULL), 0);
    return NULL;
}

static void preparing_refuses(void) {
    aloop_http_prepared_t *p = NULL;
    const aloop_http_header_t crlf[] = {{"X-Evil", "a\r\nSet-Cookie: stolen=1"}};
    const aloop_http_header_t bad_name[] = {{"X Evil", "a"}};
    const aloop_http_header_t upgrade[] = {{"Connection", "upgrade"}};
    const aloop_http_header_t chunked[] = {{"Transfer-Encoding", "chunked"}};
    const aloop_http_header_t bad_length[] = {{"Content-Length", "5x"}};
    const aloop_http_header_t two_lengths[] = {{"Content-Length", "5"}, {"content-length", "6"}};
    const aloop_http_header_t null_value[] = {{"X-A", NULL}};
    CHECK_RC(aloop_http_prepared_new(200, crlf, 1, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(200, bad_name, 1, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(200, upgrade, 1, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(200, chunked, 1, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(200, bad_length, 1, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(200, two_lengths, 2, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(99, NULL, 0, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(101, NULL, 0, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(1000, NULL, 0, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(-200, NULL, 0, &p), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_prepared_new(200, null_value, 1, &p), ALOOP_E_NULL);
    CHECK_RC(aloop_http_prepared_new(200, NULL, 1, &p), ALOOP_E_NULL);
    CHECK_RC(aloop_http_prepared_new(200, NULL, 0, NULL), ALOOP_E_NULL);
    CHECK(p == NULL); /* never written on failure */
    CHECK_RC(aloop_http_prepared_new(200, NULL, 0, &p), 0);
    CHECK(p != NULL);
    CHECK_RC(aloop_http_prepared_free(p), 0);
    CHECK_RC(aloop_http_prepared_free(p), ALOOP_E_STALE);
    CHECK_RC(aloop_http_prepared_free(NULL), 0);
}

static void run(int backend) {
    struct ctx c;
    memset(&c, 0, sizeof c);
    aloop_loop_options_t lo;
    aloop_loop_options_init(&lo);
    lo.backend = backend;
    CHECK_RC(aloop_loop_new(&lo, &c.loop), 0);
    const aloop_http_header_t closes[] = {{"Connection", "close"}};
    const aloop_http_header_t sized[] = {{"Content-Length", "5"}};
    CHECK_RC(aloop_http_prepared_new(200, text_plain, 2, &c.text), 0);
    CHECK_RC(aloop_http_prepared_new(201, closes, 1, &c.closes), 0);
    CHECK_RC(aloop_http_prepared_new(200, sized, 1, &c.sized), 0);
    CHECK_RC(aloop_http_prepared_new(200, NULL, 0, &c.freed), 0);
    CHECK_RC(aloop_http_prepared_free(c.freed), 0);
    aloop_http_server_options_t so;
    aloop_http_server_options_init(&so);
    CHECK_RC(aloop_http_server_new(c.loop, &so, &c.server), 0);
    CHECK_RC(aloop_http_server_route(c.server, NULL, "/p", on_prepared, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, NULL, "/r", on_plain, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, NULL, "/sized", on_sized, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/misuse", on_misuse, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/thread", on_thread, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/close", on_close, &c, NULL), 0);
    c.port = aloop_http_server_listen(c.server, "127.0.0.1", 0);
    CHECK(c.port > 0);
    pthread_t th;
    pthread_create(&th, NULL, client, &c);
    CHECK_RC(aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    CHECK(c.stopped == 1);
    CHECK(c.misuse_done == 1);
    CHECK_RC(aloop_http_server_free(c.server), 0);
    CHECK_RC(aloop_loop_free(c.loop), 0);
    CHECK_RC(aloop_http_prepared_free(c.text), 0);
    CHECK_RC(aloop_http_prepared_free(c.closes), 0);
    CHECK_RC(aloop_http_prepared_free(c.sized), 0);
}

int main(void) {
    preparing_refuses();
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i]);
    return check_summary("test_http_prepared");
}
