/* WebSocket through the C API on both backends, the library's server and client on one loop:
 * accept (from the handler, and later from a timer), echo of text and binary messages, ping
 * and pong, the closing handshake from the client and from the server, the close callback's
 * status, code and reason, user-data destructors run once, the handle stale after its close
 * callback, and misuse: bad options (the request stays answerable), bad sends and closes, a
 * refused handshake, an accept of an answered request, a wrong URL. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <string.h>

#include "check.h"

struct conn {
    const char *who;
    int opened, messages, pongs, closes;
    int close_status, close_code;
    char close_reason[64];
    char last[256];
    size_t last_len;
    int last_type;
    aloop_ws_t *ws;
};

static aloop_loop_t *loop;
static int dtors;
static struct conn server_side[2], client_side[2];
static int accepted;
static aloop_http_request_t *held;

static void on_open(aloop_ws_t *ws, void *ud) {
    struct conn *c = ud;
    c->opened++;
    CHECK(c->ws == ws);
    const char *p = aloop_ws_subprotocol(ws);
    CHECK(p != NULL && strcmp(p, "v2") == 0);
}

static void on_message(aloop_ws_t *ws, int type, const void *data, size_t len, void *ud) {
    struct conn *c = ud;
    c->messages++;
    c->last_type = type;
    c->last_len = len;
    if (len)
        memcpy(c->last, data, len < sizeof c->last ? len : sizeof c->last);
    if (strcmp(c->who, "server") == 0) {
        /* Echo, then close from this side after the message "bye". */
        CHECK_RC(aloop_ws_send(ws, type, data, len), 0);
        if (len == 3 && memcmp(data, "bye", 3) == 0)
            CHECK_RC(aloop_ws_close(ws, 4000, "server says bye"), 0);
    }
}

static void on_pong(aloop_ws_t *ws, const void *data, size_t len, void *ud) {
    (void)ws;
    struct conn *c = ud;
    c->pongs++;
    CHECK(len == 4 && memcmp(data, "ping", 4) == 0);
}

static int closed_total;

static void on_close(aloop_ws_t *ws, int status, int code, const char *reason, size_t len, void *ud) {
    struct conn *c = ud;
    c->closes++;
    c->close_status = status;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%.*s", (int)len, reason);
    CHECK(reason[len] == '\0');
    /* Still valid inside its close callback. */
    CHECK(aloop_ws_loop(ws) == loop);
    CHECK_RC(aloop_ws_send(ws, ALOOP_WS_TEXT, "x", 1), ALOOP_E_CLOSED);
    closed_total++;
}

static void count_dtor(void *ud) {
    (void)ud;
    dtors++;
}

static const aloop_ws_callbacks_t cbs = {on_open, on_message, on_pong, NULL, on_close};

static void accept_req(aloop_http_request_t *req) {
    struct conn *c = &server_side[accepted];
    c->who = "server";
    aloop_ws_options_t o;
    aloop_ws_options_init(&o);
    o.subprotocols = "v2, v1";
    aloop_ws_t *ws = NULL;
    CHECK_RC(aloop_ws_accept(req, &o, &cbs, c, count_dtor, &ws), 0);
    CHECK(ws != NULL);
    c->ws = ws;
    accepted++;
    /* Queued until the switch is out. */
    CHECK_RC(aloop_ws_send(ws, ALOOP_WS_TEXT, "welcome", 7), 0);
    /* Consumed: the request handle is gone. */
    CHECK(aloop_http_request_method(req) == NULL);
}

static void later(aloop_timer_t *t, void *ud) {
    (void)ud;
    accept_req(held);
    held = NULL;
    aloop_timer_free(t);
}

static void on_ws_route(aloop_http_request_t *req, void *ud) {
    (void)ud;
    /* Misuse first: bad options leave the request unanswered. */
    aloop_ws_options_t o;
    aloop_ws_options_init(&o);
    o.subprotocols = "not a token!";
    aloop_ws_t *ws = (aloop_ws_t *)0x1;
    CHECK_RC(aloop_ws_accept(req, &o, &cbs, NULL, count_dtor, &ws), ALOOP_E_INVALID);
    CHECK(ws == (aloop_ws_t *)0x1);
    CHECK_RC(aloop_ws_accept(req, NULL, NULL, NULL, NULL, &ws), ALOOP_E_NULL);
    if (accepted == 0 && held == NULL) {
        accept_req(req); /* the first from the handler */
    } else {
        /* The second later, from a timer: the request waits meanwhile. */
        held = req;
        aloop_timer_t *t;
        CHECK_RC(aloop_timer_new(loop, &t), 0);
        CHECK_RC(aloop_timer_start(t, 20, 0, later, NULL, NULL), 0);
    }
}

/* A handshake with another version: the accept answers 426 itself and consumes the request. */
static void on_refuse_route(aloop_http_request_t *req, void *ud) {
    (void)ud;
    aloop_ws_t *ws = NULL;
    CHECK_RC(aloop_ws_accept(req, NULL, &cbs, NULL, count_dtor, &ws), ALOOP_E_WS_HANDSHAKE);
    CHECK(ws == NULL);
    CHECK(aloop_http_request_method(req) == NULL);
    CHECK_RC(aloop_ws_accept(req, NULL, &cbs, NULL, count_dtor, &ws), ALOOP_E_ALREADY);
}

static int refused_status;

static void on_refused(int status, const aloop_http_response_t *resp, void *ud) {
    (void)ud;
    CHECK(status == 0);
    if (resp) {
        refused_status = aloop_http_response_status(resp);
        const char *v = aloop_http_response_header(resp, "sec-websocket-version");
        CHECK(v != NULL && strcmp(v, "13") == 0);
    }
}

static void run(int backend) {
    memset(server_side, 0, sizeof server_side);
    memset(client_side, 0, sizeof client_side);
    accepted = 0;
    closed_total = 0;
    dtors = 0;
    refused_status = 0;
    aloop_loop_options_t lo;
    aloop_loop_options_init(&lo);
    lo.backend = backend;
    CHECK_RC(aloop_loop_new(&lo, &loop), 0);
    aloop_http_server_t *srv;
    CHECK_RC(aloop_http_server_new(loop, NULL, &srv), 0);
    CHECK_RC(aloop_http_server_route(srv, "GET", "/ws", on_ws_route, NULL, NULL), 0);
    CHECK_RC(aloop_http_server_route(srv, "GET", "/refuse", on_refuse_route, NULL, NULL), 0);
    int port = aloop_http_server_listen(srv, "127.0.0.1", 0);
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws", port);

    /* A wrong URL and bad options: refused, nothing runs. */
    aloop_ws_t *ws = NULL;
    CHECK_RC(aloop_ws_connect(loop, "http://127.0.0.1/", NULL, &cbs, NULL, count_dtor, &ws), ALOOP_E_URL);
    aloop_ws_options_t o;
    aloop_ws_options_init(&o);
    o.close_timeout_ms = 0;
    CHECK_RC(aloop_ws_connect(loop, url, &o, &cbs, NULL, count_dtor, &ws), ALOOP_E_INVALID);
    CHECK(ws == NULL);

    /* Two clients: one closes, the server closes the other. */
    aloop_ws_options_init(&o);
    o.subprotocols = "v1,v2";
    const aloop_http_header_t origin = {"Origin", "http://test"};
    o.headers = &origin;
    o.nheaders = 1;
    for (int i = 0; i < 2; i++) {
        client_side[i].who = "client";
        CHECK_RC(aloop_ws_connect(loop, url, &o, &cbs, &client_side[i], count_dtor, &client_side[i].ws), 0);
        CHECK(aloop_ws_subprotocol(client_side[i].ws) == NULL); /* not open yet */
    }
    aloop_ws_t *a = client_side[0].ws, *b = client_side[1].ws;
    CHECK_RC(aloop_ws_send(a, ALOOP_WS_TEXT, "hello", 5), 0);
    CHECK_RC(aloop_ws_send(a, ALOOP_WS_TEXT, "\xc3\x28", 2), ALOOP_E_INVALID);
    CHECK_RC(aloop_ws_send(a, 7, "x", 1), ALOOP_E_INVALID);
    CHECK_RC(aloop_ws_send(a, ALOOP_WS_BINARY, NULL, 0), 0);
    CHECK_RC(aloop_ws_send(a, ALOOP_WS_BINARY, NULL, 1), ALOOP_E_NULL);
    char ping126[126] = {0};
    CHECK_RC(aloop_ws_ping(a, ping126, sizeof ping126), ALOOP_E_INVALID);
    CHECK_RC(aloop_ws_ping(a, "ping", 4), 0);
    CHECK_RC(aloop_ws_close(a, 1005, NULL), ALOOP_E_INVALID);
    CHECK_RC(aloop_ws_close(a, 1000, "\xff"), ALOOP_E_INVALID);
    CHECK_RC(aloop_ws_send(b, ALOOP_WS_TEXT, "bye", 3), 0);

    /* A plain GET with a wrong version is refused (426) and never reaches a WebSocket. */
    aloop_http_client_t *http;
    CHECK_RC(aloop_http_client_new(loop, NULL, &http), 0);
    const aloop_http_header_t h[] = {{"Upgrade", "websocket"}, {"Connection", "Upgrade"},
                                     {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                     {"Sec-WebSocket-Version", "7"}};
    char refused_url[64];
    snprintf(refused_url, sizeof refused_url, "http://127.0.0.1:%d/refuse", port);
    uint64_t id;
    CHECK_RC(aloop_http_client_request(http, "GET", refused_url, h, 4, NULL, 0, on_refused, NULL, NULL, &id), 0);

    /* Client a closes after its echoes arrive: from the loop, once they have. */
    for (int turns = 0; turns < 20000 && closed_total < 4; turns++) {
        aloop_loop_run(loop, ALOOP_RUN_ONCE);
        if (client_side[0].messages == 3 && client_side[0].pongs == 1 && client_side[0].closes == 0 &&
            aloop_ws_close(a, ALOOP_WS_CLOSE_NORMAL, "done") == 0) {
            CHECK_RC(aloop_ws_close(a, ALOOP_WS_CLOSE_NORMAL, "again"), ALOOP_E_ALREADY);
        }
    }
    CHECK(closed_total == 4);
    CHECK(refused_status == 426);
    CHECK(accepted == 2);
    /* Client a: welcome, hello, the empty binary; its close answered. */
    CHECK(client_side[0].opened == 1);
    CHECK(client_side[0].messages == 3 && client_side[0].last_type == ALOOP_WS_BINARY && client_side[0].last_len == 0);
    CHECK(client_side[0].close_status == 0 && client_side[0].close_code == 1000);
    /* Client b: welcome, bye; then the server's close with its reason. */
    CHECK(client_side[1].messages == 2 && memcmp(client_side[1].last, "bye", 3) == 0);
    CHECK(client_side[1].close_status == 0 && client_side[1].close_code == 4000);
    CHECK(strcmp(client_side[1].close_reason, "server says bye") == 0);
    /* The server sides saw the same ends. */
    int normal = 0, bye = 0;
    for (int i = 0; i < 2; i++) {
        CHECK(server_side[i].opened == 1 && server_side[i].closes == 1 && server_side[i].close_status == 0);
        normal += server_side[i].close_code == 1000 && strcmp(server_side[i].close_reason, "done") == 0;
        bye += server_side[i].close_code == 4000;
    }
    CHECK(normal == 1 && bye == 1);
    CHECK(dtors == 4);
    /* Freed after their close callbacks: stale now. */
    CHECK_RC(aloop_ws_send(a, ALOOP_WS_TEXT, "x", 1), ALOOP_E_STALE);
    CHECK_RC(aloop_ws_close(b, 1000, NULL), ALOOP_E_STALE);
    CHECK(aloop_ws_buffered_amount(a) == 0 && aloop_ws_subprotocol(a) == NULL && aloop_ws_loop(a) == NULL);

    aloop_http_client_free(http);
    CHECK_RC(aloop_http_server_shutdown(srv, 1000, NULL, NULL), 0);
    for (int turns = 0; turns < 2000 && aloop_http_server_connections(srv) > 0; turns++)
        aloop_loop_run(loop, ALOOP_RUN_ONCE);
    aloop_loop_run(loop, ALOOP_RUN_DEFAULT);
    CHECK_RC(aloop_http_server_free(srv), 0);
    CHECK_RC(aloop_loop_free(loop), 0);
}

int main(void) {
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i]);
    return check_summary("test_ws");
}
