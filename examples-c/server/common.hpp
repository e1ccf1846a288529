// server/common.hpp: part of the example server, included once by server.cpp (in order, after the
// parts before it). What every route uses: JSON errors, the database error answer, TechEmpower
// helpers (random ids, the queries parameter, world rows and the /json message as JSON), HTML
// escaping.
#pragma once

namespace {

bool is_palindrome(std::string_view s) {
    for (size_t i = 0, j = s.size(); i + 1 < j; i++, j--)
        if (s[i] != s[j - 1])
            return false;
    return true;
}


using aloop::PgPool;
using aloop::PgResult;
using aloop::Responder;
using Shared = std::shared_ptr<Responder>; // handlers' callbacks must be copyable

void json_error(Responder &r, int status, std::string_view message) {
    r.respond(status, "application/json", nlohmann::json{{"error", message}}.dump());
}

/// 503 with the database's message: the database is unreachable or failing.
void db_error(Responder &r, const PgResult &res) {
    std::string m = "database error: " + std::string(res.error_message());
    json_error(r, 503, m);
}

int random_id() {
    thread_local std::minstd_rand rng(std::random_device{}());
    return static_cast<int>(rng() % 10000) + 1;
}

/// TechEmpower's `queries` parameter: clamped to 1..500, missing or non-numeric counts as 1.
int query_count(const Responder &r) {
    auto q = r.query_param("queries");
    if (!q || q->empty() || q->size() > 9 || !std::all_of(q->begin(), q->end(), ::isdigit))
        return 1;
    return std::clamp(std::atoi(q->c_str()), 1, 500);
}

std::string world_json(int id, long long rn) {
    return "{\"id\":" + std::to_string(id) + ",\"randomNumber\":" + std::to_string(rn) + "}";
}

/// A JSON string value: `s` between quotes, with `"`, `\\` and control characters escaped.
/// Writes into `out`, which must hold 6 * s.size() + 2 bytes; returns the end.
char *write_json_string(char *out, std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    *out++ = '"';
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = static_cast<char>(c);
        } else if (c < 0x20) {
            std::memcpy(out, "\\u00", 4);
            out[4] = hex[c >> 4];
            out[5] = hex[c & 15];
            out += 6;
        } else {
            *out++ = static_cast<char>(c);
        }
    }
    *out++ = '"';
    return out;
}

/// TFB's /json object, built and serialized for each request (the rules ask for both).
struct HelloMessage {
    std::string_view message;
    /// `{"message":...}` into `buf` (on the stack: no allocation); the bytes written.
    template <size_t N> std::string_view serialize(char (&buf)[N]) const {
        static constexpr std::string_view open = "{\"message\":";
        if (N < open.size() + 6 * message.size() + 3)
            return {};
        char *p = buf;
        std::memcpy(p, open.data(), open.size());
        p = write_json_string(p + open.size(), message);
        *p++ = '}';
        return {buf, static_cast<size_t>(p - buf)};
    }
};

/// Appends `s` to `out` with HTML's five special characters escaped.
void append_escaped(std::string &out, std::string_view s) {
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
}

} // namespace
