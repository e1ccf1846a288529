/* The HTTP client through the C API on both backends, against the library's own HTTP server
 * on the same loop: a collected body, a streamed body, request headers, cancel, bad URLs and
 * headers refused without callbacks, and freeing the client with a request pending (its
 * callback runs with ALOOP_E_CANCELLED, then its destructor). */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <string.h>

#include "check.h"

#define BIG (200 * 1024)
static char big[BIG];

static void on_hello(aloop_http_request_t *req, void *ud) {
    (void)ud;
    const char *x = aloop_http_request_header(req, "x-test");
    const aloop_http_header_t h[] = {{"Content-Type", "text/plain"}, {"X-Echo", x ? x : "none"}};
    aloop_http_respond(req, 200, h, 2, "hello", 5);
}

static void on_big(aloop_http_request_t *req, void *ud) {
    (void)ud;
    aloop_http_respond(req, 200, NULL, 0, big, BIG);
}

static aloop_http_request_t *unanswered[4];
static int n_unanswered;
static aloop_http_client_t *the_client;
static uint64_t cancel_id;

/* Not answered until the end. The first time, the client cancels the request; the second
 * time, the client is freed with it in flight. Both from here: the request has arrived. */
static void on_never(aloop_http_request_t *req, void *ud) {
    (void)ud;
    if (n_unanswered < 4)
        unanswered[n_unanswered++] = req;
    if (n_unanswered == 1) {
        CHECK_RC(aloop_http_client_cancel(the_client, cancel_id), 0);
        CHECK_RC(aloop_http_client_cancel(the_client, cancel_id), ALOOP_E_ALREADY);
    } else {
        aloop_http_client_free(the_client);
        the_client = NULL;
    }
}

struct ctx {
    aloop_loop_t *loop;
    int pending;
    size_t streamed;
    int chunks;
    int cancelled;
    int dtors;
};

static void done_one(struct ctx *c) {
    if (--c->pending == 0)
        aloop_loop_stop(c->loop);
}

static void on_hello_response(int status, const aloop_http_response_t *r, void *ud) {
    CHECK_RC(status, 0);
    CHECK(aloop_http_response_status(r) == 200);
    CHECK(strcmp(aloop_http_response_reason(r), "OK") == 0);
    CHECK(strcmp(aloop_http_response_header(r, "x-echo"), "yes") == 0);
    CHECK(aloop_http_response_header(r, "x-absent") == NULL);
    CHECK(aloop_http_response_header_count(r) >= 4);
    size_t len = 0;
    const char *body = aloop_http_response_body(r, &len);
    CHECK(len == 5 && memcmp(body, "hello", 5) == 0);
    done_one(ud);
}

static void on_chunk(const void *data, size_t len, void *ud) {
    struct ctx *c = ud;
    const char *p = data;
    size_t bad = 0;
    for (size_t i = 0; i < len; i++)
        bad += p[i] != 'b';
    CHECK(bad == 0);
    c->streamed += len;
    c->chunks++;
}

static void on_streamed(int status, const aloop_http_response_t *r, void *ud) {
    struct ctx *c = ud;
    CHECK_RC(status, 0);
    size_t len = 99;
    aloop_http_response_body(r, &len);
    CHECK(len == 0);
    CHECK(c->streamed == BIG);
    done_one(ud);
}

static void on_cancelled(int status, const aloop_http_response_t *r, void *ud) {
    struct ctx *c = ud;
    CHECK_RC(status, ALOOP_E_CANCELLED);
    CHECK(r == NULL);
    c->cancelled++;
    done_one(ud);
}

static void count_dtor(void *ud) {
    ((struct ctx *)ud)->dtors++;
}

static void never(int status, const aloop_http_response_t *r, void *ud) {
    (void)status;
    (void)r;
    (void)ud;
    CHECK(!"callback of a refused request");
}

static void on_stopped(aloop_http_server_t *s, void *ud) {
    (void)s;
    aloop_loop_stop(ud);
}

static void run(int backend) {
    struct ctx c = {0};
    aloop_loop_options_t lo;
    aloop_loop_options_init(&lo);
    lo.backend = backend;
    CHECK_RC(aloop_loop_new(&lo, &c.loop), 0);
    aloop_http_server_t *srv;
    CHECK_RC(aloop_http_server_new(c.loop, NULL, &srv), 0);
    CHECK_RC(aloop_http_server_route(srv, "GET", "/hello", on_hello, NULL, NULL), 0);
    CHECK_RC(aloop_http_server_route(srv, "GET", "/big", on_big, NULL, NULL), 0);
    CHECK_RC(aloop_http_server_route(srv, "GET", "/never", on_never, NULL, NULL), 0);
    int port = aloop_http_server_listen(srv, "127.0.0.1", 0);
    CHECK(port > 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    char url[96];

    aloop_http_client_t *client;
    CHECK_RC(aloop_http_client_new(c.loop, NULL, &client), 0);
    the_client = client;
    const aloop_http_header_t hs[] = {{"X-Test", "yes"}};
    snprintf(url, sizeof url, "%s/hello", base);
    CHECK_RC(aloop_http_client_request(client, "GET", url, hs, 1, NULL, 0, on_hello_response, &c, count_dtor, NULL), 0);
    snprintf(url, sizeof url, "%s/big", base);
    CHECK_RC(aloop_http_client_stream(client, "GET", url, NULL, 0, NULL, 0, on_chunk, on_streamed, &c, count_dtor, NULL), 0);
    snprintf(url, sizeof url, "%s/never", base);
    CHECK_RC(aloop_http_client_request(client, "GET", url, NULL, 0, NULL, 0, on_cancelled, &c, count_dtor, &cancel_id), 0);
    c.pending = 3;

    /* Refused calls: an error, no callback, no destructor. */
    CHECK_RC(aloop_http_client_request(client, "GET", "ftp://example.com/", NULL, 0, NULL, 0, never, &c, count_dtor, NULL), ALOOP_E_URL);
    CHECK_RC(aloop_http_client_request(client, "get", url, NULL, 0, NULL, 0, never, &c, count_dtor, NULL), ALOOP_E_INVALID);
    const aloop_http_header_t evil[] = {{"X-Evil", "a\r\nHost: other"}};
    CHECK_RC(aloop_http_client_request(client, "GET", url, evil, 1, NULL, 0, never, &c, count_dtor, NULL), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_client_request(NULL, "GET", url, NULL, 0, NULL, 0, never, &c, count_dtor, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_http_client_stream(client, "GET", url, NULL, 0, NULL, 0, NULL, never, &c, count_dtor, NULL), ALOOP_E_NULL);

    CHECK_RC(aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT), 1);
    CHECK(c.pending == 0);
    CHECK(c.cancelled == 1);
    CHECK(c.chunks >= 1);
    CHECK(c.dtors == 3);

    /* Freeing the client with a request in flight: cancelled, then its destructor. */
    c.pending = 1;
    CHECK_RC(aloop_http_client_request(client, "GET", url, NULL, 0, NULL, 0, on_cancelled, &c, count_dtor, NULL), 0);
    aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT);
    CHECK(the_client == NULL);
    CHECK(c.cancelled == 2);
    CHECK(c.dtors == 4);

    /* The requests whose clients left are still ours to answer: that reports the cancel and
     * frees them; only then can the server be freed. */
    CHECK_RC(aloop_http_server_shutdown(srv, 100, on_stopped, c.loop), 0);
    aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT);
    CHECK_RC(aloop_http_server_free(srv), ALOOP_E_BUSY);
    CHECK(n_unanswered == 2);
    for (int i = 0; i < n_unanswered; i++)
        CHECK_RC(aloop_http_respond(unanswered[i], 200, NULL, 0, "late", 4), ALOOP_E_CANCELLED);
    n_unanswered = 0;
    aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT);
    aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT);
    CHECK_RC(aloop_http_server_free(srv), 0);
    CHECK_RC(aloop_loop_free(c.loop), 0);
}

int main(void) {
    memset(big, 'b', sizeof big);
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i]);
    return check_summary("test_http_client");
}
