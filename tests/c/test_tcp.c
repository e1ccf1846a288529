/* TCP and Unix stream sockets through the C API on both backends: an echo round trip between a
 * listener and a client on one loop (over TCP and over a Unix socket), close callbacks, and the
 * error codes of bad arguments, bad addresses, ports in use, refused connections and calls on
 * closing handles; Unix socket files: a live one refused, a stale one replaced, a regular file
 * left alone, a path too long, the file removed at close, and reuse_port sharing one socket. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"

#define PAYLOAD_SIZE (256 * 1024)

struct echo_test {
    aloop_loop_t *loop;
    const char *path; /* a Unix socket path, or NULL for TCP on loopback */
    aloop_tcp_listener_t *listener;
    aloop_tcp_t *client;
    char *payload;
    char *received;
    size_t got;
    int connected, written, closes, server_eof, accept_dtor;
};

static void on_server_closed(aloop_tcp_t *tcp, void *ud) {
    (void)tcp;
    ((struct echo_test *)ud)->closes++;
}

static void on_server_read(aloop_tcp_t *tcp, ptrdiff_t nread, const char *data, void *ud) {
    struct echo_test *t = ud;
    if (nread > 0) {
        CHECK_RC(aloop_tcp_write(tcp, data, (size_t)nread, NULL, NULL), 0);
        return;
    }
    CHECK(nread == ALOOP_E_EOF);
    t->server_eof++;
    CHECK_RC(aloop_tcp_close(tcp, on_server_closed, t), 0);
    CHECK_RC(aloop_tcp_close(tcp, on_server_closed, t), ALOOP_E_ALREADY);
}

static void on_accept(aloop_tcp_listener_t *l, int status, aloop_tcp_t *conn, void *ud) {
    struct echo_test *t = ud;
    CHECK(l == t->listener);
    CHECK_RC(status, 0);
    if (status != 0)
        return;
    char ip[256];
    uint16_t port = 0;
    if (t->path) {
        /* The server's end is the path; the connecting end is unnamed. */
        CHECK_RC(aloop_tcp_local_address(conn, ip, sizeof ip, &port), 0);
        CHECK(strstr(ip, t->path) != NULL && port == 0);
    } else {
        CHECK_RC(aloop_tcp_peer_address(conn, ip, sizeof ip, &port), 0);
        CHECK(strcmp(ip, "127.0.0.1") == 0 && port != 0);
        CHECK_RC(aloop_tcp_peer_address(conn, ip, 3, NULL), -ENOSPC);
    }
    CHECK(aloop_tcp_loop(conn) == t->loop);
    CHECK_RC(aloop_tcp_read_start(conn, on_server_read, t, NULL), 0);
    CHECK_RC(aloop_tcp_read_start(conn, on_server_read, t, NULL), ALOOP_E_ALREADY);
}

static void on_listener_closed(aloop_tcp_listener_t *l, void *ud) {
    (void)l;
    ((struct echo_test *)ud)->closes++;
}

static void on_client_closed(aloop_tcp_t *tcp, void *ud) {
    (void)tcp;
    struct echo_test *t = ud;
    t->closes++;
    CHECK_RC(aloop_tcp_listener_close(t->listener, on_listener_closed, t), 0);
}

static void on_client_read(aloop_tcp_t *tcp, ptrdiff_t nread, const char *data, void *ud) {
    struct echo_test *t = ud;
    if (nread < 0) {
        CHECK(nread == ALOOP_E_EOF);
        CHECK_RC(aloop_tcp_close(tcp, on_client_closed, t), 0);
        return;
    }
    CHECK(t->got + (size_t)nread <= PAYLOAD_SIZE);
    if (t->got + (size_t)nread > PAYLOAD_SIZE)
        return;
    memcpy(t->received + t->got, data, (size_t)nread);
    t->got += (size_t)nread;
    if (t->got == PAYLOAD_SIZE)
        CHECK_RC(aloop_tcp_shutdown(tcp, NULL, NULL), 0); /* server sees EOF, closes, we see EOF */
}

static void on_written(aloop_tcp_t *tcp, int status, void *ud) {
    (void)tcp;
    CHECK_RC(status, 0);
    ((struct echo_test *)ud)->written++;
}

static void on_connect(aloop_tcp_t *tcp, int status, void *ud) {
    struct echo_test *t = ud;
    CHECK(tcp == t->client);
    CHECK_RC(status, 0);
    t->connected++;
    /* Two writes; the data is copied, so the buffer could be reused at once. */
    CHECK_RC(aloop_tcp_write(tcp, t->payload, PAYLOAD_SIZE / 2, on_written, t), 0);
    CHECK_RC(aloop_tcp_write(tcp, t->payload + PAYLOAD_SIZE / 2, PAYLOAD_SIZE / 2, on_written, t), 0);
    CHECK_RC(aloop_tcp_read_start(tcp, on_client_read, t, NULL), 0);
}

static void count_accept_dtor(void *ud) {
    ((struct echo_test *)ud)->accept_dtor++;
}

static void test_echo(aloop_loop_t *loop, const char *path) {
    struct echo_test t;
    memset(&t, 0, sizeof t);
    t.loop = loop;
    t.path = path;
    t.payload = malloc(PAYLOAD_SIZE);
    t.received = malloc(PAYLOAD_SIZE);
    for (size_t i = 0; i < PAYLOAD_SIZE; i++)
        t.payload[i] = (char)(i * 7 + 3);
    if (path) {
        CHECK_RC(aloop_unix_listen(loop, path, NULL, on_accept, &t, count_accept_dtor, &t.listener), 0);
        CHECK_RC(aloop_unix_connect(loop, path, 5000, on_connect, &t, NULL, &t.client), 0);
    } else {
        CHECK_RC(aloop_tcp_listen(loop, "127.0.0.1", 0, NULL, on_accept, &t, count_accept_dtor, &t.listener), 0);
        int port = aloop_tcp_listener_port(t.listener);
        CHECK(port > 0);
        CHECK_RC(aloop_tcp_connect(loop, "127.0.0.1", (uint16_t)port, 5000, on_connect, &t, NULL, &t.client), 0);
    }
    CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_DEFAULT), 0);
    CHECK(t.connected == 1);
    CHECK(t.written == 2);
    CHECK(t.got == PAYLOAD_SIZE && memcmp(t.payload, t.received, PAYLOAD_SIZE) == 0);
    CHECK(t.server_eof == 1);
    CHECK(t.closes == 3); /* server connection, client, listener */
    CHECK(t.accept_dtor == 1);
    free(t.payload);
    free(t.received);
}

static int refused_status = 1, refused_dtor, connect_dtor_on_failure;
static void on_refused(aloop_tcp_t *tcp, int status, void *ud) {
    (void)ud;
    refused_status = status;
    CHECK_RC(aloop_tcp_close(tcp, NULL, NULL), 0);
    /* The handle is closing: every call on it is refused with ALOOP_E_CLOSED. */
    CHECK_RC(aloop_tcp_read_start(tcp, on_client_read, NULL, NULL), ALOOP_E_CLOSED);
    CHECK_RC(aloop_tcp_write(tcp, "x", 1, NULL, NULL), ALOOP_E_CLOSED);
}
static void count_refused_dtor(void *ud) {
    (void)ud;
    refused_dtor++;
}
static void never_called_dtor(void *ud) {
    (void)ud;
    connect_dtor_on_failure++;
}
static void never_accept(aloop_tcp_listener_t *l, int s, aloop_tcp_t *c, void *ud) {
    (void)l;
    (void)s;
    (void)c;
    (void)ud;
    CHECK(!"accept callback of a failed listen");
}
static void never_connect(aloop_tcp_t *t, int s, void *ud) {
    (void)t;
    (void)s;
    (void)ud;
    CHECK(!"connect callback of a failed connect");
}

static void test_errors(aloop_loop_t *loop) {
    aloop_tcp_listener_t *l = NULL, *l2 = NULL;
    aloop_tcp_t *c = NULL;
    /* NULL arguments. */
    CHECK_RC(aloop_tcp_listen(NULL, "127.0.0.1", 0, NULL, on_accept, NULL, NULL, &l), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_listen(loop, NULL, 0, NULL, on_accept, NULL, NULL, &l), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_listen(loop, "127.0.0.1", 0, NULL, NULL, NULL, NULL, &l), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_listen(loop, "127.0.0.1", 0, NULL, on_accept, NULL, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_connect(loop, "127.0.0.1", 1, 0, NULL, NULL, NULL, &c), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_write(NULL, "x", 1, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_read_start(NULL, on_client_read, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_read_stop(NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_close(NULL, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_shutdown(NULL, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_listener_close(NULL, NULL, NULL), ALOOP_E_NULL);
    CHECK_RC(aloop_tcp_fd(NULL), ALOOP_E_NULL);
    CHECK(aloop_tcp_get_data(NULL) == NULL);
    /* Bad addresses: host names are not resolved here; the destructor of a failed call never
     * runs, nor its callback. */
    connect_dtor_on_failure = 0;
    CHECK_RC(aloop_tcp_listen(loop, "localhost", 0, NULL, never_accept, NULL, never_called_dtor, &l), ALOOP_E_ADDRESS);
    CHECK_RC(aloop_tcp_listen(loop, "256.1.1.1", 0, NULL, never_accept, NULL, never_called_dtor, &l), ALOOP_E_ADDRESS);
    CHECK_RC(aloop_tcp_connect(loop, "::1::2", 80, 0, never_connect, NULL, never_called_dtor, &c), ALOOP_E_ADDRESS);
    /* Port in use (without SO_REUSEPORT). */
    CHECK_RC(aloop_tcp_listen(loop, "127.0.0.1", 0, NULL, never_accept, NULL, NULL, &l), 0);
    int port = aloop_tcp_listener_port(l);
    CHECK_RC(aloop_tcp_listen(loop, "127.0.0.1", (uint16_t)port, NULL, never_accept, NULL, never_called_dtor, &l2),
             -EADDRINUSE);
    CHECK(connect_dtor_on_failure == 0);
    /* SO_REUSEPORT on both: the port is shared. */
    aloop_listen_options_t o;
    aloop_listen_options_init(&o);
    o.reuse_port = 1;
    aloop_tcp_listener_t *r1 = NULL, *r2 = NULL;
    CHECK_RC(aloop_tcp_listen(loop, "::1", 0, &o, never_accept, NULL, NULL, &r1), 0);
    CHECK_RC(aloop_tcp_listen(loop, "::1", (uint16_t)aloop_tcp_listener_port(r1), &o, never_accept, NULL, NULL, &r2), 0);
    CHECK_RC(aloop_tcp_listener_close(r1, NULL, NULL), 0);
    CHECK_RC(aloop_tcp_listener_close(r2, NULL, NULL), 0);
    CHECK_RC(aloop_tcp_listener_close(r2, NULL, NULL), ALOOP_E_ALREADY);
    /* Refused: connect to the port just closed. */
    CHECK_RC(aloop_tcp_listener_close(l, NULL, NULL), 0);
    CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_DEFAULT), 0);
    refused_dtor = 0;
    CHECK_RC(aloop_tcp_connect(loop, "127.0.0.1", (uint16_t)port, 2000, on_refused, NULL, count_refused_dtor, &c), 0);
    CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_DEFAULT), 0);
    CHECK_RC(refused_status, -ECONNREFUSED);
    CHECK(refused_dtor == 1);
}

static void count_close(aloop_tcp_listener_t *l, void *ud) {
    (void)l;
    (*(int *)ud)++;
}

/* Accepts and closes: the only connections these listeners see are the probes of later
 * listen calls checking whether a server is live at the path. */
static void close_accepted(aloop_tcp_listener_t *l, int s, aloop_tcp_t *c, void *ud) {
    (void)l, (void)ud;
    if (s == 0)
        CHECK_RC(aloop_tcp_close(c, NULL, NULL), 0);
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Unix socket files: what is replaced, what is refused, what is removed. */
static void test_unix_files(aloop_loop_t *loop, const char *dir) {
    char path[200], file[200], stale[200];
    snprintf(path, sizeof path, "%s/live.sock", dir);
    snprintf(file, sizeof file, "%s/regular", dir);
    snprintf(stale, sizeof stale, "%s/stale.sock", dir);
    aloop_tcp_listener_t *a = NULL, *b = NULL, *c = NULL;
    int closed = 0;

    CHECK_RC(aloop_unix_listen(loop, path, NULL, close_accepted, NULL, NULL, &a), 0);
    CHECK(exists(path));
    /* A live socket is not replaced, with or without reuse_port on the second call only. */
    b = NULL;
    CHECK_RC(aloop_unix_listen(loop, path, NULL, close_accepted, NULL, never_called_dtor, &b), -EADDRINUSE);
    CHECK(b == NULL);
    CHECK(strstr(aloop_last_error_message(), "listen") != NULL);
    aloop_listen_options_t shared;
    aloop_listen_options_init(&shared);
    shared.reuse_port = 1;
    CHECK_RC(aloop_unix_listen(loop, path, &shared, close_accepted, NULL, never_called_dtor, &b), -EADDRINUSE);

    /* A regular file at the path is left alone. */
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("keep me", f);
        fclose(f);
    }
    CHECK_RC(aloop_unix_listen(loop, file, NULL, close_accepted, NULL, never_called_dtor, &b), -EEXIST);
    CHECK(exists(file));

    /* A path longer than sun_path holds. */
    char longpath[160];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = 0;
    CHECK_RC(aloop_unix_listen(loop, longpath, NULL, close_accepted, NULL, never_called_dtor, &b), ALOOP_E_INVALID);
    aloop_tcp_t *conn = NULL;
    CHECK_RC(aloop_unix_connect(loop, longpath, 1000, never_connect, NULL, never_called_dtor, &conn), ALOOP_E_INVALID);
    CHECK(conn == NULL);

    /* A socket file whose server died (nobody listens) is replaced. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    strncpy(sa.sun_path, stale, sizeof sa.sun_path - 1);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(fd);
    CHECK(exists(stale));
    CHECK_RC(aloop_unix_listen(loop, stale, NULL, close_accepted, NULL, NULL, &c), 0);

    /* reuse_port: listeners asking for it share one socket at the path; the file stays until
     * the last of them closes. */
    aloop_tcp_listener_t *s1 = NULL, *s2 = NULL;
    char spath[200];
    snprintf(spath, sizeof spath, "%s/shared.sock", dir);
    CHECK_RC(aloop_unix_listen(loop, spath, &shared, close_accepted, NULL, NULL, &s1), 0);
    CHECK_RC(aloop_unix_listen(loop, spath, &shared, close_accepted, NULL, NULL, &s2), 0);
    CHECK_RC(aloop_tcp_listener_close(s1, count_close, &closed), 0);
    for (int turns = 0; closed < 1 && turns < 100; turns++)
        CHECK(aloop_loop_run(loop, ALOOP_RUN_ONCE) >= 0);
    CHECK(closed == 1); /* the first shared listener is closed: the file stays for the second */
    CHECK(exists(spath));

    CHECK_RC(aloop_tcp_listener_close(a, count_close, &closed), 0);
    CHECK_RC(aloop_tcp_listener_close(c, count_close, &closed), 0);
    CHECK_RC(aloop_tcp_listener_close(s2, count_close, &closed), 0);
    CHECK_RC(aloop_loop_run(loop, ALOOP_RUN_DEFAULT), 0);
    CHECK(closed == 4); /* and the other three */
    /* Removed at close: every socket file this test made; the regular file stays. */
    CHECK(!exists(path) && !exists(stale) && !exists(spath));
    CHECK(exists(file));
    unlink(file);
}

int main(void) {
    char dir[] = "/tmp/aloop-test-tcp-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char sock[64];
    snprintf(sock, sizeof sock, "%s/echo.sock", dir);
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++) {
        aloop_loop_options_t opts;
        aloop_loop_options_init(&opts);
        opts.backend = all_backends[i];
        aloop_loop_t *loop = NULL;
        CHECK_RC(aloop_loop_new(&opts, &loop), 0);
        if (!loop)
            continue;
        test_echo(loop, NULL);
        test_echo(loop, sock);
        CHECK(access(sock, F_OK) != 0); /* removed when its listener closed */
        test_errors(loop);
        test_unix_files(loop, dir);
        CHECK_RC(aloop_loop_free(loop), 0);
    }
    rmdir(dir);
    return check_summary("test_tcp");
}
