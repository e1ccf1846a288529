// The C++ layer's PostgreSQL application API against a real throwaway cluster (ALOOP_TEST_PG),
// on both backends: Transaction (commit, and rollback by its destructor), PgResult::get<T> by
// index and name in text and binary format with its exceptions, COPY both ways, PgListener.
#include <asyncloop.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "check.h"

namespace {

struct Ctx {
    aloop::Loop *loop;
    int pending = 0;
    void done() {
        if (--pending == 0)
            loop->stop();
    }
    void wait() {
        if (pending > 0)
            loop->run();
        CHECK(pending == 0);
    }
};

template <class F> int code_of(F f) {
    try {
        f();
    } catch (const aloop::Error &e) {
        return e.code();
    }
    return 0;
}

void typed(aloop::PgPool &db, Ctx &c) {
    const char *sql = "SELECT 9000000000::int8 AS big, 7::int2 AS small, 1.5::float8 AS f, true AS yes, "
                      "'Jörg'::text AS name, '\\x0001'::bytea AS b, NULL::int4 AS nothing";
    for (uint32_t flags : {0u, static_cast<uint32_t>(ALOOP_PG_BINARY)}) {
        db.query(
            sql, {},
            [&c](const aloop::PgResult &r) {
                CHECK(r.ok());
                CHECK(r.get<int64_t>(0, "big") == 9000000000LL);
                CHECK(r.get<int>(0, "small") == 7);
                CHECK(r.get<double>(0, "f") == 1.5);
                CHECK(r.get<bool>(0, "yes"));
                CHECK(r.get<std::string>(0, "name") == "Jörg");
                CHECK((r.get<std::vector<uint8_t>>(0, "b") == std::vector<uint8_t>{0, 1}));
                CHECK(!r.get<std::optional<int>>(0, "nothing").has_value());
                CHECK(r.get<std::optional<int>>(0, "small") == 7);
                CHECK(r.type(r.column("big")) == ALOOP_PG_OID_INT8);
                CHECK(r.column_name(0) == "big");
                CHECK(!r.find_column("missing"));
                CHECK(code_of([&] { r.get<int>(0, "big"); }) == ALOOP_E_PG_TYPE); // does not fit
                CHECK(code_of([&] { r.get<int>(0, "nothing"); }) == ALOOP_E_PG_NULL);
                CHECK(code_of([&] { r.get<bool>(0, "name"); }) == ALOOP_E_PG_TYPE);
                CHECK(code_of([&] { r.get<int>(0, "missing"); }) == ALOOP_E_NOT_FOUND);
                c.done();
            },
            flags);
        c.pending++;
    }
    c.wait();
}

void transactions(aloop::PgPool &db, Ctx &c, const std::string &table) {
    // One batch: in order on one connection (the pool's others could run a query first).
    std::vector<aloop::PgPool::Step> steps(2);
    std::string drop = "DROP TABLE IF EXISTS " + table, create = "CREATE TABLE " + table + " (v int)";
    steps[0].sql = drop.c_str();
    steps[1].sql = create.c_str();
    db.batch(steps, [&c](const std::vector<aloop::PgResult> &rs) {
        CHECK(rs[0].ok() && rs[1].ok());
        c.done();
    });
    c.pending = 1;
    c.wait();
    std::string insert = "INSERT INTO " + table + " VALUES ($1)";
    {
        aloop::Transaction t(db);
        t.query(insert.c_str(), {"1"}, [](const aloop::PgResult &r) { CHECK(r.ok()); });
        t.commit([&c](int status, std::string_view, std::string_view) {
            CHECK_RC(status, 0);
            c.done();
        });
        CHECK(!t.active());
        CHECK(code_of([&] { t.query("SELECT 1", {}, [](const aloop::PgResult &) {}); }) == ALOOP_E_NULL);
    }
    c.pending = 1;
    c.wait();
    // Rolled back by the destructor, once its statement ran.
    auto t = std::make_unique<aloop::Transaction>(db);
    t->query(insert.c_str(), {"2"}, [&c](const aloop::PgResult &r) {
        CHECK(r.ok());
        c.done();
    });
    c.pending = 1;
    c.wait();
    t.reset();
    db.query(("SELECT coalesce(sum(v), 0) FROM " + table).c_str(), {}, [&c](const aloop::PgResult &r) {
        CHECK(r.get<int64_t>(0, 0) == 1);
        c.done();
    });
    c.pending = 1;
    c.wait();
}

void copies(aloop::PgPool &db, Ctx &c, const std::string &table) {
    int next = 0;
    db.copy_in(
        ("COPY " + table + " FROM STDIN").c_str(),
        [&next](aloop::PgCopy cp) {
            while (next < 1000)
                if (!cp.write(std::to_string(100 + next++) + "\n"))
                    return;
            cp.finish();
        },
        [&c](int status, uint64_t rows, std::string_view) {
            CHECK_RC(status, 0);
            CHECK(rows == 1000);
            c.done();
        });
    c.pending = 1;
    c.wait();
    size_t lines = 0;
    db.copy_out(
        ("COPY " + table + " TO STDOUT").c_str(),
        [&lines](aloop::PgCopy, std::string_view data) {
            lines += static_cast<size_t>(std::count(data.begin(), data.end(), '\n'));
            return true;
        },
        [&c](int status, uint64_t rows, std::string_view) {
            CHECK_RC(status, 0);
            CHECK(rows == 1001);
            c.done();
        });
    c.pending = 1;
    c.wait();
    CHECK(lines == 1001);
}

void listener(aloop::Loop &loop, aloop::PgPool &db, Ctx &c, const char *url) {
    std::string got;
    aloop::PgListener l(loop, url, [&](std::string_view ch, std::string_view payload, int pid) {
        CHECK(ch == "cpp_chan" && pid > 0);
        got = payload;
        c.done();
    });
    l.listen("cpp_chan", [&c](int status, std::string_view, std::string_view) {
        CHECK_RC(status, 0);
        c.done();
    });
    c.pending = 1;
    c.wait();
    CHECK(l.connected());
    db.query("SELECT pg_notify('cpp_chan', 'from C++')", {}, [&c](const aloop::PgResult &r) {
        CHECK(r.ok());
        c.done();
    });
    c.pending = 2;
    c.wait();
    CHECK(got == "from C++");
}

} // namespace

int main() {
    const char *url = std::getenv("ALOOP_TEST_PG");
    if (!url) {
        std::fprintf(stderr, "test_pg_cpp: ALOOP_TEST_PG is not set (scripts/run-c-tests.sh starts a cluster)\n");
        return 1;
    }
    for (auto backend : {aloop::Loop::Backend::Uring, aloop::Loop::Backend::Epoll}) {
        aloop::Loop loop(backend);
        Ctx c{&loop};
        {
            aloop::PgPool db(loop, url, 2);
            std::string table = std::string("cpp_t_") + (backend == aloop::Loop::Backend::Uring ? "u" : "e");
            typed(db, c);
            transactions(db, c, table);
            copies(db, c, table);
            listener(loop, db, c, url);
        }
        loop.run(); // the pool's connections finish closing
    }
    return check_summary("test_pg_cpp");
}
