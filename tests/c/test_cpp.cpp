// The C++ layer (asyncloop.hpp) when the C call under it fails: the wrapper throws
// aloop::Error with the code, and the callable it was given is destroyed, not leaked (the C
// library never runs the destructor of a registration it refused). Runs plain and under
// ASan+UBSan (LeakSanitizer on), on both backends. aloop::Signal end to end.
#include <asyncloop.hpp>

#include <csignal>
#include <cstring>
#include <memory>
#include <signal.h>

extern "C" {
#include "check.h"
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
    }
    return check_summary("test_cpp");
}
