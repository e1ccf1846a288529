// asyncloop/http_server.hpp: part of asyncloop.hpp (include that). The HTTP server: routes, listeners, shutdown.
#ifndef ASYNCLOOP_HTTP_SERVER_HPP
#define ASYNCLOOP_HTTP_SERVER_HPP

#include "tls.hpp"

namespace aloop {

/// An HTTP server on one loop, owned. Shut it down (and let the loop run until the shutdown
/// callback) before destroying it.
class HttpServer {
  public:
    using Handler = std::function<void(Responder)>;

    struct Options {
        aloop_http_server_options_t c;
        Options() { aloop_http_server_options_init(&c); }
    };

    HttpServer(Loop &loop, const Options &opts = Options()) {
        check(aloop_http_server_new(loop.get(), &opts.c, &srv_), "aloop_http_server_new");
    }
    HttpServer(const HttpServer &) = delete;
    HttpServer &operator=(const HttpServer &) = delete;
    ~HttpServer() {
        if (srv_ && aloop_http_server_free(srv_) != 0)
            std::fprintf(stderr, "asyncloop: HTTP server destroyed while busy (leaked)\n");
    }

    aloop_http_server_t *get() const noexcept { return srv_; }

    /// `method` nullptr: any method. Throws `Error` (and keeps nothing of `h`) if the route is
    /// refused, e.g. a method that is not upper case or a path without a leading '/'.
    void route(const char *method, const char *path, Handler h) {
        auto *heap = new Handler(std::move(h));
        registered(aloop_http_server_route(srv_, method, path, trampoline, heap, detail::delete_fn<Handler>), heap,
                   "aloop_http_server_route");
    }
    void route_prefix(const char *method, const char *prefix, Handler h) {
        auto *heap = new Handler(std::move(h));
        registered(aloop_http_server_route_prefix(srv_, method, prefix, trampoline, heap, detail::delete_fn<Handler>),
                   heap, "aloop_http_server_route_prefix");
    }
    void fallback(Handler h) {
        auto *heap = new Handler(std::move(h));
        registered(aloop_http_server_fallback(srv_, trampoline, heap, detail::delete_fn<Handler>), heap,
                   "aloop_http_server_fallback");
    }
    /// As `route`, for a route whose body streams (`aloop_http_server_route_stream`, `max_body`
    /// 0: no limit): the handler runs once the head is in, and reads the body with
    /// `std::move(r).read_body(...)` (`Responder::body()` is empty).
    void route_stream(const char *method, const char *path, uint64_t max_body, Handler h) {
        auto *heap = new Handler(std::move(h));
        registered(aloop_http_server_route_stream(srv_, method, path, max_body, trampoline, heap, detail::delete_fn<Handler>),
                   heap, "aloop_http_server_route_stream");
    }
    /// Returns the bound port.
    int listen(const char *ip, uint16_t port) { return check(aloop_http_server_listen(srv_, ip, port), "listen"); }
    /// Also serves on the Unix stream socket `path` (a stale socket file is replaced).
    void listen_unix(const char *path) { check(aloop_http_server_listen_unix(srv_, path), "aloop_http_server_listen_unix"); }
    /// Also serves from a socket made elsewhere and already listening (TCP or Unix: socket
    /// activation, an inherited socket). `fd` stays the caller's (the server listens on a
    /// duplicate), so one socket can go to the servers of several loops. Returns the TCP port,
    /// or 0 for a Unix socket; throws `Error` (ALOOP_E_INVALID for anything but a listening
    /// stream socket).
    int listen_fd(int fd) { return check(aloop_http_server_listen_fd(srv_, fd), "aloop_http_server_listen_fd"); }
    /// Serves a connection accepted elsewhere (a connected stream socket: socket activation,
    /// one end of a socketpair). On success the server owns `fd`; when this throws `Error`
    /// (ALOOP_E_INVALID for anything else, ALOOP_E_CLOSED after shutdown) it stays the caller's.
    void serve_fd(int fd) { check(aloop_http_server_serve_fd(srv_, fd), "aloop_http_server_serve_fd"); }
    /// Serves TLS with `cfg` on new connections from now on (open ones keep theirs); the
    /// server keeps its own reference. On the loop's thread.
    void set_tls(const TlsServerConfig &cfg) { check(aloop_http_server_set_tls(srv_, cfg.get()), "aloop_http_server_set_tls"); }
    size_t connections() const { return aloop_http_server_connections(srv_); }
    /// Graceful stop; `done` runs on the loop when every connection is closed.
    void shutdown(uint64_t grace_ms, std::function<void()> done) {
        using F = std::function<void()>;
        auto *heap = new F(std::move(done));
        int rc = aloop_http_server_shutdown(
            srv_, grace_ms,
            [](aloop_http_server_t *, void *ud) {
                auto *f = static_cast<F *>(ud);
                try {
                    (*f)();
                } catch (...) {
                    detail::report("shutdown");
                }
                delete f;
            },
            heap);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_http_server_shutdown");
        }
    }

  private:
    /// A failed registration never runs the destructor: the handler is ours to delete.
    static void registered(int rc, Handler *heap, const char *what) {
        if (rc != 0) {
            delete heap;
            throw Error(rc, what);
        }
    }
    static void trampoline(aloop_http_request_t *req, void *ud) {
        try {
            (*static_cast<Handler *>(ud))(Responder(req));
        } catch (...) {
            detail::report("HTTP handler");
        }
    }
    aloop_http_server_t *srv_ = nullptr;
};

} // namespace aloop

#endif
