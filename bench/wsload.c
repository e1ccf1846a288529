/* wsload: WebSocket echo load for `make bench` (nothing on Debian does it): CONNS connections,
 * each sending a SIZE-byte text message, waiting for its echo, and sending the next, for
 * SECONDS; prints the echoes per second and their latency.
 *
 *   wsload [-c CONNS] [-d SECONDS] [-s SIZE] [-p PATH] HOST PORT
 *
 * Defaults: 256 connections, 10 s, 64 bytes, path "/". The handshake is checked for a 101;
 * frames are masked (one key per connection, the same message bytes sent every time: the
 * masking costs the load generator nothing per message), replies read as whole frames of any
 * length. Prints `messages=N mps=X p50_ms=A p99_ms=B errors=E` and exits 0 when no connection
 * failed. Plain C11 and POSIX, one thread, epoll.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define BUF_SIZE (64 * 1024)
#define MAX_SAMPLES (1 << 22)

struct conn {
    int fd;
    int open;             /* the 101 arrived */
    size_t have;          /* bytes in buf */
    double sent_at;       /* when the message in flight left */
    unsigned char *msg;   /* the masked frame to send */
    size_t msg_len;
    char buf[BUF_SIZE];
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long number(const char *s, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end != 0 || v < lo || v > hi) {
        fprintf(stderr, "wsload: %s: not a number in %ld..%ld\n", s, lo, hi);
        exit(2);
    }
    return v;
}

static float *samples;
static long nsamples, messages, errors;

/* The end of an HTTP head in `b` (`n` bytes): the index after its blank line, or 0. */
static size_t head_end(const char *b, size_t n) {
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(b + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    return 0;
}

static int cmp(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            errors++;
            return;
        }
        c += w;
        n -= (size_t)w;
    }
}

/* The length of the whole frame at the start of `b` (`n` bytes), or 0 if incomplete. */
static size_t frame_len(const unsigned char *b, size_t n) {
    if (n < 2)
        return 0;
    size_t len = b[1] & 0x7f, head = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (size_t)b[2] << 8 | b[3];
        head = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | b[i];
        head = 10;
    }
    return n >= head + len ? head + len : 0;
}

int main(int argc, char **argv) {
    long conns = 256, seconds = 10, size = 64;
    const char *path = "/";
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i += 2) {
        if (i + 1 >= argc)
            break;
        switch (argv[i][1]) {
        case 'c': conns = number(argv[i + 1], 1, MAX_CONNS); break;
        case 'd': seconds = number(argv[i + 1], 1, 3600); break;
        case 's': size = number(argv[i + 1], 0, 65535); break;
        case 'p': path = argv[i + 1]; break;
        default: fprintf(stderr, "wsload: unknown option %s\n", argv[i]); return 2;
        }
    }
    if (argc - i != 2) {
        fprintf(stderr, "usage: wsload [-c CONNS] [-d SECONDS] [-s SIZE] [-p PATH] HOST PORT\n");
        return 2;
    }
    const char *host = argv[i];
    int port = (int)number(argv[i + 1], 1, 65535);
    samples = malloc(sizeof *samples * MAX_SAMPLES);
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    int ep = epoll_create1(0);
    if (!samples || !cs || ep < 0) {
        perror("wsload");
        return 2;
    }
    char req[512];
    int req_len = snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                           path, host, port);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "wsload: %s: not an IPv4 address\n", host);
        return 2;
    }
    srand((unsigned)time(NULL));
    for (long c = 0; c < conns; c++) {
        struct conn *k = &cs[c];
        k->fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (k->fd < 0 || connect(k->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            perror("wsload: connect");
            return 1;
        }
        /* The frame: FIN + text, masked, then the masked payload ('a' .. 'z'). */
        size_t head = size < 126 ? 2 : 4;
        k->msg_len = head + 4 + (size_t)size;
        k->msg = malloc(k->msg_len);
        k->msg[0] = 0x81;
        if (size < 126) {
            k->msg[1] = (unsigned char)(0x80 | size);
        } else {
            k->msg[1] = 0x80 | 126;
            k->msg[2] = (unsigned char)(size >> 8);
            k->msg[3] = (unsigned char)size;
        }
        unsigned char *key = k->msg + head;
        for (int j = 0; j < 4; j++)
            key[j] = (unsigned char)rand();
        for (long j = 0; j < size; j++)
            k->msg[head + 4 + j] = (unsigned char)('a' + j % 26) ^ key[j % 4];
        send_all(k->fd, req, (size_t)req_len);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
        epoll_ctl(ep, EPOLL_CTL_ADD, k->fd, &ev);
    }
    double start = 0, end = 0, opening_deadline = now() + 30;
    long open = 0;
    struct epoll_event evs[256];
    for (;;) {
        double t = now();
        if (start > 0 && t >= end)
            break;
        if (start == 0 && t >= opening_deadline) {
            fprintf(stderr, "wsload: only %ld of %ld connections opened in 30 s\n", open, conns);
            return 1;
        }
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0 && errno != EINTR) {
            perror("wsload: epoll_wait");
            return 2;
        }
        t = now();
        for (int e = 0; e < n; e++) {
            struct conn *k = evs[e].data.ptr;
            ssize_t r = recv(k->fd, k->buf + k->have, BUF_SIZE - k->have, 0);
            if (r <= 0) {
                if (r < 0 && errno == EINTR)
                    continue;
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, k->fd, NULL);
                continue;
            }
            k->have += (size_t)r;
            if (!k->open) {
                size_t used = head_end(k->buf, k->have);
                if (!used)
                    continue;
                if (strncmp(k->buf, "HTTP/1.1 101", 12) != 0) {
                    fprintf(stderr, "wsload: handshake refused: %.40s\n", k->buf);
                    return 1;
                }
                memmove(k->buf, k->buf + used, k->have - used);
                k->have -= used;
                k->open = 1;
                if (++open == conns) {
                    /* Everyone is open: the clock starts, every connection sends its first. */
                    start = now();
                    end = start + (double)seconds;
                    for (long c = 0; c < conns; c++) {
                        cs[c].sent_at = start;
                        send_all(cs[c].fd, cs[c].msg, cs[c].msg_len);
                    }
                }
                continue;
            }
            size_t f;
            while ((f = frame_len((unsigned char *)k->buf, k->have)) > 0) {
                memmove(k->buf, k->buf + f, k->have - f);
                k->have -= f;
                messages++;
                if (nsamples < MAX_SAMPLES)
                    samples[nsamples++] = (float)((t - k->sent_at) * 1000.0);
                k->sent_at = t;
                send_all(k->fd, k->msg, k->msg_len);
            }
        }
    }
    double secs = end - start;
    qsort(samples, (size_t)nsamples, sizeof *samples, cmp);
    double p50 = nsamples ? samples[nsamples / 2] : 0, p99 = nsamples ? samples[(long)(nsamples * 0.99)] : 0;
    printf("messages=%ld mps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%ld\n", messages, (double)messages / secs, p50, p99,
           errors);
    return errors == 0 ? 0 : 1;
}
