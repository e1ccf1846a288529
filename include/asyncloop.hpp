// asyncloop.hpp: a header-only C++17 layer over asyncloop.h.
//
// RAII owners for loops, timers and HTTP servers; lambdas as callbacks (stored on the heap and
// freed by the library's user-data destructor; an exception escaping a callback is caught at
// the trampoline and reported on stderr, never thrown through C); a move-only Responder that
// answers its request exactly once (500 if it is destroyed unanswered), reads a streamed body
// (Responder::read_body) or starts a ChunkedResponse, which ends once (paced by on_drain);
// a client's streamed responses (HttpClient::request_stream) with pause and resume.
#ifndef ASYNCLOOP_HPP
#define ASYNCLOOP_HPP

#include "asyncloop.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace aloop {

/// An error code from the C API, with its message.
class Error : public std::runtime_error {
  public:
    explicit Error(int code, const std::string &what = "")
        : std::runtime_error((what.empty() ? "" : what + ": ") + aloop_strerror(code)), code_(code) {}
    int code() const noexcept { return code_; }
    const char *name() const noexcept { return aloop_err_name(code_); }

  private:
    int code_;
};

/// Throws `Error` for a negative return code; returns it otherwise.
inline int check(int rc, const char *what = "") {
    if (rc < 0)
        throw Error(rc, what);
    return rc;
}

namespace detail {
template <class F> void delete_fn(void *p) { delete static_cast<F *>(p); }
template <class T> struct is_optional : std::false_type {};
template <class T> struct is_optional<std::optional<T>> : std::true_type {};

inline void report(const char *where) noexcept {
    try {
        throw;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "asyncloop: exception in %s callback: %s\n", where, e.what());
    } catch (...) {
        std::fprintf(stderr, "asyncloop: unknown exception in %s callback\n", where);
    }
}
} // namespace detail

/// An event loop, owned. One per thread; `post` and `stop` may be called from any thread.
class Loop {
  public:
    enum class Backend { Auto = ALOOP_BACKEND_AUTO, Uring = ALOOP_BACKEND_URING, Epoll = ALOOP_BACKEND_EPOLL };

    explicit Loop(Backend backend = Backend::Auto, uint32_t queue_depth = 0) {
        aloop_loop_options_t o;
        aloop_loop_options_init(&o);
        o.backend = static_cast<int>(backend);
        if (queue_depth)
            o.queue_depth = queue_depth;
        check(aloop_loop_new(&o, &loop_), "aloop_loop_new");
    }
    Loop(const Loop &) = delete;
    Loop &operator=(const Loop &) = delete;
    ~Loop() {
        if (loop_ && aloop_loop_free(loop_) != 0)
            std::fprintf(stderr, "asyncloop: loop destroyed with open handles (leaked)\n");
    }

    aloop_loop_t *get() const noexcept { return loop_; }
    /// Runs until stopped or idle; returns whether anything is still active.
    bool run(int mode = ALOOP_RUN_DEFAULT) { return check(aloop_loop_run(loop_, mode), "aloop_loop_run") == 1; }
    /// Thread-safe.
    void stop() { check(aloop_loop_stop(loop_), "aloop_loop_stop"); }
    /// Runs `fn` on the loop's thread. Thread-safe.
    void post(std::function<void()> fn) {
        using F = std::function<void()>;
        auto *heap = new F(std::move(fn));
        int rc = aloop_loop_post(
            loop_,
            [](aloop_loop_t *, void *ud) {
                try {
                    (*static_cast<F *>(ud))();
                } catch (...) {
                    detail::report("post");
                }
            },
            heap, detail::delete_fn<F>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_loop_post");
        }
    }
    Backend backend() const { return static_cast<Backend>(aloop_loop_backend(loop_)); }
    const char *backend_name() const { return aloop_backend_name(aloop_loop_backend(loop_)); }

  private:
    aloop_loop_t *loop_ = nullptr;
};

/// A timer, owned; the callback may be any callable.
class Timer {
  public:
    explicit Timer(Loop &loop) { check(aloop_timer_new(loop.get(), &t_), "aloop_timer_new"); }
    Timer(const Timer &) = delete;
    Timer &operator=(const Timer &) = delete;
    ~Timer() { aloop_timer_free(t_); }

    void start(uint64_t timeout_ms, uint64_t repeat_ms, std::function<void()> fn) {
        using F = std::function<void()>;
        auto *heap = new F(std::move(fn));
        int rc = aloop_timer_start(
            t_, timeout_ms, repeat_ms,
            [](aloop_timer_t *, void *ud) {
                try {
                    (*static_cast<F *>(ud))();
                } catch (...) {
                    detail::report("timer");
                }
            },
            heap, detail::delete_fn<F>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_timer_start");
        }
    }
    void stop() { aloop_timer_stop(t_); }
    bool active() const { return aloop_timer_is_active(t_) == 1; }

  private:
    aloop_timer_t *t_ = nullptr;
};

/// A signal handle, owned (see aloop_signal_start): `fn(signum)` runs on the loop's thread
/// after the process receives the signal, whichever thread the kernel picked. Several
/// deliveries before the loop turns may be one call. The destructor stops it; the last
/// started handle of a signal puts back the action that was there before. A started handle
/// keeps `Loop::run` going.
class Signal {
  public:
    explicit Signal(Loop &loop) { check(aloop_signal_new(loop.get(), &s_), "aloop_signal_new"); }
    /// A handle started on `signum` at once.
    Signal(Loop &loop, int signum, std::function<void(int)> fn) : Signal(loop) {
        try {
            start(signum, std::move(fn));
        } catch (...) {
            aloop_signal_free(s_);
            throw;
        }
    }
    Signal(const Signal &) = delete;
    Signal &operator=(const Signal &) = delete;
    ~Signal() { aloop_signal_free(s_); }

    /// Starts or restarts watching `signum` with `fn`; throws `Error` (ALOOP_E_INVALID for a
    /// signal that cannot be watched, with aloop_last_error_message in the text).
    void start(int signum, std::function<void(int)> fn) {
        using F = std::function<void(int)>;
        auto *heap = new F(std::move(fn));
        int rc = aloop_signal_start(
            s_, signum,
            [](aloop_signal_t *, int n, void *ud) {
                try {
                    (*static_cast<F *>(ud))(n);
                } catch (...) {
                    detail::report("signal");
                }
            },
            heap, detail::delete_fn<F>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, rc == ALOOP_E_INVALID ? aloop_last_error_message() : "aloop_signal_start");
        }
    }
    void stop() { aloop_signal_stop(s_); }
    /// The watched signal, 0 when stopped.
    int signum() const { return aloop_signal_signum(s_); }
    aloop_signal_t *get() const noexcept { return s_; }

  private:
    aloop_signal_t *s_ = nullptr;
};

/// An HTTP response header.
struct Header {
    std::string name, value;
};

/// An end of a request's connection: an IP address as text and a port, or for a Unix socket
/// its path ("" for a client's unnamed socket) and port 0.
struct SocketAddress {
    std::string address;
    uint16_t port = 0;
};

/// A response's status and headers, checked and laid out once (`aloop_http_prepared_new`),
/// for any number of answers with bodies of their own (`Responder::respond(const
/// PreparedResponse &, body)`): the same bytes as `Responder::respond` with them, without
/// the work on the headers per answer. Owned and move-only; immutable, so requests of any
/// loop may use it from any thread. Destroy it only once no thread is answering with it.
class PreparedResponse {
  public:
    /// Throws `Error` (ALOOP_E_INVALID) for what an answer with them would be refused for
    /// whatever its body: a bad status or header, a framing header that cannot be honoured.
    PreparedResponse(int status, const std::vector<Header> &headers) {
        std::vector<aloop_http_header_t> hs;
        hs.reserve(headers.size());
        for (const auto &h : headers)
            hs.push_back({h.name.c_str(), h.value.c_str()});
        make(status, hs.data(), hs.size());
    }
    /// With one Content-Type.
    PreparedResponse(int status, const char *content_type) {
        const aloop_http_header_t h = {"Content-Type", content_type};
        make(status, &h, 1);
    }
    PreparedResponse(PreparedResponse &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    PreparedResponse &operator=(PreparedResponse &&o) noexcept {
        std::swap(p_, o.p_);
        return *this;
    }
    PreparedResponse(const PreparedResponse &) = delete;
    PreparedResponse &operator=(const PreparedResponse &) = delete;
    ~PreparedResponse() { aloop_http_prepared_free(p_); }
    const aloop_http_prepared_t *get() const noexcept { return p_; }

  private:
    void make(int status, const aloop_http_header_t *hs, size_t n) {
        int rc = aloop_http_prepared_new(status, hs, n, &p_);
        if (rc != 0)
            throw Error(rc, "aloop_http_prepared_new");
    }
    aloop_http_prepared_t *p_ = nullptr;
};

class Responder;
class ChunkedResponse;

/// A streamed request body's callbacks (see `Responder::read_body`), any of which may be left
/// empty. Each gets the request's Responder to answer it, at any point: answering before the
/// end stops the reading (no callback follows). On the loop's thread, never inside
/// `read_body`.
struct BodyReader {
    /// A piece of the body, borrowed during the call; pieces come as they arrive, none while
    /// paused (`BodyStream::pause`).
    std::function<void(Responder &, std::string_view)> on_data;
    /// The whole body arrived (the last call). Answer here or move the Responder out to
    /// answer later: one left unanswered in the reader is answered 500 when reading ends.
    std::function<void(Responder &)> on_end;
    /// The body cannot be read further (the last call): `ALOOP_E_HTTP_TOO_LARGE` (past the
    /// route's limit), `ALOOP_E_HTTP_PROTOCOL` (malformed, or cut short), `ALOOP_E_TIMEOUT`
    /// (no byte for the body timeout), `ALOOP_E_CANCELLED` (the client went away). A request
    /// it leaves unanswered (or, without it, every such request) is answered 413, 408 or 400.
    std::function<void(Responder &, int error)> on_error;
};

/// Backpressure on a streamed request body (from `Responder::body_stream`): a copyable,
/// non-owning handle, usable on the loop's thread while the request is unanswered (its calls
/// return ALOOP_E_ALREADY after that).
class BodyStream {
  public:
    explicit BodyStream(aloop_http_request_t *req = nullptr) noexcept : req_(req) {}
    /// Holds the body back: no `on_data` until `resume`, and the connection stops reading
    /// (the client's sending stops once the kernel's buffers are full). Returns 0, or
    /// ALOOP_E_ALREADY once the request is answered; throws `Error` before `read_body`
    /// (ALOOP_E_INVALID) and from another thread.
    int pause() { return result(aloop_http_request_body_pause(req_), "aloop_http_request_body_pause"); }
    /// Reads on; the callbacks come from the loop, never inside this call. As `pause`.
    int resume() { return result(aloop_http_request_body_resume(req_), "aloop_http_request_body_resume"); }

  private:
    static int result(int rc, const char *what) {
        if (rc != 0 && rc != ALOOP_E_ALREADY)
            throw Error(rc, what);
        return rc;
    }
    aloop_http_request_t *req_;
};

/// The right to answer one request. Move-only; answering consumes it. If it is destroyed
/// unanswered, the request is answered 500.
class Responder {
  public:
    explicit Responder(aloop_http_request_t *req) noexcept : req_(req) {}
    Responder(Responder &&o) noexcept : req_(std::exchange(o.req_, nullptr)) {}
    Responder &operator=(Responder &&o) noexcept {
        if (this != &o) {
            abandon();
            req_ = std::exchange(o.req_, nullptr);
        }
        return *this;
    }
    Responder(const Responder &) = delete;
    Responder &operator=(const Responder &) = delete;
    ~Responder() { abandon(); }

    bool valid() const noexcept { return req_ != nullptr; }
    aloop_http_request_t *get() const noexcept { return req_; }
    /// Gives up the request without answering it: the caller answers it through the C API,
    /// exactly once.
    aloop_http_request_t *release() noexcept { return std::exchange(req_, nullptr); }

    std::string_view method() const { return sv(aloop_http_request_method(req_)); }
    std::string_view target() const { return sv(aloop_http_request_target(req_)); }
    std::string_view path() const { return sv(aloop_http_request_path(req_)); }
    std::string_view query() const { return sv(aloop_http_request_query(req_)); }
    std::optional<std::string_view> header(const char *name) const {
        const char *v = aloop_http_request_header(req_, name);
        return v ? std::optional<std::string_view>(v) : std::nullopt;
    }
    std::string_view body() const {
        size_t n = 0;
        const void *p = aloop_http_request_body(req_, &n);
        return p ? std::string_view(static_cast<const char *>(p), n) : std::string_view();
    }
    /// The first query parameter `name`, percent-decoded.
    std::optional<std::string> query_param(const char *name) const {
        ptrdiff_t n = aloop_http_request_query_param(req_, name, nullptr, 0);
        if (n < 0)
            return std::nullopt;
        std::string v(static_cast<size_t>(n) + 1, '\0');
        aloop_http_request_query_param(req_, name, v.data(), v.size());
        v.resize(static_cast<size_t>(n));
        return v;
    }
    /// The minor version of HTTP/1.x: 0 or 1 (a negative error code for an answered request).
    int version() const { return aloop_http_request_version(req_); }
    /// Every header field in the order received (borrowed until the request is answered).
    std::vector<std::pair<std::string_view, std::string_view>> headers() const {
        std::vector<std::pair<std::string_view, std::string_view>> out;
        out.reserve(aloop_http_request_header_count(req_));
        const char *n, *v;
        for (size_t i = 0; aloop_http_request_header_at(req_, i, &n, &v) == 0; i++)
            out.emplace_back(n, v);
        return out;
    }
    /// The client's address (for logs, rate limits, checking a proxy before trusting its
    /// X-Forwarded-For); std::nullopt once the client has gone or the request is answered.
    std::optional<SocketAddress> peer_address() const { return address(aloop_http_request_peer_address); }
    /// The server's end: the address and port the request came in on, or its Unix socket's path.
    std::optional<SocketAddress> local_address() const { return address(aloop_http_request_local_address); }

    /// Answers; returns 0, or ALOOP_E_CANCELLED when the client has gone. Throws `Error` for a
    /// bad status or header (the request then stays unanswered and this Responder valid).
    int respond(int status, const std::vector<Header> &headers, std::string_view body) {
        std::vector<aloop_http_header_t> hs;
        hs.reserve(headers.size());
        for (const auto &h : headers)
            hs.push_back({h.name.c_str(), h.value.c_str()});
        return respond_raw(status, hs.data(), hs.size(), body);
    }
    /// With one Content-Type given as a C string (a literal): nothing is allocated.
    int respond(int status, const char *content_type, std::string_view body) {
        const aloop_http_header_t h = {"Content-Type", content_type};
        return respond_raw(status, &h, 1, body);
    }
    int respond(int status, const std::string &content_type, std::string_view body) {
        return respond(status, content_type.c_str(), body);
    }
    int respond(int status, std::string_view content_type, std::string_view body) {
        return respond(status, std::string(content_type), body);
    }

    /// Answers with a prepared status and headers and `body`; as `respond`. Throws `Error`
    /// for a prepared `Content-Length` that `body` does not match (ALOOP_E_INVALID: the
    /// request stays unanswered and this Responder valid) or a destroyed `prepared`.
    int respond(const PreparedResponse &prepared, std::string_view body) {
        int rc = aloop_http_respond_prepared(req_, prepared.get(), body.data(), body.size());
        if (rc == ALOOP_E_INVALID || rc == ALOOP_E_NULL || rc == ALOOP_E_STALE)
            throw Error(rc, "aloop_http_respond_prepared");
        req_ = nullptr;
        return rc;
    }

    /// Runs `fn` once if the client goes away before the answer.
    void on_abort(std::function<void()> fn) {
        using F = std::function<void()>;
        auto *heap = new F(std::move(fn));
        int rc = aloop_http_request_on_abort(
            req_,
            [](aloop_http_request_t *, void *ud) {
                try {
                    (*static_cast<F *>(ud))();
                } catch (...) {
                    detail::report("abort");
                }
            },
            heap, detail::delete_fn<F>);
        if (rc != 0)
            delete heap;
    }

    /// Starts a chunked response (`Transfer-Encoding: chunked`, for a body of unknown length)
    /// and hands the request to the returned ChunkedResponse. Throws `Error` for a bad status
    /// or header (a `Content-Length` among them) or from another thread: this Responder then
    /// stays valid and unanswered. When the client has gone the request is consumed all the
    /// same and the ChunkedResponse is not `open()`.
    ChunkedResponse respond_chunked(int status, const std::vector<Header> &headers);
    /// With one Content-Type given as a C string.
    ChunkedResponse respond_chunked(int status, const char *content_type);

    /// Reads the body of a request whose route streams (`HttpServer::route_stream`) with
    /// `reader`'s callbacks, and hands them the request: this Responder is left empty, and the
    /// callbacks answer through the one they get. A client waiting for `100 Continue` is sent
    /// it now. The callables are destroyed once, when reading ends: after the last callback,
    /// or when the request is answered first (the rest of the body is then discarded).
    /// Returns 0, or ALOOP_E_CANCELLED when the client has gone (nothing is registered; this
    /// Responder keeps the request: answer it, or let it go). Throws `Error` (and keeps the
    /// request here, unanswered) for a route that does not stream (ALOOP_E_INVALID), a reader
    /// started already or an answered request (ALOOP_E_ALREADY), another thread. An
    /// exception escaping a callback is reported and answers the request 500 (if the reader
    /// still has it).
    int read_body(BodyReader reader) &&;
    /// The pause and resume of this request's streamed body, for the callbacks and for code
    /// outside them (a sink's completion, a timer); take it before `read_body` empties this.
    BodyStream body_stream() const noexcept { return BodyStream(req_); }

  private:
    std::optional<SocketAddress> address(int (*get)(aloop_http_request_t *, char *, size_t, uint16_t *)) const {
        char buf[128]; // an IP fits in 46 bytes, a Unix socket's path in 108
        uint16_t port = 0;
        if (get(req_, buf, sizeof buf, &port) != 0)
            return std::nullopt;
        return SocketAddress{buf, port};
    }
    int respond_raw(int status, const aloop_http_header_t *hs, size_t n, std::string_view body) {
        int rc = aloop_http_respond(req_, status, hs, n, body.data(), body.size());
        if (rc == ALOOP_E_INVALID || rc == ALOOP_E_NULL)
            throw Error(rc, "aloop_http_respond");
        req_ = nullptr;
        return rc;
    }
    static std::string_view sv(const char *s) { return s ? std::string_view(s) : std::string_view(); }
    void abandon() noexcept {
        if (req_) {
            static const char msg[] = "500 Internal Server Error\n";
            aloop_http_header_t h{"Content-Type", "text/plain"};
            aloop_http_respond(req_, 500, &h, 1, msg, sizeof msg - 1);
            req_ = nullptr;
        }
    }
    aloop_http_request_t *req_ = nullptr;
};

/// A chunked response in progress (from `Responder::respond_chunked`), owned and move-only:
/// chunks, then the end, exactly once; destroying an open one ends it.
class ChunkedResponse {
  public:
    /// Runs when everything written so far has reached the kernel (see `on_drain`).
    using DrainFn = std::function<void(ChunkedResponse &)>;

    ChunkedResponse() noexcept = default;
    /// Takes a request whose chunked response was started through the C API.
    explicit ChunkedResponse(aloop_http_request_t *req) noexcept : req_(req) {}
    ChunkedResponse(ChunkedResponse &&o) noexcept : req_(std::exchange(o.req_, nullptr)) {}
    ChunkedResponse &operator=(ChunkedResponse &&o) noexcept {
        if (this != &o) {
            end();
            req_ = std::exchange(o.req_, nullptr);
        }
        return *this;
    }
    ChunkedResponse(const ChunkedResponse &) = delete;
    ChunkedResponse &operator=(const ChunkedResponse &) = delete;
    ~ChunkedResponse() { end(); }

    /// False once ended, once the client has gone (a call said ALOOP_E_CANCELLED), or moved from.
    bool open() const noexcept { return req_ != nullptr; }
    aloop_http_request_t *get() const noexcept { return req_; }
    /// Gives the request up: the caller ends it through the C API.
    aloop_http_request_t *release() noexcept { return std::exchange(req_, nullptr); }

    /// Sends `data` (copied) as one chunk; an empty one sends nothing. Returns 0;
    /// ALOOP_E_CANCELLED when the client has gone (the request is consumed: stop writing);
    /// ALOOP_E_ALREADY when not open. Throws `Error` from another thread.
    int write(std::string_view data) {
        if (!req_)
            return ALOOP_E_ALREADY;
        // Taken before the call: one that consumes the request may run a drain destructor
        // that destroys this object, which is touched again only when the request lives on.
        aloop_http_request_t *r = std::exchange(req_, nullptr);
        int rc = aloop_http_chunk(r, data.data(), data.size());
        if (rc == ALOOP_E_CANCELLED || rc == ALOOP_E_ALREADY)
            return rc;
        req_ = r;
        return check(rc, "aloop_http_chunk");
    }
    /// Ends the response (the request is consumed). Returns 0, ALOOP_E_CANCELLED (the client
    /// had gone), ALOOP_E_ALREADY when not open, or another error code; never throws.
    int end() noexcept {
        if (!req_)
            return ALOOP_E_ALREADY;
        return aloop_http_chunk_end(std::exchange(req_, nullptr));
    }

    /// Paces the response: hands it to `fn`, which runs once everything written so far has
    /// reached the kernel, and again after each later `write` has; each run writes the next
    /// piece or ends the response, so one piece at a time is in memory and the client's reading
    /// sets the pace. If the client goes away `fn` runs once more and its `write` returns
    /// ALOOP_E_CANCELLED. This object is left empty: `fn` gets the response (move it out to
    /// write from elsewhere; a later `on_drain` on it replaces `fn`). `fn` is destroyed once,
    /// when the response ends (`end`, or the client gone); an exception escaping it is
    /// reported and ends the response. Returns 0, ALOOP_E_CANCELLED (the client has gone:
    /// the request is consumed, `fn` destroyed) or ALOOP_E_ALREADY (not open); throws `Error`
    /// for an empty `fn` or from another thread (the response then stays here).
    int on_drain(DrainFn fn) &&;

  private:
    aloop_http_request_t *req_ = nullptr;
};

namespace detail {
/// A streamed body's reader on the heap: the request and the callbacks, until reading ends.
struct BodyState {
    Responder r;
    BodyReader fns;
};

/// The answer to a streamed body's error that its callback left unanswered.
inline void body_error_answer(Responder &r, int error) noexcept {
    int status = error == ALOOP_E_HTTP_TOO_LARGE ? 413 : error == ALOOP_E_TIMEOUT ? 408 : 400;
    const char *text = status == 413   ? "413 Payload Too Large\n"
                       : status == 408 ? "408 Request Timeout\n"
                                       : "400 Bad Request: the body could not be read\n";
    try {
        r.respond(status, "text/plain", text);
    } catch (...) {
        report("HTTP body");
    }
}

inline void body_tramp(aloop_http_request_t *, ptrdiff_t nread, const void *data, void *ud) {
    auto *s = static_cast<BodyState *>(ud);
    try {
        if (nread > 0) {
            if (s->fns.on_data)
                s->fns.on_data(s->r, std::string_view(static_cast<const char *>(data), static_cast<size_t>(nread)));
        } else if (nread == ALOOP_E_EOF) {
            if (s->fns.on_end)
                s->fns.on_end(s->r);
        } else {
            if (s->fns.on_error)
                s->fns.on_error(s->r, static_cast<int>(nread));
            if (s->r.valid())
                body_error_answer(s->r, static_cast<int>(nread));
        }
    } catch (...) {
        report("HTTP body");
        Responder failed(std::move(s->r)); // answered 500 here, if the reader still had it
    }
}

/// A paced chunked response on the heap: the response and its producer, until it ends.
struct DrainState {
    ChunkedResponse res;
    ChunkedResponse::DrainFn fn;
};

inline void drain_tramp(aloop_http_request_t *, void *ud) {
    auto *s = static_cast<DrainState *>(ud);
    try {
        s->fn(s->res);
    } catch (...) {
        report("HTTP drain");
        s->res.end();
    }
}
} // namespace detail

inline ChunkedResponse Responder::respond_chunked(int status, const std::vector<Header> &headers) {
    std::vector<aloop_http_header_t> hs;
    hs.reserve(headers.size());
    for (const auto &h : headers)
        hs.push_back({h.name.c_str(), h.value.c_str()});
    int rc = aloop_http_respond_chunked(req_, status, hs.data(), hs.size());
    if (rc == ALOOP_E_INVALID || rc == ALOOP_E_NULL || rc == ALOOP_E_WRONG_THREAD)
        throw Error(rc, "aloop_http_respond_chunked");
    aloop_http_request_t *r = std::exchange(req_, nullptr);
    return ChunkedResponse(rc == 0 ? r : nullptr);
}

inline ChunkedResponse Responder::respond_chunked(int status, const char *content_type) {
    const aloop_http_header_t h = {"Content-Type", content_type};
    int rc = aloop_http_respond_chunked(req_, status, &h, 1);
    if (rc == ALOOP_E_INVALID || rc == ALOOP_E_NULL || rc == ALOOP_E_WRONG_THREAD)
        throw Error(rc, "aloop_http_respond_chunked");
    aloop_http_request_t *r = std::exchange(req_, nullptr);
    return ChunkedResponse(rc == 0 ? r : nullptr);
}

inline int Responder::read_body(BodyReader reader) && {
    auto *s = new detail::BodyState{std::move(*this), std::move(reader)};
    int rc = aloop_http_request_body_start(s->r.get(), detail::body_tramp, s, detail::delete_fn<detail::BodyState>);
    if (rc == 0)
        return 0;
    // Refused: the destructor never runs, and the request comes back here unanswered.
    *this = std::move(s->r);
    delete s;
    if (rc == ALOOP_E_CANCELLED)
        return rc;
    throw Error(rc, "aloop_http_request_body_start");
}

inline int ChunkedResponse::on_drain(DrainFn fn) && {
    if (!req_)
        return ALOOP_E_ALREADY;
    if (!fn)
        throw Error(ALOOP_E_NULL, "ChunkedResponse::on_drain");
    auto *s = new detail::DrainState{std::move(*this), std::move(fn)};
    int rc = aloop_http_chunk_on_drain(s->res.get(), detail::drain_tramp, s, detail::delete_fn<detail::DrainState>);
    if (rc == 0)
        return 0;
    if (rc == ALOOP_E_CANCELLED || rc == ALOOP_E_ALREADY) {
        s->res.release(); // consumed (the client has gone) or over
        delete s;
        return rc;
    }
    *this = std::move(s->res);
    delete s;
    throw Error(rc, "aloop_http_chunk_on_drain");
}

/// The reason text of the failure just reported on this thread (read it inside the callback
/// that got the error code, or right after a call failed); "" when there is none.
inline std::string last_error_message() { return aloop_last_error_message(); }

/// A server's TLS configuration (certificate chain and key, optional client-certificate
/// verification), owned and move-only. Servers keep their own reference: it may be destroyed
/// once handed to them. Throws `Error` with the reason (`ALOOP_E_TLS_CONFIG`: unreadable or
/// invalid PEM, a key that does not match its certificate).
class TlsServerConfig {
  public:
    struct Options {
        aloop_tls_server_options_t c;
        Options() { aloop_tls_server_options_init(&c); }
    };

    explicit TlsServerConfig(const Options &o) {
        int rc = aloop_tls_server_config_new(&o.c, &cfg_);
        if (rc != 0)
            throw Error(rc, std::string("TLS server configuration: ") + aloop_last_error_message());
    }
    /// From PEM files; with `client_ca`, clients must present a certificate signed by it.
    static TlsServerConfig from_files(const std::string &cert_chain, const std::string &key,
                                      const std::string &client_ca = "") {
        Options o;
        o.c.cert_chain_file = cert_chain.c_str();
        o.c.key_file = key.c_str();
        if (!client_ca.empty())
            o.c.client_ca_file = client_ca.c_str();
        return TlsServerConfig(o);
    }
    TlsServerConfig(TlsServerConfig &&o) noexcept : cfg_(std::exchange(o.cfg_, nullptr)) {}
    TlsServerConfig &operator=(TlsServerConfig &&o) noexcept {
        std::swap(cfg_, o.cfg_);
        return *this;
    }
    TlsServerConfig(const TlsServerConfig &) = delete;
    TlsServerConfig &operator=(const TlsServerConfig &) = delete;
    ~TlsServerConfig() { aloop_tls_server_config_free(cfg_); }
    const aloop_tls_server_config_t *get() const noexcept { return cfg_; }

  private:
    aloop_tls_server_config_t *cfg_ = nullptr;
};

/// A client's TLS configuration (trusted roots, client certificate), owned and move-only.
class TlsClientConfig {
  public:
    struct Options {
        aloop_tls_client_options_t c;
        Options() { aloop_tls_client_options_init(&c); }
    };

    explicit TlsClientConfig(const Options &o) {
        int rc = aloop_tls_client_config_new(&o.c, &cfg_);
        if (rc != 0)
            throw Error(rc, std::string("TLS client configuration: ") + aloop_last_error_message());
    }
    /// Trusting the CA file `ca` ("" for the system's roots). `insecure_skip_verify` turns
    /// verification off: anyone on the path can read and change the traffic.
    static TlsClientConfig trusting(const std::string &ca, bool insecure_skip_verify = false) {
        Options o;
        if (!ca.empty())
            o.c.ca_file = ca.c_str();
        o.c.insecure_skip_verify = insecure_skip_verify;
        return TlsClientConfig(o);
    }
    TlsClientConfig(TlsClientConfig &&o) noexcept : cfg_(std::exchange(o.cfg_, nullptr)) {}
    TlsClientConfig &operator=(TlsClientConfig &&o) noexcept {
        std::swap(cfg_, o.cfg_);
        return *this;
    }
    TlsClientConfig(const TlsClientConfig &) = delete;
    TlsClientConfig &operator=(const TlsClientConfig &) = delete;
    ~TlsClientConfig() { aloop_tls_client_config_free(cfg_); }
    const aloop_tls_client_config_t *get() const noexcept { return cfg_; }

  private:
    aloop_tls_client_config_t *cfg_ = nullptr;
};

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

/// A query outcome, borrowed during its callback.
class PgResult {
  public:
    PgResult(int status, const aloop_pg_result_t *r) noexcept : status_(status), r_(r) {}
    bool ok() const noexcept { return status_ == 0; }
    int status() const noexcept { return status_; }
    size_t rows() const { return aloop_pg_result_rows(r_); }
    size_t columns() const { return aloop_pg_result_columns(r_); }
    bool is_null(size_t row, size_t col) const { return aloop_pg_result_is_null(r_, row, col) == 1; }
    std::string_view value(size_t row, size_t col) const {
        const char *v = aloop_pg_result_value(r_, row, col);
        return v ? std::string_view(v, aloop_pg_result_length(r_, row, col)) : std::string_view();
    }
    long long integer(size_t row, size_t col) const {
        const char *v = aloop_pg_result_value(r_, row, col);
        return v ? std::strtoll(v, nullptr, 10) : 0;
    }
    uint64_t affected_rows() const { return aloop_pg_result_affected_rows(r_); }
    std::string_view error_message() const { return aloop_pg_result_error_message(r_); }
    std::string_view sqlstate() const { return aloop_pg_result_sqlstate(r_); }

    /// The name of column `col` ("" out of range).
    std::string_view column_name(size_t col) const {
        const char *n = aloop_pg_result_column_name(r_, col);
        return n ? std::string_view(n) : std::string_view();
    }
    /// The first column named exactly `name`, if any.
    std::optional<size_t> find_column(const std::string &name) const {
        ptrdiff_t i = aloop_pg_result_column_index(r_, name.c_str());
        return i >= 0 ? std::optional<size_t>(static_cast<size_t>(i)) : std::nullopt;
    }
    /// The column named `name`; throws Error(ALOOP_E_NOT_FOUND) if there is none.
    size_t column(const std::string &name) const {
        ptrdiff_t i = aloop_pg_result_column_index(r_, name.c_str());
        if (i < 0)
            throw Error(static_cast<int>(i), "column \"" + name + "\"");
        return static_cast<size_t>(i);
    }
    /// The type OID of column `col` (ALOOP_PG_OID_*; 0 out of range).
    uint32_t type(size_t col) const { return aloop_pg_result_column_type(r_, col); }

    /// The value at (`row`, `col`) as T: an integer type (int2/int4/int8/oid columns; Error
    /// ALOOP_E_PG_TYPE if it does not fit T), bool, double or float (float, numeric and
    /// integer columns), std::string_view (borrowed from the result) or std::string (text),
    /// std::vector<uint8_t> (bytea), or std::optional of one of them (nullopt for NULL).
    /// Throws Error: ALOOP_E_PG_NULL for NULL (unless optional), ALOOP_E_PG_TYPE for another
    /// type, ALOOP_E_NOT_FOUND out of range. Text and binary results alike.
    template <class T> T get(size_t row, size_t col) const {
        if constexpr (detail::is_optional<T>::value) {
            if (is_null(row, col) && row < rows() && col < columns())
                return std::nullopt;
            return get<typename T::value_type>(row, col);
        } else if constexpr (std::is_same_v<T, bool>) {
            int b = 0;
            check(aloop_pg_result_get_bool(r_, row, col, &b), "PgResult::get<bool>");
            return b != 0;
        } else if constexpr (std::is_integral_v<T>) {
            int64_t v = 0;
            check(aloop_pg_result_get_int64(r_, row, col, &v), "PgResult::get<integer>");
            if constexpr (std::is_unsigned_v<T>) {
                if (v < 0 || static_cast<uint64_t>(v) > std::numeric_limits<T>::max())
                    throw Error(ALOOP_E_PG_TYPE, "PgResult::get: out of range");
            } else if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                       v > static_cast<int64_t>(std::numeric_limits<T>::max())) {
                throw Error(ALOOP_E_PG_TYPE, "PgResult::get: out of range");
            }
            return static_cast<T>(v);
        } else if constexpr (std::is_floating_point_v<T>) {
            double d = 0;
            check(aloop_pg_result_get_double(r_, row, col, &d), "PgResult::get<double>");
            return static_cast<T>(d);
        } else if constexpr (std::is_same_v<T, std::string_view>) {
            const char *p = nullptr;
            size_t n = 0;
            check(aloop_pg_result_get_text(r_, row, col, &p, &n), "PgResult::get<text>");
            return std::string_view(p, n);
        } else if constexpr (std::is_same_v<T, std::string>) {
            return std::string(get<std::string_view>(row, col));
        } else if constexpr (std::is_same_v<T, std::vector<uint8_t>>) {
            ptrdiff_t n = aloop_pg_result_get_bytea(r_, row, col, nullptr, 0);
            if (n < 0)
                throw Error(static_cast<int>(n), "PgResult::get<bytea>");
            std::vector<uint8_t> v(static_cast<size_t>(n));
            if (n > 0)
                aloop_pg_result_get_bytea(r_, row, col, v.data(), v.size());
            return v;
        } else {
            static_assert(detail::is_optional<T>::value && !detail::is_optional<T>::value,
                          "PgResult::get: unsupported type");
        }
    }
    /// `get` by column name.
    template <class T> T get(size_t row, const std::string &name) const { return get<T>(row, column(name)); }

  private:
    int status_;
    const aloop_pg_result_t *r_;
};

/// How a transaction, COPY or LISTEN ended: 0, or an error code with the server's SQLSTATE and
/// a message (borrowed during the call).
using PgEndCallback = std::function<void(int status, std::string_view sqlstate, std::string_view message)>;

namespace detail {
inline void pg_end_tramp(int status, const char *state, const char *msg, void *ud) {
    try {
        auto *f = static_cast<PgEndCallback *>(ud);
        if (*f)
            (*f)(status, state, msg);
    } catch (...) {
        report("PostgreSQL");
    }
}
} // namespace detail

/// A running COPY, as its callbacks see it (not owned: valid until its done callback
/// returns; the library ends it).
class PgCopy {
  public:
    explicit PgCopy(aloop_pg_copy_t *c) noexcept : c_(c) {}
    aloop_pg_copy_t *get() const noexcept { return c_; }
    /// COPY FROM STDIN: sends `data` (copied). True: write more now; false: the socket is full,
    /// wait for the ready callback. Throws Error on misuse or a broken connection.
    bool write(std::string_view data) const {
        return check(aloop_pg_copy_write(c_, data.data(), data.size()), "aloop_pg_copy_write") == 0;
    }
    /// COPY FROM STDIN: the data is complete.
    void finish() const { check(aloop_pg_copy_finish(c_), "aloop_pg_copy_finish"); }
    /// COPY TO STDOUT: reads on after the data callback returned false.
    void resume() const { check(aloop_pg_copy_resume(c_), "aloop_pg_copy_resume"); }
    /// Stops it; the done callback follows with ALOOP_E_CANCELLED. Returns 0 or the error
    /// code (ALOOP_E_STALE once it has ended).
    int cancel() const noexcept { return aloop_pg_copy_cancel(c_); }

  private:
    aloop_pg_copy_t *c_;
};

namespace detail {
/// The callbacks of one COPY, on the heap until it ends.
struct PgCopyFns {
    std::function<bool(PgCopy, std::string_view)> data; // COPY OUT: false pauses
    std::function<void(PgCopy)> ready;                   // COPY IN
    std::function<void(int, uint64_t, std::string_view)> done;
};
inline int pg_copy_data(aloop_pg_copy_t *c, const void *data, size_t len, void *ud) {
    try {
        bool more = static_cast<PgCopyFns *>(ud)->data(PgCopy(c), std::string_view(static_cast<const char *>(data), len));
        return more ? 0 : ALOOP_PG_COPY_PAUSE;
    } catch (...) {
        report("COPY");
        aloop_pg_copy_cancel(c);
        return 0;
    }
}
inline void pg_copy_ready(aloop_pg_copy_t *c, void *ud) {
    try {
        static_cast<PgCopyFns *>(ud)->ready(PgCopy(c));
    } catch (...) {
        report("COPY");
        aloop_pg_copy_cancel(c);
    }
}
inline void pg_copy_done(aloop_pg_copy_t *, int status, uint64_t rows, const char *, const char *msg, void *ud) {
    try {
        auto &f = static_cast<PgCopyFns *>(ud)->done;
        if (f)
            f(status, rows, msg);
    } catch (...) {
        report("COPY");
    }
}
} // namespace detail

/// A PostgreSQL pool on one loop, owned.
class PgPool {
  public:
    using Callback = std::function<void(const PgResult &)>;
    /// A parameter: text, or std::nullopt for SQL NULL.
    using Param = std::optional<std::string>;

    /// All of aloop_pg_pool_options_t; `c.conninfo` is replaced by the constructor's argument.
    struct Options {
        aloop_pg_pool_options_t c;
        Options() { aloop_pg_pool_options_init(&c); }
    };

    PgPool(Loop &loop, const std::string &conninfo, size_t size) : PgPool(loop, conninfo, sized(size)) {}
    PgPool(Loop &loop, const std::string &conninfo, const Options &opts) {
        aloop_pg_pool_options_t o = opts.c;
        o.conninfo = conninfo.empty() ? nullptr : conninfo.c_str();
        check(aloop_pg_pool_new(loop.get(), &o, &pool_), "aloop_pg_pool_new");
    }
    PgPool(const PgPool &) = delete;
    PgPool &operator=(const PgPool &) = delete;
    ~PgPool() { aloop_pg_pool_free(pool_); }

    aloop_pg_pool_t *get() const noexcept { return pool_; }

    void prepare(const char *name, const char *sql) { check(aloop_pg_prepare(pool_, name, sql), "aloop_pg_prepare"); }
    /// `flags`: ALOOP_PG_READ_ONLY (may run on a read replica), ALOOP_PG_BINARY (binary
    /// results; read them with PgResult::get).
    void query(const char *sql, const std::vector<Param> &params, Callback cb, uint32_t flags = 0) {
        send(false, sql, params, std::move(cb), flags);
    }
    void execute(const char *name, const std::vector<Param> &params, Callback cb, uint32_t flags = 0) {
        send(true, name, params, std::move(cb), flags);
    }

    /// One statement of a batch: a prepared statement's name (`prepared`) or SQL text (`sql`),
    /// exactly one of them, with its parameters.
    struct Step {
        const char *prepared = nullptr;
        const char *sql = nullptr;
        std::vector<Param> params;
    };
    /// Gets one result per statement, in order, once, on the loop's thread; the results are
    /// borrowed until it returns.
    using BatchCallback = std::function<void(const std::vector<PgResult> &)>;

    /// Runs `steps` in order on one connection as one transaction, sent with a single sync (see
    /// aloop_pg_batch): if one fails, the later ones report ALOOP_E_PG_ABORTED. Names, SQL and
    /// parameters are copied before it returns. Throws aloop::Error (the callback is then never
    /// called), e.g. for an unknown prepared name.
    void batch(const std::vector<Step> &steps, BatchCallback cb, uint32_t flags = 0) {
        std::vector<std::vector<const char *>> values(steps.size());
        std::vector<aloop_pg_statement_t> stmts(steps.size());
        for (size_t i = 0; i < steps.size(); i++) {
            values[i].reserve(steps[i].params.size());
            for (const auto &p : steps[i].params)
                values[i].push_back(p ? p->c_str() : nullptr);
            stmts[i] = aloop_pg_statement_t{steps[i].sql, steps[i].prepared, values[i].size(), values[i].data()};
        }
        auto *heap = new BatchCallback(std::move(cb));
        auto tramp = [](size_t n, const int *status, const aloop_pg_result_t *const *results, void *ud) {
            try {
                std::vector<PgResult> out;
                out.reserve(n);
                for (size_t i = 0; i < n; i++)
                    out.emplace_back(status[i], results[i]);
                (*static_cast<BatchCallback *>(ud))(out);
            } catch (...) {
                detail::report("PostgreSQL");
            }
        };
        int rc = aloop_pg_batch_ex(pool_, stmts.data(), stmts.size(), flags, tramp, heap, detail::delete_fn<BatchCallback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_pg_batch");
        }
    }

    using CopyDone = std::function<void(int status, uint64_t rows, std::string_view message)>;
    /// Runs `sql`, a COPY ... TO STDOUT, on a connection of its own: `on_data` gets the data as
    /// it arrives (return false to pause until PgCopy::resume), `on_done` once at the end with
    /// the rows copied or an error. Throws Error (no callback runs then).
    PgCopy copy_out(const char *sql, std::function<bool(PgCopy, std::string_view)> on_data, CopyDone on_done) {
        auto *fns = new detail::PgCopyFns{std::move(on_data), {}, std::move(on_done)};
        aloop_pg_copy_t *c = nullptr;
        int rc = aloop_pg_copy_out(pool_, sql, detail::pg_copy_data, detail::pg_copy_done, fns,
                                   detail::delete_fn<detail::PgCopyFns>, &c);
        if (rc != 0) {
            delete fns;
            throw Error(rc, "aloop_pg_copy_out");
        }
        return PgCopy(c);
    }
    /// Runs `sql`, a COPY ... FROM STDIN: `on_ready` runs when data may be written (again after
    /// PgCopy::write returned false); end with PgCopy::finish.
    PgCopy copy_in(const char *sql, std::function<void(PgCopy)> on_ready, CopyDone on_done) {
        auto *fns = new detail::PgCopyFns{{}, std::move(on_ready), std::move(on_done)};
        aloop_pg_copy_t *c = nullptr;
        int rc = aloop_pg_copy_in(pool_, sql, detail::pg_copy_ready, detail::pg_copy_done, fns,
                                  detail::delete_fn<detail::PgCopyFns>, &c);
        if (rc != 0) {
            delete fns;
            throw Error(rc, "aloop_pg_copy_in");
        }
        return PgCopy(c);
    }

  private:
    static Options sized(size_t size) {
        Options o;
        o.c.size = size;
        return o;
    }
    void send(bool prepared, const char *what, const std::vector<Param> &params, Callback cb, uint32_t flags) {
        std::vector<const char *> values;
        values.reserve(params.size());
        for (const auto &p : params)
            values.push_back(p ? p->c_str() : nullptr);
        auto *heap = new Callback(std::move(cb));
        auto tramp = [](int status, const aloop_pg_result_t *r, void *ud) {
            try {
                (*static_cast<Callback *>(ud))(PgResult(status, r));
            } catch (...) {
                detail::report("PostgreSQL");
            }
        };
        int rc = prepared ? aloop_pg_execute_ex(pool_, what, values.size(), values.data(), flags, tramp, heap,
                                                detail::delete_fn<Callback>)
                          : aloop_pg_query_ex(pool_, what, values.size(), values.data(), flags, tramp, heap,
                                              detail::delete_fn<Callback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, prepared ? "aloop_pg_execute" : "aloop_pg_query");
        }
    }
    aloop_pg_pool_t *pool_ = nullptr;
};

/// An interactive transaction on a connection leased from a pool. Move-only; the destructor
/// rolls back a transaction that was neither committed nor rolled back (statements not sent
/// yet then complete with ALOOP_E_CANCELLED). Statements may be queued at once: they are sent
/// once the connection is leased.
class Transaction {
  public:
    using Param = PgPool::Param;
    using Callback = PgPool::Callback;
    struct Options {
        aloop_pg_txn_options_t c;
        Options() { aloop_pg_txn_options_init(&c); }
    };

    explicit Transaction(PgPool &pool, const Options &opts = Options()) {
        check(aloop_pg_txn_begin(pool.get(), &opts.c, &txn_), "aloop_pg_txn_begin");
    }
    Transaction(Transaction &&o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
    Transaction &operator=(Transaction &&o) noexcept {
        if (this != &o) {
            aloop_pg_txn_free(txn_);
            txn_ = std::exchange(o.txn_, nullptr);
        }
        return *this;
    }
    Transaction(const Transaction &) = delete;
    Transaction &operator=(const Transaction &) = delete;
    ~Transaction() { aloop_pg_txn_free(txn_); }

    /// False once committed, rolled back or moved from.
    bool active() const noexcept { return txn_ != nullptr; }
    aloop_pg_txn_t *get() const noexcept { return txn_; }

    /// `flags`: 0 or ALOOP_PG_BINARY.
    void query(const char *sql, const std::vector<Param> &params, Callback cb, uint32_t flags = 0) {
        send(false, sql, params, std::move(cb), flags);
    }
    /// A statement registered on the pool with PgPool::prepare.
    void execute(const char *name, const std::vector<Param> &params, Callback cb) {
        send(true, name, params, std::move(cb), 0);
    }
    /// Commits; `cb` gets 0, ALOOP_E_PG_ABORTED (a statement had failed: rolled back), or the
    /// error that ended the transaction. The Transaction is inactive afterwards.
    void commit(PgEndCallback cb = {}) { end(true, std::move(cb)); }
    void rollback(PgEndCallback cb = {}) { end(false, std::move(cb)); }

    /// COPY inside the transaction (see PgPool::copy_out and copy_in).
    PgCopy copy_out(const char *sql, std::function<bool(PgCopy, std::string_view)> on_data, PgPool::CopyDone on_done) {
        auto *fns = new detail::PgCopyFns{std::move(on_data), {}, std::move(on_done)};
        aloop_pg_copy_t *c = nullptr;
        int rc = aloop_pg_txn_copy_out(txn_, sql, detail::pg_copy_data, detail::pg_copy_done, fns,
                                       detail::delete_fn<detail::PgCopyFns>, &c);
        if (rc != 0) {
            delete fns;
            throw Error(rc, "aloop_pg_txn_copy_out");
        }
        return PgCopy(c);
    }
    PgCopy copy_in(const char *sql, std::function<void(PgCopy)> on_ready, PgPool::CopyDone on_done) {
        auto *fns = new detail::PgCopyFns{{}, std::move(on_ready), std::move(on_done)};
        aloop_pg_copy_t *c = nullptr;
        int rc = aloop_pg_txn_copy_in(txn_, sql, detail::pg_copy_ready, detail::pg_copy_done, fns,
                                      detail::delete_fn<detail::PgCopyFns>, &c);
        if (rc != 0) {
            delete fns;
            throw Error(rc, "aloop_pg_txn_copy_in");
        }
        return PgCopy(c);
    }

  private:
    void send(bool prepared, const char *what, const std::vector<Param> &params, Callback cb, uint32_t flags) {
        std::vector<const char *> values;
        values.reserve(params.size());
        for (const auto &p : params)
            values.push_back(p ? p->c_str() : nullptr);
        auto *heap = new Callback(std::move(cb));
        auto tramp = [](int status, const aloop_pg_result_t *r, void *ud) {
            try {
                (*static_cast<Callback *>(ud))(PgResult(status, r));
            } catch (...) {
                detail::report("PostgreSQL");
            }
        };
        int rc = prepared ? aloop_pg_txn_execute(txn_, what, values.size(), values.data(), flags, tramp, heap,
                                                 detail::delete_fn<Callback>)
                          : aloop_pg_txn_query(txn_, what, values.size(), values.data(), flags, tramp, heap,
                                               detail::delete_fn<Callback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, prepared ? "aloop_pg_txn_execute" : "aloop_pg_txn_query");
        }
    }
    void end(bool commit, PgEndCallback cb) {
        auto *heap = new PgEndCallback(std::move(cb));
        int rc = commit ? aloop_pg_txn_commit(txn_, detail::pg_end_tramp, heap, detail::delete_fn<PgEndCallback>)
                        : aloop_pg_txn_rollback(txn_, detail::pg_end_tramp, heap, detail::delete_fn<PgEndCallback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, commit ? "aloop_pg_txn_commit" : "aloop_pg_txn_rollback");
        }
        txn_ = nullptr;
    }
    aloop_pg_txn_t *txn_ = nullptr;
};

/// A LISTEN connection of its own, owned: it reconnects and listens again by itself.
/// Notifications sent while it is disconnected are lost; `on_reconnect` says when that may
/// have happened.
class PgListener {
  public:
    using Callback = std::function<void(std::string_view channel, std::string_view payload, int pid)>;

    PgListener(Loop &loop, const std::string &conninfo, Callback cb) {
        auto *heap = new Callback(std::move(cb));
        auto tramp = [](aloop_pg_listener_t *, const char *ch, const char *payload, int pid, void *ud) {
            try {
                (*static_cast<Callback *>(ud))(ch, payload, pid);
            } catch (...) {
                detail::report("LISTEN");
            }
        };
        int rc = aloop_pg_listener_new(loop.get(), conninfo.c_str(), tramp, heap, detail::delete_fn<Callback>, &l_);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_pg_listener_new");
        }
    }
    PgListener(const PgListener &) = delete;
    PgListener &operator=(const PgListener &) = delete;
    ~PgListener() { aloop_pg_listener_free(l_); }

    aloop_pg_listener_t *get() const noexcept { return l_; }
    bool connected() const { return aloop_pg_listener_connected(l_) == 1; }

    void listen(const std::string &channel, PgEndCallback cb = {}) { call(true, channel, std::move(cb)); }
    void unlisten(const std::string &channel, PgEndCallback cb = {}) { call(false, channel, std::move(cb)); }
    void on_reconnect(std::function<void()> fn) {
        using F = std::function<void()>;
        auto *heap = new F(std::move(fn));
        auto tramp = [](aloop_pg_listener_t *, void *ud) {
            try {
                (*static_cast<F *>(ud))();
            } catch (...) {
                detail::report("LISTEN");
            }
        };
        int rc = aloop_pg_listener_on_reconnect(l_, tramp, heap, detail::delete_fn<F>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_pg_listener_on_reconnect");
        }
    }

  private:
    void call(bool listen, const std::string &channel, PgEndCallback cb) {
        auto *heap = new PgEndCallback(std::move(cb));
        int rc = listen ? aloop_pg_listen(l_, channel.c_str(), detail::pg_end_tramp, heap, detail::delete_fn<PgEndCallback>)
                        : aloop_pg_unlisten(l_, channel.c_str(), detail::pg_end_tramp, heap,
                                            detail::delete_fn<PgEndCallback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, listen ? "aloop_pg_listen" : "aloop_pg_unlisten");
        }
    }
    aloop_pg_listener_t *l_ = nullptr;
};

/// An HTTP response, borrowed during its callback.
class HttpResponse {
  public:
    explicit HttpResponse(const aloop_http_response_t *r) noexcept : r_(r) {}
    int status() const { return aloop_http_response_status(r_); }
    std::string_view reason() const { return aloop_http_response_reason(r_); }
    std::optional<std::string_view> header(const char *name) const {
        const char *v = aloop_http_response_header(r_, name);
        return v ? std::optional<std::string_view>(v) : std::nullopt;
    }
    std::vector<std::pair<std::string_view, std::string_view>> headers() const {
        std::vector<std::pair<std::string_view, std::string_view>> out;
        const char *n, *v;
        for (size_t i = 0; aloop_http_response_header_at(r_, i, &n, &v) == 0; i++)
            out.emplace_back(n, v);
        return out;
    }
    std::string_view body() const {
        size_t n = 0;
        const void *p = aloop_http_response_body(r_, &n);
        return p ? std::string_view(static_cast<const char *>(p), n) : std::string_view();
    }

  private:
    const aloop_http_response_t *r_;
};

/// An HTTP client on one loop, owned. Destroying it cancels what is pending.
class HttpClient {
  public:
    /// `status` 0 and a response, or an error code and nullptr (`last_error_message()` inside
    /// the callback gives the reason).
    using Callback = std::function<void(int status, const HttpResponse *resp)>;

    struct Options {
        aloop_http_client_options_t c;
        Options() { aloop_http_client_options_init(&c); }
        /// TLS for https:// URLs (the client keeps its own reference; default: the system's
        /// roots).
        Options &tls(const TlsClientConfig &cfg) {
            c.tls = cfg.get();
            return *this;
        }
        /// Every request connects to the Unix stream socket `path` (`@name`: an abstract
        /// one), the URL naming only the Host header (curl's --unix-socket).
        Options &unix_socket(std::string path) {
            unix_path = std::move(path);
            return *this;
        }
        /// Set by `unix_socket` (when not empty, it wins over `c.unix_socket`).
        std::string unix_path;
    };

    explicit HttpClient(Loop &loop, const Options &opts = Options()) {
        aloop_http_client_options_t c = opts.c;
        if (!opts.unix_path.empty())
            c.unix_socket = opts.unix_path.c_str();
        check(aloop_http_client_new(loop.get(), &c, &client_), "aloop_http_client_new");
    }
    HttpClient(const HttpClient &) = delete;
    HttpClient &operator=(const HttpClient &) = delete;
    ~HttpClient() { aloop_http_client_free(client_); }

    aloop_http_client_t *get() const noexcept { return client_; }

    /// Returns the request id (for `cancel`).
    uint64_t request(const char *method, const std::string &url, const std::vector<Header> &headers,
                     std::string_view body, Callback cb) {
        std::vector<aloop_http_header_t> hs;
        for (const auto &h : headers)
            hs.push_back({h.name.c_str(), h.value.c_str()});
        auto *heap = new Callback(std::move(cb));
        uint64_t id = 0;
        int rc = aloop_http_client_request(
            client_, method, url.c_str(), hs.data(), hs.size(), body.data(), body.size(),
            [](int status, const aloop_http_response_t *r, void *ud) {
                try {
                    if (r) {
                        HttpResponse resp(r);
                        (*static_cast<Callback *>(ud))(status, &resp);
                    } else {
                        (*static_cast<Callback *>(ud))(status, nullptr);
                    }
                } catch (...) {
                    detail::report("HTTP client");
                }
            },
            heap, detail::delete_fn<Callback>, &id);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_http_client_request");
        }
        return id;
    }
    uint64_t get(const std::string &url, Callback cb) { return request("GET", url, {}, {}, std::move(cb)); }
    void cancel(uint64_t id) { aloop_http_client_cancel(client_, id); }

    /// A streamed response's callbacks, each given the request's id (for `pause`, `resume`,
    /// `cancel`). On the loop's thread, never inside `request_stream`.
    struct StreamCallbacks {
        /// The status and headers, first (the response's body is empty; borrowed during the call).
        std::function<void(uint64_t id, const HttpResponse &head)> on_head;
        /// A piece of the body as it arrives, borrowed during the call (empty: the body is
        /// read and dropped).
        std::function<void(uint64_t id, std::string_view data)> on_data;
        /// The last call, once: 0 when the whole body arrived, or the error (as for
        /// `Callback`; also alone, for a request that failed before its head;
        /// ALOOP_E_READ_TIMEOUT when the body stalls; ALOOP_E_CANCELLED after `cancel` or when
        /// the client is destroyed).
        std::function<void(uint64_t id, int status)> on_done;
    };

    /// Sends a request and streams its response (see aloop_http_client_request_stream): the
    /// head first, then the body piece by piece, never collected and without a size limit,
    /// then the end. `pause` and `resume` hold the body back (the connection is not read
    /// meanwhile). The callables are destroyed once, right after `on_done`; an exception
    /// escaping `on_head` or `on_data` is reported and cancels the request. Returns the
    /// request's id; throws `Error` (nothing is kept of `cbs`) for a bad URL, method or header.
    uint64_t request_stream(const char *method, const std::string &url, const std::vector<Header> &headers,
                            std::string_view body, StreamCallbacks cbs) {
        std::vector<aloop_http_header_t> hs;
        for (const auto &h : headers)
            hs.push_back({h.name.c_str(), h.value.c_str()});
        auto *s = new StreamState{client_, std::move(cbs)};
        uint64_t id = 0;
        int rc = aloop_http_client_request_stream(client_, method, url.c_str(), hs.data(), hs.size(), body.data(),
                                                  body.size(), stream_head, stream_data, stream_done, s,
                                                  detail::delete_fn<StreamState>, &id);
        if (rc != 0) {
            delete s;
            throw Error(rc, "aloop_http_client_request_stream");
        }
        return id;
    }
    uint64_t get_stream(const std::string &url, StreamCallbacks cbs) {
        return request_stream("GET", url, {}, {}, std::move(cbs));
    }
    /// Holds the body of the streamed request `id` back: no `on_data` until `resume`. May be
    /// called from its callbacks. Returns 0, or ALOOP_E_ALREADY once it has finished; throws
    /// `Error` for a request that does not stream (ALOOP_E_INVALID), a destroyed client,
    /// another thread.
    int pause(uint64_t id) { return paused(aloop_http_client_pause(client_, id), "aloop_http_client_pause"); }
    /// Reads on; the callbacks come from the loop, never inside this call. As `pause`.
    int resume(uint64_t id) { return paused(aloop_http_client_resume(client_, id), "aloop_http_client_resume"); }

  private:
    struct StreamState {
        aloop_http_client_t *client;
        StreamCallbacks cbs;
    };
    static void stream_head(uint64_t id, const aloop_http_response_t *r, void *ud) {
        auto *s = static_cast<StreamState *>(ud);
        try {
            if (s->cbs.on_head) {
                HttpResponse head(r);
                s->cbs.on_head(id, head);
            }
        } catch (...) {
            detail::report("HTTP client stream");
            aloop_http_client_cancel(s->client, id); // on_done follows, once this returns
        }
    }
    static void stream_data(uint64_t id, const void *data, size_t len, void *ud) {
        auto *s = static_cast<StreamState *>(ud);
        try {
            if (s->cbs.on_data)
                s->cbs.on_data(id, std::string_view(static_cast<const char *>(data), len));
        } catch (...) {
            detail::report("HTTP client stream");
            aloop_http_client_cancel(s->client, id);
        }
    }
    static void stream_done(uint64_t id, int status, void *ud) {
        auto *s = static_cast<StreamState *>(ud);
        try {
            if (s->cbs.on_done)
                s->cbs.on_done(id, status);
        } catch (...) {
            detail::report("HTTP client stream");
        }
    }
    static int paused(int rc, const char *what) {
        if (rc != 0 && rc != ALOOP_E_ALREADY)
            throw Error(rc, what);
        return rc;
    }
    aloop_http_client_t *client_ = nullptr;
};

/// A WebSocket message, borrowed during its callback.
struct WsMessage {
    bool text;              ///< a text message (UTF-8), else binary
    std::string_view data;  ///< its bytes
};

/// A WebSocket connection, server or client side: a copyable, non-owning handle, valid from
/// `ws_accept` or `ws_connect` until its `on_close` callback returns (the library frees the
/// connection then; calls after that throw `Error(ALOOP_E_STALE)`).
class WebSocket {
  public:
    explicit WebSocket(aloop_ws_t *ws) noexcept : ws_(ws) {}
    aloop_ws_t *get() const noexcept { return ws_; }

    /// Queues a message. Returns 0, `ALOOP_E_WS_QUEUE_FULL` (nothing queued: retry after
    /// `on_drain`) or `ALOOP_E_CLOSED` (closing); throws `Error` for anything else (text that
    /// is not UTF-8, a stale handle, the wrong thread).
    int send_text(std::string_view text) { return sent(aloop_ws_send(ws_, ALOOP_WS_TEXT, text.data(), text.size())); }
    int send_binary(std::string_view data) {
        return sent(aloop_ws_send(ws_, ALOOP_WS_BINARY, data.data(), data.size()));
    }
    int send(const WsMessage &m) { return m.text ? send_text(m.data) : send_binary(m.data); }
    /// A ping (at most 125 bytes); its pong goes to `on_pong`.
    int ping(std::string_view data = {}) { return sent(aloop_ws_ping(ws_, data.data(), data.size())); }
    /// Starts the closing handshake; returns 0 or `ALOOP_E_ALREADY`, throws `Error` for a code
    /// that may not be sent or a reason over 123 bytes.
    int close(int code = ALOOP_WS_CLOSE_NORMAL, const std::string &reason = "") {
        int rc = aloop_ws_close(ws_, code, reason.c_str());
        if (rc != 0 && rc != ALOOP_E_ALREADY)
            throw Error(rc, "aloop_ws_close");
        return rc;
    }
    size_t buffered_amount() const { return aloop_ws_buffered_amount(ws_); }
    /// The subprotocol agreed in the handshake, if any.
    std::optional<std::string_view> subprotocol() const {
        const char *p = aloop_ws_subprotocol(ws_);
        return p ? std::optional<std::string_view>(p) : std::nullopt;
    }

  private:
    static int sent(int rc) {
        if (rc != 0 && rc != ALOOP_E_WS_QUEUE_FULL && rc != ALOOP_E_CLOSED)
            throw Error(rc, "aloop_ws_send");
        return rc;
    }
    aloop_ws_t *ws_;
};

/// A WebSocket's callbacks; any may be left empty (a message without `on_message` is
/// dropped). They run on the loop's thread; an exception escaping one is reported on stderr.
struct WsCallbacks {
    std::function<void(WebSocket)> on_open;
    std::function<void(WebSocket, const WsMessage &)> on_message;
    std::function<void(WebSocket, std::string_view)> on_pong;
    std::function<void(WebSocket)> on_drain;
    /// The last call: `status` 0 after a closing handshake, else why not (`ALOOP_E_WS_PROTOCOL`,
    /// `ALOOP_E_TIMEOUT`, `ALOOP_E_EOF`, ...); `code` and `reason` as `aloop_ws_close_cb` says.
    std::function<void(WebSocket, int status, int code, std::string_view reason)> on_close;
};

/// Options of a WebSocket (all of aloop_ws_options_t; `subprotocols` and `headers` are given
/// here and pointed to by the calls).
struct WsOptions {
    aloop_ws_options_t c;
    /// Comma-separated, preferred first.
    std::string subprotocols;
    /// Client: extra handshake headers.
    std::vector<Header> headers;
    /// Client: TLS for `wss://` (nullptr: the system's roots); read during `ws_connect`.
    const TlsClientConfig *tls = nullptr;
    WsOptions() { aloop_ws_options_init(&c); }
};

namespace detail {
template <class F, class... A> void ws_call(const F &f, const char *where, A &&...a) noexcept {
    if (!f)
        return;
    try {
        f(std::forward<A>(a)...);
    } catch (...) {
        report(where);
    }
}

/// `opts.c` with its pointers aimed at `opts`' strings and at `hs` (filled here).
inline aloop_ws_options_t ws_c_options(const WsOptions &opts, std::vector<aloop_http_header_t> &hs) {
    aloop_ws_options_t c = opts.c;
    c.subprotocols = opts.subprotocols.empty() ? nullptr : opts.subprotocols.c_str();
    for (const auto &h : opts.headers)
        hs.push_back({h.name.c_str(), h.value.c_str()});
    c.headers = hs.data();
    c.nheaders = hs.size();
    if (opts.tls)
        c.tls = opts.tls->get();
    return c;
}
/// The callbacks behind a connection's user data: a `WsCallbacks` of its own, or one shared
/// by many connections (through a `shared_ptr` of its own).
inline const WsCallbacks &ws_cbs(const WsCallbacks *p) { return *p; }
inline const WsCallbacks &ws_cbs(const std::shared_ptr<const WsCallbacks> *p) { return **p; }

template <class Holder> aloop_ws_callbacks_t ws_trampolines() {
    aloop_ws_callbacks_t t{};
    t.on_open = [](aloop_ws_t *ws, void *ud) { ws_call(ws_cbs(static_cast<Holder *>(ud)).on_open, "WebSocket open", WebSocket(ws)); };
    t.on_message = [](aloop_ws_t *ws, int type, const void *data, size_t len, void *ud) {
        WsMessage m{type == ALOOP_WS_TEXT, std::string_view(static_cast<const char *>(data), len)};
        ws_call(ws_cbs(static_cast<Holder *>(ud)).on_message, "WebSocket message", WebSocket(ws), m);
    };
    t.on_pong = [](aloop_ws_t *ws, const void *data, size_t len, void *ud) {
        ws_call(ws_cbs(static_cast<Holder *>(ud)).on_pong, "WebSocket pong", WebSocket(ws),
                std::string_view(static_cast<const char *>(data), len));
    };
    t.on_drain = [](aloop_ws_t *ws, void *ud) { ws_call(ws_cbs(static_cast<Holder *>(ud)).on_drain, "WebSocket drain", WebSocket(ws)); };
    t.on_close = [](aloop_ws_t *ws, int status, int code, const char *reason, size_t len, void *ud) {
        ws_call(ws_cbs(static_cast<Holder *>(ud)).on_close, "WebSocket close", WebSocket(ws), status, code,
                std::string_view(reason, len));
    };
    return t;
}

/// aloop_ws_accept with `holder` (a heap `Holder`) as the user data; deletes it if refused.
template <class Holder>
std::optional<WebSocket> ws_accept_with(Responder &r, const WsOptions &opts, Holder *holder) {
    std::vector<aloop_http_header_t> hs;
    aloop_ws_options_t c = ws_c_options(opts, hs);
    static const aloop_ws_callbacks_t tramps = ws_trampolines<Holder>();
    aloop_ws_t *ws = nullptr;
    int rc = aloop_ws_accept(r.get(), &c, &tramps, holder, delete_fn<Holder>, &ws);
    if (rc == 0) {
        r.release();
        return WebSocket(ws);
    }
    delete holder;
    if (rc == ALOOP_E_INVALID || rc == ALOOP_E_NULL || rc == ALOOP_E_WRONG_THREAD)
        throw Error(rc, "aloop_ws_accept");
    r.release(); // answered by the library, or already gone
    return std::nullopt;
}

} // namespace detail

/// Accepts the WebSocket upgrade that `r` asks for (see aloop_ws_accept). Returns the
/// connection; or std::nullopt when the request was answered otherwise and consumed: a bad
/// handshake (400/426), the server shutting down (503), the client gone. Throws `Error` for bad
/// options, and `r` then stays unanswered.
inline std::optional<WebSocket> ws_accept(Responder &&r, const WsOptions &opts, WsCallbacks cbs) {
    return detail::ws_accept_with(r, opts, new WsCallbacks(std::move(cbs)));
}

/// As `ws_accept`, with callbacks shared by many connections (a route's): each connection
/// keeps a reference to them instead of a copy of its own, which is what an idle connection
/// costs least with.
inline std::optional<WebSocket> ws_accept(Responder &&r, const WsOptions &opts,
                                          std::shared_ptr<const WsCallbacks> cbs) {
    return detail::ws_accept_with(r, opts, new std::shared_ptr<const WsCallbacks>(std::move(cbs)));
}

/// Connects to a `ws://` or `wss://` URL (see aloop_ws_connect): the connection at once, `on_open` when
/// the handshake is done, or `on_close` with why it failed. Throws `Error` for a bad URL or
/// options.
inline WebSocket ws_connect(Loop &loop, const std::string &url, const WsOptions &opts, WsCallbacks cbs) {
    std::vector<aloop_http_header_t> hs;
    aloop_ws_options_t c = detail::ws_c_options(opts, hs);
    static const aloop_ws_callbacks_t tramps = detail::ws_trampolines<WsCallbacks>();
    auto *heap = new WsCallbacks(std::move(cbs));
    aloop_ws_t *ws = nullptr;
    int rc = aloop_ws_connect(loop.get(), url.c_str(), &c, &tramps, heap, detail::delete_fn<WsCallbacks>, &ws);
    if (rc != 0) {
        delete heap;
        throw Error(rc, "aloop_ws_connect");
    }
    return WebSocket(ws);
}

} // namespace aloop

#endif

