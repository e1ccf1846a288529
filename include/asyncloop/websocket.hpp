// asyncloop/websocket.hpp: part of asyncloop.hpp (include that). WebSocket: the connection, its callbacks, accepting and connecting.
#ifndef ASYNCLOOP_WEBSOCKET_HPP
#define ASYNCLOOP_WEBSOCKET_HPP

#include "http_client.hpp"

namespace aloop {

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
