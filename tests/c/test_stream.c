/* Streamed request bodies and paced chunked responses through the C API, on both backends,
 * with a blocking client on another thread: an upload read with pauses (timer-resumed),
 * Expect: 100-continue sent only when the handler reads, an early answer that closes, a
 * chunked download written from the drain callback, the refusals (a buffered route's body,
 * reading twice, pausing before reading, pacing before the chunked head) and every
 * destructor run exactly once. A request's peer and local addresses over TCP and over a Unix
 * socket the server also listens on (a stale socket file replaced, a live one or a non-socket
 * refused, the file removed at shutdown). A handler's Connection and Content-Length headers
 * honoured, or refused with ALOOP_E_INVALID (the request still unanswered). */
#define _GNU_SOURCE /* memmem */
#include <asyncloop.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "dial.h"

static const aloop_http_header_t text_plain[] = {{"Content-Type", "text/plain"}};

#define UPLOAD_BYTES (4u << 20)
#define DOWNLOAD_BYTES (8u << 20)
#define PIECE 65536u

struct ctx {
    aloop_loop_t *loop;
    aloop_http_server_t *server;
    int port;
    char unix_path[108];
    int body_dtors, drain_dtors, pauses, events_while_paused;
    int stopped;
};

struct upload {
    struct ctx *c;
    aloop_http_request_t *req;
    aloop_timer_t *timer;
    size_t bytes, since_pause;
    unsigned long sum;
    int paused;
};

static void upload_free(void *p) {
    struct upload *u = p;
    u->c->body_dtors++;
    aloop_timer_free(u->timer);
    free(u);
}

static void resume_upload(aloop_timer_t *t, void *ud) {
    (void)t;
    struct upload *u = ud;
    u->paused = 0;
    CHECK_RC(aloop_http_request_body_resume(u->req), 0);
}

static void on_body(aloop_http_request_t *req, ptrdiff_t nread, const void *data, void *ud) {
    struct upload *u = ud;
    if (nread > 0) {
        if (u->paused)
            u->c->events_while_paused++;
        const unsigned char *p = data;
        for (ptrdiff_t i = 0; i < nread; i++)
            u->sum = u->sum * 31 + p[i];
        u->bytes += (size_t)nread;
        u->since_pause += (size_t)nread;
        if (u->since_pause >= 256 * 1024) {
            u->since_pause = 0;
            u->paused = 1;
            u->c->pauses++;
            CHECK_RC(aloop_http_request_body_pause(req), 0);
            CHECK_RC(aloop_timer_start(u->timer, 5, 0, resume_upload, u, NULL), 0);
        }
        return;
    }
    char text[64];
    if (nread == ALOOP_E_EOF) {
        snprintf(text, sizeof text, "%zu %lu", u->bytes, u->sum);
        CHECK_RC(aloop_http_respond(req, 200, text_plain, 1, text, strlen(text)), 0);
    } else {
        snprintf(text, sizeof text, "%s", aloop_err_name((int)nread));
        aloop_http_respond(req, 400, text_plain, 1, text, strlen(text));
    }
}

static void on_upload(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    size_t len = 99;
    CHECK(aloop_http_request_body(req, &len) != NULL && len == 0); /* nothing collected */
    CHECK_RC(aloop_http_request_body_pause(req), ALOOP_E_INVALID); /* not reading yet */
    struct upload *u = calloc(1, sizeof *u);
    u->c = c;
    u->req = req;
    CHECK_RC(aloop_timer_new(c->loop, &u->timer), 0);
    CHECK_RC(aloop_http_request_body_start(req, on_body, u, upload_free), 0);
    CHECK_RC(aloop_http_request_body_start(req, on_body, u, upload_free), ALOOP_E_ALREADY);
}

static void on_early(aloop_http_request_t *req, void *ud) {
    (void)ud;
    CHECK_RC(aloop_http_respond(req, 413, text_plain, 1, "too big", 7), 0);
}

static void on_buffered(aloop_http_request_t *req, void *ud) {
    (void)ud;
    CHECK_RC(aloop_http_request_body_start(req, on_body, NULL, NULL), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_chunk_on_drain(req, NULL, NULL, NULL), ALOOP_E_NULL);
    size_t len;
    const void *body = aloop_http_request_body(req, &len);
    CHECK_RC(aloop_http_respond(req, 200, text_plain, 1, body, len), 0);
}

struct download {
    struct ctx *c;
    size_t total, made;
    unsigned char piece[PIECE];
};

static void download_free(void *p) {
    struct download *d = p;
    d->c->drain_dtors++;
    free(d);
}

static void on_drain(aloop_http_request_t *req, void *ud) {
    struct download *d = ud;
    if (d->made >= d->total) {
        CHECK_RC(aloop_http_chunk_end(req), 0); /* the destructor runs now */
        return;
    }
    size_t n = d->total - d->made < PIECE ? d->total - d->made : PIECE;
    for (size_t i = 0; i < n; i++)
        d->piece[i] = (unsigned char)((d->made + i) % 251);
    if (aloop_http_chunk(req, d->piece, n) == 0)
        d->made += n;
}

static void on_download(aloop_http_request_t *req, void *ud) {
    struct ctx *c = ud;
    struct download *d = calloc(1, sizeof *d);
    d->c = c;
    d->total = DOWNLOAD_BYTES;
    CHECK_RC(aloop_http_chunk_on_drain(req, on_drain, d, NULL), ALOOP_E_INVALID); /* no head yet */
    CHECK_RC(aloop_http_respond_chunked(req, 200, text_plain, 1), 0);
    CHECK_RC(aloop_http_chunk_on_drain(req, on_drain, d, download_free), 0);
}

/* ---- client thread ----------------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n) {
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until `want` appears in what arrived (kept in buf); returns 1 if found. */
static int read_until(int fd, char *buf, size_t cap, size_t *got, const char *want) {
    while (*got < cap - 1) {
        buf[*got] = 0;
        if (strstr(buf, want))
            return 1;
        ssize_t n = read(fd, buf + *got, cap - 1 - *got);
        if (n <= 0)
            break;
        *got += (size_t)n;
    }
    buf[*got] = 0;
    if (strstr(buf, want))
        return 1;
    fprintf(stderr, "got: %s\nwanted: %s\n", buf, want);
    return 0;
}

static void check_upload(int port) {
    int fd = dial(port);
    CHECK(fd >= 0);
    char head[256];
    snprintf(head, sizeof head, "POST /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: %u\r\n\r\n",
             UPLOAD_BYTES);
    CHECK(write_all(fd, head, strlen(head)) == 0);
    char buf[4096];
    size_t got = 0;
    /* The handler reads at once, so the interim answer comes before any body byte is sent. */
    CHECK(read_until(fd, buf, sizeof buf, &got, "HTTP/1.1 100 Continue\r\n\r\n"));
    unsigned char *body = malloc(UPLOAD_BYTES);
    unsigned long sum = 0;
    for (size_t i = 0; i < UPLOAD_BYTES; i++) {
        body[i] = (unsigned char)(i * 7 % 256);
        sum = sum * 31 + body[i];
    }
    CHECK(write_all(fd, body, UPLOAD_BYTES) == 0);
    free(body);
    char want[64];
    snprintf(want, sizeof want, "\r\n\r\n%u %lu", UPLOAD_BYTES, sum);
    CHECK(read_until(fd, buf, sizeof buf, &got, want));
    /* The connection stays usable: a buffered route next. */
    static const char echo[] = "POST /buffered HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nping";
    got = 0;
    CHECK(write_all(fd, echo, sizeof echo - 1) == 0);
    CHECK(read_until(fd, buf, sizeof buf, &got, "\r\n\r\nping"));
    close(fd);
}

static void check_early(int port) {
    int fd = dial(port);
    CHECK(fd >= 0);
    static const char head[] = "POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n";
    CHECK(write_all(fd, head, sizeof head - 1) == 0);
    char buf[4096];
    size_t got = 0;
    CHECK(read_until(fd, buf, sizeof buf, &got, "\r\n\r\ntoo big"));
    CHECK(strstr(buf, "HTTP/1.1 413 ") == buf);
    CHECK(strstr(buf, "\r\nConnection: close\r\n") != NULL);
    /* The server closes once the answer is out (it may linger reading a little first). */
    shutdown(fd, SHUT_WR);
    char rest[256];
    CHECK(read(fd, rest, sizeof rest) == 0);
    close(fd);
}

static void check_download(int port) {
    int fd = dial(port);
    CHECK(fd >= 0);
    static const char get[] = "GET /download HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(write_all(fd, get, sizeof get - 1) == 0);
    /* Parse the chunked body as it streams, checking every byte. */
    size_t cap = 1 << 20, have = 0, off = 0, body = 0;
    char *buf = malloc(cap);
    int head_done = 0, bad = 0, ended = 0;
    while (!ended) {
        if (have == cap) {
            memmove(buf, buf + off, have - off);
            have -= off;
            off = 0;
        }
        ssize_t n = read(fd, buf + have, cap - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        if (!head_done) {
            char *end = memmem(buf, have, "\r\n\r\n", 4);
            if (!end)
                continue;
            off = (size_t)(end - buf) + 4;
            head_done = 1;
        }
        for (;;) {
            char *nl = memmem(buf + off, have - off, "\r\n", 2);
            if (!nl)
                break;
            size_t size = strtoul(buf + off, NULL, 16);
            size_t start = (size_t)(nl - buf) + 2;
            if (have < start + size + 2)
                break;
            if (size == 0) {
                ended = 1;
                break;
            }
            for (size_t i = 0; i < size; i++)
                bad += (unsigned char)buf[start + i] != (unsigned char)((body + i) % 251);
            body += size;
            off = start + size + 2;
        }
        if (off > cap / 2) {
            memmove(buf, buf + off, have - off);
            have -= off;
            off = 0;
        }
    }
    CHECK(ended);
    CHECK(bad == 0);
    CHECK(body == DOWNLOAD_BYTES);
    free(buf);
    close(fd);
}

/* Answers with the request's addresses as the server sees them. */
static void on_whoami(aloop_http_request_t *req, void *ud) {
    (void)ud;
    char peer[108], local[108], text[300];
    uint16_t peer_port = 1, local_port = 1;
    CHECK_RC(aloop_http_request_peer_address(req, peer, sizeof peer, &peer_port), 0);
    CHECK_RC(aloop_http_request_local_address(req, local, sizeof local, &local_port), 0);
    CHECK_RC(aloop_http_request_peer_address(req, peer, 0, NULL), -ENOSPC);
    CHECK_RC(aloop_http_request_local_address(req, NULL, 0, NULL), 0);
    snprintf(text, sizeof text, "peer=%s:%u local=%s:%u", peer, peer_port, local, local_port);
    CHECK_RC(aloop_http_respond(req, 200, text_plain, 1, text, strlen(text)), 0);
    CHECK_RC(aloop_http_request_peer_address(req, peer, sizeof peer, NULL), ALOOP_E_ALREADY);
}

static void ask_whoami(int fd, const char *want) {
    static const char get[] = "GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(write_all(fd, get, sizeof get - 1) == 0);
    char buf[4096];
    size_t got = 0;
    CHECK(read_until(fd, buf, sizeof buf, &got, want));
    close(fd);
}

static void check_whoami(int port) {
    int fd = dial(port);
    CHECK(fd >= 0);
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    CHECK(getsockname(fd, (struct sockaddr *)&me, &len) == 0);
    char want[128];
    snprintf(want, sizeof want, "\r\n\r\npeer=127.0.0.1:%u local=127.0.0.1:%d", ntohs(me.sin_port), port);
    ask_whoami(fd, want);
}

static int unix_address(const char *path, struct sockaddr_un *a) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s", path);
    return socket(AF_UNIX, SOCK_STREAM, 0);
}

static void check_whoami_unix(const char *path) {
    int fd = dial_unix(path);
    CHECK(fd >= 0);
    char want[200];
    /* A connecting Unix socket is unnamed: an empty path, port 0. */
    snprintf(want, sizeof want, "\r\n\r\npeer=:0 local=%s:0", path);
    ask_whoami(fd, want);
}

static const aloop_http_header_t conn_close[] = {{"Connection", "close"}};

/* Framing headers a handler gives: those the library cannot honour are refused (the request
 * stays unanswered), the others are honoured. */
static void on_length(aloop_http_request_t *req, void *ud) {
    (void)ud;
    if (strcmp(aloop_http_request_method(req), "HEAD") == 0) {
        /* A HEAD answer gives the length a GET would get. */
        static const aloop_http_header_t get_length[] = {{"Content-Length", "1000"}};
        CHECK_RC(aloop_http_respond(req, 200, get_length, 1, NULL, 0), 0);
        return;
    }
    static const aloop_http_header_t wrong[] = {{"Content-Length", "5"}};
    static const aloop_http_header_t te[] = {{"Transfer-Encoding", "chunked"}};
    static const aloop_http_header_t upgrade[] = {{"Connection", "upgrade"}};
    CHECK_RC(aloop_http_respond(req, 200, wrong, 1, "abc", 3), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_respond(req, 200, te, 1, "abc", 3), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_respond(req, 200, upgrade, 1, "abc", 3), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_respond_chunked(req, 200, wrong, 1), ALOOP_E_INVALID);
    static const aloop_http_header_t right[] = {{"content-length", "3"}, {"Connection", "keep-alive"}};
    CHECK_RC(aloop_http_respond(req, 200, right, 2, "abc", 3), 0);
}

static void on_close(aloop_http_request_t *req, void *ud) {
    (void)ud;
    /* A request pipelined behind an answer that closes is never answered: answering it
     * finds its connection closing (ALOOP_E_CANCELLED frees it). */
    int rc = aloop_http_respond(req, 200, conn_close, 1, "bye", 3);
    CHECK(rc == 0 || rc == ALOOP_E_CANCELLED);
}

static void on_chunked_close(aloop_http_request_t *req, void *ud) {
    (void)ud;
    CHECK_RC(aloop_http_respond_chunked(req, 200, conn_close, 1), 0);
    CHECK_RC(aloop_http_chunk(req, "x", 1), 0);
    CHECK_RC(aloop_http_chunk_end(req), 0);
}

/* Reads until the server closes: the bytes read, or -1 (an error or a 5 s silence). */
static ssize_t read_to_eof(int fd, char *buf, size_t cap) {
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == cap - 1)
            return -1;
    }
    buf[got] = 0;
    return (ssize_t)got;
}

static size_t count(const char *s, const char *what) {
    size_t n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

static void check_framing(int port) {
    int fd = dial(port);
    CHECK(fd >= 0);
    static const char reqs[] = "GET /length HTTP/1.1\r\nHost: t\r\n\r\n"
                               "HEAD /length HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /close HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /close HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(write_all(fd, reqs, sizeof reqs - 1) == 0);
    char buf[8192];
    CHECK(read_to_eof(fd, buf, sizeof buf) > 0);
    /* Three answers, the last with Connection: close; the request after it is not answered. */
    CHECK(count(buf, "HTTP/1.1 200 OK\r\n") == 3);
    CHECK(count(buf, "\r\nContent-Length: 3\r\n") == 2);
    CHECK(count(buf, "Connection:") == 1);
    CHECK(strstr(buf, "content-length") == NULL); /* the handler's copy is not repeated */
    CHECK(strstr(buf, "\r\n\r\nabcHTTP/1.1 200 OK\r\n") != NULL);
    CHECK(strstr(buf, "\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\n") != NULL);
    static const char tail[] = "Content-Length: 3\r\nConnection: close\r\n\r\nbye";
    size_t len = strlen(buf);
    CHECK(len > sizeof tail && strcmp(buf + len - (sizeof tail - 1), tail) == 0);
    close(fd);
    fd = dial(port);
    CHECK(fd >= 0);
    static const char chunked[] = "GET /chunked-close HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(write_all(fd, chunked, sizeof chunked - 1) == 0);
    CHECK(read_to_eof(fd, buf, sizeof buf) > 0);
    CHECK(strstr(buf, "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n") != NULL);
    close(fd);
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
    check_upload(c->port);
    check_early(c->port);
    check_download(c->port);
    check_whoami(c->port);
    check_whoami_unix(c->unix_path);
    check_framing(c->port);
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
    so.max_body = 1024; /* streamed routes have their own limit */
    CHECK_RC(aloop_http_server_new(c.loop, &so, &c.server), 0);
    CHECK_RC(aloop_http_server_route_stream(c.server, "POST", "/upload", 0, on_upload, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route_stream(c.server, "POST", "/early", 1 << 30, on_early, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route_stream(c.server, "POST", "no-slash", 0, on_early, &c, NULL), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_route(c.server, "POST", "/buffered", on_buffered, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/download", on_download, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/whoami", on_whoami, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, NULL, "/length", on_length, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/close", on_close, &c, NULL), 0);
    CHECK_RC(aloop_http_server_route(c.server, "GET", "/chunked-close", on_chunked_close, &c, NULL), 0);
    c.port = aloop_http_server_listen(c.server, "127.0.0.1", 0);
    CHECK(c.port > 0);
    /* A socket file whose server died (bound, then closed without unlinking: connecting to it
     * is refused) is replaced; a live one is not, nor a file that is no socket. */
    snprintf(c.unix_path, sizeof c.unix_path, "/tmp/aloop-test-stream-%d-%d.sock", (int)getpid(), backend);
    struct sockaddr_un a;
    int stale = unix_address(c.unix_path, &a);
    unlink(c.unix_path);
    CHECK(bind(stale, (struct sockaddr *)&a, sizeof a) == 0);
    close(stale);
    CHECK(access(c.unix_path, F_OK) == 0);
    CHECK_RC(aloop_http_server_listen_unix(c.server, c.unix_path), 0);
    CHECK_RC(aloop_http_server_listen_unix(c.server, c.unix_path), -EADDRINUSE);
    char plain[120];
    snprintf(plain, sizeof plain, "%s.txt", c.unix_path);
    FILE *f = fopen(plain, "w");
    CHECK(f != NULL);
    fclose(f);
    CHECK_RC(aloop_http_server_listen_unix(c.server, plain), -EEXIST);
    CHECK(access(plain, F_OK) == 0); /* not removed */
    unlink(plain);
    CHECK_RC(aloop_http_server_listen_unix(c.server, ""), ALOOP_E_INVALID);
    pthread_t th;
    pthread_create(&th, NULL, client, &c);
    CHECK_RC(aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    CHECK(c.stopped == 1);
    CHECK(access(c.unix_path, F_OK) != 0 && errno == ENOENT); /* removed at shutdown */
    CHECK(c.body_dtors == 1);
    CHECK(c.drain_dtors == 1);
    /* A pause every 256 KiB read (io_uring may hand over more at once: what its multishot
     * receive brought in before the pause took effect). */
    CHECK(c.pauses >= 4);
    CHECK(c.events_while_paused == 0);
    CHECK_RC(aloop_http_server_free(c.server), 0);
    CHECK_RC(aloop_loop_free(c.loop), 0);
}

int main(void) {
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i]);
    return check_summary("test_stream");
}
