/* PostgreSQL through the C API against a real throwaway cluster (its URL in ALOOP_TEST_PG,
 * set by scripts/run-c-tests.sh): parameters stored and read back verbatim (quotes,
 * semicolons, unicode, NULL), server errors with their SQLSTATE, a prepared statement, a
 * batch with an error in the middle, a query timeout, and the error codes of bad calls. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <stdlib.h>
#include <string.h>

#include "check.h"

struct ctx {
    aloop_loop_t *loop;
    int pending;
    int dtors;
};

static void done_one(struct ctx *c) {
    if (--c->pending == 0)
        aloop_loop_stop(c->loop);
}

static void count_dtor(void *ud) {
    ((struct ctx *)ud)->dtors++;
}

static const char *tricky = "it's \"quoted\"; DROP TABLE books; -- Jörg 日本語";

static void on_roundtrip(int status, const aloop_pg_result_t *r, void *ud) {
    CHECK_RC(status, 0);
    CHECK(aloop_pg_result_rows(r) == 1 && aloop_pg_result_columns(r) == 3);
    CHECK(strcmp(aloop_pg_result_column_name(r, 0), "a") == 0);
    CHECK(strcmp(aloop_pg_result_value(r, 0, 0), tricky) == 0);
    CHECK(aloop_pg_result_length(r, 0, 0) == strlen(tricky));
    CHECK(aloop_pg_result_is_null(r, 0, 1) == 1 && aloop_pg_result_value(r, 0, 1) == NULL);
    CHECK(strcmp(aloop_pg_result_value(r, 0, 2), "t") == 0);
    CHECK(aloop_pg_result_value(r, 5, 0) == NULL);
    CHECK(strcmp(aloop_pg_result_error_message(r), "") == 0);
    done_one(ud);
}

static void on_error(int status, const aloop_pg_result_t *r, void *ud) {
    CHECK_RC(status, ALOOP_E_PG_QUERY);
    CHECK(strcmp(aloop_pg_result_sqlstate(r), "42P01") == 0);
    CHECK(strstr(aloop_pg_result_error_message(r), "no_such_table") != NULL);
    CHECK(aloop_pg_result_rows(r) == 0);
    done_one(ud);
}

static void on_world(int status, const aloop_pg_result_t *r, void *ud) {
    CHECK_RC(status, 0);
    CHECK(aloop_pg_result_rows(r) == 1 && atoi(aloop_pg_result_value(r, 0, 0)) == 42);
    done_one(ud);
}

static void on_batch(size_t n, const int *status, const aloop_pg_result_t *const *results, void *ud) {
    CHECK(n == 3);
    CHECK_RC(status[0], 0);
    CHECK(aloop_pg_result_affected_rows(results[0]) == 1);
    CHECK_RC(status[1], ALOOP_E_PG_QUERY);
    CHECK(strcmp(aloop_pg_result_sqlstate(results[1]), "22012") == 0);
    CHECK_RC(status[2], ALOOP_E_PG_ABORTED);
    done_one(ud);
}

static void on_rolled_back(int status, const aloop_pg_result_t *r, void *ud) {
    CHECK_RC(status, 0);
    CHECK(strcmp(aloop_pg_result_value(r, 0, 0), "0") == 0);
    done_one(ud);
}

static void on_timeout(int status, const aloop_pg_result_t *r, void *ud) {
    (void)r;
    CHECK_RC(status, ALOOP_E_TIMEOUT);
    done_one(ud);
}

static void never(int status, const aloop_pg_result_t *r, void *ud) {
    (void)status;
    (void)r;
    (void)ud;
    CHECK(!"callback of a failed call");
}

static void run(int backend, const char *url) {
    struct ctx c = {0};
    aloop_loop_options_t lo;
    aloop_loop_options_init(&lo);
    lo.backend = backend;
    CHECK_RC(aloop_loop_new(&lo, &c.loop), 0);
    aloop_pg_pool_options_t po;
    aloop_pg_pool_options_init(&po);
    po.conninfo = url;
    po.size = 2;
    po.query_timeout_ms = 500;
    aloop_pg_pool_t *pool = NULL;
    CHECK_RC(aloop_pg_pool_new(c.loop, &po, &pool), 0);

    const char *params[] = {tricky, NULL};
    CHECK_RC(aloop_pg_query(pool, "SELECT $1::text AS a, $2::text AS b, $2::text IS NULL AS c", 2, params, on_roundtrip, &c,
                            count_dtor),
             0);
    CHECK_RC(aloop_pg_query(pool, "SELECT * FROM no_such_table", 0, NULL, on_error, &c, count_dtor), 0);
    CHECK_RC(aloop_pg_prepare(pool, "world", "SELECT $1::int"), 0);
    const char *id[] = {"42"};
    CHECK_RC(aloop_pg_execute(pool, "world", 1, id, on_world, &c, count_dtor), 0);
    aloop_pg_statement_t batch[3] = {
        {"INSERT INTO books (id, title) VALUES (777, $1)", NULL, 1, params},
        {"SELECT 1/0", NULL, 0, NULL},
        {"INSERT INTO books (id, title) VALUES (778, 'x')", NULL, 0, NULL},
    };
    CHECK_RC(aloop_pg_batch(pool, batch, 3, on_batch, &c, count_dtor), 0);
    CHECK_RC(aloop_pg_query(pool, "SELECT count(*) FROM books WHERE id IN (777, 778)", 0, NULL, on_rolled_back, &c, NULL),
             0);
    CHECK_RC(aloop_pg_query(pool, "SELECT pg_sleep(5)", 0, NULL, on_timeout, &c, NULL), 0);
    c.pending = 6;

    /* Bad calls: an error code, no callback, no destructor. */
    CHECK_RC(aloop_pg_query(NULL, "SELECT 1", 0, NULL, never, &c, count_dtor), ALOOP_E_NULL);
    CHECK_RC(aloop_pg_query(pool, NULL, 0, NULL, never, &c, count_dtor), ALOOP_E_NULL);
    CHECK_RC(aloop_pg_query(pool, "SELECT $1", 1, NULL, never, &c, count_dtor), ALOOP_E_NULL);
    CHECK_RC(aloop_pg_execute(pool, "missing", 0, NULL, never, &c, count_dtor), ALOOP_E_NOT_FOUND);
    aloop_pg_statement_t both = {"SELECT 1", "world", 0, NULL};
    CHECK_RC(aloop_pg_batch(pool, &both, 1, on_batch, &c, count_dtor), ALOOP_E_INVALID);
    CHECK_RC(aloop_pg_prepare(pool, "", "SELECT 1"), ALOOP_E_INVALID);

    CHECK_RC(aloop_loop_run(c.loop, ALOOP_RUN_DEFAULT), 1);
    CHECK(c.pending == 0);
    CHECK(c.dtors == 4);
    size_t connected = 0, busy = 9, queued = 9;
    CHECK_RC(aloop_pg_pool_stats(pool, &connected, &busy, &queued), 0);
    CHECK(connected == 2 && busy == 0 && queued == 0);
    aloop_pg_pool_free(pool);
    aloop_loop_run(c.loop, ALOOP_RUN_NOWAIT);
    CHECK_RC(aloop_loop_free(c.loop), 0);
}

int main(void) {
    const char *url = getenv("ALOOP_TEST_PG");
    if (!url) {
        fprintf(stderr, "test_pg: ALOOP_TEST_PG is not set (scripts/run-c-tests.sh starts a cluster)\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i], url);
    return check_summary("test_pg");
}
