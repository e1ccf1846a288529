// server/db_routes.hpp: part of the example server, included once by server.cpp (in order, after
// the parts before it). The TechEmpower database routes (/db, /queries, /updates, /fortunes) and
// /books.
#pragma once

namespace {

void prepare_statements(PgPool &db) {
    db.prepare("world", "SELECT id, randomnumber FROM world WHERE id = $1");
    db.prepare("world_update", "UPDATE world SET randomnumber = $2 WHERE id = $1");
    db.prepare("fortunes", "SELECT id, message FROM fortune");
    db.prepare("books", "SELECT id, title FROM books ORDER BY id");
    db.prepare("book_insert", "INSERT INTO books (id, title) VALUES ($1, $2)");
    db.prepare("api_log_insert", "INSERT INTO api_log (path, status, bytes) VALUES ($1, $2, $3) RETURNING id");
}

/// Reads `n` random world rows, each with its own statement, all sent together with one sync
/// (one round trip, one implicit transaction: PostgreSQL's cost per transaction is paid once),
/// then calls `done(rows)`, or answers 503 if the database failed. `flags`: ALOOP_PG_READ_ONLY
/// lets the reads go to a replica.
struct WorldBatch {
    Shared r;
    std::vector<std::pair<int, long long>> rows;
};

void fetch_worlds(PgPool &db, Shared r, int n, uint32_t flags, std::function<void(WorldBatch &)> done) {
    std::vector<PgPool::Step> steps(static_cast<size_t>(n));
    for (auto &s : steps) {
        s.prepared = "world";
        s.params.emplace_back(std::to_string(random_id()));
    }
    db.batch(steps, [r = std::move(r), done = std::move(done)](const std::vector<PgResult> &results) {
        WorldBatch b{r, {}};
        b.rows.reserve(results.size());
        for (const auto &res : results) {
            if (!res.ok() || res.rows() != 1)
                return db_error(*r, res);
            b.rows.emplace_back(static_cast<int>(res.integer(0, 0)), res.integer(0, 1));
        }
        done(b);
    }, flags);
}

std::string worlds_json(const std::vector<std::pair<int, long long>> &rows) {
    std::string out = "[";
    for (size_t i = 0; i < rows.size(); i++) {
        if (i)
            out += ',';
        out += world_json(rows[i].first, rows[i].second);
    }
    return out + "]";
}

void books_list(PgPool &db, Shared r, int status) {
    db.execute("books", {}, [r, status](const PgResult &res) {
        if (!res.ok())
            return db_error(*r, res);
        nlohmann::json list = nlohmann::json::array();
        for (size_t i = 0; i < res.rows(); i++)
            list.push_back({{"id", res.integer(i, 0)}, {"title", std::string(res.value(i, 1))}});
        r->respond(status, "application/json", list.dump());
    });
}

void add_database_routes(aloop::HttpServer &http, PgPool &db) {
    PgPool *pool = &db;
    http.route("GET", "/db", [pool](Responder r) {
        fetch_worlds(*pool, std::make_shared<Responder>(std::move(r)), 1, ALOOP_PG_READ_ONLY, [](WorldBatch &b) {
            b.r->respond(200, "application/json", world_json(b.rows[0].first, b.rows[0].second));
        });
    });
    http.route("GET", "/queries", [pool](Responder r) {
        int n = query_count(r);
        fetch_worlds(*pool, std::make_shared<Responder>(std::move(r)), n, ALOOP_PG_READ_ONLY, [](WorldBatch &b) {
            b.r->respond(200, "application/json", worlds_json(b.rows));
        });
    });
    http.route("GET", "/updates", [pool](Responder r) {
        int n = query_count(r);
        // Read from the primary: these rows are written next.
        fetch_worlds(*pool, std::make_shared<Responder>(std::move(r)), n, 0, [pool](WorldBatch &b) {
            // One transaction for all the updates; rows locked in id order, so concurrent
            // requests cannot deadlock on each other.
            std::sort(b.rows.begin(), b.rows.end());
            std::vector<PgPool::Step> steps(b.rows.size());
            for (size_t i = 0; i < b.rows.size(); i++) {
                auto &row = b.rows[i];
                int next;
                do
                    next = random_id();
                while (next == row.second);
                row.second = next;
                steps[i].prepared = "world_update";
                steps[i].params = {std::to_string(row.first), std::to_string(next)};
            }
            // An id drawn twice is updated twice; every copy reports the value it ends with.
            for (size_t i = b.rows.size(); i-- > 1;)
                if (b.rows[i - 1].first == b.rows[i].first)
                    b.rows[i - 1].second = b.rows[i].second;
            pool->batch(steps, [r = b.r, rows = std::move(b.rows)](const std::vector<PgResult> &results) {
                for (const auto &res : results)
                    if (!res.ok())
                        return db_error(*r, res);
                r->respond(200, "application/json", worlds_json(rows));
            });
        });
    });
    http.route("GET", "/fortunes", [pool](Responder r) {
        auto shared = std::make_shared<Responder>(std::move(r));
        pool->execute("fortunes", {}, [shared](const PgResult &res) {
            if (!res.ok())
                return db_error(*shared, res);
            // Views into the result, which lives until this callback returns.
            std::vector<std::pair<long long, std::string_view>> rows;
            rows.reserve(res.rows() + 1);
            for (size_t i = 0; i < res.rows(); i++)
                rows.emplace_back(res.integer(i, 0), res.value(i, 1));
            rows.emplace_back(0, "Additional fortune added at request time.");
            std::sort(rows.begin(), rows.end(), [](const auto &a, const auto &b) { return a.second < b.second; });
            std::string html;
            html.reserve(2048);
            html += "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
                    "<tr><th>id</th><th>message</th></tr>";
            for (const auto &f : rows) {
                html += "<tr><td>";
                html += std::to_string(f.first);
                html += "</td><td>";
                append_escaped(html, f.second);
                html += "</td></tr>";
            }
            html += "</table></body></html>";
            shared->respond(200, "text/html; charset=utf-8", html);
        }, ALOOP_PG_READ_ONLY);
    });
    http.route("GET", "/books", [pool](Responder r) { books_list(*pool, std::make_shared<Responder>(std::move(r)), 200); });
    http.route("POST", "/books", [pool](Responder r) {
        nlohmann::json in;
        try {
            in = nlohmann::json::parse(r.body());
        } catch (const nlohmann::json::exception &) {
            return json_error(r, 400, "the body is not valid JSON");
        }
        if (!in.is_object() || !in.contains("id") || !in["id"].is_number_integer() || !in.contains("title") ||
            !in["title"].is_string())
            return json_error(r, 400, "expected {\"id\": integer, \"title\": string}");
        long long id = in["id"].get<long long>();
        if (id < INT32_MIN || id > INT32_MAX)
            return json_error(r, 400, "id out of range");
        auto shared = std::make_shared<Responder>(std::move(r));
        pool->execute("book_insert", {std::to_string(id), in["title"].get<std::string>()}, [pool, shared](const PgResult &res) {
            if (res.ok())
                return books_list(*pool, shared, 201);
            if (res.sqlstate() == "23505")
                return json_error(*shared, 409, "a book with this id exists");
            db_error(*shared, res);
        });
    });
}

} // namespace
