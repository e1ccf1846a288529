// server/config.hpp: part of the example server, included once by server.cpp (in order, after the
// parts before it). The command line: options, usage, parse_args.
#pragma once

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
    int listen_fd = -1; // an inherited listening socket (socket activation); -1: none
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
                 "       server [options] --listen-fd FD (an inherited listening socket only)\n"
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
                 "  --listen-fd FD               also serve on the listening socket FD, TCP or Unix, inherited\n"
                 "                               from the parent (socket activation; alone: instead of TCP)\n"
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
        else if (a == "--listen-fd")
            c.listen_fd = static_cast<int>(number("--listen-fd", value(), 0, 1 << 30));
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
    if (positional.empty() && (!c.unix_path.empty() || c.listen_fd >= 0)) {
        // A Unix socket or an inherited one only: no TCP listener of our own.
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

} // namespace
