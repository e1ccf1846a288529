/* PostgreSQL for applications through the C API, against a real throwaway cluster (its URL in
 * ALOOP_TEST_PG, set by scripts/run-c-tests.sh), on both backends: interactive transactions
 * (50 concurrent increments, commit after a failure, free = rollback, stale handles), typed
 * getters in text and binary format, COPY in with backpressure and out with pause/resume and
 * cancel, LISTEN/NOTIFY, and the error codes of bad calls. */
#define _POSIX_C_SOURCE 200809L
#include <asyncloop.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct ctx {
    aloop_loop_t *loop;
    aloop_pg_pool_t *pool;
    int pending;
    int dtors;
    int backend;
    /* increments */
    int committed;
    long long seen_sum;
    /* copy */
    long long next_row;
    int full_times;
    long long lines;
    int paused;
    long long cancel_at;
    aloop_timer_t *timer;
    aloop_pg_copy_t *copy;
    /* notify */
    int notified;
    int pid;
    char payload[64];
};

static void done_one(struct ctx *c) {
    if (--c->pending == 0)
        aloop_loop_stop(c->loop);
}

static void count_dtor(void *ud) {
    ((struct ctx *)ud)->dtors++;
}

static void never(int status, const aloop_pg_result_t *r, void *ud) {
    (void)status;
    (void)r;
    (void)ud;
    CHECK(!"callback of a failed call");
}

static void wait_all(struct ctx *c) {
    if (c->pending > 0)
        CHECK_RC(aloop_loop_run(c->loop, ALOOP_RUN_DEFAULT), 1);
    CHECK(c->pending == 0);
}

/* ---- one increment: INSERT .. ON CONFLICT, SELECT .. FOR UPDATE, UPDATE, COMMIT -------- */

struct incr {
    struct ctx *c;
    aloop_pg_txn_t *txn;
    long long value;
};

static void on_committed(int status, const char *sqlstate, const char *message, void *ud) {
    struct incr *in = ud;
    (void)sqlstate;
    if (status != 0)
        fprintf(stderr, "commit: %s\n", message);
    CHECK_RC(status, 0);
    in->c->committed++;
    in->c->seen_sum += in->value;
    done_one(in->c);
    free(in);
}

static void on_updated(int status, const aloop_pg_result_t *r, void *ud) {
    (void)ud;
    CHECK_RC(status, 0);
    CHECK(aloop_pg_result_affected_rows(r) == 1);
}

static void on_locked(int status, const aloop_pg_result_t *r, void *ud) {
    struct incr *in = ud;
    CHECK_RC(status, 0);
    int64_t v = -1;
    CHECK_RC(aloop_pg_result_get_int64(r, 0, 0, &v), 0);
    in->value = v + 1;
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", in->value);
    const char *params[] = {in->c->backend == 1 ? "c-uring" : "c-epoll", buf};
    CHECK_RC(aloop_pg_txn_query(in->txn, "UPDATE counters SET value = $2 WHERE name = $1", 2, params, 0, on_updated,
                                NULL, NULL),
             0);
    /* Consumes the handle: later use of it is an error code. */
    CHECK_RC(aloop_pg_txn_commit(in->txn, on_committed, in, NULL), 0);
    CHECK_RC(aloop_pg_txn_query(in->txn, "SELECT 1", 0, NULL, 0, never, NULL, NULL), ALOOP_E_STALE);
}

static void ignore(int status, const aloop_pg_result_t *r, void *ud) {
    (void)r;
    (void)ud;
    CHECK_RC(status, 0);
}

static void expect_ok(int status, const aloop_pg_result_t *r, void *ud) {
    (void)r;
    CHECK_RC(status, 0);
    done_one(ud);
}

static void increments(struct ctx *c) {
    const char *name[] = {c->backend == 1 ? "c-uring" : "c-epoll"};
    /* The plain and the sanitized run share a cluster: start from nothing. */
    CHECK_RC(aloop_pg_query(c->pool, "DELETE FROM counters WHERE name = $1", 1, name, expect_ok, c, NULL), 0);
    c->pending = 1;
    wait_all(c);
    for (int i = 0; i < 50; i++) {
        struct incr *in = calloc(1, sizeof *in);
        in->c = c;
        CHECK_RC(aloop_pg_txn_begin(c->pool, NULL, &in->txn), 0);
        CHECK_RC(aloop_pg_txn_query(in->txn,
                                    "INSERT INTO counters (name, value) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING", 1,
                                    name, 0, ignore, NULL, NULL),
                 0);
        CHECK_RC(aloop_pg_txn_query(in->txn, "SELECT value FROM counters WHERE name = $1 FOR UPDATE", 1, name, 0,
                                    on_locked, in, NULL),
                 0);
    }
    c->pending = 50;
    wait_all(c);
    CHECK(c->committed == 50);
    CHECK(c->seen_sum == 50 * 51 / 2); /* each transaction saw its own value: 1..50 */
}

/* ---- failures: commit after an error, free = rollback, bad calls ----------------------- */

static void expect_query_error(int status, const aloop_pg_result_t *r, void *ud) {
    CHECK_RC(status, ALOOP_E_PG_QUERY);
    CHECK(strcmp(aloop_pg_result_sqlstate(r), "22012") == 0);
    done_one(ud);
}

static void expect_aborted(int status, const char *sqlstate, const char *message, void *ud) {
    (void)sqlstate;
    CHECK_RC(status, ALOOP_E_PG_ABORTED);
    CHECK(strstr(message, "rolled back") != NULL);
    done_one(ud);
}

struct freeing {
    struct ctx *c;
    aloop_pg_txn_t *txn;
};

static void insert_then_free(int status, const aloop_pg_result_t *r, void *ud) {
    struct freeing *f = ud;
    (void)r;
    CHECK_RC(status, 0);
    CHECK_RC(aloop_pg_txn_free(f->txn), 0); /* inside its own statement's callback */
    CHECK_RC(aloop_pg_txn_free(f->txn), ALOOP_E_STALE);
    done_one(f->c);
}

static void expect_zero_rows(int status, const aloop_pg_result_t *r, void *ud) {
    CHECK_RC(status, 0);
    int64_t n = -1;
    CHECK_RC(aloop_pg_result_get_int64(r, 0, 0, &n), 0);
    CHECK(n == 0);
    done_one(ud);
}

static void failures(struct ctx *c) {
    aloop_pg_txn_t *t = NULL;
    aloop_pg_txn_options_t to;
    CHECK_RC(aloop_pg_txn_options_init(&to), 0);
    to.isolation = 42;
    CHECK_RC(aloop_pg_txn_begin(c->pool, &to, &t), ALOOP_E_INVALID);
    CHECK(t == NULL);
    to.isolation = ALOOP_PG_ISOLATION_REPEATABLE_READ;
    CHECK_RC(aloop_pg_txn_begin(c->pool, &to, &t), 0);
    CHECK_RC(aloop_pg_txn_query(t, "SELECT 1/0", 0, NULL, 0, expect_query_error, c, count_dtor), 0);
    CHECK_RC(aloop_pg_txn_query(t, "SELECT 1", 0, NULL, ALOOP_PG_READ_ONLY, never, c, count_dtor), ALOOP_E_INVALID);
    CHECK_RC(aloop_pg_txn_execute(t, "no_such", 0, NULL, 0, never, c, count_dtor), ALOOP_E_NOT_FOUND);
    CHECK_RC(aloop_pg_txn_commit(t, expect_aborted, c, count_dtor), 0);
    CHECK_RC(aloop_pg_txn_rollback(t, expect_aborted, c, count_dtor), ALOOP_E_STALE);

    struct freeing f = {c, NULL};
    CHECK_RC(aloop_pg_txn_begin(c->pool, NULL, &f.txn), 0);
    const char *name[] = {"c-freed"};
    CHECK_RC(aloop_pg_txn_query(f.txn, "INSERT INTO counters (name, value) VALUES ($1, 1)", 1, name, 0, insert_then_free,
                                &f, NULL),
             0);
    c->pending = 3;
    c->dtors = 0;
    wait_all(c);
    CHECK(c->dtors == 2);
    CHECK_RC(aloop_pg_query(c->pool, "SELECT count(*) FROM counters WHERE name = 'c-freed'", 0, NULL, expect_zero_rows,
                            c, NULL),
             0);
    c->pending = 1;
    wait_all(c);
}

/* ---- typed getters ------------------------------------------------------------------- */

static void on_typed(int status, const aloop_pg_result_t *r, void *ud) {
    CHECK_RC(status, 0);
    ptrdiff_t big = aloop_pg_result_column_index(r, "big");
    ptrdiff_t f8 = aloop_pg_result_column_index(r, "f8");
    ptrdiff_t yes = aloop_pg_result_column_index(r, "yes");
    ptrdiff_t name = aloop_pg_result_column_index(r, "name");
    ptrdiff_t bytes = aloop_pg_result_column_index(r, "bytes");
    ptrdiff_t nothing = aloop_pg_result_column_index(r, "nothing");
    CHECK(big >= 0 && f8 >= 0 && yes >= 0 && name >= 0 && bytes >= 0 && nothing >= 0);
    CHECK(aloop_pg_result_column_index(r, "missing") == ALOOP_E_NOT_FOUND);
    CHECK(aloop_pg_result_column_type(r, (size_t)big) == ALOOP_PG_OID_INT8);
    CHECK(aloop_pg_result_column_type(r, (size_t)bytes) == ALOOP_PG_OID_BYTEA);
    int64_t i = 0;
    double d = 0;
    int b = -1;
    const char *text = NULL;
    size_t len = 0;
    CHECK_RC(aloop_pg_result_get_int64(r, 0, (size_t)big, &i), 0);
    CHECK(i == 9000000000LL);
    CHECK_RC(aloop_pg_result_get_double(r, 0, (size_t)f8, &d), 0);
    CHECK(d == -2.25);
    CHECK_RC(aloop_pg_result_get_bool(r, 0, (size_t)yes, &b), 0);
    CHECK(b == 1);
    CHECK_RC(aloop_pg_result_get_text(r, 0, (size_t)name, &text, &len), 0);
    CHECK(text && strcmp(text, "Jörg") == 0 && len == strlen("Jörg"));
    unsigned char buf[8];
    CHECK(aloop_pg_result_get_bytea(r, 0, (size_t)bytes, NULL, 0) == 3);
    CHECK(aloop_pg_result_get_bytea(r, 0, (size_t)bytes, buf, sizeof buf) == 3);
    CHECK(buf[0] == 0 && buf[1] == 0xff && buf[2] == 'A');
    /* NULL, another type, out of range; nothing written. */
    i = 7;
    CHECK_RC(aloop_pg_result_get_int64(r, 0, (size_t)nothing, &i), ALOOP_E_PG_NULL);
    CHECK_RC(aloop_pg_result_get_int64(r, 0, (size_t)name, &i), ALOOP_E_PG_TYPE);
    CHECK_RC(aloop_pg_result_get_bool(r, 0, (size_t)big, &b), ALOOP_E_PG_TYPE);
    CHECK_RC(aloop_pg_result_get_int64(r, 9, 0, &i), ALOOP_E_NOT_FOUND);
    CHECK(i == 7);
    CHECK_RC(aloop_pg_result_get_int64(r, 0, 0, NULL), ALOOP_E_NULL);
    done_one(ud);
}

static void on_error_result(int status, const aloop_pg_result_t *r, void *ud) {
    CHECK_RC(status, ALOOP_E_PG_QUERY);
    int64_t i;
    CHECK_RC(aloop_pg_result_get_int64(r, 0, 0, &i), ALOOP_E_INVALID);
    done_one(ud);
}

static const char *typed_sql = "SELECT 9000000000::int8 AS big, -2.25::float8 AS f8, true AS yes, 'Jörg'::text AS name, "
                               "'\\x00ff41'::bytea AS bytes, NULL::int4 AS nothing";

static void typed(struct ctx *c) {
    CHECK_RC(aloop_pg_query_ex(c->pool, typed_sql, 0, NULL, 0, on_typed, c, NULL), 0);
    CHECK_RC(aloop_pg_query_ex(c->pool, typed_sql, 0, NULL, ALOOP_PG_BINARY | ALOOP_PG_READ_ONLY, on_typed, c, NULL), 0);
    CHECK_RC(aloop_pg_query(c->pool, "SELECT 1/0", 0, NULL, on_error_result, c, NULL), 0);
    CHECK_RC(aloop_pg_query_ex(c->pool, "SELECT 1", 0, NULL, 64, never, c, count_dtor), ALOOP_E_INVALID);
    c->pending = 3;
    wait_all(c);
}

/* ---- COPY ---------------------------------------------------------------------------- */

static void copy_ready(aloop_pg_copy_t *copy, void *ud) {
    struct ctx *c = ud;
    char chunk[64 * 200];
    for (;;) {
        if (c->next_row == 50000) {
            CHECK_RC(aloop_pg_copy_finish(copy), 0);
            return;
        }
        size_t n = 0;
        for (int k = 0; k < 64 && c->next_row < 50000; k++, c->next_row++)
            n += (size_t)snprintf(chunk + n, sizeof chunk - n, "%lld\t%0180lld\n", c->next_row, c->next_row);
        int rc = aloop_pg_copy_write(copy, chunk, n);
        CHECK(rc == 0 || rc == ALOOP_PG_COPY_FULL);
        if (rc != 0) {
            c->full_times++;
            return;
        }
    }
}

static void copy_done(aloop_pg_copy_t *copy, int status, uint64_t rows, const char *sqlstate, const char *message,
                      void *ud) {
    struct ctx *c = ud;
    (void)copy;
    (void)sqlstate;
    if (status != 0)
        fprintf(stderr, "copy: %s\n", message);
    CHECK_RC(status, 0);
    CHECK(rows == 50000);
    done_one(c);
}

static void resume_copy(aloop_timer_t *t, void *ud) {
    struct ctx *c = ud;
    (void)t;
    c->paused = 0;
    CHECK_RC(aloop_pg_copy_resume(c->copy), 0);
}

static int copy_data(aloop_pg_copy_t *copy, const void *data, size_t len, void *ud) {
    struct ctx *c = ud;
    CHECK(!c->paused);
    c->copy = copy;
    for (size_t i = 0; i < len; i++)
        c->lines += ((const char *)data)[i] == '\n';
    if (c->lines == 1) {
        c->paused = 1;
        CHECK_RC(aloop_timer_start(c->timer, 200, 0, resume_copy, c, NULL), 0);
        return ALOOP_PG_COPY_PAUSE;
    }
    if (c->lines == c->cancel_at)
        CHECK_RC(aloop_pg_copy_cancel(copy), 0);
    return 0;
}

static void copy_out_done(aloop_pg_copy_t *copy, int status, uint64_t rows, const char *sqlstate, const char *message,
                          void *ud) {
    struct ctx *c = ud;
    if (status != 0 || c->lines != 50000)
        fprintf(stderr, "copy out: status %d rows %llu lines %lld: %s (%s)\n", status, (unsigned long long)rows,
                c->lines, message, sqlstate);
    CHECK_RC(status, 0);
    CHECK(rows == 50000);
    CHECK(c->lines == 50000);
    CHECK_RC(aloop_pg_copy_resume(copy), 0); /* still live inside its done callback */
    done_one(c);
}

static void copy_cancelled(aloop_pg_copy_t *copy, int status, uint64_t rows, const char *sqlstate,
                           const char *message, void *ud) {
    struct ctx *c = ud;
    (void)copy;
    if (status != ALOOP_E_CANCELLED)
        fprintf(stderr, "cancelled copy: status %d rows %llu lines %lld: %s (%s)\n", status,
                (unsigned long long)rows, c->lines, message, sqlstate);
    CHECK_RC(status, ALOOP_E_CANCELLED);
    done_one(c);
}

static void copies(struct ctx *c) {
    char table[64], sql[160];
    snprintf(table, sizeof table, "c_copy_%d", c->backend);
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", table);
    CHECK_RC(aloop_pg_query(c->pool, sql, 0, NULL, expect_ok, c, NULL), 0);
    c->pending = 1;
    wait_all(c);
    snprintf(sql, sizeof sql, "CREATE TABLE %s (id bigint, pad text)", table);
    CHECK_RC(aloop_pg_query(c->pool, sql, 0, NULL, expect_ok, c, NULL), 0);
    c->pending = 1;
    wait_all(c);
    snprintf(sql, sizeof sql, "COPY %s FROM STDIN", table);
    aloop_pg_copy_t *copy = NULL;
    CHECK_RC(aloop_pg_copy_in(c->pool, sql, copy_ready, copy_done, c, count_dtor, &copy), 0);
    CHECK(copy != NULL);
    CHECK_RC(aloop_pg_copy_resume(copy), ALOOP_E_INVALID); /* not a COPY OUT */
    CHECK_RC(aloop_pg_copy_in(c->pool, sql, NULL, copy_done, c, count_dtor, NULL), ALOOP_E_NULL);
    c->dtors = 0;
    c->pending = 1;
    wait_all(c);
    CHECK(c->dtors == 1);
    CHECK_RC(aloop_pg_copy_finish(copy), ALOOP_E_STALE); /* ended */

    CHECK_RC(aloop_timer_new(c->loop, &c->timer), 0);
    snprintf(sql, sizeof sql, "COPY (SELECT id, pad FROM %s ORDER BY id) TO STDOUT (FORMAT csv)", table);
    CHECK_RC(aloop_pg_copy_out(c->pool, sql, copy_data, copy_out_done, c, NULL, NULL), 0);
    c->pending = 1;
    wait_all(c);
    c->lines = 2; /* past the pause; cancelled at 30,000 */
    c->cancel_at = 30000;
    CHECK_RC(aloop_pg_copy_out(c->pool, sql, copy_data, copy_cancelled, c, NULL, NULL), 0);
    c->pending = 1;
    wait_all(c);
    CHECK(c->lines == 30000);
    aloop_timer_free(c->timer);
}

/* ---- LISTEN/NOTIFY ------------------------------------------------------------------- */

static void on_notify(aloop_pg_listener_t *l, const char *channel, const char *payload, int pid, void *ud) {
    struct ctx *c = ud;
    (void)l;
    CHECK(strcmp(channel, "c_jobs") == 0);
    snprintf(c->payload, sizeof c->payload, "%s", payload);
    c->notified++;
    c->pid = pid;
    done_one(c);
}

static void on_listening(int status, const char *sqlstate, const char *message, void *ud) {
    struct ctx *c = ud;
    (void)sqlstate;
    (void)message;
    CHECK_RC(status, 0);
    done_one(c);
}

static int sender_pid;

static void on_notified_sent(int status, const aloop_pg_result_t *r, void *ud) {
    if (status != 0)
        fprintf(stderr, "notify query: %s (%s)\n", aloop_pg_result_error_message(r), aloop_pg_result_sqlstate(r));
    CHECK_RC(status, 0);
    int64_t pid = 0;
    CHECK_RC(aloop_pg_result_get_int64(r, 0, 0, &pid), 0);
    sender_pid = (int)pid;
    done_one(ud);
}

static void notifications(struct ctx *c, const char *url) {
    aloop_pg_listener_t *l = NULL;
    CHECK_RC(aloop_pg_listener_new(c->loop, "not a conninfo", on_notify, c, count_dtor, &l), ALOOP_E_INVALID);
    CHECK(l == NULL);
    CHECK_RC(aloop_pg_listener_new(c->loop, url, on_notify, c, count_dtor, &l), 0);
    CHECK_RC(aloop_pg_listen(l, "", on_listening, c, NULL), ALOOP_E_INVALID);
    CHECK_RC(aloop_pg_listen(l, "c_jobs", on_listening, c, NULL), 0);
    c->pending = 1;
    wait_all(c);
    CHECK_RC(aloop_pg_listener_connected(l), 1);
    CHECK_RC(aloop_pg_query(c->pool, "SELECT pg_backend_pid(), pg_notify('c_jobs', 'hello from C')", 0, NULL,
                            on_notified_sent, c, NULL),
             0);
    c->pending = 2;
    c->dtors = 0;
    wait_all(c);
    CHECK(c->notified == 1 && strcmp(c->payload, "hello from C") == 0);
    CHECK(c->pid == sender_pid && sender_pid > 0);
    CHECK_RC(aloop_pg_listener_free(l), 0);
    CHECK(c->dtors == 1);
    CHECK_RC(aloop_pg_listen(l, "c_jobs", NULL, NULL, NULL), ALOOP_E_STALE);
    c->notified = 0;
}

static void run(int backend, const char *url) {
    struct ctx c = {0};
    c.backend = backend;
    aloop_loop_options_t lo;
    aloop_loop_options_init(&lo);
    lo.backend = backend;
    CHECK_RC(aloop_loop_new(&lo, &c.loop), 0);
    aloop_pg_pool_options_t po;
    aloop_pg_pool_options_init(&po);
    po.conninfo = url;
    po.size = 3;
    /* A replica list with an unparsable conninfo is refused. */
    const char *bad[] = {"nonsense"};
    po.replicas = bad;
    po.nreplicas = 1;
    CHECK_RC(aloop_pg_pool_new(c.loop, &po, &c.pool), ALOOP_E_INVALID);
    po.replicas = NULL;
    po.nreplicas = 0;
    CHECK_RC(aloop_pg_pool_new(c.loop, &po, &c.pool), 0);
    increments(&c);
    failures(&c);
    typed(&c);
    copies(&c);
    notifications(&c, url);
    aloop_pg_pool_stats_t st;
    CHECK_RC(aloop_pg_pool_stats_ex(c.pool, &st), 0);
    CHECK(st.connected == 3 && st.leased == 0 && st.queued == 0 && st.replicas_connected == 0);
    aloop_pg_pool_free(c.pool);
    aloop_loop_run(c.loop, ALOOP_RUN_NOWAIT);
    aloop_loop_run(c.loop, ALOOP_RUN_NOWAIT);
    CHECK_RC(aloop_loop_free(c.loop), 0);
}

int main(void) {
    const char *url = getenv("ALOOP_TEST_PG");
    if (!url) {
        fprintf(stderr, "test_pg_app: ALOOP_TEST_PG is not set (scripts/run-c-tests.sh starts a cluster)\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof all_backends / sizeof *all_backends; i++)
        run(all_backends[i], url);
    return check_summary("test_pg_app");
}
