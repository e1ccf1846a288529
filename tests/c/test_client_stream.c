/* The HTTP client's streaming mode through the C API, on both backends, against the library's
 * own server on the same loop: the head before any body byte, every byte in order, a pause
 * (resumed by a timer) that stops the data, a cancel from inside a data callback ending the
 * request once, the older aloop_http_client_stream still giving the body before the head,
 * pause/resume refused for a request that does not stream, and each destructor run once. */
#include <asyncloop.h>

#include <stdlib.h>
#include <string.h>

#include "check.h"

#define TOTAL (6u << 20)
#define PIECE 65536u

struct ctx {
    aloop_loop_t *loop;
    aloop_http_server_t *server;
    aloop_http_client_t *client;
    aloop_timer_t *timer;
    char url[128];
    /* the streamed download */
    uint64_t id;
    int head_status, data_before_head, paused, data_while_paused, done_status, dones, dtors;
    size_t bytes, wrong;
    /* the cancelled one */
    uint64_t cancel_id;
    int cancel_done_status, cancel_dones;
    size_t cancel_bytes;
    /* the older form */
    int old_order_ok, old_chunks, old_status;
    int finished;
};

/* ---- server: a paced chunked download ------------------------------------------------------ */

struct producer {
    size_t made;
    unsigned char piece[PIECE];
};

static void produce(aloop_http_request_t *req, void *ud) {
    struct producer *p = ud;
    if (p->made >= TOTAL) {
        aloop_http_chunk_end(req);
        return;
    }
    for (size_t i = 0; i < PIECE; i++)
        p->piece[i] = (unsigned char)((p->made + i) % 251);
    if (aloop_http_chunk(req, p->piece, PIECE) == 0)
        p->made += PIECE;
}

static void on_download(aloop_http_request_t *req, void *ud) {
    (void)ud;
    const aloop_http_header_t h[] = {{"Content-Type", "application/octet-stream"}};
    CHECK_RC(aloop_http_respond_chunked(req, 200, h, 1), 0);
    CHECK_RC(aloop_http_chunk_on_drain(req, produce, calloc(1, sizeof(struct producer)), free), 0);
}

/* ---- client ---------------------------------------------------------------------------------- */

static void maybe_stop(struct ctx *c) {
    if (++c->finished == 4) {
        aloop_http_client_free(c->client);
        c->client = NULL;
        aloop_http_server_shutdown(c->server, 100, NULL, NULL);
        aloop_timer_free(c->timer);
    }
}

static void resume(aloop_timer_t *t, void *ud) {
    (void)t;
    struct ctx *c = ud;
    c->paused = 0;
    CHECK_RC(aloop_http_client_resume(c->client, c->id), 0);
}

static void on_head(uint64_t id, const aloop_http_response_t *resp, void *ud) {
    struct ctx *c = ud;
    CHECK(id == c->id);
    c->head_status = aloop_http_response_status(resp);
    const char *type = aloop_http_response_header(resp, "content-type");
    CHECK(type && strcmp(type, "application/octet-stream") == 0);
    size_t len = 1;
    aloop_http_response_body(resp, &len);
    CHECK(len == 0);
}

static void on_data(uint64_t id, const void *data, size_t len, void *ud) {
    struct ctx *c = ud;
    (void)id;
    if (!c->head_status)
        c->data_before_head = 1;
    if (c->paused)
        c->data_while_paused++;
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        c->wrong += p[i] != (unsigned char)((c->bytes + i) % 251);
    int first = c->bytes == 0;
    c->bytes += len;
    if (first) {
        CHECK_RC(aloop_http_client_pause(c->client, id), 0);
        c->paused = 1;
        CHECK_RC(aloop_timer_start(c->timer, 200, 0, resume, c, NULL), 0);
    }
}

static void on_done(uint64_t id, int status, void *ud) {
    struct ctx *c = ud;
    CHECK(id == c->id);
    c->done_status = status;
    c->dones++;
    CHECK_RC(aloop_http_client_pause(c->client, id), ALOOP_E_ALREADY); /* finished */
    maybe_stop(c);
}

static void count_dtor(void *ud) {
    ((struct ctx *)ud)->dtors++;
}

static void cancel_data(uint64_t id, const void *data, size_t len, void *ud) {
    struct ctx *c = ud;
    (void)data;
    c->cancel_bytes += len;
    CHECK_RC(aloop_http_client_cancel(c->client, id), 0); /* from inside its own callback */
}

static void cancel_head(uint64_t id, const aloop_http_response_t *resp, void *ud) {
    (void)id, (void)resp, (void)ud;
}

static void cancel_done(uint64_t id, int status, void *ud) {
    struct ctx *c = ud;
    (void)id;
    c->cancel_done_status = status;
    c->cancel_dones++;
    maybe_stop(c);
}

static void old_chunk(const void *data, size_t len, void *ud) {
    struct ctx *c = ud;
    (void)data, (void)len;
    c->old_chunks++;
}

static void old_done(int status, const aloop_http_response_t *resp, void *ud) {
    struct ctx *c = ud;
    c->old_status = status == 0 ? aloop_http_response_status(resp) : status;
    c->old_order_ok = c->old_chunks > 0; /* the older form: body pieces first, then the head */
    maybe_stop(c);
}

static void buffered_done(int status, const aloop_http_response_t *resp, void *ud) {
    CHECK(status == 0 && aloop_http_response_status(resp) == 404);
    maybe_stop(ud);
}

static void run(int backend) {
    struct ctx c;
    memset(&c, 0, sizeof c);
    aloop_loop_options_t lo;
    aloop_loop_options_init(&lo);
    lo.backend = backend;
    CHECK_RC(aloop_loop_new(&lo, &c.loop), 0);
    CHECK_RC(aloop_http_server_new(c.loop, NULL, &c.server), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/download", on_download, NULL, NULL), 0);
    int port = aloop_http_server_listen(c.server, "127.0.0.1", 0);
    CHECK(port > 0);
    snprintf(c.url, sizeof c.url, "http://127.0.0.1:%d/download", port);
    aloop_http_client_options_t co;
    aloop_http_client_options_init(&co);
    co.max_body = 1024; /* does not apply to streamed responses */
    CHECK_RC(aloop_http_client_new(c.loop, &co, &c.client), 0);
    CHECK_RC(aloop_timer_new(c.loop, &c.timer), 0);

    CHECK_RC(aloop_http_client_request_stream(c.client, "GET", c.url, NULL, 0, NULL, 0, NULL, on_data, on_done, &c,
                                              NULL, NULL),
             ALOOP_E_NULL);
    CHECK_RC(aloop_http_client_request_stream(c.client, "GET", "ftp://x/", NULL, 0, NULL, 0, on_head, on_data,
                                              on_done, &c, count_dtor, NULL),
             ALOOP_E_URL);
    CHECK_RC(aloop_http_client_request_stream(c.client, "GET", c.url, NULL, 0, NULL, 0, on_head, on_data, on_done, &c,
                                              count_dtor, &c.id),
             0);
    CHECK_RC(aloop_http_client_request_stream(c.client, "GET", c.url, NULL, 0, NULL, 0, cancel_head, cancel_data,
                                              cancel_done, &c, NULL, &c.cancel_id),
             0);
    uint64_t old_id = 0;
    CHECK_RC(aloop_http_client_stream(c.client, "GET", c.url, NULL, 0, NULL, 0, old_chunk, old_done, &c, NULL, &old_id), 0);
    CHECK_RC(aloop_http_client_pause(c.client, 12345), ALOOP_E_ALREADY);
    uint64_t buffered_id = 0;
    snprintf(c.url + strlen(c.url) - strlen("/download"), 16, "/nope");
    CHECK_RC(aloop_http_client_request(c.client, "GET", c.url, NULL, 0, NULL, 0, buffered_done, &c, NULL, &buffered_id), 0);
    CHECK_RC(aloop_http_client_pause(c.client, buffered_id), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_client_resume(c.client, buffered_id), ALOOP_E_INVALID);
    CHECK_RC(aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT), 0);

    CHECK(c.head_status == 200);
    CHECK(c.data_before_head == 0);
    CHECK(c.data_while_paused == 0);
    CHECK(c.done_status == 0 && c.dones == 1);
    CHECK(c.bytes == TOTAL && c.wrong == 0);
    CHECK(c.dtors == 1); /* the refused request's destructor never ran */
    CHECK(c.cancel_dones == 1 && c.cancel_done_status == ALOOP_E_CANCELLED);
    CHECK(c.cancel_bytes > 0 && c.cancel_bytes < TOTAL);
    CHECK(c.old_status == 200 && c.old_order_ok);
    CHECK_RC(aloop_http_server_free(c.server), 0);
    CHECK_RC(aloop_loop_free(c.loop), 0);
}

int main(void) {
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i]);
    return check_summary("test_client_stream");
}
