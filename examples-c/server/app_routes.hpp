// server/app_routes.hpp: part of the example server, included once by server.cpp (in order, after
// the parts before it). Database application routes: POST /counter/<name> (a transaction), GET
// /events and /ws/events (LISTEN/NOTIFY as SSE or WebSocket), GET /world.csv (COPY as CSV).
#pragma once

namespace {

/// A chunked response answered through the C API (the Responder gave it up): chunks until the
/// end, which comes exactly once (the destructor ends it if nothing else did).
class Stream {
  public:
    Stream(aloop_http_request_t *req) : req_(req) {}
    Stream(const Stream &) = delete;
    Stream &operator=(const Stream &) = delete;
    ~Stream() { end(); }
    /// Starts the response; false if the client has gone (the request is then consumed).
    bool start(int status, const std::vector<aloop_http_header_t> &headers) {
        if (aloop_http_respond_chunked(req_, status, headers.data(), headers.size()) != 0) {
            req_ = nullptr;
            return false;
        }
        started_ = true;
        return true;
    }
    bool started() const { return started_; }
    /// Sends one chunk; false once the client has gone.
    bool chunk(std::string_view data) {
        if (!req_)
            return false;
        if (aloop_http_chunk(req_, data.data(), data.size()) != 0) {
            req_ = nullptr;
            return false;
        }
        return true;
    }
    void end() {
        if (req_ && started_)
            aloop_http_chunk_end(req_);
        req_ = nullptr;
    }
    bool open() const { return req_ != nullptr; }
    /// Before `start`: answers with a plain response instead.
    void fail(int status, std::string_view message) {
        if (!req_ || started_)
            return end();
        std::string body = nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        aloop_http_header_t h{"Content-Type", "application/json"};
        aloop_http_respond(req_, status, &h, 1, body.data(), body.size());
        req_ = nullptr;
    }

  private:
    aloop_http_request_t *req_;
    bool started_ = false;
};

/// POST /counter/<name>: one interactive transaction. The row is created at 0 if missing, read
/// and locked (FOR UPDATE), set to value + 1, committed; concurrent increments queue on the
/// row lock, so none is lost. The client going away rolls the transaction back.
struct Increment {
    Responder r;
    std::string name;
    std::optional<aloop::Transaction> txn;
};

void increment(PgPool &db, Responder r, std::string name) {
    auto st = std::make_shared<Increment>(Increment{std::move(r), std::move(name), std::nullopt});
    st->txn.emplace(db);
    std::weak_ptr<Increment> weak = st;
    st->r.on_abort([weak] {
        if (auto s = weak.lock())
            s->txn.reset(); // rolled back; the callbacks below see no transaction
    });
    auto fail = [](Increment &s, const PgResult &res) {
        if (s.r.valid())
            db_error(s.r, res);
        s.txn.reset();
    };
    st->txn->query("INSERT INTO counters (name, value) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING", {st->name},
                   [st, fail](const PgResult &res) {
                       if (!res.ok())
                           fail(*st, res);
                   });
    st->txn->query("SELECT value FROM counters WHERE name = $1 FOR UPDATE", {st->name},
                   [st, fail](const PgResult &res) {
                       if (!st->txn || !st->r.valid())
                           return;
                       if (!res.ok() || res.rows() != 1)
                           return fail(*st, res);
                       long long value = res.get<long long>(0, 0) + 1;
                       st->txn->query("UPDATE counters SET value = $2 WHERE name = $1",
                                      {st->name, std::to_string(value)}, [st, fail](const PgResult &res) {
                                          if (!res.ok())
                                              fail(*st, res);
                                      });
                       st->txn->commit([st, value](int status, std::string_view, std::string_view msg) {
                           if (!st->r.valid())
                               return;
                           if (status != 0)
                               return json_error(st->r, 503, "database error: " + std::string(msg));
                           nlohmann::json out = {{"name", st->name}, {"value", value}};
                           st->r.respond(200, "application/json",
                                         out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
                       });
                   });
}

/// GET /events?channel=C and the WebSocket GET /ws/events?channel=C: one listening connection
/// per loop (made on first use), shared by every subscriber; a channel is listened to while it
/// has subscribers. Each NOTIFY payload becomes one `data:` event, or one text message. An
/// event stream ends when its client goes away (a reset is noticed at once, a plain close at
/// the next write: an event, or the heartbeat comment sent every 15 s), or at shutdown; a
/// WebSocket when either side closes it (the server's shutdown says 1001).
class Events {
    struct Subscriber {
        explicit Subscriber(aloop_http_request_t *req) : stream(req) {}
        Stream stream;                         // an event stream, or
        std::optional<Responder> pending;      // a WebSocket upgrade waiting for the LISTEN,
        std::optional<aloop::WebSocket> ws;    // then the WebSocket
        bool greeted = false;
    };

  public:
    Events(aloop::Loop &loop, std::string conninfo, uint64_t ws_ping_ms)
        : loop_(loop), conninfo_(std::move(conninfo)), heartbeat_(loop) {
        ws_opts_.c.ping_interval_ms = ws_ping_ms;
        if (ws_ping_ms)
            ws_opts_.c.ping_timeout_ms = ws_ping_ms;
    }

    void subscribe(Responder r) { add(std::move(r), false); }
    /// The upgrade is accepted once the channel is listened to: a client whose handshake is
    /// done gets every notification sent from then on. A LISTEN that fails is a 503.
    void subscribe_ws(Responder r) { add(std::move(r), true); }

  private:
    void add(Responder r, bool websocket) {
        auto channel = r.query_param("channel");
        if (!channel || channel->empty() || channel->size() > 63)
            return json_error(r, 400, "channel must be 1 to 63 characters");
        if (!listener_) {
            try {
                listener_ = std::make_unique<aloop::PgListener>(
                    loop_, conninfo_, [this](std::string_view ch, std::string_view payload, int) {
                        deliver(std::string(ch), payload);
                    });
            } catch (const aloop::Error &e) {
                return json_error(r, 503, std::string("cannot listen: ") + e.what());
            }
        }
        if (websocket)
            return add_ws(std::move(r), *channel);
        auto sub = std::make_shared<Subscriber>(r.get());
        std::weak_ptr<Subscriber> weak = sub;
        std::string ch = *channel;
        r.on_abort([this, weak, ch] {
            if (auto s = weak.lock()) {
                s->stream.end();
                drop(ch, s.get());
            }
        });
        r.release(); // answered by sub->stream from now on
        static const std::vector<aloop_http_header_t> headers = {
            {"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}};
        if (!sub->stream.start(200, headers))
            return;
        auto &subs = channels_[ch];
        subs.push_back(sub);
        if (!heartbeat_.active())
            heartbeat_.start(kHeartbeatMs, kHeartbeatMs, [this] { beat(); });
        if (subs.size() == 1) {
            listen(ch);
        } else if (listening_.count(ch)) {
            sub->greeted = true;
            send(ch, sub, ": listening\n\n");
        }
    }

    void add_ws(Responder r, const std::string &ch) {
        auto sub = std::make_shared<Subscriber>(nullptr);
        sub->pending.emplace(std::move(r));
        auto &subs = channels_[ch];
        subs.push_back(sub);
        if (subs.size() == 1)
            listen(ch);
        else if (listening_.count(ch))
            greet(ch, sub, 0, "");
    }

    /// The first subscriber of the channel: LISTEN, then greet every subscriber waiting.
    void listen(const std::string &ch) {
        listener_->listen(ch, [this, ch](int status, std::string_view, std::string_view msg) {
            auto it = channels_.find(ch);
            if (it == channels_.end())
                return;
            if (status == 0)
                listening_.insert(ch);
            for (auto &s : std::vector<std::shared_ptr<Subscriber>>(it->second))
                if (!s->greeted)
                    greet(ch, s, status, msg);
        });
    }

    /// Says the channel is listened to: a comment on an event stream, the accept of a
    /// WebSocket (a 503 if the LISTEN failed).
    void greet(const std::string &ch, const std::shared_ptr<Subscriber> &s, int status, std::string_view msg) {
        s->greeted = true;
        if (!s->pending)
            return send(ch, s, status == 0 ? ": listening\n\n" : ": listen failed: " + std::string(msg) + "\n\n");
        Responder r = std::move(*s->pending);
        s->pending.reset();
        if (status != 0) {
            json_error(r, 503, "listen failed: " + std::string(msg));
            return drop(ch, s.get());
        }
        std::weak_ptr<Subscriber> weak = s;
        aloop::WsCallbacks cbs;
        cbs.on_close = [this, weak, ch](aloop::WebSocket, int, int, std::string_view) {
            if (auto sub = weak.lock()) {
                sub->ws.reset();
                drop(ch, sub.get());
            }
        };
        s->ws = aloop::ws_accept(std::move(r), ws_opts_, std::move(cbs));
        if (!s->ws)
            drop(ch, s.get());
    }

  public:
    /// Ends every stream (before a graceful shutdown: SSE streams never end by themselves).
    void close_all() {
        heartbeat_.stop();
        auto all = std::move(channels_);
        channels_.clear();
        listening_.clear();
        for (auto &[ch, subs] : all)
            for (auto &s : subs)
                s->stream.end(); // WebSockets are closed by the server's shutdown (1001)
        listener_.reset();
    }

  private:

    void deliver(const std::string &ch, std::string_view payload) {
        auto it = channels_.find(ch);
        if (it == channels_.end())
            return;
        // One event; a payload with newlines becomes several data: lines of it.
        std::string event;
        size_t start = 0;
        while (true) {
            size_t nl = payload.find('\n', start);
            event += "data: ";
            event += payload.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
            event += '\n';
            if (nl == std::string_view::npos)
                break;
            start = nl + 1;
        }
        event += '\n';
        for (auto &s : std::vector<std::shared_ptr<Subscriber>>(it->second)) {
            if (s->ws)
                send_ws(*s->ws, payload);
            else if (!s->pending)
                send(ch, s, event);
        }
    }

    /// A notification as a text message (binary if it is not UTF-8). A subscriber whose queue
    /// is full is not reading: it is closed rather than sent less than everything.
    static void send_ws(aloop::WebSocket ws, std::string_view payload) {
        int rc;
        try {
            rc = ws.send_text(payload);
        } catch (const aloop::Error &) {
            rc = ws.send_binary(payload);
        }
        if (rc == ALOOP_E_WS_QUEUE_FULL)
            ws.close(ALOOP_WS_CLOSE_POLICY_VIOLATION, "not reading: notifications would be lost");
    }

    static constexpr uint64_t kHeartbeatMs = 15000;

    /// A comment on every stream: writing is how a client that closed quietly is noticed.
    void beat() {
        auto all = channels_;
        for (auto &[ch, subs] : all)
            for (auto &s : subs)
                if (!s->ws && !s->pending)
                    send(ch, s, ": ping\n\n");
        if (channels_.empty())
            heartbeat_.stop();
    }

    void send(const std::string &ch, const std::shared_ptr<Subscriber> &s, std::string_view data) {
        if (!s->stream.chunk(data))
            drop(ch, s.get());
    }

    void drop(const std::string &ch, Subscriber *s) {
        auto it = channels_.find(ch);
        if (it == channels_.end())
            return;
        auto &v = it->second;
        v.erase(std::remove_if(v.begin(), v.end(), [s](const auto &x) { return x.get() == s; }), v.end());
        if (v.empty()) {
            channels_.erase(it);
            listening_.erase(ch);
            if (listener_)
                listener_->unlisten(ch);
        }
    }

    aloop::Loop &loop_;
    std::string conninfo_;
    aloop::WsOptions ws_opts_;
    std::set<std::string> listening_;
    aloop::Timer heartbeat_;
    std::unique_ptr<aloop::PgListener> listener_;
    std::map<std::string, std::vector<std::shared_ptr<Subscriber>>> channels_;
};

/// GET /world.csv: COPY (SELECT ...) TO STDOUT (FORMAT csv), sent as it arrives, about 16 KiB
/// per chunk; the response starts with the first data, so a database that is down still gets
/// a 503. The client going away cancels the COPY.
struct CsvDownload {
    Stream stream;
    std::string buf;
    std::optional<aloop::PgCopy> copy;
    explicit CsvDownload(aloop_http_request_t *req) : stream(req) {}
    bool flush() {
        if (!stream.started()) {
            static const std::vector<aloop_http_header_t> headers = {{"Content-Type", "text/csv; charset=utf-8"}};
            if (!stream.start(200, headers))
                return false;
        }
        bool ok = buf.empty() || stream.chunk(buf);
        buf.clear();
        return ok;
    }
};

void world_csv(PgPool &db, Responder r) {
    auto dl = std::make_shared<CsvDownload>(r.get());
    std::weak_ptr<CsvDownload> weak = dl;
    r.on_abort([weak] {
        if (auto d = weak.lock())
            if (d->copy)
                d->copy->cancel();
    });
    r.release();
    dl->buf = "id,randomnumber\n";
    try {
        dl->copy = db.copy_out(
            "COPY (SELECT id, randomnumber FROM world ORDER BY id) TO STDOUT (FORMAT csv)",
            [dl](aloop::PgCopy cp, std::string_view row) {
                dl->copy = cp;
                dl->buf.append(row);
                if (dl->buf.size() >= 16384 && !dl->flush())
                    cp.cancel(); // the client has gone
                return true;
            },
            [dl](int status, uint64_t, std::string_view msg) {
                dl->copy.reset();
                if (status == 0) {
                    dl->flush();
                    dl->stream.end();
                } else {
                    // Nothing sent yet: a 503. Else cut short: the client sees fewer rows.
                    dl->stream.fail(503, "database error: " + std::string(msg));
                }
            });
    } catch (const aloop::Error &e) {
        dl->stream.fail(503, std::string("database error: ") + e.what());
    }
}

void add_app_routes(aloop::HttpServer &http, PgPool &db, Events &events) {
    PgPool *pool = &db;
    http.route_prefix("POST", "/counter/", [pool](Responder r) {
        std::string name(r.path().substr(9));
        if (name.empty() || name.size() > 200 || name.find('/') != std::string::npos)
            return json_error(r, 400, "the counter name is 1 to 200 characters, no slash");
        increment(*pool, std::move(r), std::move(name));
    });
    Events *ev = &events;
    http.route("GET", "/events", [ev](Responder r) { ev->subscribe(std::move(r)); });
    http.route("GET", "/ws/events", [ev](Responder r) { ev->subscribe_ws(std::move(r)); });
    http.route("GET", "/world.csv", [pool](Responder r) { world_csv(*pool, std::move(r)); });
}

} // namespace
