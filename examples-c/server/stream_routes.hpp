// server/stream_routes.hpp: part of the example server, included once by server.cpp (in order,
// after the parts before it). Streamed bodies (POST /upload hashed as it arrives, GET
// /download?bytes=N paced) and the WebSocket echo.
#pragma once

namespace {

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

} // namespace
