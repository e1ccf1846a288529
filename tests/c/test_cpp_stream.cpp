// The C++ layer's streaming wrappers on both backends, against real sockets: a streamed upload
// read with Responder::read_body, paused and resumed through BodyStream (from a timer, outside
// the callbacks), answered at the end, early from on_data, by default after an error, with 500
// after an exception; a paced ChunkedResponse (on_drain) read by a blocking client and by
// HttpClient::request_stream with pause/resume backpressure; the client gone in the middle of
// either; a shutdown with a paced download in flight; cancel and exceptions in the client's
// callbacks; the refusals (Error thrown, the Responder or response kept). Every callable
// captures a Tracker: each one made is destroyed exactly once (the live count returns to 0;
// ASan would see a second delete) at the moment each path ends.
#include <asyncloop.hpp>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "dial.h"

namespace {

constexpr size_t UPLOAD_BYTES = 4u << 20;
constexpr size_t PIECE = 64 * 1024;

/// Counts the live copies of the callables that capture it.
struct Tracker {
    int *live;
    explicit Tracker(int *l) : live(l) { ++*live; }
    Tracker(const Tracker &o) : live(o.live) { ++*live; }
    Tracker(Tracker &&o) noexcept : live(o.live) { ++*live; }
    Tracker &operator=(const Tracker &) = delete;
    ~Tracker() { --*live; }
};

template <class F> int code_of(F &&f) {
    try {
        f();
    } catch (const aloop::Error &e) {
        return e.code();
    }
    return 0;
}

struct Ctx {
    aloop::Loop *loop = nullptr;
    aloop::HttpServer *http = nullptr;
    int port = 0;
    // upload
    int body_live = 0, pauses = 0, data_while_paused = 0, refused_live = 0;
    int early_pieces = 0, gone_error = 0, gone_errors = 0;
    int paused_gone_error = 0;
    // download
    int drain_live = 0, drain_cancelled = 0, drain_throws = 0;
    bool paused_gone_answered = false;
    // client
    int client_live = 0;
};

// ---- blocking client helpers (another thread) ---------------------------------------------

bool write_all(int fd, const void *p, size_t n) {
    const char *b = static_cast<const char *>(p);
    while (n > 0) {
        ssize_t w = ::send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        b += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

/// Reads until `want` is in what arrived (kept in `got`); true if found.
bool read_until(int fd, std::string &got, const std::string &want) {
    char buf[65536];
    while (got.find(want) == std::string::npos) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
            std::fprintf(stderr, "got: %s\nwanted: %s\n", got.substr(0, 300).c_str(), want.c_str());
            return false;
        }
        got.append(buf, static_cast<size_t>(n));
    }
    return true;
}

/// Runs `client` on a thread while the loop runs; the thread stops the loop when it is done.
void with_client(Ctx &c, std::function<void()> client) {
    std::thread th([&] {
        client();
        c.loop->post([&c] { c.loop->stop(); });
    });
    c.loop->run();
    th.join();
}

/// A POST with `body`, Content-Length framed; returns what came back until `until`.
std::string post(int port, const std::string &path, const std::string &body, const std::string &until,
                 const std::string &extra = "") {
    int fd = dial(port);
    CHECK(fd >= 0);
    std::string head = "POST " + path + " HTTP/1.1\r\nHost: t\r\n" + extra +
                       "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    CHECK(write_all(fd, head.data(), head.size()));
    std::string got;
    if (!extra.empty()) // Expect: 100-continue: the interim answer comes before the body is sent
        CHECK(read_until(fd, got, "HTTP/1.1 100 Continue\r\n\r\n"));
    write_all(fd, body.data(), body.size()); // an early answer may close before all of it is sent
    CHECK(read_until(fd, got, until));
    close(fd);
    return got;
}

std::string pattern(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++)
        s[i] = static_cast<char>(i * 7 % 256);
    return s;
}

unsigned long checksum(std::string_view d, unsigned long sum = 0) {
    for (unsigned char ch : d)
        sum = sum * 31 + ch;
    return sum;
}

// ---- server routes ---------------------------------------------------------------------------

/// POST /upload: counted and summed as it streams, paused every 256 KiB and resumed 5 ms later
/// by a timer (outside the callbacks, through a BodyStream), answered at the end.
struct Upload {
    explicit Upload(aloop::Loop &loop) : timer(loop) {}
    aloop::Timer timer;
    size_t bytes = 0, since_pause = 0;
    unsigned long sum = 0;
    bool paused = false;
};

void upload_route(Ctx &c) {
    c.http->route_stream("POST", "/upload", 0, [&c](aloop::Responder r) {
        CHECK(r.body().empty());
        CHECK_RC(code_of([&] { r.body_stream().pause(); }), ALOOP_E_INVALID); // not reading yet
        auto u = std::make_shared<Upload>(*c.loop);
        aloop::BodyStream body = r.body_stream();
        aloop::BodyReader rd;
        rd.on_data = [&c, u, body, t = Tracker(&c.body_live)](aloop::Responder &, std::string_view d) mutable {
            if (u->paused)
                c.data_while_paused++;
            u->sum = checksum(d, u->sum);
            u->bytes += d.size();
            u->since_pause += d.size();
            if (u->since_pause >= 256 * 1024) {
                u->since_pause = 0;
                u->paused = true;
                c.pauses++;
                CHECK_RC(body.pause(), 0);
                u->timer.start(5, 0, [u, body]() mutable {
                    u->paused = false;
                    CHECK_RC(body.resume(), 0);
                });
            }
        };
        rd.on_end = [u, t = Tracker(&c.body_live)](aloop::Responder &r) {
            CHECK_RC(r.respond(200, "text/plain", std::to_string(u->bytes) + " " + std::to_string(u->sum)), 0);
        };
        rd.on_error = [t = Tracker(&c.body_live)](aloop::Responder &r, int e) {
            r.respond(400, "text/plain", aloop_err_name(e));
        };
        CHECK_RC(std::move(r).read_body(std::move(rd)), 0);
        CHECK(!r.valid()); // the reader has the request
        // The empty Responder cannot start another reader; the callables it was given go.
        CHECK_RC(code_of([&] { std::move(r).read_body({[t = Tracker(&c.refused_live)](aloop::Responder &, std::string_view) {}, {}, {}}); }),
                 ALOOP_E_NULL);
        CHECK(c.refused_live == 0);
        // Pausing a reader that has the request, from here: it is started, so this works.
        CHECK_RC(body.pause(), 0);
        CHECK_RC(body.resume(), 0);
    });
}

/// POST /early: answered 413 from the first piece; no piece follows, the reader is freed.
void early_route(Ctx &c) {
    c.http->route_stream("POST", "/early", 0, [&c](aloop::Responder r) {
        aloop::BodyReader rd;
        rd.on_data = [&c, t = Tracker(&c.body_live)](aloop::Responder &r, std::string_view) {
            c.early_pieces++;
            CHECK(r.valid());
            CHECK_RC(r.respond(413, "text/plain", "too big"), 0);
            CHECK(!r.valid());
        };
        rd.on_end = [t = Tracker(&c.body_live)](aloop::Responder &) { CHECK(!"the end after an early answer"); };
        CHECK_RC(std::move(r).read_body(std::move(rd)), 0);
    });
}

/// POST /limit (max 1000 bytes, chunked past it): no on_error, so the default 413 answers.
/// POST /throws: on_data throws: reported, answered 500.
/// POST /gone: the client leaves mid-body: on_error sees why, leaves the request unanswered
/// (the default answer goes to nobody), and everything is freed.
/// POST /paused-gone: the reader pauses at its first piece and is resumed 300 ms later, after
/// the client has gone: it still gets its last call.
void error_routes(Ctx &c) {
    c.http->route_stream("POST", "/limit", 1000, [&c](aloop::Responder r) {
        aloop::BodyReader rd;
        rd.on_data = [t = Tracker(&c.body_live)](aloop::Responder &, std::string_view) {};
        rd.on_end = [t = Tracker(&c.body_live)](aloop::Responder &) { CHECK(!"the end past the limit"); };
        CHECK_RC(std::move(r).read_body(std::move(rd)), 0);
    });
    c.http->route_stream("POST", "/throws", 0, [&c](aloop::Responder r) {
        aloop::BodyReader rd;
        rd.on_data = [t = Tracker(&c.body_live)](aloop::Responder &, std::string_view) {
            throw std::runtime_error("on_data throws (expected by the test)");
        };
        CHECK_RC(std::move(r).read_body(std::move(rd)), 0);
    });
    c.http->route_stream("POST", "/gone", 0, [&c](aloop::Responder r) {
        aloop::BodyReader rd;
        rd.on_error = [&c, t = Tracker(&c.body_live)](aloop::Responder &, int e) {
            c.gone_error = e;
            c.gone_errors++;
        };
        CHECK_RC(std::move(r).read_body(std::move(rd)), 0);
    });
    c.http->route_stream("POST", "/paused-gone", 0, [&c](aloop::Responder r) {
        auto timer = std::make_shared<aloop::Timer>(*c.loop);
        aloop::BodyStream body = r.body_stream();
        aloop::BodyReader rd;
        rd.on_data = [timer, body, t = Tracker(&c.body_live)](aloop::Responder &, std::string_view) mutable {
            if (timer->active())
                return;
            CHECK_RC(body.pause(), 0);
            timer->start(300, 0, [body]() mutable { body.resume(); });
        };
        rd.on_end = [t = Tracker(&c.body_live)](aloop::Responder &) { CHECK(!"the end of a cut body"); };
        rd.on_error = [&c, t = Tracker(&c.body_live)](aloop::Responder &r, int e) {
            c.paused_gone_error = e;
            int rc = r.respond(400, "text/plain", "gone"); // to a client gone, or half gone
            c.paused_gone_answered = rc == 0 || rc == ALOOP_E_CANCELLED;
        };
        CHECK_RC(std::move(r).read_body(std::move(rd)), 0);
    });
}

/// A buffered route: read_body is refused and the Responder keeps the request.
void refused_routes(Ctx &c) {
    c.http->route("POST", "/buffered", [&c](aloop::Responder r) {
        aloop::BodyReader rd;
        rd.on_data = [t = Tracker(&c.refused_live)](aloop::Responder &, std::string_view) {};
        CHECK_RC(code_of([&] { std::move(r).read_body(std::move(rd)); }), ALOOP_E_INVALID);
        CHECK(c.refused_live == 0);
        CHECK(r.valid());
        std::string body(r.body());
        r.respond(200, "text/plain", body);
    });
    // A chunked start refused (a Content-Length) keeps the Responder; an empty drain callback
    // is refused and keeps the response open; a response destroyed open is ended.
    c.http->route("GET", "/refusals", [&c](aloop::Responder r) {
        CHECK_RC(code_of([&] { r.respond_chunked(200, {{"Content-Length", "3"}}); }), ALOOP_E_INVALID);
        CHECK(r.valid());
        aloop::ChunkedResponse res = r.respond_chunked(200, "text/plain");
        CHECK(!r.valid());
        CHECK(res.open());
        CHECK_RC(code_of([&] { std::move(res).on_drain({}); }), ALOOP_E_NULL);
        CHECK(res.open());
        CHECK_RC(res.write("abc"), 0);
        CHECK_RC(res.write(""), 0);
        aloop::ChunkedResponse moved = std::move(res);
        CHECK(!res.open());
        CHECK_RC(res.write("x"), ALOOP_E_ALREADY);
        CHECK_RC(res.end(), ALOOP_E_ALREADY);
        CHECK_RC(std::move(res).on_drain([t = Tracker(&c.refused_live)](aloop::ChunkedResponse &) {}), ALOOP_E_ALREADY);
        CHECK(c.refused_live == 0);
        CHECK_RC(moved.write("def"), 0);
        // `moved` ends as it goes out of scope.
    });
}

/// GET /download?bytes=N: a paced chunked body (byte i = i % 251), one piece per drain.
/// GET /drain-throws: the producer throws after one piece: the response ends there.
void download_routes(Ctx &c) {
    c.http->route("GET", "/download", [&c](aloop::Responder r) {
        auto q = r.query_param("bytes");
        uint64_t total = q ? std::stoull(*q) : 0;
        auto res = r.respond_chunked(200, "application/octet-stream");
        CHECK(res.open());
        int rc = std::move(res).on_drain(
            [&c, total, sent = uint64_t(0), t = Tracker(&c.drain_live)](aloop::ChunkedResponse &res) mutable {
                if (sent == total) {
                    CHECK_RC(res.end(), 0);
                    CHECK(!res.open());
                    return;
                }
                static const std::string piece = [] {
                    std::string s(PIECE + 251, '\0');
                    for (size_t i = 0; i < s.size(); i++)
                        s[i] = static_cast<char>(i % 251);
                    return s;
                }();
                size_t n = static_cast<size_t>(std::min<uint64_t>(PIECE, total - sent));
                int w = res.write(std::string_view(piece).substr(sent % 251, n));
                if (w == ALOOP_E_CANCELLED) {
                    c.drain_cancelled++;
                    CHECK(!res.open());
                    return;
                }
                CHECK_RC(w, 0);
                sent += n;
            });
        CHECK_RC(rc, 0);
        CHECK(!res.open());
    });
    c.http->route("GET", "/drain-throws", [&c](aloop::Responder r) {
        r.respond_chunked(200, "text/plain")
            .on_drain([&c, calls = 0, t = Tracker(&c.drain_live)](aloop::ChunkedResponse &res) mutable {
                if (calls++ == 0) {
                    CHECK_RC(res.write("one piece"), 0);
                    return;
                }
                c.drain_throws++;
                throw std::runtime_error("the producer throws (expected by the test)");
            });
    });
}

// ---- the scenarios ---------------------------------------------------------------------------

void uploads(Ctx &c) {
    std::string body = pattern(UPLOAD_BYTES);
    with_client(c, [&] {
        std::string got = post(c.port, "/upload", body, "\r\n\r\n" + std::to_string(UPLOAD_BYTES) + " " +
                                                      std::to_string(checksum(body)),
                               "Expect: 100-continue\r\n");
        CHECK(got.find("HTTP/1.1 200 ") != std::string::npos);
        got = post(c.port, "/early", pattern(1 << 20), "\r\n\r\ntoo big");
        CHECK(got.find("HTTP/1.1 413 ") == 0);
        got = post(c.port, "/throws", "abc", "\r\n\r\n500 Internal Server Error");
        CHECK(got.find("HTTP/1.1 500 ") == 0);
        got = post(c.port, "/buffered", "ping", "\r\n\r\nping");
        CHECK(got.find("HTTP/1.1 200 ") == 0);
        // Chunked past the limit: the default answer to the error.
        int fd = dial(c.port);
        std::string req = "POST /limit HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" +
                          std::string(2048, 'x') + "\r\n0\r\n\r\n";
        CHECK(write_all(fd, req.data(), req.size()));
        got.clear();
        CHECK(read_until(fd, got, "\r\n\r\n413 Payload Too Large\n"));
        CHECK(got.find("HTTP/1.1 413 ") == 0);
        close(fd);
        // Half a body, then the client leaves.
        for (const char *path : {"/gone", "/paused-gone"}) {
            fd = dial(c.port);
            std::string head = std::string("POST ") + path + " HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
            CHECK(write_all(fd, head.data(), head.size()));
            CHECK(write_all(fd, body.data(), 5000));
            usleep(50 * 1000);
            close(fd);
        }
        usleep(400 * 1000); // the paused reader resumes after 300 ms
    });
    CHECK(c.pauses >= 4);
    CHECK(c.data_while_paused == 0);
    CHECK(c.early_pieces == 1);
    CHECK(c.gone_errors == 1);
    CHECK(c.gone_error == ALOOP_E_CANCELLED || c.gone_error == ALOOP_E_HTTP_PROTOCOL);
    CHECK(c.paused_gone_error == ALOOP_E_CANCELLED || c.paused_gone_error == ALOOP_E_HTTP_PROTOCOL);
    CHECK(c.paused_gone_answered);
    CHECK(c.body_live == 0); // every reader freed, each once
    CHECK(c.refused_live == 0);
}

/// Reads a chunked body as it streams, checking byte i = i % 251; returns its length, or -1.
long read_chunked(int fd, long stop_after = -1) {
    std::string buf;
    char tmp[65536];
    size_t off = 0;
    long body = 0;
    bool head = false;
    for (;;) {
        if (!head) {
            size_t e = buf.find("\r\n\r\n");
            if (e != std::string::npos) {
                head = true;
                off = e + 4;
            }
        }
        while (head) {
            size_t nl = buf.find("\r\n", off);
            if (nl == std::string::npos)
                break;
            size_t size = std::strtoul(buf.c_str() + off, nullptr, 16);
            if (buf.size() < nl + 2 + size + 2)
                break;
            if (size == 0)
                return body;
            for (size_t i = 0; i < size; i++)
                if (static_cast<unsigned char>(buf[nl + 2 + i]) != (body + static_cast<long>(i)) % 251)
                    return -1;
            body += static_cast<long>(size);
            off = nl + 2 + size + 2;
            if (stop_after >= 0 && body >= stop_after)
                return body;
        }
        buf.erase(0, off);
        off = 0;
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n <= 0)
            return -1;
        buf.append(tmp, static_cast<size_t>(n));
    }
}

void downloads(Ctx &c) {
    with_client(c, [&] {
        int fd = dial(c.port);
        const char get[] = "GET /download?bytes=8388608 HTTP/1.1\r\nHost: t\r\n\r\n";
        CHECK(write_all(fd, get, sizeof get - 1));
        CHECK(read_chunked(fd) == 8388608);
        close(fd);
        // The client leaves after 1 MiB: the producer learns it from its write.
        fd = dial(c.port);
        const char big[] = "GET /download?bytes=1073741824 HTTP/1.1\r\nHost: t\r\n\r\n";
        CHECK(write_all(fd, big, sizeof big - 1));
        CHECK(read_chunked(fd, 1 << 20) >= (1 << 20));
        close(fd);
        usleep(100 * 1000);
        fd = dial(c.port);
        const char throws[] = "GET /drain-throws HTTP/1.1\r\nHost: t\r\n\r\n";
        CHECK(write_all(fd, throws, sizeof throws - 1));
        std::string got;
        CHECK(read_until(fd, got, "\r\n9\r\none piece\r\n0\r\n\r\n"));
        close(fd);
        fd = dial(c.port);
        const char refusals[] = "GET /refusals HTTP/1.1\r\nHost: t\r\n\r\n";
        CHECK(write_all(fd, refusals, sizeof refusals - 1));
        got.clear();
        CHECK(read_until(fd, got, "\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"));
        close(fd);
    });
    CHECK(c.drain_cancelled == 1);
    CHECK(c.drain_throws == 1);
    CHECK(c.drain_live == 0);
    CHECK(c.refused_live == 0);
}

/// HttpClient::request_stream against /download on the same loop: the head first, every byte in
/// order, a pause every 1 MiB resumed 5 ms later by a timer (no data while paused), the end.
void client_stream(Ctx &c, aloop::HttpClient &client) {
    const std::string base = "http://127.0.0.1:" + std::to_string(c.port);
    const size_t total = 6u << 20; // often paused by its last bytes: the connection must serve on
    struct St {
        explicit St(aloop::Loop &l) : timer(l) {}
        aloop::Timer timer;
        int head = 0, done = -1, dones = 0, pauses = 0, while_paused = 0;
        size_t bytes = 0, wrong = 0, since = 0;
        bool paused = false, data_before_head = false;
    };
    auto st = std::make_shared<St>(*c.loop);
    aloop::HttpClient::StreamCallbacks cbs;
    cbs.on_head = [st, t = Tracker(&c.client_live)](uint64_t, const aloop::HttpResponse &h) {
        st->head = h.status();
        CHECK(h.header("Transfer-Encoding").value_or("") == "chunked");
        CHECK(h.body().empty());
    };
    cbs.on_data = [&client, st, t = Tracker(&c.client_live)](uint64_t id, std::string_view d) {
        if (!st->head)
            st->data_before_head = true;
        if (st->paused)
            st->while_paused++;
        for (size_t i = 0; i < d.size(); i++)
            st->wrong += static_cast<unsigned char>(d[i]) != (st->bytes + i) % 251;
        st->bytes += d.size();
        st->since += d.size();
        if (st->since >= (1u << 20)) {
            st->since = 0;
            st->paused = true;
            st->pauses++;
            CHECK_RC(client.pause(id), 0);
            st->timer.start(5, 0, [&client, st, id] {
                st->paused = false;
                CHECK_RC(client.resume(id), 0);
            });
        }
    };
    cbs.on_done = [&c, st, t = Tracker(&c.client_live)](uint64_t, int status) {
        st->done = status;
        st->dones++;
        c.loop->stop();
    };
    uint64_t id = client.get_stream(base + "/download?bytes=" + std::to_string(total), std::move(cbs));
    CHECK(id != 0);
    CHECK(c.client_live == 3);
    c.loop->run();
    CHECK(st->head == 200);
    CHECK(!st->data_before_head);
    CHECK(st->done == 0 && st->dones == 1);
    CHECK(st->bytes == total);
    CHECK(st->wrong == 0);
    CHECK(st->pauses >= 5);
    CHECK(st->while_paused == 0);
    CHECK(c.client_live == 0); // freed right after on_done
    CHECK_RC(client.pause(id), ALOOP_E_ALREADY);
    CHECK_RC(client.resume(id), ALOOP_E_ALREADY);

    // Cancelled from on_data, and an exception from on_data: on_done once with CANCELLED.
    for (bool throws : {false, true}) {
        int dones = 0, status = 1;
        size_t bytes = 0;
        aloop::HttpClient::StreamCallbacks k;
        k.on_head = [t = Tracker(&c.client_live)](uint64_t, const aloop::HttpResponse &) {};
        k.on_data = [&client, &bytes, throws, t = Tracker(&c.client_live)](uint64_t id, std::string_view d) {
            bytes += d.size();
            if (throws)
                throw std::runtime_error("on_data throws (expected by the test)");
            client.cancel(id);
        };
        k.on_done = [&, t = Tracker(&c.client_live)](uint64_t, int s) {
            status = s;
            dones++;
            c.loop->stop();
        };
        client.get_stream(base + "/download?bytes=1073741824", std::move(k));
        c.loop->run();
        CHECK(dones == 1);
        CHECK_RC(status, ALOOP_E_CANCELLED);
        CHECK(bytes > 0 && bytes < (64u << 20));
        CHECK(c.client_live == 0);
    }

    // Refused: a bad URL; pause on a request that does not stream.
    aloop::HttpClient::StreamCallbacks bad;
    bad.on_done = [t = Tracker(&c.client_live)](uint64_t, int) { CHECK(!"on_done of a refused request"); };
    CHECK_RC(code_of([&] { client.get_stream("nope://x", std::move(bad)); }), ALOOP_E_URL);
    CHECK(c.client_live == 0);
    uint64_t plain = client.get(base + "/download?bytes=10", [&](int, const aloop::HttpResponse *) { c.loop->stop(); });
    CHECK_RC(code_of([&] { client.pause(plain); }), ALOOP_E_INVALID);
    c.loop->run();
}

/// A client destroyed with a stream in flight: on_done CANCELLED, once, inside the destructor.
/// Then a shutdown with a paced download in flight (its client paused): the producer learns
/// the client has gone, everything is freed.
void teardown(Ctx &c) {
    const std::string base = "http://127.0.0.1:" + std::to_string(c.port);
    int at_start = c.drain_cancelled;
    int dones = 0, status = 1;
    {
        aloop::HttpClient client(*c.loop);
        aloop::HttpClient::StreamCallbacks k;
        k.on_head = [&c, t = Tracker(&c.client_live)](uint64_t, const aloop::HttpResponse &) { c.loop->stop(); };
        k.on_done = [&, t = Tracker(&c.client_live)](uint64_t, int s) {
            status = s;
            dones++;
        };
        client.get_stream(base + "/download?bytes=1073741824", std::move(k));
        c.loop->run(); // until the head
        CHECK(dones == 0);
    }
    CHECK(dones == 1);
    CHECK_RC(status, ALOOP_E_CANCELLED);
    CHECK(c.client_live == 0);

    aloop::HttpClient client(*c.loop);
    int shut_dones = 0, shut_status = 0;
    bool stopped = false;
    aloop::HttpClient::StreamCallbacks k;
    k.on_head = [&, t = Tracker(&c.client_live)](uint64_t id, const aloop::HttpResponse &) {
        CHECK_RC(client.pause(id), 0);
        c.http->shutdown(50, [&] {
            stopped = true;
            c.loop->stop();
        });
    };
    k.on_done = [&, t = Tracker(&c.client_live)](uint64_t, int s) {
        shut_status = s;
        shut_dones++;
    };
    uint64_t id = client.get_stream(base + "/download?bytes=1073741824", std::move(k));
    c.loop->run();
    CHECK(stopped);
    // Both producers (the destroyed client's, the one the shutdown cut) ran once more, their
    // write said ALOOP_E_CANCELLED, and they were destroyed.
    CHECK(c.drain_cancelled == at_start + 2);
    CHECK(c.drain_live == 0);
    // The paused client learns of the close once it reads on: a cut chunked body.
    CHECK_RC(client.resume(id), 0);
    while (shut_dones == 0 && c.loop->run(ALOOP_RUN_ONCE)) {
    }
    CHECK(shut_dones == 1);
    CHECK(shut_status < 0);
    CHECK(c.client_live == 0);
}

} // namespace

int main() {
    for (int b : all_backends) {
        Ctx c;
        aloop::Loop loop(static_cast<aloop::Loop::Backend>(b));
        {
            aloop::HttpServer::Options o;
            o.c.max_body = 1024; // streamed routes have their own limits
            aloop::HttpServer http(loop, o);
            c.loop = &loop;
            c.http = &http;
            upload_route(c);
            early_route(c);
            error_routes(c);
            refused_routes(c);
            download_routes(c);
            c.port = http.listen("127.0.0.1", 0);
            uploads(c);
            downloads(c);
            {
                aloop::HttpClient client(loop);
                client_stream(c, client);
            }
            teardown(c);
            loop.run();
        }
        CHECK(c.body_live == 0 && c.drain_live == 0 && c.client_live == 0 && c.refused_live == 0);
    }
    return check_summary("test_cpp_stream");
}
