// server/upstream_routes.hpp: part of the example server, included once by server.cpp (in order,
// after the parts before it). The routes through the HTTP client: /api/<rest>, /chain/api-
// db/<rest>, /chain/db-api?id=N.
#pragma once

namespace {

/// 502 for an unreachable or broken upstream, 504 for a slow one.
void upstream_error(Responder &r, int status) {
    bool slow = status == ALOOP_E_TIMEOUT || status == ALOOP_E_CONNECT_TIMEOUT;
    std::string m = std::string("upstream ") + (slow ? "timed out: " : "failed: ") + aloop_strerror(status);
    json_error(r, slow ? 504 : 502, m);
}

/// "/api/<rest>?q" -> "<upstream>/<rest>?q".
std::string upstream_url(const std::string &base, const Responder &r, size_t prefix_len) {
    std::string_view target = r.target();
    return base + "/" + std::string(target.substr(std::min(prefix_len, target.size())));
}

void add_upstream_routes(aloop::HttpServer &http, aloop::HttpClient &client, PgPool &db, const std::string &upstream) {
    aloop::HttpClient *api = &client;
    PgPool *pool = &db;
    std::string base = upstream;
    auto no_upstream = [](Responder r) { json_error(r, 503, "no upstream configured (--upstream)"); };
    if (base.empty()) {
        http.route_prefix("GET", "/api/", no_upstream);
        http.route_prefix("GET", "/chain/api-db/", no_upstream);
        http.route("GET", "/chain/db-api", no_upstream);
        return;
    }
    // Relay: status, Content-Type and body of GET <upstream>/<rest>.
    http.route_prefix("GET", "/api/", [api, base](Responder r) {
        std::string url = upstream_url(base, r, 5);
        auto shared = std::make_shared<Responder>(std::move(r));
        api->get(url, [shared](int status, const aloop::HttpResponse *resp) {
            if (!resp)
                return upstream_error(*shared, status);
            std::string ctype(resp->header("Content-Type").value_or("application/octet-stream"));
            shared->respond(resp->status(), ctype, resp->body());
        });
    });
    // API -> DB: fetch, then log the call, then answer with the log id.
    http.route_prefix("GET", "/chain/api-db/", [api, pool, base](Responder r) {
        std::string_view target = r.target();
        std::string rest(target.substr(std::min<size_t>(14, target.size())));
        std::string path = "/" + rest;
        auto shared = std::make_shared<Responder>(std::move(r));
        api->get(base + path, [shared, pool, path](int status, const aloop::HttpResponse *resp) {
            if (!resp)
                return upstream_error(*shared, status);
            int upstream_status = resp->status();
            size_t bytes = resp->body().size();
            pool->execute("api_log_insert", {path, std::to_string(upstream_status), std::to_string(bytes)},
                          [shared, upstream_status, bytes](const PgResult &res) {
                              if (!res.ok() || res.rows() != 1)
                                  return db_error(*shared, res);
                              nlohmann::json out = {{"upstream_status", upstream_status},
                                                    {"bytes", bytes},
                                                    {"log_id", res.integer(0, 0)}};
                              shared->respond(200, "application/json", out.dump());
                          });
        });
    });
    // DB -> API: read world row N, then call the API with its random number.
    http.route("GET", "/chain/db-api", [api, pool, base](Responder r) {
        auto id = r.query_param("id");
        if (!id || id->empty() || id->size() > 9 || !std::all_of(id->begin(), id->end(), ::isdigit))
            return json_error(r, 400, "id must be a positive integer");
        auto shared = std::make_shared<Responder>(std::move(r));
        pool->execute("world", {*id}, [shared, api, base](const PgResult &res) {
            if (!res.ok())
                return db_error(*shared, res);
            if (res.rows() != 1)
                return json_error(*shared, 404, "no such world row");
            long long wid = res.integer(0, 0), rn = res.integer(0, 1);
            api->get(base + "/world/" + std::to_string(rn), [shared, wid, rn](int status, const aloop::HttpResponse *resp) {
                if (!resp)
                    return upstream_error(*shared, status);
                nlohmann::json out = {{"id", wid},
                                      {"randomNumber", rn},
                                      {"upstream_status", resp->status()},
                                      {"upstream_body", std::string(resp->body())}};
                shared->respond(200, "application/json", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
            });
        });
    });
}

} // namespace
