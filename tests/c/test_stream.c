/* Streamed request bodies and paced chunked responses through the C API, on both backends,
 * with a blocking client on another thread: an upload read with pauses (timer-resumed),
 * Expect: 100-continue sent only when the handler reads, an early answer that closes, a
 * chunked download written from the drain callback, the refusals (a buffered route's body,
 * reading twice, pausing before reading, pacing before the chunked head) and every
 * destructor run exactly once. */
#define _GNU_SOURCE /* memmem */
#include <asyncloop.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
    c.port = aloop_http_server_listen(c.server, "127.0.0.1", 0);
    CHECK(c.port > 0);
    pthread_t th;
    pthread_create(&th, NULL, client, &c);
    CHECK_RC(aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    CHECK(c.stopped == 1);
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
