/* nothing: the floor for `make bench-instr`, an HTTP responder that parses nothing. For every
 * "\r\n\r\n" it reads on a connection it writes one fixed response (a /plaintext answer of the
 * same size as a real server's), with one write per read. No routing, no header checks, no
 * Date formatting: what is left is the loop, the syscalls and the byte scanning.
 *
 *   nothing PORT        listens on 127.0.0.1:PORT; SIGTERM or SIGINT: exit 0
 *
 * Plain C11 and POSIX plus Linux epoll, one thread.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_BATCH 1024

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\n"
                               "Server: nothing\r\n"
                               "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 13\r\n"
                               "\r\n"
                               "Hello, World!";
#define RESPONSE_LEN (sizeof RESPONSE - 1)

static volatile sig_atomic_t stop;
static unsigned char match[MAX_FDS]; /* per fd: how much of "\r\n\r\n" the last bytes matched */
static char out[MAX_BATCH * RESPONSE_LEN];

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

/* Counts the request ends in data, carrying a partial match across reads in *state. */
static int count_ends(const char *data, size_t len, unsigned char *state) {
    static const char END[4] = {'\r', '\n', '\r', '\n'};
    int n = 0;
    unsigned s = *state;
    for (size_t i = 0; i < len; i++) {
        char b = data[i];
        if (b == END[s]) {
            if (++s == 4) {
                n++;
                s = 0;
            }
        } else {
            s = b == '\r';
        }
    }
    *state = (unsigned char)s;
    return n;
}

static void serve(int fd) {
    char buf[64 * 1024];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close(fd);
            return;
        }
        int k = count_ends(buf, (size_t)n, &match[fd]);
        while (k > 0) {
            int batch = k < MAX_BATCH ? k : MAX_BATCH;
            size_t len = (size_t)batch * RESPONSE_LEN;
            if (write(fd, out, len) != (ssize_t)len) { /* a client that stops reading: drop it */
                close(fd);
                return;
            }
            k -= batch;
        }
        if ((size_t)n < sizeof buf)
            return; /* drained: wait for the next readiness */
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: nothing PORT\n");
        return 2;
    }
    for (int i = 0; i < MAX_BATCH; i++)
        memcpy(out + (size_t)i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 4096) != 0) {
        perror("nothing: listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    while (!stop) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd != lfd) {
                serve(fd);
                continue;
            }
            int c;
            while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                if (c >= MAX_FDS) {
                    close(c);
                    continue;
                }
                match[c] = 0;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
            }
        }
    }
    return 0;
}
