// server: the asyncloop example HTTP server (C++17, on asyncloop.hpp).
//
//   server [options] <listen_address> <listen_port>     (see ../shared CONTRACT.md and --help)
//
// Routes: /plaintext, /json (TechEmpower rules), POST /palindrome; the database and upstream
// routes (/db, /queries, /updates, /fortunes, /books, /api/..., /chain/...) answer 503 with a
// JSON error until the PostgreSQL and HTTP client layers are wired in. One loop per thread,
// each with its own SO_REUSEPORT listener. SIGINT/SIGTERM: graceful stop, exit 0.
#include <asyncloop.hpp>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Config {
    aloop::Loop::Backend backend = aloop::Loop::Backend::Auto;
    int threads = 1;
    std::string pg;
    int pool = 4;
    std::string upstream;
    uint64_t header_timeout_ms = 10000;
    uint64_t idle_timeout_ms = 60000;
    size_t max_body = 1048576;
    std::string address;
    int port = -1;
};

[[noreturn]] void usage(const char *msg) {
    if (msg)
        std::fprintf(stderr, "server: %s\n", msg);
    std::fprintf(stderr,
                 "usage: server [options] <listen_address> <listen_port>\n"
                 "  --backend auto|uring|epoll   event loop backend (default auto)\n"
                 "  --threads N                  N loops on N threads (default 1)\n"
                 "  --pg CONNINFO                libpq conninfo (default: $DATABASE_URL, else PG* defaults)\n"
                 "  --pool N                     PostgreSQL connections per thread\n"
                 "  --upstream URL               base URL of the third-party API\n"
                 "  --header-timeout MS          time to receive a request head (default 10000)\n"
                 "  --idle-timeout MS            keep-alive idle time (default 60000)\n"
                 "  --max-body BYTES             request body limit (default 1048576)\n");
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
        else if (a == "--pool")
            c.pool = static_cast<int>(number("--pool", value(), 1, 1024));
        else if (a == "--upstream")
            c.upstream = value();
        else if (a == "--header-timeout")
            c.header_timeout_ms = number("--header-timeout", value(), 1, 86400000);
        else if (a == "--idle-timeout")
            c.idle_timeout_ms = number("--idle-timeout", value(), 1, 86400000);
        else if (a == "--max-body")
            c.max_body = static_cast<size_t>(number("--max-body", value(), 0, 1ull << 40));
        else if (a.size() > 1 && a[0] == '-')
            usage(("unknown option " + a).c_str());
        else
            positional.push_back(argv[i]);
    }
    if (positional.size() != 2)
        usage("expected <listen_address> <listen_port>");
    c.address = positional[0];
    c.port = static_cast<int>(number("listen_port", positional[1], 0, 65535));
    return c;
}

bool is_palindrome(std::string_view s) {
    for (size_t i = 0, j = s.size(); i + 1 < j; i++, j--)
        if (s[i] != s[j - 1])
            return false;
    return true;
}

void unavailable(aloop::Responder r, const char *what) {
    std::string body = std::string("{\"error\":\"") + what + "\"}";
    r.respond(503, "application/json", body);
}

void add_routes(aloop::HttpServer &http) {
    http.route("GET", "/plaintext", [](aloop::Responder r) { r.respond(200, "text/plain", "Hello, World!"); });
    http.route("GET", "/json", [](aloop::Responder r) {
        r.respond(200, "application/json", "{\"message\":\"Hello, World!\"}");
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
    for (const char *path : {"/db", "/queries", "/updates", "/fortunes"})
        http.route("GET", path, [](aloop::Responder r) { unavailable(std::move(r), "database not configured"); });
    http.route("GET", "/books", [](aloop::Responder r) { unavailable(std::move(r), "database not configured"); });
    http.route("POST", "/books", [](aloop::Responder r) { unavailable(std::move(r), "database not configured"); });
    http.route_prefix("GET", "/api/", [](aloop::Responder r) { unavailable(std::move(r), "upstream not configured"); });
    http.route_prefix("GET", "/chain/api-db/",
                      [](aloop::Responder r) { unavailable(std::move(r), "upstream not configured"); });
    http.route("GET", "/chain/db-api", [](aloop::Responder r) { unavailable(std::move(r), "database not configured"); });
}

/// One loop, its HTTP server, and the thread running them.
struct Worker {
    std::unique_ptr<aloop::Loop> loop;
    std::unique_ptr<aloop::HttpServer> http;
    std::thread thread;
};

} // namespace

int main(int argc, char **argv) {
    Config cfg = parse_args(argc, argv);

    // Signals are taken by sigwait in the main thread only; worker threads inherit the mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    aloop::HttpServer::Options opts;
    opts.c.header_timeout_ms = cfg.header_timeout_ms;
    opts.c.idle_timeout_ms = cfg.idle_timeout_ms;
    opts.c.max_body = cfg.max_body;
    opts.c.reuse_port = 1;

    std::vector<Worker> workers(static_cast<size_t>(cfg.threads));
    int port = cfg.port;
    try {
        // Every loop and listener is created here; then each runs on its own thread. The
        // first listener fixes the port when 0 was asked for.
        for (auto &w : workers) {
            w.loop = std::make_unique<aloop::Loop>(cfg.backend);
            w.http = std::make_unique<aloop::HttpServer>(*w.loop, opts);
            add_routes(*w.http);
            port = w.http->listen(cfg.address.c_str(), static_cast<uint16_t>(port));
        }
    } catch (const aloop::Error &e) {
        std::fprintf(stderr, "server: cannot listen on %s:%d: %s\n", cfg.address.c_str(), cfg.port, e.what());
        return 1;
    }
    std::printf("listening on %s:%d (backend=%s, threads=%d)\n", cfg.address.c_str(), port,
                workers[0].loop->backend_name(), cfg.threads);
    std::fflush(stdout);

    for (auto &w : workers) {
        w.thread = std::thread([&w] {
            try {
                w.loop->run();
            } catch (const std::exception &e) {
                std::fprintf(stderr, "server: loop: %s\n", e.what());
            }
        });
    }

    int sig = 0;
    sigwait(&stop_signals, &sig);
    for (auto &w : workers) {
        aloop::Loop *loop = w.loop.get();
        aloop::HttpServer *http = w.http.get();
        loop->post([loop, http] { http->shutdown(5000, [loop] { loop->stop(); }); });
    }
    for (auto &w : workers)
        w.thread.join();
    for (auto &w : workers) {
        w.http.reset();
        w.loop.reset();
    }
    return 0;
}
