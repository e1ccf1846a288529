/* aloop_http_server_listen_fd on both backends: listening sockets made by the program (as
 * socket activation or a parent would hand them over), one TCP and one Unix, each given to the
 * servers of two loops on two threads, which share their connections; what it refuses (and
 * leaves open); and that the descriptors and the socket file stay the caller's: after both
 * servers have shut down, the kernel still queues a connection on the TCP socket. With no
 * descriptor left for the server's duplicate, the call gives -EMFILE. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "dial.h"

#define LOOPS 2
#define CLIENTS 24

static const aloop_http_header_t text_plain[] = {{"Content-Type", "text/plain"}};

struct worker {
    aloop_loop_t *loop;
    aloop_http_server_t *server;
    pthread_t thread;
    int served; /* requests this loop answered */
    int stopped;
};

static void on_who(aloop_http_request_t *req, void *ud) {
    struct worker *w = ud;
    w->served++;
    CHECK_RC(aloop_http_respond(req, 200, text_plain, 1, "served", 6), 0);
}

static void on_stopped(aloop_http_server_t *s, void *ud) {
    (void)s;
    ((struct worker *)ud)->stopped = 1;
}

static void shut_down(aloop_loop_t *loop, void *ud) {
    (void)loop;
    struct worker *w = ud;
    CHECK_RC(aloop_http_server_shutdown(w->server, 1000, on_stopped, w), 0);
}

static void *run_loop(void *arg) {
    struct worker *w = arg;
    CHECK_RC(aloop_loop_run(w->loop, ALOOP_RUN_DEFAULT), 0);
    return NULL;
}

static int is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static int listening_tcp(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(fd, 64) == 0);
    socklen_t len = sizeof a;
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct sockaddr_un unix_addr(const char *path) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    return a;
}

static int listening_unix(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = unix_addr(path);
    unlink(path);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(fd, 64) == 0);
    return fd;
}

/* Everything listen_fd refuses, each left open for its owner. */
static void refusals(aloop_http_server_t *srv) {
    int pipe_fds[2], pair[2];
    CHECK(pipe(pipe_fds) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    int unlistened = socket(AF_INET, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    int closed = dup(udp);
    CHECK(close(closed) == 0);
    CHECK_RC(aloop_http_server_listen_fd(srv, -1), ALOOP_E_INVALID);
    CHECK(strstr(aloop_last_error_message(), "not a listening stream socket") != NULL);
    CHECK_RC(aloop_http_server_listen_fd(srv, closed), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_listen_fd(srv, pipe_fds[0]), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_listen_fd(srv, pair[0]), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_listen_fd(srv, unlistened), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_listen_fd(srv, udp), ALOOP_E_INVALID);
    CHECK_RC(aloop_http_server_listen_fd(NULL, udp), ALOOP_E_NULL);
    int mine[] = {pipe_fds[0], pipe_fds[1], pair[0], pair[1], unlistened, udp};
    for (size_t i = 0; i < sizeof mine / sizeof *mine; i++) {
        CHECK(is_open(mine[i]));
        close(mine[i]);
    }
}

/* With no descriptor left for the duplicate, the call says so (not "not a listening socket"),
 * and the socket stays usable for the next call. */
static void out_of_descriptors(aloop_http_server_t *srv, int tcp, int port) {
    struct rlimit old, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    low = old;
    low.rlim_cur = 256;
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    int fillers[256], n = 0;
    while (n < 256 && (fillers[n] = dup(tcp)) >= 0)
        n++;
    CHECK(n < 256);
    CHECK_RC(aloop_http_server_listen_fd(srv, tcp), -EMFILE);
    while (n > 0)
        close(fillers[--n]);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    CHECK_RC(aloop_http_server_listen_fd(srv, tcp), port);
}

static void run(int backend) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/aloop-listen-fd-%d-%d.sock", (int)getpid(), backend);
    int port = 0;
    int tcp = listening_tcp(&port);
    int unx = listening_unix(path);
    struct worker w[LOOPS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < LOOPS; i++) {
        aloop_loop_options_t lo;
        aloop_loop_options_init(&lo);
        lo.backend = backend;
        CHECK_RC(aloop_loop_new(&lo, &w[i].loop), 0);
        aloop_http_server_options_t so;
        aloop_http_server_options_init(&so);
        CHECK_RC(aloop_http_server_new(w[i].loop, &so, &w[i].server), 0);
        CHECK_RC(aloop_http_server_route(w[i].server, "GET", "/who", on_who, &w[i], NULL), 0);
        if (i == 0)
            refusals(w[i].server);
        /* The same two sockets for both servers: the port comes back, 0 for the Unix one. */
        if (i == 0)
            out_of_descriptors(w[i].server, tcp, port);
        else
            CHECK_RC(aloop_http_server_listen_fd(w[i].server, tcp), port);
        CHECK_RC(aloop_http_server_listen_fd(w[i].server, unx), 0);
        CHECK(is_open(tcp) && is_open(unx));
    }
    for (int i = 0; i < LOOPS; i++)
        pthread_create(&w[i].thread, NULL, run_loop, &w[i]);

    /* Clients on both sockets, each on a connection of its own. */
    for (int i = 0; i < CLIENTS; i++) {
        int fd = i % 2 ? dial(port) : dial_unix(path);
        CHECK(fd >= 0);
        if (fd < 0)
            continue;
        CHECK(roundtrip(fd, "GET /who HTTP/1.1\r\nHost: t\r\n\r\n", "\r\n\r\nserved"));
        close(fd);
    }
    for (int i = 0; i < LOOPS; i++)
        CHECK_RC(aloop_loop_post(w[i].loop, shut_down, &w[i], NULL), 0);
    int served = 0;
    for (int i = 0; i < LOOPS; i++) {
        pthread_join(w[i].thread, NULL);
        CHECK(w[i].stopped == 1);
        served += w[i].served;
        CHECK_RC(aloop_http_server_listen_fd(w[i].server, tcp), ALOOP_E_CLOSED);
        CHECK_RC(aloop_http_server_free(w[i].server), 0);
        CHECK_RC(aloop_loop_free(w[i].loop), 0);
    }
    CHECK(served == CLIENTS);

    /* The servers closed their duplicates only: both sockets still listen, and the socket
     * file is still there. */
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    int late = dial(port);
    CHECK(late >= 0);
    int late_unix = dial_unix(path);
    CHECK(late_unix >= 0);
    close(late);
    close(late_unix);
    CHECK(close(tcp) == 0 && close(unx) == 0);
    unlink(path);
}

int main(void) {
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i]);
    return check_summary("test_listen_fd");
}
