// The C++ layer (asyncloop.hpp) when the C call under it fails: the wrapper throws
// aloop::Error with the code, and the callable it was given is destroyed, not leaked (the C
// library never runs the destructor of a registration it refused). Runs plain and under
// ASan+UBSan (LeakSanitizer on), on both backends.
#include <asyncloop.hpp>

#include <memory>

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

} // namespace

int main() {
    for (int b : all_backends)
        run(b);
    return check_summary("test_cpp");
}
