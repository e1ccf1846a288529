// asyncloop.hpp: a header-only C++17 layer over asyncloop.h.
//
// RAII owners for loops, timers and HTTP servers; lambdas as callbacks (stored on the heap and
// freed by the library's user-data destructor; an exception escaping a callback is caught at
// the trampoline and reported on stderr, never thrown through C); a move-only Responder that
// answers its request exactly once (500 if it is destroyed unanswered).
#ifndef ASYNCLOOP_HPP
#define ASYNCLOOP_HPP

#include "asyncloop.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
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

/// An HTTP response header.
struct Header {
    std::string name, value;
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

  private:
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
    /// Returns the bound port.
    int listen(const char *ip, uint16_t port) { return check(aloop_http_server_listen(srv_, ip, port), "listen"); }
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

  private:
    int status_;
    const aloop_pg_result_t *r_;
};

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

    void prepare(const char *name, const char *sql) { check(aloop_pg_prepare(pool_, name, sql), "aloop_pg_prepare"); }
    void query(const char *sql, const std::vector<Param> &params, Callback cb) { send(false, sql, params, std::move(cb)); }
    void execute(const char *name, const std::vector<Param> &params, Callback cb) { send(true, name, params, std::move(cb)); }

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
    void batch(const std::vector<Step> &steps, BatchCallback cb) {
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
        int rc = aloop_pg_batch(pool_, stmts.data(), stmts.size(), tramp, heap, detail::delete_fn<BatchCallback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_pg_batch");
        }
    }

  private:
    static Options sized(size_t size) {
        Options o;
        o.c.size = size;
        return o;
    }
    void send(bool prepared, const char *what, const std::vector<Param> &params, Callback cb) {
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
        int rc = prepared ? aloop_pg_execute(pool_, what, values.size(), values.data(), tramp, heap, detail::delete_fn<Callback>)
                          : aloop_pg_query(pool_, what, values.size(), values.data(), tramp, heap, detail::delete_fn<Callback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, prepared ? "aloop_pg_execute" : "aloop_pg_query");
        }
    }
    aloop_pg_pool_t *pool_ = nullptr;
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
    };

    explicit HttpClient(Loop &loop, const Options &opts = Options()) {
        check(aloop_http_client_new(loop.get(), &opts.c, &client_), "aloop_http_client_new");
    }
    HttpClient(const HttpClient &) = delete;
    HttpClient &operator=(const HttpClient &) = delete;
    ~HttpClient() { aloop_http_client_free(client_); }

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

  private:
    aloop_http_client_t *client_ = nullptr;
};

} // namespace aloop

#endif
