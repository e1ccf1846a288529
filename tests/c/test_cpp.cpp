// The C++ layer (asyncloop.hpp) when the C call under it fails: the wrapper throws
// aloop::Error with the code, and the callable it was given is destroyed, not leaked (the C
// library never runs the destructor of a registration it refused). Runs plain and under
// ASan+UBSan (LeakSanitizer on), on both backends. aloop::Signal end to end.
// aloop::PreparedResponse: what it refuses, answers with it, and misuse when answering.
#include <asyncloop.hpp>

#include <csignal>
#include <cstring>
#include <memory>
#include <signal.h>
#include <string>
#include <thread>

extern "C" {
#include "check.h"
#include "dial.h"
}

namespace {

// A handler holding `token`: use_count() tells whether the wrapper still keeps a copy.
template <class F> int code_of(F &&f) {
    try {
        f();
    } catch (const aloop::Error &e) {
        return e.code();
    }
    return 0;
}

void run(int backend) {
    aloop::Loop loop(static_cast<aloop::Loop::Backend>(backend));
    aloop::HttpServer http(loop);
    auto token = std::make_shared<int>(0);
    auto handler = [token](aloop::Responder r) { r.respond(200, "text/plain", "x"); };

    CHECK_RC(code_of([&] { http.route("get", "/x", handler); }), ALOOP_E_INVALID);
    CHECK_RC(code_of([&] { http.route("GET", "no-slash", handler); }), ALOOP_E_INVALID);
    CHECK_RC(code_of([&] { http.route_prefix("get", "/p/", handler); }), ALOOP_E_INVALID);
    CHECK(token.use_count() == 2); // ours and `handler`'s: the refused copies are gone
    CHECK_RC(code_of([&] { http.route("GET", "/x", handler); }), 0);
    CHECK(token.use_count() == 3); // the registered copy lives in the server

    bool stopped = false;
    http.shutdown(100, [&] { stopped = true; });
    loop.run();
    CHECK(stopped);
    // A second shutdown is refused (it used to return 0 and never run its callback, which
    // leaked the C++ callable).
    bool again = false;
    CHECK_RC(code_of([&] { http.shutdown(100, [&] { again = true; }); }), ALOOP_E_ALREADY);
    loop.run();
    CHECK(!again);
}

// aloop::PreparedResponse: refused headers throw; an answer with one is the same as
// `respond` with its headers; a body its Content-Length does not match throws and keeps the
// request; a moved-from one throws (NULL).
void run_prepared(int backend) {
    CHECK_RC(code_of([] { aloop::PreparedResponse p(200, {{"X-Evil", "a\r\nb"}}); }), ALOOP_E_INVALID);
    CHECK_RC(code_of([] { aloop::PreparedResponse p(200, {{"Transfer-Encoding", "chunked"}}); }), ALOOP_E_INVALID);
    CHECK_RC(code_of([] { aloop::PreparedResponse p(99, "text/plain"); }), ALOOP_E_INVALID);
    aloop::Loop loop(static_cast<aloop::Loop::Backend>(backend));
    aloop::HttpServer http(loop);
    aloop::PreparedResponse text(200, "text/plain");
    aloop::PreparedResponse sized(200, {{"Content-Length", "2"}});
    aloop::PreparedResponse gone(200, "text/plain");
    aloop::PreparedResponse taker(std::move(gone));
    int misuse = 0;
    http.route("GET", "/p", [&](aloop::Responder r) { CHECK_RC(r.respond(text, "Hello"), 0); });
    http.route("GET", "/r", [&](aloop::Responder r) { CHECK_RC(r.respond(200, "text/plain", "Hello"), 0); });
    http.route("GET", "/misuse", [&](aloop::Responder r) {
        misuse = code_of([&] { r.respond(sized, "three"); });
        CHECK(r.valid());
        CHECK_RC(code_of([&] { r.respond(gone, "x"); }), ALOOP_E_NULL);
        CHECK(r.valid());
        CHECK_RC(r.respond(sized, "ok"), 0);
        CHECK(!r.valid());
    });
    CHECK(http.listen("127.0.0.1", 0) > 0);
    // listen_fd: a socket made and bound here gives back its port and is served (the client
    // below goes to it); a pipe is refused with the library's code.
    int own = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sa_len = sizeof sa;
    CHECK(bind(own, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0 && listen(own, 8) == 0);
    CHECK(getsockname(own, reinterpret_cast<sockaddr *>(&sa), &sa_len) == 0);
    int port = http.listen_fd(own);
    CHECK_RC(port, ntohs(sa.sin_port));
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0);
    CHECK_RC(code_of([&] { http.listen_fd(pipe_fds[0]); }), ALOOP_E_INVALID);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    close(own); // the server listens on its own duplicate
    std::string got;
    std::thread client([&] {
        int fd = dial(port);
        static const char reqs[] = "GET /p HTTP/1.1\r\nHost: t\r\n\r\n"
                                   "GET /r HTTP/1.1\r\nHost: t\r\n\r\n"
                                   "GET /misuse HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        CHECK(write(fd, reqs, sizeof reqs - 1) == static_cast<ssize_t>(sizeof reqs - 1));
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
            got.append(buf, static_cast<size_t>(n));
        close(fd);
        loop.post([&] { http.shutdown(100, [] {}); });
    });
    loop.run();
    client.join();
    CHECK_RC(misuse, ALOOP_E_INVALID);
    // Date lines aside, /p and /r answered the same bytes.
    auto strip = [](std::string s) {
        auto at = s.find("Date: ");
        return at == std::string::npos ? s : s.erase(at, s.find("\r\n", at) + 2 - at);
    };
    auto second = got.find("HTTP/1.1 ", 1), third = got.find("HTTP/1.1 ", second + 1);
    CHECK(second != std::string::npos && third != std::string::npos);
    if (second != std::string::npos && third != std::string::npos) {
        CHECK(strip(got.substr(0, second)) == strip(got.substr(second, third - second)));
        CHECK(got.compare(third, std::string::npos, "") != 0);
        CHECK(strip(got.substr(third)) ==
              "HTTP/1.1 200 OK\r\nServer: asyncloop\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
    CHECK(got.find("Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello") != std::string::npos);
}

void (*disposition(int sig))(int) {
    struct sigaction cur;
    std::memset(&cur, 0, sizeof cur);
    sigaction(sig, nullptr, &cur);
    return cur.sa_handler;
}

// aloop::Signal: a lambda per delivery on the loop's thread, the disposition put back by the
// destructor, a refused signal thrown with the library's reason and the lambda not leaked.
void run_signal(int backend) {
    aloop::Loop loop(static_cast<aloop::Loop::Backend>(backend));
    auto token = std::make_shared<int>(0);
    aloop::Signal sig(loop);
    int code = 0;
    std::string why;
    try {
        sig.start(SIGKILL, [token](int) {});
    } catch (const aloop::Error &e) {
        code = e.code();
        why = e.what();
    }
    CHECK_RC(code, ALOOP_E_INVALID);
    CHECK(why.find("SIGKILL") != std::string::npos);
    CHECK(token.use_count() == 1); // the refused lambda is gone
    CHECK(sig.signum() == 0);

    int got = 0;
    sig.start(SIGUSR1, [&, token](int n) {
        got = n;
        sig.stop(); // the loop runs dry
    });
    CHECK(sig.signum() == SIGUSR1);
    CHECK(token.use_count() == 2);
    std::raise(SIGUSR1);
    loop.run();
    CHECK(got == SIGUSR1);
    CHECK(token.use_count() == 1); // stopped inside its callback: released after it returned
    CHECK(disposition(SIGUSR1) == SIG_DFL);
    {
        aloop::Signal scoped(loop, SIGUSR2, [](int) {});
        CHECK(disposition(SIGUSR2) != SIG_DFL);
        CHECK(loop.run(ALOOP_RUN_NOWAIT)); // a started handle keeps the loop alive
    }
    CHECK(disposition(SIGUSR2) == SIG_DFL); // the destructor stopped it
    CHECK(!loop.run(ALOOP_RUN_NOWAIT));
}

} // namespace

int main() {
    for (int b : all_backends) {
        run(b);
        run_signal(b);
        run_prepared(b);
    }
    return check_summary("test_cpp");
}
