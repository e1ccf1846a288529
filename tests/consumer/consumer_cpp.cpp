// The C++ layer built against an installed asyncloop (tests/consumer/CMakeLists.txt): every
// part of asyncloop.hpp is installed and compiles outside the source tree. A loop, a timer and
// an HTTP server answering a client on loopback; prints "consumer_cpp: OK" and exits 0.
#include <asyncloop.hpp>

#include <cstdio>
#include <string>

int main() {
    aloop::Loop loop;
    std::string got;
    {
        aloop::HttpServer server(loop);
        server.route("GET", "/ping", [](aloop::Responder r) { r.respond(200, "text/plain", "pong"); });
        int port = server.listen("127.0.0.1", 0);
        aloop::HttpClient client(loop);
        aloop::Timer guard(loop);
        guard.start(10000, 0, [&loop] { loop.stop(); });
        client.get("http://127.0.0.1:" + std::to_string(port) + "/ping", [&](int status, const aloop::HttpResponse *resp) {
            if (status == 0 && resp)
                got = std::string(resp->body());
            guard.stop();
            server.shutdown(0, [&loop] { loop.stop(); });
        });
        loop.run();
    }
    loop.run(); // what the client and the server closed finishes closing
    if (got != "pong") {
        std::fprintf(stderr, "consumer_cpp: got '%s'\n", got.c_str());
        return 1;
    }
    std::puts("consumer_cpp: OK");
    return 0;
}
