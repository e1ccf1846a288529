// asyncloop/http_client.hpp: part of asyncloop.hpp (include that). The HTTP client: whole and streamed responses.
#ifndef ASYNCLOOP_HTTP_CLIENT_HPP
#define ASYNCLOOP_HTTP_CLIENT_HPP

#include "pg.hpp"

namespace aloop {

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

} // namespace aloop

#endif
