// server: the asyncloop example HTTP server (C++17, on asyncloop.hpp).
//
//   server [options] <listen_address> <listen_port>     (see docs/examples.md and --help)
//
// Routes: /plaintext, /json, /db, /queries, /updates, /fortunes (TechEmpower rules), POST
// /palindrome, GET and POST /books, and the upstream routes /api/<rest>, /chain/api-db/<rest>,
// /chain/db-api?id=N, and the streamed POST /upload and GET /download?bytes=N (see
// docs/examples.md). One loop per thread, each with its own SO_REUSEPORT
// listener, PostgreSQL pool and HTTP client. SIGINT/SIGTERM: graceful stop, exit 0 (every loop
// watches them with its own aloop::Signal and shuts its server down). With --tls-cert/--tls-key
// it serves HTTPS; SIGHUP reloads those files (the first loop watches it; new connections get
// the new certificate, open ones keep theirs).
#include <asyncloop.hpp>
#include <nlohmann/json.hpp>

#include "sha256.hpp"

#include <set>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Config {
    aloop::Loop::Backend backend = aloop::Loop::Backend::Auto;
    int threads = 1;
    std::string pg;
    std::vector<std::string> pg_replicas;
    std::string pg_listen; // empty: the --pg conninfo
    bool pg_no_prepare = false;
    int pool = 4;
    std::string upstream;
    uint64_t upstream_timeout_ms = 5000;
    uint64_t query_timeout_ms = 10000;
    uint64_t header_timeout_ms = 10000;
    uint64_t idle_timeout_ms = 60000;
    uint64_t write_timeout_ms = 30000;
    size_t max_body = 1048576;
    uint64_t max_upload = 0; // 0: no limit
    std::string unix_path;
    std::string tls_cert, tls_key, tls_client_ca, upstream_cacert;
    uint64_t ws_ping_ms = 0;
    std::string address;
    int port = -1;
};

[[noreturn]] void usage(const char *msg) {
    if (msg)
        std::fprintf(stderr, "server: %s\n", msg);
    std::fprintf(stderr,
                 "usage: server [options] <listen_address> <listen_port>\n"
                 "       server [options] --unix PATH    (a Unix socket only, no TCP)\n"
                 "  --backend auto|uring|epoll   event loop backend (default auto)\n"
                 "  --threads N                  N loops on N threads (default 1)\n"
                 "  --pg CONNINFO                libpq conninfo (default: $DATABASE_URL, else PG* defaults)\n"
                 "  --pool N                     PostgreSQL connections per thread\n"
                 "  --pg-replica CONNINFO        a read replica (repeatable): /db, /queries, /fortunes read from replicas\n"
                 "  --pg-no-prepare              no named prepared statements (PgBouncer transaction pooling)\n"
                 "  --pg-listen CONNINFO         session for LISTEN (GET /events; default: --pg)\n"
                 "  --upstream URL               base URL of the third-party API\n"
                 "  --query-timeout MS           time a database query may take, queueing included (default 10000; then 503)\n"
                 "  --upstream-timeout MS        time allowed for an upstream request (default 5000; then 504)\n"
                 "  --header-timeout MS          time to receive a request head (default 10000)\n"
                 "  --idle-timeout MS            keep-alive idle time (default 60000)\n"
                 "  --write-timeout MS           time a response may wait for the client to read (default 30000)\n"
                 "  --max-body BYTES             request body limit (default 1048576)\n"
                 "  --max-upload BYTES           body limit of the streamed POST /upload (default 0: none)\n"
                 "  --unix PATH                  also serve on a Unix stream socket at PATH (alone: instead of TCP)\n"
                 "  --tls-cert FILE --tls-key FILE   serve HTTPS on the listen port (PEM; RSA or ECDSA;\n"
                 "                               SIGHUP reloads them)\n"
                 "  --tls-client-ca FILE         require client certificates signed by this CA\n"
                 "  --upstream-cacert FILE       trust this CA for an https:// upstream (default: system roots)\n"
                 "  --ws-ping MS                 WebSocket keep-alive: ping after MS of silence, drop after MS more (default 0: off)\n");
    std::exit(2);
}

unsigned long long number(const char *opt, const char *v, unsigned long long min, unsigned long long max) {
    char *end = nullptr;
    errno = 0;
    unsigned long long n = std::strtoull(v, &end, 10);
    if (!*v || *end || errno || n < min || n > max) {
        std::string m = std::string("invalid value for ") + opt + ": " + v;
        usage(m.c_str());
    }
    return n;
}

Config parse_args(int argc, char **argv) {
    Config c;
    if (const char *db = std::getenv("DATABASE_URL"))
        c.pg = db;
    std::vector<const char *> positional;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc)
                usage((a + " needs a value").c_str());
            return argv[++i];
        };
        if (a == "--help" || a == "-h")
            usage(nullptr);
        else if (a == "--backend") {
            std::string b = value();
            if (b == "auto")
                c.backend = aloop::Loop::Backend::Auto;
            else if (b == "uring" || b == "io_uring")
                c.backend = aloop::Loop::Backend::Uring;
            else if (b == "epoll")
                c.backend = aloop::Loop::Backend::Epoll;
            else
                usage(("unknown backend " + b).c_str());
        } else if (a == "--threads")
            c.threads = static_cast<int>(number("--threads", value(), 1, 1024));
        else if (a == "--pg")
            c.pg = value();
        else if (a == "--pg-replica")
            c.pg_replicas.emplace_back(value());
        else if (a == "--pg-no-prepare")
            c.pg_no_prepare = true;
        else if (a == "--pg-listen")
            c.pg_listen = value();
        else if (a == "--pool")
            c.pool = static_cast<int>(number("--pool", value(), 1, 1024));
        else if (a == "--upstream") {
            c.upstream = value();
            while (!c.upstream.empty() && c.upstream.back() == '/')
                c.upstream.pop_back();
        } else if (a == "--query-timeout")
            c.query_timeout_ms = number("--query-timeout", value(), 1, 86400000);
        else if (a == "--upstream-timeout")
            c.upstream_timeout_ms = number("--upstream-timeout", value(), 1, 86400000);
        else if (a == "--header-timeout")
            c.header_timeout_ms = number("--header-timeout", value(), 1, 86400000);
        else if (a == "--ws-ping")
            c.ws_ping_ms = number("--ws-ping", value(), 0, 86400000);
        else if (a == "--idle-timeout")
            c.idle_timeout_ms = number("--idle-timeout", value(), 1, 86400000);
        else if (a == "--write-timeout")
            c.write_timeout_ms = number("--write-timeout", value(), 1, 86400000);
        else if (a == "--max-body")
            c.max_body = static_cast<size_t>(number("--max-body", value(), 0, 1ull << 40));
        else if (a == "--max-upload")
            c.max_upload = number("--max-upload", value(), 0, UINT64_MAX);
        else if (a == "--unix")
            c.unix_path = value();
        else if (a == "--tls-cert")
            c.tls_cert = value();
        else if (a == "--tls-key")
            c.tls_key = value();
        else if (a == "--tls-client-ca")
            c.tls_client_ca = value();
        else if (a == "--upstream-cacert")
            c.upstream_cacert = value();
        else if (a.size() > 1 && a[0] == '-')
            usage(("unknown option " + a).c_str());
        else
            positional.push_back(argv[i]);
    }
    if (positional.empty() && !c.unix_path.empty()) {
        // A Unix socket only: no TCP listener.
    } else if (positional.size() != 2) {
        usage("expected <listen_address> <listen_port>");
    }
    if (c.tls_cert.empty() != c.tls_key.empty())
        usage("--tls-cert and --tls-key go together");
    if (!c.tls_client_ca.empty() && c.tls_cert.empty())
        usage("--tls-client-ca needs --tls-cert and --tls-key");
    if (!positional.empty()) {
        c.address = positional[0];
        c.port = static_cast<int>(number("listen_port", positional[1], 0, 65535));
    }
    return c;
}

bool is_palindrome(std::string_view s) {
    for (size_t i = 0, j = s.size(); i + 1 < j; i++, j--)
        if (s[i] != s[j - 1])
            return false;
    return true;
}


using aloop::PgPool;
using aloop::PgResult;
using aloop::Responder;
using Shared = std::shared_ptr<Responder>; // handlers' callbacks must be copyable

void json_error(Responder &r, int status, std::string_view message) {
    r.respond(status, "application/json", nlohmann::json{{"error", message}}.dump());
}

/// 503 with the database's message: the database is unreachable or failing.
void db_error(Responder &r, const PgResult &res) {
    std::string m = "database error: " + std::string(res.error_message());
    json_error(r, 503, m);
}

int random_id() {
    thread_local std::minstd_rand rng(std::random_device{}());
    return static_cast<int>(rng() % 10000) + 1;
}

/// TechEmpower's `queries` parameter: clamped to 1..500, missing or non-numeric counts as 1.
int query_count(const Responder &r) {
    auto q = r.query_param("queries");
    if (!q || q->empty() || q->size() > 9 || !std::all_of(q->begin(), q->end(), ::isdigit))
        return 1;
    return std::clamp(std::atoi(q->c_str()), 1, 500);
}

std::string world_json(int id, long long rn) {
    return "{\"id\":" + std::to_string(id) + ",\"randomNumber\":" + std::to_string(rn) + "}";
}

/// A JSON string value: `s` between quotes, with `"`, `\\` and control characters escaped.
/// Writes into `out`, which must hold 6 * s.size() + 2 bytes; returns the end.
char *write_json_string(char *out, std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    *out++ = '"';
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = static_cast<char>(c);
        } else if (c < 0x20) {
            std::memcpy(out, "\\u00", 4);
            out[4] = hex[c >> 4];
            out[5] = hex[c & 15];
            out += 6;
        } else {
            *out++ = static_cast<char>(c);
        }
    }
    *out++ = '"';
    return out;
}

/// TFB's /json object, built and serialized for each request (the rules ask for both).
struct HelloMessage {
    std::string_view message;
    /// `{"message":...}` into `buf` (on the stack: no allocation); the bytes written.
    template <size_t N> std::string_view serialize(char (&buf)[N]) const {
        static constexpr std::string_view open = "{\"message\":";
        if (N < open.size() + 6 * message.size() + 3)
            return {};
        char *p = buf;
        std::memcpy(p, open.data(), open.size());
        p = write_json_string(p + open.size(), message);
        *p++ = '}';
        return {buf, static_cast<size_t>(p - buf)};
    }
};

/// Appends `s` to `out` with HTML's five special characters escaped.
void append_escaped(std::string &out, std::string_view s) {
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
}

void prepare_statements(PgPool &db) {
    db.prepare("world", "SELECT id, randomnumber FROM world WHERE id = $1");
    db.prepare("world_update", "UPDATE world SET randomnumber = $2 WHERE id = $1");
    db.prepare("fortunes", "SELECT id, message FROM fortune");
    db.prepare("books", "SELECT id, title FROM books ORDER BY id");
    db.prepare("book_insert", "INSERT INTO books (id, title) VALUES ($1, $2)");
    db.prepare("api_log_insert", "INSERT INTO api_log (path, status, bytes) VALUES ($1, $2, $3) RETURNING id");
}

/// Reads `n` random world rows, each with its own statement, all sent together with one sync
/// (one round trip, one implicit transaction: PostgreSQL's cost per transaction is paid once),
/// then calls `done(rows)`, or answers 503 if the database failed. `flags`: ALOOP_PG_READ_ONLY
/// lets the reads go to a replica.
struct WorldBatch {
    Shared r;
    std::vector<std::pair<int, long long>> rows;
};

void fetch_worlds(PgPool &db, Shared r, int n, uint32_t flags, std::function<void(WorldBatch &)> done) {
    std::vector<PgPool::Step> steps(static_cast<size_t>(n));
    for (auto &s : steps) {
        s.prepared = "world";
        s.params.emplace_back(std::to_string(random_id()));
    }
    db.batch(steps, [r = std::move(r), done = std::move(done)](const std::vector<PgResult> &results) {
        WorldBatch b{r, {}};
        b.rows.reserve(results.size());
        for (const auto &res : results) {
            if (!res.ok() || res.rows() != 1)
                return db_error(*r, res);
            b.rows.emplace_back(static_cast<int>(res.integer(0, 0)), res.integer(0, 1));
        }
        done(b);
    }, flags);
}

std::string worlds_json(const std::vector<std::pair<int, long long>> &rows) {
    std::string out = "[";
    for (size_t i = 0; i < rows.size(); i++) {
        if (i)
            out += ',';
        out += world_json(rows[i].first, rows[i].second);
    }
    return out + "]";
}

void books_list(PgPool &db, Shared r, int status) {
    db.execute("books", {}, [r, status](const PgResult &res) {
        if (!res.ok())
            return db_error(*r, res);
        nlohmann::json list = nlohmann::json::array();
        for (size_t i = 0; i < res.rows(); i++)
            list.push_back({{"id", res.integer(i, 0)}, {"title", std::string(res.value(i, 1))}});
        r->respond(status, "application/json", list.dump());
    });
}

void add_database_routes(aloop::HttpServer &http, PgPool &db) {
    PgPool *pool = &db;
    http.route("GET", "/db", [pool](Responder r) {
        fetch_worlds(*pool, std::make_shared<Responder>(std::move(r)), 1, ALOOP_PG_READ_ONLY, [](WorldBatch &b) {
            b.r->respond(200, "application/json", world_json(b.rows[0].first, b.rows[0].second));
        });
    });
    http.route("GET", "/queries", [pool](Responder r) {
        int n = query_count(r);
        fetch_worlds(*pool, std::make_shared<Responder>(std::move(r)), n, ALOOP_PG_READ_ONLY, [](WorldBatch &b) {
            b.r->respond(200, "application/json", worlds_json(b.rows));
        });
    });
    http.route("GET", "/updates", [pool](Responder r) {
        int n = query_count(r);
        // Read from the primary: these rows are written next.
        fetch_worlds(*pool, std::make_shared<Responder>(std::move(r)), n, 0, [pool](WorldBatch &b) {
            // One transaction for all the updates; rows locked in id order, so concurrent
            // requests cannot deadlock on each other.
            std::sort(b.rows.begin(), b.rows.end());
            std::vector<PgPool::Step> steps(b.rows.size());
            for (size_t i = 0; i < b.rows.size(); i++) {
                auto &row = b.rows[i];
                int next;
                do
                    next = random_id();
                while (next == row.second);
                row.second = next;
                steps[i].prepared = "world_update";
                steps[i].params = {std::to_string(row.first), std::to_string(next)};
            }
            // An id drawn twice is updated twice; every copy reports the value it ends with.
            for (size_t i = b.rows.size(); i-- > 1;)
                if (b.rows[i - 1].first == b.rows[i].first)
                    b.rows[i - 1].second = b.rows[i].second;
            pool->batch(steps, [r = b.r, rows = std::move(b.rows)](const std::vector<PgResult> &results) {
                for (const auto &res : results)
                    if (!res.ok())
                        return db_error(*r, res);
                r->respond(200, "application/json", worlds_json(rows));
            });
        });
    });
    http.route("GET", "/fortunes", [pool](Responder r) {
        auto shared = std::make_shared<Responder>(std::move(r));
        pool->execute("fortunes", {}, [shared](const PgResult &res) {
            if (!res.ok())
                return db_error(*shared, res);
            // Views into the result, which lives until this callback returns.
            std::vector<std::pair<long long, std::string_view>> rows;
            rows.reserve(res.rows() + 1);
            for (size_t i = 0; i < res.rows(); i++)
                rows.emplace_back(res.integer(i, 0), res.value(i, 1));
            rows.emplace_back(0, "Additional fortune added at request time.");
            std::sort(rows.begin(), rows.end(), [](const auto &a, const auto &b) { return a.second < b.second; });
            std::string html;
            html.reserve(2048);
            html += "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
                    "<tr><th>id</th><th>message</th></tr>";
            for (const auto &f : rows) {
                html += "<tr><td>";
                html += std::to_string(f.first);
                html += "</td><td>";
                append_escaped(html, f.second);
                html += "</td></tr>";
            }
            html += "</table></body></html>";
            shared->respond(200, "text/html; charset=utf-8", html);
        }, ALOOP_PG_READ_ONLY);
    });
    http.route("GET", "/books", [pool](Responder r) { books_list(*pool, std::make_shared<Responder>(std::move(r)), 200); });
    http.route("POST", "/books", [pool](Responder r) {
        nlohmann::json in;
        try {
            in = nlohmann::json::parse(r.body());
        } catch (const nlohmann::json::exception &) {
            return json_error(r, 400, "the body is not valid JSON");
        }
        if (!in.is_object() || !in.contains("id") || !in["id"].is_number_integer() || !in.contains("title") ||
            !in["title"].is_string())
            return json_error(r, 400, "expected {\"id\": integer, \"title\": string}");
        long long id = in["id"].get<long long>();
        if (id < INT32_MIN || id > INT32_MAX)
            return json_error(r, 400, "id out of range");
        auto shared = std::make_shared<Responder>(std::move(r));
        pool->execute("book_insert", {std::to_string(id), in["title"].get<std::string>()}, [pool, shared](const PgResult &res) {
            if (res.ok())
                return books_list(*pool, shared, 201);
            if (res.sqlstate() == "23505")
                return json_error(*shared, 409, "a book with this id exists");
            db_error(*shared, res);
        });
    });
}

// ---- database application routes: a transaction, LISTEN/NOTIFY as SSE, COPY as CSV --------

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

/// 502 for an unreachable or broken upstream, 504 for a slow one.
void upstream_error(Responder &r, int status) {
    bool slow = status == ALOOP_E_TIMEOUT || status == ALOOP_E_CONNECT_TIMEOUT;
    std::string m = std::string("upstream ") + (slow ? "timed out: " : "failed: ") + aloop_strerror(status);
    json_error(r, slow ? 504 : 502, m);
}

/// "/api/<rest>?q" -> "<upstream>/<rest>?q".
std::string upstream_url(const std::string &base, const Responder &r, size_t prefix_len) {
    std::string_view target = r.target();
    return base + "/" + std::string(target.substr(std::min(prefix_len, target.size())));
}

void add_upstream_routes(aloop::HttpServer &http, aloop::HttpClient &client, PgPool &db, const std::string &upstream) {
    aloop::HttpClient *api = &client;
    PgPool *pool = &db;
    std::string base = upstream;
    auto no_upstream = [](Responder r) { json_error(r, 503, "no upstream configured (--upstream)"); };
    if (base.empty()) {
        http.route_prefix("GET", "/api/", no_upstream);
        http.route_prefix("GET", "/chain/api-db/", no_upstream);
        http.route("GET", "/chain/db-api", no_upstream);
        return;
    }
    // Relay: status, Content-Type and body of GET <upstream>/<rest>.
    http.route_prefix("GET", "/api/", [api, base](Responder r) {
        std::string url = upstream_url(base, r, 5);
        auto shared = std::make_shared<Responder>(std::move(r));
        api->get(url, [shared](int status, const aloop::HttpResponse *resp) {
            if (!resp)
                return upstream_error(*shared, status);
            std::string ctype(resp->header("Content-Type").value_or("application/octet-stream"));
            shared->respond(resp->status(), ctype, resp->body());
        });
    });
    // API -> DB: fetch, then log the call, then answer with the log id.
    http.route_prefix("GET", "/chain/api-db/", [api, pool, base](Responder r) {
        std::string_view target = r.target();
        std::string rest(target.substr(std::min<size_t>(14, target.size())));
        std::string path = "/" + rest;
        auto shared = std::make_shared<Responder>(std::move(r));
        api->get(base + path, [shared, pool, path](int status, const aloop::HttpResponse *resp) {
            if (!resp)
                return upstream_error(*shared, status);
            int upstream_status = resp->status();
            size_t bytes = resp->body().size();
            pool->execute("api_log_insert", {path, std::to_string(upstream_status), std::to_string(bytes)},
                          [shared, upstream_status, bytes](const PgResult &res) {
                              if (!res.ok() || res.rows() != 1)
                                  return db_error(*shared, res);
                              nlohmann::json out = {{"upstream_status", upstream_status},
                                                    {"bytes", bytes},
                                                    {"log_id", res.integer(0, 0)}};
                              shared->respond(200, "application/json", out.dump());
                          });
        });
    });
    // DB -> API: read world row N, then call the API with its random number.
    http.route("GET", "/chain/db-api", [api, pool, base](Responder r) {
        auto id = r.query_param("id");
        if (!id || id->empty() || id->size() > 9 || !std::all_of(id->begin(), id->end(), ::isdigit))
            return json_error(r, 400, "id must be a positive integer");
        auto shared = std::make_shared<Responder>(std::move(r));
        pool->execute("world", {*id}, [shared, api, base](const PgResult &res) {
            if (!res.ok())
                return db_error(*shared, res);
            if (res.rows() != 1)
                return json_error(*shared, 404, "no such world row");
            long long wid = res.integer(0, 0), rn = res.integer(0, 1);
            api->get(base + "/world/" + std::to_string(rn), [shared, wid, rn](int status, const aloop::HttpResponse *resp) {
                if (!resp)
                    return upstream_error(*shared, status);
                nlohmann::json out = {{"id", wid},
                                      {"randomNumber", rn},
                                      {"upstream_status", resp->status()},
                                      {"upstream_body", std::string(resp->body())}};
                shared->respond(200, "application/json", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
            });
        });
    });
}

void add_routes(aloop::HttpServer &http) {
    // Status and headers checked once, shared by every loop's routes (immutable).
    auto text = std::make_shared<const aloop::PreparedResponse>(200, "text/plain");
    auto json = std::make_shared<const aloop::PreparedResponse>(200, "application/json");
    http.route("GET", "/plaintext", [text](aloop::Responder r) { r.respond(*text, "Hello, World!"); });
    http.route("GET", "/json", [json](aloop::Responder r) {
        char buf[128];
        r.respond(*json, HelloMessage{"Hello, World!"}.serialize(buf));
    });
    http.route("POST", "/palindrome", [](aloop::Responder r) {
        std::string_view body = r.body();
        if (body.empty()) {
            r.respond(400, "text/plain", "The request body is empty.\n");
            return;
        }
        r.respond(200, "text/plain",
                  is_palindrome(body) ? "The input is a palindrome." : "The input is not a palindrome.");
    });
}

/// GET /ws/echo: a WebSocket that sends every message back as it came (text as text, binary
/// as binary), up to 16 MiB a message (1009 beyond).
// ---- streamed bodies: POST /upload hashed as it arrives, GET /download?bytes=N paced -------

/// The state of one upload, shared by its body reader's callbacks (freed when reading ends).
struct Upload {
    Sha256 hash;
    uint64_t bytes = 0;
};

/// 64 KiB of the download pattern (byte i is i % 251), plus 251 bytes so that a piece may
/// start at any phase of it.
constexpr size_t DOWNLOAD_PIECE = 64 * 1024;
std::string_view download_pattern() {
    static const std::string p = [] {
        std::string b(DOWNLOAD_PIECE + 251, '\0');
        for (size_t i = 0; i < b.size(); i++)
            b[i] = static_cast<char>(i % 251);
        return b;
    }();
    return p;
}

void add_stream_routes(aloop::HttpServer &http, uint64_t max_upload) {
    http.route_stream("POST", "/upload", max_upload, [](Responder r) {
        auto u = std::make_shared<Upload>();
        aloop::BodyReader reader;
        reader.on_data = [u](Responder &, std::string_view piece) {
            u->hash.update(piece.data(), piece.size());
            u->bytes += piece.size();
        };
        reader.on_end = [u](Responder &r) {
            r.respond(200, "application/json",
                      "{\"bytes\":" + std::to_string(u->bytes) + ",\"sha256\":\"" + u->hash.hex() + "\"}");
        };
        // The request must be answered in every case (to a client gone, the answer frees it).
        reader.on_error = [](Responder &r, int error) {
            int status = error == ALOOP_E_HTTP_TOO_LARGE ? 413 : error == ALOOP_E_TIMEOUT ? 408 : 400;
            r.respond(status, "text/plain",
                      std::to_string(status) + " " +
                          (status == 413   ? "Payload Too Large: the upload exceeds --max-upload"
                           : status == 408 ? "Request Timeout: the upload stalled"
                                           : std::string("Bad Request: ") + aloop_strerror(error)) +
                          "\n");
        };
        if (int rc = std::move(r).read_body(std::move(reader)); rc != 0)
            r.respond(500, "text/plain", std::string("500 ") + aloop_strerror(rc) + "\n");
    });
    http.route("GET", "/download", [](Responder r) {
        auto q = r.query_param("bytes");
        if (!q || q->empty() || q->size() > 19 || !std::all_of(q->begin(), q->end(), [](char c) { return c >= '0' && c <= '9'; })) {
            r.respond(400, "text/plain", "400 Bad Request: bytes=N (a decimal count) expected\n");
            return;
        }
        // One more piece each time the previous one reached the kernel, so the client's
        // reading sets the pace and one piece at most is in memory. A client gone: the write
        // says ALOOP_E_CANCELLED, and the producer is freed.
        r.respond_chunked(200, "application/octet-stream")
            .on_drain([total = std::stoull(*q), sent = uint64_t(0)](aloop::ChunkedResponse &res) mutable {
                if (sent == total) {
                    res.end();
                    return;
                }
                size_t n = static_cast<size_t>(std::min<uint64_t>(DOWNLOAD_PIECE, total - sent));
                sent += n;
                res.write(download_pattern().substr(static_cast<size_t>((sent - n) % 251), n));
            });
    });
}

void add_websocket_routes(aloop::HttpServer &http, uint64_t ping_ms) {
    auto opts = std::make_shared<aloop::WsOptions>();
    opts->c.max_message = 16u << 20;
    opts->c.max_queue = 16u << 20;
    opts->c.ping_interval_ms = ping_ms;
    if (ping_ms)
        opts->c.ping_timeout_ms = ping_ms;
    auto echo = std::make_shared<aloop::WsCallbacks>();
    echo->on_message = [](aloop::WebSocket ws, const aloop::WsMessage &m) { ws.send(m); };
    std::shared_ptr<const aloop::WsCallbacks> cbs = echo; // one copy for every connection
    http.route("GET", "/ws/echo", [opts, cbs](Responder r) { aloop::ws_accept(std::move(r), *opts, cbs); });
}

/// One loop, its HTTP server, its signal handles, and the thread running them.
struct Worker {
    std::unique_ptr<aloop::Loop> loop;
    std::unique_ptr<PgPool> db;
    std::unique_ptr<Events> events;
    std::unique_ptr<aloop::HttpClient> api;
    std::unique_ptr<aloop::HttpServer> http;
    std::vector<std::unique_ptr<aloop::Signal>> signals;
    bool stopping = false;
    std::thread thread;
};

/// Frees a worker's parts on the thread that runs its loop (the pool's closing work runs
/// there). The signal handles go first (started ones would keep the loop running); the last one
/// of each signal puts its previous action back. The loop itself stays, for the caller.
void tear_down(Worker &w) {
    w.signals.clear();
    if (w.http && !w.stopping) {
        // Never served (start-up failed): stop its listeners and close at once.
        aloop::Loop *loop = w.loop.get();
        w.http->shutdown(0, [loop] { loop->stop(); });
        w.loop->run();
    }
    w.http.reset();
    w.api.reset();
    w.events.reset();
    w.db.reset();
    if (w.loop)
        w.loop->run(); // the client's and the pool's connections finish closing
}

/// Start-up failed: every worker made so far is torn down on this thread (no loop runs yet),
/// so nothing is leaked and no socket file is left behind. Returns the exit status, 1.
int fail_start(std::vector<Worker> &workers) {
    for (auto &w : workers) {
        tear_down(w);
        w.loop.reset();
    }
    return 1;
}

/// SIGINT/SIGTERM on this worker's loop: stop accepting, finish what is in flight (bounded),
/// then stop the loop. A repeated signal changes nothing.
void watch_stop_signals(Worker &w) {
    for (int sig : {SIGINT, SIGTERM}) {
        w.signals.push_back(std::make_unique<aloop::Signal>(*w.loop, sig, [&w](int) {
            if (w.stopping)
                return;
            w.stopping = true;
            w.events->close_all(); // event streams never end by themselves
            aloop::Loop *loop = w.loop.get();
            w.http->shutdown(5000, [loop] { loop->stop(); });
        }));
    }
}

/// SIGHUP on the first worker's loop: a new TLS certificate for new connections on every loop;
/// open ones keep theirs. A file that does not load leaves the current configuration in place.
/// Without --tls-cert, SIGHUP is watched and ignored (it would end the process otherwise).
void watch_reload_signal(Worker &first, std::vector<Worker> &workers, const Config &cfg) {
    first.signals.push_back(std::make_unique<aloop::Signal>(*first.loop, SIGHUP, [&workers, &cfg](int) {
        if (cfg.tls_cert.empty())
            return;
        try {
            auto fresh = std::make_shared<aloop::TlsServerConfig>(
                aloop::TlsServerConfig::from_files(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca));
            for (auto &w : workers) {
                // Runs on w's own thread, which is also the one that tears its server down.
                Worker *target = &w;
                w.loop->post([target, fresh] {
                    if (target->http && !target->stopping)
                        target->http->set_tls(*fresh);
                });
            }
            std::fprintf(stderr, "server: SIGHUP: TLS certificate reloaded\n");
        } catch (const aloop::Error &e) {
            std::fprintf(stderr, "server: SIGHUP: %s (keeping the current certificate)\n", e.what());
        }
    }));
}

} // namespace

int main(int argc, char **argv) {
    Config cfg = parse_args(argc, argv);

    // TLS configurations, made once and shared by every thread's server and client.
    std::shared_ptr<aloop::TlsServerConfig> tls;
    std::unique_ptr<aloop::TlsClientConfig> upstream_tls;
    try {
        if (!cfg.tls_cert.empty())
            tls = std::make_shared<aloop::TlsServerConfig>(
                aloop::TlsServerConfig::from_files(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca));
        if (!cfg.upstream_cacert.empty())
            upstream_tls = std::make_unique<aloop::TlsClientConfig>(aloop::TlsClientConfig::trusting(cfg.upstream_cacert));
    } catch (const aloop::Error &e) {
        std::fprintf(stderr, "server: %s\n", e.what());
        return 1;
    }

    aloop::HttpServer::Options opts;
    opts.c.header_timeout_ms = cfg.header_timeout_ms;
    opts.c.idle_timeout_ms = cfg.idle_timeout_ms;
    opts.c.write_timeout_ms = cfg.write_timeout_ms;
    opts.c.max_body = cfg.max_body;
    opts.c.reuse_port = 1;
    if (tls)
        opts.c.tls = tls->get();

    std::vector<Worker> workers(static_cast<size_t>(cfg.threads));
    int port = cfg.port;
    try {
        // Every loop and listener is created here; then each runs on its own thread. The
        // first listener fixes the port when 0 was asked for.
        for (auto &w : workers) {
            w.loop = std::make_unique<aloop::Loop>(cfg.backend);
            PgPool::Options popts;
            popts.c.size = static_cast<size_t>(cfg.pool);
            popts.c.query_timeout_ms = cfg.query_timeout_ms;
            std::vector<const char *> replicas;
            for (const auto &r : cfg.pg_replicas)
                replicas.push_back(r.c_str());
            popts.c.replicas = replicas.data();
            popts.c.nreplicas = replicas.size();
            popts.c.no_prepare = cfg.pg_no_prepare ? 1 : 0;
            w.db = std::make_unique<PgPool>(*w.loop, cfg.pg, popts);
            w.events = std::make_unique<Events>(*w.loop, cfg.pg_listen.empty() ? cfg.pg : cfg.pg_listen, cfg.ws_ping_ms);
            prepare_statements(*w.db);
            w.http = std::make_unique<aloop::HttpServer>(*w.loop, opts);
            add_routes(*w.http);
            add_websocket_routes(*w.http, cfg.ws_ping_ms);
            add_database_routes(*w.http, *w.db);
            add_app_routes(*w.http, *w.db, *w.events);
            add_stream_routes(*w.http, cfg.max_upload);
            aloop::HttpClient::Options copts;
            copts.c.request_timeout_ms = cfg.upstream_timeout_ms;
            copts.c.connect_timeout_ms = cfg.upstream_timeout_ms;
            copts.c.max_per_origin = 64;
            if (upstream_tls)
                copts.tls(*upstream_tls);
            w.api = std::make_unique<aloop::HttpClient>(*w.loop, copts);
            add_upstream_routes(*w.http, *w.api, *w.db, cfg.upstream);
            if (!cfg.address.empty())
                port = w.http->listen(cfg.address.c_str(), static_cast<uint16_t>(port));
            // With reuse_port every loop's server shares the one socket at the path.
            if (!cfg.unix_path.empty()) {
                int rc = aloop_http_server_listen_unix(w.http->get(), cfg.unix_path.c_str());
                if (rc < 0) {
                    const char *detail = aloop_last_error_message(); // for -EADDRINUSE, -EEXIST
                    std::fprintf(stderr, "server: cannot listen on %s: %s%s%s\n", cfg.unix_path.c_str(),
                                 aloop_strerror(rc), *detail ? ": " : "", detail);
                    return fail_start(workers);
                }
            }
            // Watched from here on, before the listening line: a signal that comes before the
            // loop runs waits for it.
            watch_stop_signals(w);
        }
        watch_reload_signal(workers[0], workers, cfg);
    } catch (const aloop::Error &e) {
        std::fprintf(stderr, "server: cannot listen on %s:%d: %s\n", cfg.address.c_str(), cfg.port, e.what());
        return fail_start(workers);
    }
    if (cfg.address.empty())
        std::printf("listening on unix:%s (backend=%s, threads=%d)\n", cfg.unix_path.c_str(),
                    workers[0].loop->backend_name(), cfg.threads);
    else
        std::printf("listening on %s:%d (backend=%s, threads=%d)\n", cfg.address.c_str(), port,
                    workers[0].loop->backend_name(), cfg.threads);
    std::fflush(stdout);

    for (auto &w : workers) {
        w.thread = std::thread([&w] {
            try {
                w.loop->run(); // until a stop signal's shutdown has finished
                tear_down(w);
            } catch (const std::exception &e) {
                std::fprintf(stderr, "server: loop: %s\n", e.what());
            }
        });
    }
    for (auto &w : workers)
        w.thread.join();
    for (auto &w : workers)
        w.loop.reset();
    return 0;
}
