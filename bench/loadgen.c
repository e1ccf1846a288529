/* loadgen: sends an exact number of HTTP/1.1 requests and counts the complete responses, for
 * `make bench-instr` (wrk runs for a time, not a count, so two runs cannot be subtracted).
 *
 *   loadgen [-c CONNS] [-n REQUESTS] [-d DEPTH] [-p PATH] [-H "Name: value"]... HOST PORT
 *
 * Each of CONNS keep-alive connections takes requests from a shared count, sends up to DEPTH
 * of them in one write (pipelining; 1: one request per round trip), and sends the next batch
 * once every response of the last one has arrived. A response is complete when its head and
 * Content-Length bytes of body are in. Requests are the ones wrk sends by default
 * (`GET PATH HTTP/1.1` and `Host: HOST:PORT`), plus the `-H` headers in order. Prints `responses=N non200=K` and exits 0 when
 * every request got a 200 answer. Plain C11 and POSIX, blocking sockets and poll(2).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define BUF_SIZE (256 * 1024)

struct conn {
    int fd;
    int outstanding;  /* responses still expected for the batch in flight */
    size_t have;      /* bytes buffered in buf */
    char *buf;
};

static long remaining; /* requests not yet sent */
static long responses, non200;

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static long number(const char *s, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end != 0 || v < lo || v > hi) {
        fprintf(stderr, "loadgen: %s: not a number in %ld..%ld\n", s, lo, hi);
        exit(2);
    }
    return v;
}

/* Sends the next batch on c (up to depth requests); returns how many. */
static int send_batch(struct conn *c, const char *req, size_t req_len, int depth, char *scratch) {
    int k = remaining < depth ? (int)remaining : depth;
    if (k == 0)
        return 0;
    remaining -= k;
    for (int i = 0; i < k; i++)
        memcpy(scratch + (size_t)i * req_len, req, req_len);
    size_t len = (size_t)k * req_len, off = 0;
    while (off < len) {
        ssize_t n = write(c->fd, scratch + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("write");
        }
        off += (size_t)n;
    }
    c->outstanding = k;
    return k;
}

/* Length of the complete response at the start of buf, or 0 when it is not all in yet. */
static size_t complete_response(const char *buf, size_t have, int *status) {
    const char *end = NULL;
    for (size_t i = 0; i + 3 < have; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            end = buf + i + 4;
            break;
        }
    }
    if (!end)
        return 0;
    if (have < 12 || memcmp(buf, "HTTP/1.", 7) != 0) {
        fprintf(stderr, "loadgen: not an HTTP response\n");
        exit(2);
    }
    *status = atoi(buf + 9);
    long body = -1;
    for (const char *p = buf; p < end; p++) {
        if ((p == buf || p[-1] == '\n') && (size_t)(end - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) {
            body = strtol(p + 15, NULL, 10);
            break;
        }
    }
    if (body < 0) {
        fprintf(stderr, "loadgen: a response without Content-Length\n");
        exit(2);
    }
    size_t total = (size_t)(end - buf) + (size_t)body;
    return have >= total ? total : 0;
}

int main(int argc, char **argv) {
    int conns = 1, depth = 1;
    long total = 1;
    const char *path = "/";
    char extra[1536] = "";
    size_t extra_len = 0;
    int opt;
    while ((opt = getopt(argc, argv, "c:n:d:p:H:")) != -1) {
        switch (opt) {
        case 'c': conns = (int)number(optarg, 1, MAX_CONNS); break;
        case 'n': total = number(optarg, 1, 1L << 40); break;
        case 'd': depth = (int)number(optarg, 1, 1024); break;
        case 'p': path = optarg; break;
        case 'H': {
            size_t l = strlen(optarg);
            if (extra_len + l + 3 > sizeof extra) {
                fprintf(stderr, "loadgen: too many headers\n");
                return 2;
            }
            memcpy(extra + extra_len, optarg, l);
            memcpy(extra + extra_len + l, "\r\n", 3);
            extra_len += l + 2;
            break;
        }
        default:
            fprintf(stderr, "usage: loadgen [-c CONNS] [-n REQUESTS] [-d DEPTH] [-p PATH] [-H HEADER]... HOST PORT\n");
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: loadgen [-c CONNS] [-n REQUESTS] [-d DEPTH] [-p PATH] [-H HEADER]... HOST PORT\n");
        return 2;
    }
    const char *host = argv[optind];
    int port = (int)number(argv[optind + 1], 1, 65535);
    char req[4096];
    int req_len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", path, host, port, extra);
    if (req_len <= 0 || (size_t)req_len >= sizeof req) {
        fprintf(stderr, "loadgen: path too long\n");
        return 2;
    }
    char *scratch = malloc((size_t)req_len * (size_t)depth);
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    struct pollfd *pfds = calloc((size_t)conns, sizeof *pfds);
    if (!scratch || !cs || !pfds)
        die("malloc");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "loadgen: %s: not an IPv4 address\n", host);
        return 2;
    }
    remaining = total;
    for (int i = 0; i < conns; i++) {
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (cs[i].fd < 0)
            die("socket");
        int one = 1;
        setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(cs[i].fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            die("connect");
        cs[i].buf = malloc(BUF_SIZE);
        if (!cs[i].buf)
            die("malloc");
        pfds[i].fd = cs[i].fd;
        pfds[i].events = POLLIN;
    }
    int active = 0;
    for (int i = 0; i < conns; i++)
        active += send_batch(&cs[i], req, (size_t)req_len, depth, scratch) > 0;
    while (active > 0) {
        if (poll(pfds, (nfds_t)conns, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        for (int i = 0; i < conns; i++) {
            struct conn *c = &cs[i];
            if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) || c->outstanding == 0)
                continue;
            ssize_t n = read(c->fd, c->buf + c->have, BUF_SIZE - c->have);
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                fprintf(stderr, "loadgen: connection %d closed with %d responses outstanding\n", i, c->outstanding);
                return 1;
            }
            c->have += (size_t)n;
            size_t len;
            int status = 0;
            while (c->outstanding > 0 && (len = complete_response(c->buf, c->have, &status)) > 0) {
                memmove(c->buf, c->buf + len, c->have - len);
                c->have -= len;
                c->outstanding--;
                responses++;
                non200 += status != 200;
            }
            if (c->have == BUF_SIZE) {
                fprintf(stderr, "loadgen: response larger than %d bytes\n", BUF_SIZE);
                return 1;
            }
            if (c->outstanding == 0 && send_batch(c, req, (size_t)req_len, depth, scratch) == 0) {
                active--;
                pfds[i].fd = -1; /* done: poll ignores it */
            }
        }
    }
    for (int i = 0; i < conns; i++)
        close(cs[i].fd);
    printf("responses=%ld non200=%ld\n", responses, non200);
    return responses == total && non200 == 0 ? 0 : 1;
}
