/* A small program built against an installed asyncloop (tests/consumer/CMakeLists.txt, and
 * pkg-config in `make test-install`). It checks that the header and the library agree on the
 * version, serves one HTTP request to itself with the server and the client over loopback,
 * and (unless built fully static, where libpq cannot come along) sees a PostgreSQL pool with
 * no server fail a query with ALOOP_E_PG_UNAVAILABLE. Prints "consumer: OK" and exits 0. */
#include <asyncloop.h>

#include <stdio.h>
#include <string.h>

#if !ALOOP_VERSION_AT_LEAST(0, 1, 0)
#error "asyncloop 0.1.0 or later is needed"
#endif

static int failures;
#define EXPECT(cond)                                                       \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "consumer: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

struct state {
    aloop_loop_t *loop;
    int http_done, pg_done;
};

static void ping(aloop_http_request_t *req, void *user_data) {
    (void)user_data;
    EXPECT(aloop_http_respond(req, 200, NULL, 0, "pong", 4) == 0);
}

static void maybe_stop(struct state *s) {
#ifdef CONSUMER_NO_PG
    s->pg_done = 1;
#endif
    if (s->http_done && s->pg_done)
        aloop_loop_stop(s->loop);
}

static void on_response(int status, const aloop_http_response_t *resp, void *user_data) {
    struct state *s = user_data;
    size_t len = 0;
    EXPECT(status == 0);
    if (status == 0) {
        const void *body = aloop_http_response_body(resp, &len);
        EXPECT(aloop_http_response_status(resp) == 200);
        EXPECT(len == 4 && memcmp(body, "pong", 4) == 0);
    }
    s->http_done = 1;
    maybe_stop(s);
}

#ifndef CONSUMER_NO_PG
static void on_query(int status, const aloop_pg_result_t *r, void *user_data) {
    struct state *s = user_data;
    (void)r;
    EXPECT(status == ALOOP_E_PG_UNAVAILABLE);
    s->pg_done = 1;
    maybe_stop(s);
}
#endif

int main(void) {
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", ALOOP_VERSION_MAJOR, ALOOP_VERSION_MINOR,
             ALOOP_VERSION_PATCH);
    EXPECT(strcmp(aloop_version(), version) == 0);
    EXPECT(ALOOP_VERSION_HEX == ((ALOOP_VERSION_MAJOR << 16) | (ALOOP_VERSION_MINOR << 8) | ALOOP_VERSION_PATCH));

    struct state s = {NULL, 0, 0};
    aloop_http_server_t *server = NULL;
    aloop_http_client_t *client = NULL;
    char url[64];
    EXPECT(aloop_loop_new(NULL, &s.loop) == 0);
    EXPECT(aloop_http_server_new(s.loop, NULL, &server) == 0);
    EXPECT(aloop_http_server_route(server, "GET", "/ping", ping, NULL, NULL) == 0);
    int port = aloop_http_server_listen(server, "127.0.0.1", 0);
    EXPECT(port > 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ping", port);
    EXPECT(aloop_http_client_new(s.loop, NULL, &client) == 0);
    EXPECT(aloop_http_client_request(client, "GET", url, NULL, 0, NULL, 0, on_response, &s, NULL, NULL) == 0);

#ifndef CONSUMER_NO_PG
    aloop_pg_pool_t *pool = NULL;
    aloop_pg_pool_options_t opts;
    aloop_pg_pool_options_init(&opts);
    opts.conninfo = "host=/nonexistent-asyncloop-consumer dbname=none connect_timeout=5";
    opts.size = 1;
    EXPECT(aloop_pg_pool_new(s.loop, &opts, &pool) == 0);
    EXPECT(aloop_pg_query(pool, "SELECT 1", 0, NULL, on_query, &s, NULL) == 0);
#endif

    const char *backend = aloop_backend_name(aloop_loop_backend(s.loop));
    if (failures == 0)
        EXPECT(aloop_loop_run(s.loop, ALOOP_RUN_DEFAULT) >= 0);
    EXPECT(s.http_done && s.pg_done);

#ifndef CONSUMER_NO_PG
    aloop_pg_pool_free(pool);
#endif
    aloop_http_client_free(client);
    EXPECT(aloop_http_server_shutdown(server, 0, NULL, NULL) == 0);
    aloop_loop_run(s.loop, ALOOP_RUN_DEFAULT);
    EXPECT(aloop_http_server_free(server) == 0);
    EXPECT(aloop_loop_free(s.loop) == 0);
    if (failures)
        return 1;
    printf("consumer: OK (asyncloop %s, %s)\n", aloop_version(), backend);
    return 0;
}
