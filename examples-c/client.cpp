// client: an HTTP client on asyncloop (C++17, on asyncloop.hpp).
//
//   client [options] <address> <port> [path]       (address may be a host name; path defaults to /)
//     -X METHOD  -d DATA  -H "Name: value" (repeatable)  --timeout MS (default 10000)
//     --backend auto|uring|epoll
//     -n N   total requests (default 1)      -c C   concurrent keep-alive connections (default 1)
//     --tls          HTTPS (SNI and verification use <address> as the host name)
//     --cacert FILE  trust this CA (default: the system's roots)   --insecure  no verification
//     --unix PATH    connect to a Unix stream socket instead of <address>:<port> (which still
//                    name the Host header)
//     --output FILE  write the body to FILE as it streams (never held whole in memory)
//
// With -n 1: prints the status line, the headers, a blank line and the body (with --output,
// the body goes to FILE instead); exits 0 when a response arrived (any status; with --output,
// when the whole body arrived too), non-zero with a one-line reason on stderr otherwise.
// With -n above 1: runs the requests over C connections and prints one summary line,
//   requests=N ok=K errors=E rps=X p50_ms=A p99_ms=B      (ok = 2xx/3xx); exits 0 when errors=0.
//
//   client --ws [options] <address> <port> [path]    a WebSocket session with ws://address:port/path
//     -d DATA (repeatable) a text message (binary with --binary)   --ws-bytes N (repeatable) a binary
//     message of N bytes, byte i = i % 251   --ws-text N (repeatable) a text message of N bytes,
//     byte i = 'a' + i % 26   -n N  messages to receive, then close (default: one per message
//     sent)   --close CODE (default 1000)   --max-message BYTES (default 16 MiB)   -H extra
//     handshake headers   --tls (--cacert FILE, --insecure) for wss://
// Prints "text LEN DATA" (text over 200 bytes: "text LEN FNV1A64") or "binary LEN FNV1A64" per
// message received, then "close STATUS CODE REASON" (STATUS as aloop_err_name names it: OK
// after a closing handshake); exits 0 on OK.
#include <asyncloop.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
    aloop::Loop::Backend backend = aloop::Loop::Backend::Auto;
    std::string method = "GET";
    std::string data;
    bool has_data = false;
    std::vector<aloop::Header> headers;
    uint64_t timeout_ms = 10000;
    long n = 1;
    long c = 1;
    std::string host;
    int port = 0;
    std::string path = "/";
    bool tls = false;
    std::string cacert;
    bool insecure = false;
    std::string unix_path, output;
    bool n_given = false;
    // --ws
    bool ws = false;
    bool binary = false;
    std::vector<std::pair<bool, std::string>> messages; // (binary, bytes)
    int close_code = ALOOP_WS_CLOSE_NORMAL;
    size_t max_message = 16u << 20;
};

[[noreturn]] void usage(const std::string &msg) {
    if (!msg.empty())
        std::fprintf(stderr, "client: %s\n", msg.c_str());
    std::fprintf(stderr, "usage: client [-X METHOD] [-d DATA] [-H 'Name: value'] [--timeout MS] [--backend auto|uring|epoll]\n"
                         "              [-n N] [-c C] [--tls [--cacert FILE] [--insecure]] [--unix PATH] [--output FILE]\n"
                         "              <address> <port> [path]\n"
                         "       client --ws [-d MESSAGE]... [--binary] [--ws-bytes N]... [--ws-text N]... [-n N] [--close CODE]\n"
                         "              [--max-message BYTES] [-H 'Name: value'] [--tls [--cacert FILE] [--insecure]]\n"
                         "              <address> <port> [path]\n");
    std::exit(2);
}

long number(const std::string &opt, const char *v, long min, long max) {
    char *end = nullptr;
    errno = 0;
    long n = std::strtol(v, &end, 10);
    if (!*v || *end || errno || n < min || n > max)
        usage("invalid value for " + opt + ": " + v);
    return n;
}

Config parse(int argc, char **argv) {
    Config c;
    std::vector<std::string> pos;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> const char * {
            if (i + 1 >= argc)
                usage(a + " needs a value");
            return argv[++i];
        };
        if (a == "-h" || a == "--help")
            usage("");
        else if (a == "-X")
            c.method = value();
        else if (a == "-d") {
            c.data = value();
            c.has_data = true;
            c.messages.emplace_back(false, c.data);
        } else if (a == "--ws")
            c.ws = true;
        else if (a == "--binary")
            c.binary = true;
        else if (a == "--ws-bytes") {
            std::string m(static_cast<size_t>(number(a, value(), 0, 1l << 30)), '\0');
            for (size_t i = 0; i < m.size(); i++)
                m[i] = static_cast<char>(i % 251);
            c.messages.emplace_back(true, std::move(m));
        } else if (a == "--ws-text") {
            std::string m(static_cast<size_t>(number(a, value(), 0, 1l << 30)), '\0');
            for (size_t i = 0; i < m.size(); i++)
                m[i] = static_cast<char>('a' + i % 26);
            c.messages.emplace_back(false, std::move(m));
        } else if (a == "--close")
            c.close_code = static_cast<int>(number(a, value(), 1000, 4999));
        else if (a == "--max-message")
            c.max_message = static_cast<size_t>(number(a, value(), 0, 1l << 40));
        else if (a == "-H") {
            std::string h = value();
            auto colon = h.find(':');
            if (colon == std::string::npos || colon == 0)
                usage("a header is \"Name: value\": " + h);
            std::string v = h.substr(colon + 1);
            v.erase(0, v.find_first_not_of(" \t"));
            c.headers.push_back({h.substr(0, colon), v});
        } else if (a == "--timeout")
            c.timeout_ms = static_cast<uint64_t>(number(a, value(), 1, 86400000));
        else if (a == "--backend") {
            std::string b = value();
            if (b == "auto")
                c.backend = aloop::Loop::Backend::Auto;
            else if (b == "uring" || b == "io_uring")
                c.backend = aloop::Loop::Backend::Uring;
            else if (b == "epoll")
                c.backend = aloop::Loop::Backend::Epoll;
            else
                usage("unknown backend " + b);
        } else if (a == "-n") {
            c.n = number(a, value(), 0, 100000000);
            c.n_given = true;
        }
        else if (a == "-c")
            c.c = number(a, value(), 1, 100000);
        else if (a == "--tls")
            c.tls = true;
        else if (a == "--cacert")
            c.cacert = value();
        else if (a == "--insecure")
            c.insecure = true;
        else if (a == "--unix")
            c.unix_path = value();
        else if (a == "--output")
            c.output = value();
        else if (a.size() > 1 && a[0] == '-')
            usage("unknown option " + a);
        else
            pos.push_back(a);
    }
    if (pos.size() < 2 || pos.size() > 3)
        usage("expected <address> <port> [path]");
    c.host = pos[0];
    c.port = static_cast<int>(number("port", pos[1].c_str(), 1, 65535));
    if (pos.size() == 3)
        c.path = pos[2][0] == '/' ? pos[2] : "/" + pos[2];
    if (c.has_data && c.method == "GET")
        c.method = "POST";
    if ((!c.cacert.empty() || c.insecure) && !c.tls)
        usage("--cacert and --insecure go with --tls");
    if (!c.ws && c.n < 1)
        usage("-n must be at least 1");
    if (!c.output.empty() && (c.n != 1 || c.ws))
        usage("--output goes with -n 1");
    if (c.binary)
        for (auto &m : c.messages)
            m.first = true;
    return c;
}

std::string url_of(const Config &c) {
    bool v6 = c.host.find(':') != std::string::npos;
    return std::string(c.tls ? "https://" : "http://") + (v6 ? "[" + c.host + "]" : c.host) + ":" +
           std::to_string(c.port) + c.path;
}

std::string describe(int status) {
    switch (status) {
    case ALOOP_E_DNS: return "cannot resolve host name";
    case ALOOP_E_CONNECT_TIMEOUT: return "connect timed out";
    case ALOOP_E_TIMEOUT: return "request timed out";
    case ALOOP_E_HTTP_PROTOCOL: return "protocol error: malformed or truncated response";
    case ALOOP_E_HTTP_TOO_LARGE: return "response body too large";
    default: {
        // Inside the callback: the reason of this failure (a TLS verifier's words, ...).
        std::string why = aloop::last_error_message();
        std::string text = std::string(aloop_strerror(status)) + " (" + aloop_err_name(status) + ")";
        return why.empty() ? text : text + ": " + why;
    }
    }
}

int single(const Config &cfg, aloop::Loop &loop, aloop::HttpClient &http) {
    int rc = 1;
    http.request(cfg.method.c_str(), url_of(cfg), cfg.headers, cfg.data, [&](int status, const aloop::HttpResponse *r) {
        loop.stop();
        if (!r) {
            std::fprintf(stderr, "client: %s\n", describe(status).c_str());
            return;
        }
        std::string out = "HTTP/1.1 " + std::to_string(r->status()) + " " + std::string(r->reason()) + "\r\n";
        for (auto &[n, v] : r->headers())
            out += std::string(n) + ": " + std::string(v) + "\r\n";
        out += "\r\n";
        out += r->body();
        std::fwrite(out.data(), 1, out.size(), stdout);
        rc = 0;
    });
    // Runs until the answer (or error) stopped it; idle keep-alive connections would keep it.
    loop.run();
    return rc;
}

/// -n 1 --output FILE: the response streams; its head goes to stdout as it arrives, its body to
/// FILE piece by piece.
int single_to_file(const Config &cfg, aloop::Loop &loop, aloop::HttpClient &http) {
    FILE *out = std::fopen(cfg.output.c_str(), "wb");
    if (!out) {
        std::fprintf(stderr, "client: cannot write %s: %s\n", cfg.output.c_str(), std::strerror(errno));
        return 1;
    }
    int rc = 1;
    bool write_failed = false;
    aloop::HttpClient::StreamCallbacks cbs;
    cbs.on_head = [](uint64_t, const aloop::HttpResponse &r) {
        std::string head = "HTTP/1.1 " + std::to_string(r.status()) + " " + std::string(r.reason()) + "\r\n";
        for (auto &[n, v] : r.headers())
            head += std::string(n) + ": " + std::string(v) + "\r\n";
        head += "\r\n";
        std::fwrite(head.data(), 1, head.size(), stdout);
        std::fflush(stdout);
    };
    cbs.on_data = [&](uint64_t, std::string_view d) {
        if (!write_failed && std::fwrite(d.data(), 1, d.size(), out) != d.size())
            write_failed = true;
    };
    cbs.on_done = [&](uint64_t, int status) {
        loop.stop();
        if (status != 0)
            std::fprintf(stderr, "client: %s\n", describe(status).c_str());
        else
            rc = 0;
    };
    try {
        http.request_stream(cfg.method.c_str(), url_of(cfg), cfg.headers, cfg.data, std::move(cbs));
    } catch (...) {
        std::fclose(out);
        throw;
    }
    loop.run();
    if (std::fclose(out) != 0 || write_failed) {
        std::fprintf(stderr, "client: cannot write %s\n", cfg.output.c_str());
        return 1;
    }
    return rc;
}

/// FNV-1a, 64 bits: a checksum of a binary message that a test can compute too.
uint64_t fnv1a(std::string_view d) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : d)
        h = (h ^ c) * 0x100000001b3ull;
    return h;
}

/// --ws: one WebSocket session (see the top of the file).
int websocket(const Config &cfg, aloop::Loop &loop) {
    bool v6 = cfg.host.find(':') != std::string::npos;
    std::string url = std::string(cfg.tls ? "wss://" : "ws://") + (v6 ? "[" + cfg.host + "]" : cfg.host) + ":" +
                      std::to_string(cfg.port) + cfg.path;
    aloop::WsOptions o;
    std::optional<aloop::TlsClientConfig> tls;
    if (cfg.tls) {
        tls.emplace(aloop::TlsClientConfig::trusting(cfg.cacert, cfg.insecure));
        o.tls = &*tls;
    }
    o.c.connect_timeout_ms = cfg.timeout_ms;
    o.c.max_message = cfg.max_message;
    size_t total = 0;
    for (const auto &m : cfg.messages)
        total += m.second.size() + 14;
    o.c.max_queue = std::max<size_t>(o.c.max_queue, total); // everything is queued before the open
    o.headers = cfg.headers;
    long want = cfg.n_given ? cfg.n : static_cast<long>(cfg.messages.size());
    long got = 0;
    int rc = 1;
    aloop::WsCallbacks cbs;
    cbs.on_open = [&](aloop::WebSocket ws) {
        if (want == 0)
            ws.close(cfg.close_code);
    };
    cbs.on_message = [&](aloop::WebSocket ws, const aloop::WsMessage &m) {
        if (m.text && m.data.size() <= 200)
            std::printf("text %zu %.*s\n", m.data.size(), static_cast<int>(m.data.size()), m.data.data());
        else if (m.text)
            std::printf("text %zu %016llx\n", m.data.size(), static_cast<unsigned long long>(fnv1a(m.data)));
        else
            std::printf("binary %zu %016llx\n", m.data.size(), static_cast<unsigned long long>(fnv1a(m.data)));
        if (++got == want)
            ws.close(cfg.close_code);
    };
    cbs.on_close = [&](aloop::WebSocket, int status, int code, std::string_view reason) {
        std::printf("close %s %d %.*s\n", aloop_err_name(status), code, static_cast<int>(reason.size()), reason.data());
        rc = status == 0 ? 0 : 1;
        loop.stop();
    };
    aloop::WebSocket ws = aloop::ws_connect(loop, url, o, std::move(cbs));
    for (const auto &m : cfg.messages) {
        int r = m.first ? ws.send_binary(m.second) : ws.send_text(m.second);
        if (r != 0)
            std::fprintf(stderr, "client: send: %s\n", aloop_strerror(r));
    }
    loop.run();
    std::fflush(stdout);
    return rc;
}

int load(const Config &cfg, aloop::Loop &loop, aloop::HttpClient &http) {
    std::string url = url_of(cfg);
    long sent = 0, ok = 0, errors = 0;
    std::vector<double> latencies;
    latencies.reserve(static_cast<size_t>(cfg.n));
    int last_error = 0;
    std::function<void()> next = [&]() {
        if (ok + errors == cfg.n) {
            loop.stop(); // done: idle keep-alive connections would keep the loop running
            return;
        }
        if (sent >= cfg.n)
            return;
        sent++;
        auto t0 = Clock::now();
        http.request(cfg.method.c_str(), url, cfg.headers, cfg.data, [&, t0](int status, const aloop::HttpResponse *r) {
            latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
            if (r && r->status() >= 200 && r->status() < 400)
                ok++;
            else {
                errors++;
                last_error = r ? r->status() : status;
            }
            next();
        });
    };
    auto start = Clock::now();
    for (long i = 0; i < cfg.c && i < cfg.n; i++)
        next();
    loop.run();
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double p) {
        if (latencies.empty())
            return 0.0;
        size_t i = static_cast<size_t>(p * static_cast<double>(latencies.size() - 1) + 0.5);
        return latencies[std::min(i, latencies.size() - 1)];
    };
    std::printf("requests=%ld ok=%ld errors=%ld rps=%.1f p50_ms=%.3f p99_ms=%.3f\n", cfg.n, ok, errors,
                secs > 0 ? static_cast<double>(cfg.n) / secs : 0.0, pct(0.50), pct(0.99));
    if (errors && last_error < 0)
        std::fprintf(stderr, "client: last error: %s\n", describe(last_error).c_str());
    return errors == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char **argv) {
    Config cfg = parse(argc, argv);
    try {
        aloop::Loop loop(cfg.backend);
        if (cfg.ws)
            return websocket(cfg, loop);
        int rc;
        {
            std::optional<aloop::TlsClientConfig> tls;
            aloop::HttpClient::Options opts;
            if (cfg.tls) {
                if (cfg.insecure)
                    std::fprintf(stderr, "client: WARNING: --insecure: the server's certificate is not verified\n");
                tls.emplace(aloop::TlsClientConfig::trusting(cfg.cacert, cfg.insecure));
                opts.tls(*tls);
            }
            opts.c.request_timeout_ms = cfg.timeout_ms;
            opts.c.connect_timeout_ms = cfg.timeout_ms;
            opts.c.max_per_origin = static_cast<size_t>(cfg.c);
            if (!cfg.unix_path.empty())
                opts.unix_socket(cfg.unix_path);
            aloop::HttpClient http(loop, opts);
            if (!cfg.output.empty())
                rc = single_to_file(cfg, loop, http);
            else
                rc = cfg.n == 1 ? single(cfg, loop, http) : load(cfg, loop, http);
        }
        loop.run(); // let the client's connections finish closing
        return rc;
    } catch (const aloop::Error &e) {
        std::fprintf(stderr, "client: %s\n", e.code() == ALOOP_E_URL ? "invalid address or path" : e.what());
        return 1;
    }
}
