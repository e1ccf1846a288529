/*
 * echo: a TCP echo server on asyncloop's C API (plain C11).
 *
 *   echo [address] [port]      (defaults: 127.0.0.1 8080)
 *
 * Every connection gets back what it sends. SIGINT/SIGTERM: a signal handle's callback on the
 * loop stops both handles, closes the listener and every connection, and the loop returns once
 * their close callbacks ran. Then the loop is freed and the program exits 0.
 */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* One record per open connection, in a doubly linked list so shutdown can close them all. */
struct conn {
    aloop_tcp_t *tcp;
    struct server *srv;
    struct conn *prev, *next;
};

struct server {
    aloop_loop_t *loop;
    aloop_tcp_listener_t *listener;
    aloop_signal_t *sigint, *sigterm;
    struct conn *conns;
};

/* Close callback: unlink and free our record; the library frees the handle after return. */
static void on_conn_closed(aloop_tcp_t *tcp, void *user_data) {
    (void)tcp;
    struct conn *c = user_data;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void close_conn(struct conn *c) {
    /* ALOOP_E_ALREADY when it is already closing: nothing more to do. */
    aloop_tcp_close(c->tcp, on_conn_closed, c);
}

static void on_read(aloop_tcp_t *tcp, ptrdiff_t nread, const char *data, void *user_data) {
    struct conn *c = user_data;
    if (nread > 0) {
        /* aloop_tcp_write copies the data; no completion callback is needed. */
        int rc = aloop_tcp_write(tcp, data, (size_t)nread, NULL, NULL);
        if (rc != 0) {
            fprintf(stderr, "echo: write: %s\n", aloop_strerror(rc));
            close_conn(c);
        }
        return;
    }
    /* ALOOP_E_EOF or an error: this connection is done. */
    if (nread != ALOOP_E_EOF)
        fprintf(stderr, "echo: read: %s\n", aloop_strerror((int)nread));
    close_conn(c);
}

static void on_accept(aloop_tcp_listener_t *listener, int status, aloop_tcp_t *tcp, void *user_data) {
    (void)listener;
    struct server *srv = user_data;
    if (status != 0) {
        fprintf(stderr, "echo: accept: %s (retrying)\n", aloop_strerror(status));
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        aloop_tcp_close(tcp, NULL, NULL);
        return;
    }
    c->tcp = tcp;
    c->srv = srv;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    int rc = aloop_tcp_read_start(tcp, on_read, c, NULL);
    if (rc != 0) {
        fprintf(stderr, "echo: read_start: %s\n", aloop_strerror(rc));
        close_conn(c);
    }
}

static void on_stop_requested(aloop_signal_t *sig, int signum, void *user_data) {
    (void)sig;
    (void)signum;
    struct server *srv = user_data;
    /* Stop watching (a started signal handle keeps the loop running), stop accepting, close
     * every connection: the loop then runs dry. */
    aloop_signal_stop(srv->sigint);
    aloop_signal_stop(srv->sigterm);
    if (srv->listener) {
        aloop_tcp_listener_close(srv->listener, NULL, NULL);
        srv->listener = NULL;
    }
    for (struct conn *c = srv->conns; c; c = c->next)
        close_conn(c);
}

int main(int argc, char **argv) {
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1";
    int port = argc > 2 ? atoi(argv[2]) : 8080;
    if (port < 0 || port > 65535) {
        fprintf(stderr, "usage: echo [address] [port]\n");
        return 2;
    }
    struct server srv = {0};
    int rc = aloop_loop_new(NULL, &srv.loop);
    if (rc != 0) {
        fprintf(stderr, "echo: loop: %s\n", aloop_strerror(rc));
        return 1;
    }
    aloop_listen_options_t opts;
    aloop_listen_options_init(&opts);
    opts.reuse_port = 1;
    rc = aloop_tcp_listen(srv.loop, addr, (uint16_t)port, &opts, on_accept, &srv, NULL, &srv.listener);
    if (rc != 0) {
        fprintf(stderr, "echo: listen on %s:%d: %s (%s)\n", addr, port, aloop_strerror(rc), aloop_err_name(rc));
        aloop_loop_free(srv.loop);
        return 1;
    }
    if ((rc = aloop_signal_new(srv.loop, &srv.sigint)) != 0 || (rc = aloop_signal_new(srv.loop, &srv.sigterm)) != 0 ||
        (rc = aloop_signal_start(srv.sigint, SIGINT, on_stop_requested, &srv, NULL)) != 0 ||
        (rc = aloop_signal_start(srv.sigterm, SIGTERM, on_stop_requested, &srv, NULL)) != 0) {
        fprintf(stderr, "echo: cannot watch for signals: %s\n", aloop_strerror(rc));
        return 1;
    }

    printf("listening on %s:%d (backend=%s)\n", addr, aloop_tcp_listener_port(srv.listener),
           aloop_backend_name(aloop_loop_backend(srv.loop)));
    fflush(stdout);

    /* Returns when nothing is left: after a signal, once every close callback has run. */
    rc = aloop_loop_run(srv.loop, ALOOP_RUN_DEFAULT);
    if (rc < 0)
        fprintf(stderr, "echo: run: %s\n", aloop_strerror(rc));
    aloop_signal_free(srv.sigint);
    aloop_signal_free(srv.sigterm);
    rc = aloop_loop_free(srv.loop);
    if (rc != 0) {
        fprintf(stderr, "echo: loop_free: %s\n", aloop_strerror(rc));
        return 1;
    }
    return 0;
}
