// asyncloop/http_request.hpp: part of asyncloop.hpp (include that). One HTTP request on the server side: headers, addresses, prepared responses, the Responder that answers it once, a streamed body (BodyReader, BodyStream) and chunked answers (ChunkedResponse).
#ifndef ASYNCLOOP_HTTP_REQUEST_HPP
#define ASYNCLOOP_HTTP_REQUEST_HPP

#include "core.hpp"

namespace aloop {

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

} // namespace aloop

#endif
