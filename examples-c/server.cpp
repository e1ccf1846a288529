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
//
// The routes live in examples-c/server/, one file per concern, included here in order; this
// file holds the plain routes, the per-thread workers, signals and main().
#include <asyncloop.hpp>
#include <nlohmann/json.hpp>

#include "sha256.hpp"

#include <set>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
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

#include "server/config.hpp"
#include "server/common.hpp"
#include "server/db_routes.hpp"
#include "server/app_routes.hpp"
#include "server/upstream_routes.hpp"
#include "server/stream_routes.hpp"

namespace {

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

/// The address a listening socket is bound to, as the listening line gives it:
/// "127.0.0.1:8080", "[::1]:8080" or "unix:/run/app.sock".
std::string socket_name(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) != 0)
        return "fd:" + std::to_string(fd);
    char ip[INET6_ADDRSTRLEN] = "";
    if (ss.ss_family == AF_INET) {
        auto *a = reinterpret_cast<sockaddr_in *>(&ss);
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        return std::string(ip) + ":" + std::to_string(ntohs(a->sin_port));
    }
    if (ss.ss_family == AF_INET6) {
        auto *a = reinterpret_cast<sockaddr_in6 *>(&ss);
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        return "[" + std::string(ip) + "]:" + std::to_string(ntohs(a->sin6_port));
    }
    if (ss.ss_family == AF_UNIX) {
        auto *a = reinterpret_cast<sockaddr_un *>(&ss);
        size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
        if (n > 0 && a->sun_path[0] == '\0') // abstract: "@name", as --unix takes it
            return "unix:@" + std::string(a->sun_path + 1, n - 1);
        return std::string("unix:") + a->sun_path;
    }
    return "fd:" + std::to_string(fd);
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
            // The inherited socket: every loop's server listens on a duplicate of it.
            if (cfg.listen_fd >= 0) {
                int rc = aloop_http_server_listen_fd(w.http->get(), cfg.listen_fd);
                if (rc < 0) {
                    std::fprintf(stderr, "server: cannot listen on fd %d: %s: %s\n", cfg.listen_fd, aloop_strerror(rc),
                                 aloop_last_error_message());
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
    if (cfg.address.empty() && cfg.listen_fd >= 0) {
        std::printf("listening on %s (backend=%s, threads=%d)\n", socket_name(cfg.listen_fd).c_str(),
                    workers[0].loop->backend_name(), cfg.threads);
    } else if (cfg.address.empty())
        std::printf("listening on unix:%s (backend=%s, threads=%d)\n", cfg.unix_path.c_str(),
                    workers[0].loop->backend_name(), cfg.threads);
    else
        std::printf("listening on %s:%d (backend=%s, threads=%d)\n", cfg.address.c_str(), port,
                    workers[0].loop->backend_name(), cfg.threads);
    std::fflush(stdout);
    if (cfg.listen_fd >= 0)
        close(cfg.listen_fd); // every server listens on a duplicate of its own

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
