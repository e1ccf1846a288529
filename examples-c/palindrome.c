/*
 * palindrome: an HTTP server in plain C11 on asyncloop.
 *
 *   palindrome [port]        (default 8080, all interfaces)
 *
 * Any POST answers 200 text/plain "The input is a palindrome." or "The input is not a
 * palindrome." depending on whether the body's bytes read the same reversed (exact,
 * case-sensitive); an empty body is 400. Other methods get 405 with "Allow: POST".
 * SIGINT/SIGTERM stop it gracefully (in-flight requests finish, then it exits 0): two signal
 * handles on the loop turn them into a callback.
 */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_palindrome(const unsigned char *s, size_t n) {
    for (size_t i = 0, j = n; i + 1 < j; i++, j--)
        if (s[i] != s[j - 1])
            return 0;
    return 1;
}

static void handle(aloop_http_request_t *req, void *user_data) {
    (void)user_data;
    static const aloop_http_header_t text[] = {{"Content-Type", "text/plain"}};
    if (strcmp(aloop_http_request_method(req), "POST") != 0) {
        static const aloop_http_header_t allow[] = {{"Content-Type", "text/plain"}, {"Allow", "POST"}};
        static const char msg[] = "Method Not Allowed: use POST\n";
        aloop_http_respond(req, 405, allow, 2, msg, sizeof msg - 1);
        return;
    }
    size_t len = 0;
    const unsigned char *body = aloop_http_request_body(req, &len);
    if (len == 0) {
        static const char msg[] = "The request body is empty.\n";
        aloop_http_respond(req, 400, text, 1, msg, sizeof msg - 1);
        return;
    }
    const char *answer = is_palindrome(body, len) ? "The input is a palindrome." : "The input is not a palindrome.";
    int rc = aloop_http_respond(req, 200, text, 1, answer, strlen(answer));
    if (rc != 0 && rc != ALOOP_E_CANCELLED)
        fprintf(stderr, "palindrome: respond: %s\n", aloop_strerror(rc));
}

struct app {
    aloop_loop_t *loop;
    aloop_http_server_t *server;
    aloop_signal_t *sigint, *sigterm;
};

static void on_stopped(aloop_http_server_t *server, void *user_data) {
    (void)server;
    struct app *app = user_data;
    aloop_loop_stop(app->loop);
}

/* On the loop's thread. Once the server shuts down, the handles stop: a second SIGINT then
 * ends the process at once, as it would without them. */
static void on_signal(aloop_signal_t *sig, int signum, void *user_data) {
    (void)sig;
    (void)signum;
    struct app *app = user_data;
    aloop_signal_stop(app->sigint);
    aloop_signal_stop(app->sigterm);
    aloop_http_server_shutdown(app->server, 5000, on_stopped, app);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    if (argc > 2 || port <= 0 || port > 65535) {
        fprintf(stderr, "usage: palindrome [port]\n");
        return 2;
    }
    struct app app = {0};
    int rc = aloop_loop_new(NULL, &app.loop);
    if (rc != 0) {
        fprintf(stderr, "palindrome: loop: %s\n", aloop_strerror(rc));
        return 1;
    }
    aloop_http_server_options_t opts;
    aloop_http_server_options_init(&opts);
    opts.reuse_port = 1;
    if ((rc = aloop_http_server_new(app.loop, &opts, &app.server)) != 0 ||
        (rc = aloop_http_server_fallback(app.server, handle, NULL, NULL)) != 0 ||
        (rc = aloop_http_server_listen(app.server, "0.0.0.0", (uint16_t)port)) < 0) {
        fprintf(stderr, "palindrome: cannot serve on port %d: %s\n", port, aloop_strerror(rc));
        return 1;
    }
    int port_rc = rc;
    if ((rc = aloop_signal_new(app.loop, &app.sigint)) != 0 || (rc = aloop_signal_new(app.loop, &app.sigterm)) != 0 ||
        (rc = aloop_signal_start(app.sigint, SIGINT, on_signal, &app, NULL)) != 0 ||
        (rc = aloop_signal_start(app.sigterm, SIGTERM, on_signal, &app, NULL)) != 0) {
        fprintf(stderr, "palindrome: cannot watch for signals: %s\n", aloop_strerror(rc));
        return 1;
    }
    rc = port_rc;
    printf("listening on 0.0.0.0:%d (backend=%s, threads=1)\n", rc, aloop_backend_name(aloop_loop_backend(app.loop)));
    fflush(stdout);

    rc = aloop_loop_run(app.loop, ALOOP_RUN_DEFAULT);
    if (rc < 0)
        fprintf(stderr, "palindrome: run: %s\n", aloop_strerror(rc));
    aloop_signal_free(app.sigint);
    aloop_signal_free(app.sigterm);
    if ((rc = aloop_http_server_free(app.server)) != 0)
        fprintf(stderr, "palindrome: server_free: %s\n", aloop_strerror(rc));
    if ((rc = aloop_loop_free(app.loop)) != 0)
        fprintf(stderr, "palindrome: loop_free: %s\n", aloop_strerror(rc));
    return 0;
}
