/* TLS through the C API on both backends: configurations from files and from memory, their
 * errors (with aloop_last_error_message), stale and double frees; an HTTPS round trip between
 * the library's own server and client on one loop, with the configurations freed as soon as
 * they were handed over; a client that trusts another CA (ALOOP_E_TLS_UNTRUSTED and its reason
 * inside the callback); the server's configuration replaced while it runs. Certificates are
 * made by the openssl command line in a temporary directory. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char dir[64];

static void path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static int sh(const char *cmd) {
    char full[2048];
    snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    return system(full);
}

static void make_certs(void) {
    strcpy(dir, "/tmp/asyncloop-ctls-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    char cmd[1024];
    for (int i = 0; i < 2; i++) {
        const char *ca = i ? "otherca" : "ca";
        snprintf(cmd, sizeof cmd, "openssl req -x509 %s -keyout %s.key -out %s.pem -subj /CN=%s -days 2", ec, ca, ca, ca);
        CHECK(sh(cmd) == 0);
    }
    CHECK(sh("printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n"
             "subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext") == 0);
    snprintf(cmd, sizeof cmd, "openssl req -new %s -keyout server.key -out server.csr -subj /CN=localhost", ec);
    CHECK(sh(cmd) == 0);
    CHECK(sh("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext "
             "-out server.pem") == 0);
    CHECK(sh("openssl req -new -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.csr -subj /CN=localhost") == 0);
    CHECK(sh("openssl x509 -req -in rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext "
             "-out rsa.pem") == 0);
}

static char *slurp(const char *name, size_t *len) {
    char p[128];
    path(p, sizeof p, name);
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    static char buf[4][8192];
    static int next;
    char *b = buf[next++ % 4];
    *len = fread(b, 1, sizeof buf[0], f);
    fclose(f);
    return b;
}

static aloop_tls_server_config_t *server_config(const char *cert, const char *key) {
    char c[128], k[128];
    path(c, sizeof c, cert);
    path(k, sizeof k, key);
    aloop_tls_server_options_t o;
    CHECK_RC(aloop_tls_server_options_init(&o), 0);
    o.cert_chain_file = c;
    o.key_file = k;
    aloop_tls_server_config_t *cfg = NULL;
    CHECK_RC(aloop_tls_server_config_new(&o, &cfg), 0);
    return cfg;
}

static aloop_tls_client_config_t *client_config(const char *ca) {
    char p[128];
    path(p, sizeof p, ca);
    aloop_tls_client_options_t o;
    CHECK_RC(aloop_tls_client_options_init(&o), 0);
    o.ca_file = p;
    aloop_tls_client_config_t *cfg = NULL;
    CHECK_RC(aloop_tls_client_config_new(&o, &cfg), 0);
    return cfg;
}

static void configurations(void) {
    /* From memory, RSA and ECDSA. */
    aloop_tls_server_options_t o;
    aloop_tls_server_options_init(&o);
    o.cert_chain_pem = slurp("rsa.pem", &o.cert_chain_pem_len);
    o.key_pem = slurp("rsa.key", &o.key_pem_len);
    aloop_tls_server_config_t *cfg = NULL;
    CHECK_RC(aloop_tls_server_config_new(&o, &cfg), 0);
    CHECK(cfg != NULL);
    CHECK_RC(aloop_tls_server_config_free(cfg), 0);
    CHECK_RC(aloop_tls_server_config_free(cfg), ALOOP_E_STALE);
    CHECK_RC(aloop_tls_server_config_free(NULL), 0);

    /* A key that is not the certificate's: refused, with the reason; *out untouched. */
    o.key_pem = slurp("server.key", &o.key_pem_len);
    aloop_tls_server_config_t *untouched = (aloop_tls_server_config_t *)&o;
    CHECK_RC(aloop_tls_server_config_new(&o, &untouched), ALOOP_E_TLS_CONFIG);
    CHECK(untouched == (aloop_tls_server_config_t *)&o);
    CHECK(strstr(aloop_last_error_message(), "key") != NULL);
    /* A file and memory for the same input; no key at all; a missing file. */
    char p[128];
    path(p, sizeof p, "server.key");
    o.key_file = p;
    CHECK_RC(aloop_tls_server_config_new(&o, &cfg), ALOOP_E_INVALID);
    o.key_file = NULL;
    o.key_pem = NULL;
    CHECK_RC(aloop_tls_server_config_new(&o, &cfg), ALOOP_E_NULL);
    o.key_file = "/nonexistent/key.pem";
    CHECK_RC(aloop_tls_server_config_new(&o, &cfg), ALOOP_E_TLS_CONFIG);
    CHECK(strstr(aloop_last_error_message(), "/nonexistent/key.pem") != NULL);
    o.key_file = p;
    o.cert_chain_pem = slurp("server.pem", &o.cert_chain_pem_len);
    o.min_version = 7;
    CHECK_RC(aloop_tls_server_config_new(&o, &cfg), ALOOP_E_INVALID); /* an unknown version */
    o.min_version = ALOOP_TLS_1_3;
    CHECK_RC(aloop_tls_server_config_new(&o, &cfg), 0);
    CHECK_RC(aloop_tls_server_config_free(cfg), 0);
    CHECK_RC(aloop_tls_server_config_new(NULL, &cfg), ALOOP_E_NULL);

    aloop_tls_client_options_t co;
    aloop_tls_client_options_init(&co);
    static const char junk[] = "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n";
    co.ca_pem = junk;
    co.ca_pem_len = sizeof junk - 1;
    aloop_tls_client_config_t *cc = NULL;
    CHECK_RC(aloop_tls_client_config_new(&co, &cc), ALOOP_E_TLS_CONFIG);
    CHECK(cc == NULL);
    co.ca_pem = NULL;
    co.ca_pem_len = 0;
    co.insecure_skip_verify = 1;
    CHECK_RC(aloop_tls_client_config_new(&co, &cc), 0);
    CHECK_RC(aloop_tls_client_config_free(cc), 0);
    CHECK_RC(aloop_tls_client_config_free(cc), ALOOP_E_STALE);
    /* A server configuration is not a client one. */
    aloop_tls_server_config_t *s = server_config("server.pem", "server.key");
    CHECK_RC(aloop_tls_client_config_free((aloop_tls_client_config_t *)s), ALOOP_E_STALE);
    CHECK_RC(aloop_tls_server_config_free(s), 0);
}

static void on_hello(aloop_http_request_t *req, void *ud) {
    (void)ud;
    aloop_http_respond(req, 200, NULL, 0, "hello over tls", 14);
}

struct ctx {
    aloop_loop_t *loop;
    int pending;
    int ok;
    int untrusted;
    int reason_seen;
};

static void done_one(struct ctx *c) {
    if (--c->pending == 0)
        aloop_loop_stop(c->loop);
}

static void on_ok(int status, const aloop_http_response_t *r, void *ud) {
    struct ctx *c = ud;
    CHECK_RC(status, 0);
    if (status == 0) {
        size_t len = 0;
        const char *body = aloop_http_response_body(r, &len);
        CHECK(len == 14 && memcmp(body, "hello over tls", 14) == 0);
        c->ok++;
    } else {
        fprintf(stderr, "  reason: %s\n", aloop_last_error_message());
    }
    done_one(c);
}

static void on_untrusted(int status, const aloop_http_response_t *r, void *ud) {
    struct ctx *c = ud;
    CHECK(r == NULL);
    CHECK_RC(status, ALOOP_E_TLS_UNTRUSTED);
    c->untrusted += status == ALOOP_E_TLS_UNTRUSTED;
    /* The verifier's words, readable inside the callback. */
    c->reason_seen += strstr(aloop_last_error_message(), "UnknownIssuer") != NULL;
    done_one(c);
}

static void on_stopped(aloop_http_server_t *srv, void *ud) {
    (void)srv;
    aloop_loop_stop(ud);
}

static aloop_http_client_t *client_with(aloop_loop_t *loop, const char *ca) {
    aloop_tls_client_config_t *tls = client_config(ca);
    aloop_http_client_options_t co;
    aloop_http_client_options_init(&co);
    co.tls = tls;
    aloop_http_client_t *client = NULL;
    CHECK_RC(aloop_http_client_new(loop, &co, &client), 0);
    CHECK_RC(aloop_tls_client_config_free(tls), 0); /* the client keeps its own reference */
    return client;
}

static void round_trip(int backend) {
    struct ctx c = {0};
    aloop_loop_options_t lo;
    aloop_loop_options_init(&lo);
    lo.backend = backend;
    CHECK_RC(aloop_loop_new(&lo, &c.loop), 0);

    aloop_tls_server_config_t *tls = server_config("server.pem", "server.key");
    aloop_http_server_options_t so;
    aloop_http_server_options_init(&so);
    so.tls = tls;
    aloop_http_server_t *srv = NULL;
    CHECK_RC(aloop_http_server_new(c.loop, &so, &srv), 0);
    CHECK_RC(aloop_tls_server_config_free(tls), 0); /* the server keeps its own reference */
    so.tls = tls;                                   /* now stale */
    aloop_http_server_t *never = NULL;
    CHECK_RC(aloop_http_server_new(c.loop, &so, &never), ALOOP_E_STALE);
    CHECK(never == NULL);
    CHECK_RC(aloop_http_server_route(srv, "GET", "/hello", on_hello, NULL, NULL), 0);
    int port = aloop_http_server_listen(srv, "127.0.0.1", 0);
    CHECK(port > 0);
    char url[96];
    snprintf(url, sizeof url, "https://localhost:%d/hello", port);

    aloop_http_client_t *good = client_with(c.loop, "ca.pem");
    aloop_http_client_t *wrong = client_with(c.loop, "otherca.pem");
    c.pending = 3;
    CHECK_RC(aloop_http_client_request(good, "GET", url, NULL, 0, NULL, 0, on_ok, &c, NULL, NULL), 0);
    CHECK_RC(aloop_http_client_request(good, "GET", url, NULL, 0, NULL, 0, on_ok, &c, NULL, NULL), 0);
    CHECK_RC(aloop_http_client_request(wrong, "GET", url, NULL, 0, NULL, 0, on_untrusted, &c, NULL, NULL), 0);
    aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT);
    CHECK(c.ok == 2);
    CHECK(c.untrusted == 1);
    CHECK(c.reason_seen == 1);

    /* A new certificate for new connections, while the server runs. */
    aloop_tls_server_config_t *rsa = server_config("rsa.pem", "rsa.key");
    CHECK_RC(aloop_http_server_set_tls(srv, rsa), 0);
    CHECK_RC(aloop_http_server_set_tls(srv, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_tls_server_config_free(rsa), 0);
    CHECK_RC(aloop_http_server_set_tls(srv, rsa), ALOOP_E_STALE);
    aloop_http_client_t *fresh = client_with(c.loop, "ca.pem");
    c.pending = 1;
    CHECK_RC(aloop_http_client_request(fresh, "GET", url, NULL, 0, NULL, 0, on_ok, &c, NULL, NULL), 0);
    aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT);
    CHECK(c.ok == 3);

    CHECK_RC(aloop_http_client_free(good), 0);
    CHECK_RC(aloop_http_client_free(wrong), 0);
    CHECK_RC(aloop_http_client_free(fresh), 0);
    CHECK_RC(aloop_http_server_shutdown(srv, 100, on_stopped, c.loop), 0);
    aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT);
    aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT);
    CHECK_RC(aloop_http_server_free(srv), 0);
    CHECK_RC(aloop_loop_free(c.loop), 0);
}

int main(void) {
    make_certs();
    configurations();
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        round_trip(all_backends[i]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary("test_tls");
}
