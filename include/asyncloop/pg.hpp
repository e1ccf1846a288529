// asyncloop/pg.hpp: part of asyncloop.hpp (include that). PostgreSQL: results, the pool, COPY, transactions and LISTEN/NOTIFY.
#ifndef ASYNCLOOP_PG_HPP
#define ASYNCLOOP_PG_HPP

#include "http_server.hpp"

namespace aloop {

/// A query outcome, borrowed during its callback.
class PgResult {
  public:
    PgResult(int status, const aloop_pg_result_t *r) noexcept : status_(status), r_(r) {}
    bool ok() const noexcept { return status_ == 0; }
    int status() const noexcept { return status_; }
    size_t rows() const { return aloop_pg_result_rows(r_); }
    size_t columns() const { return aloop_pg_result_columns(r_); }
    bool is_null(size_t row, size_t col) const { return aloop_pg_result_is_null(r_, row, col) == 1; }
    std::string_view value(size_t row, size_t col) const {
        const char *v = aloop_pg_result_value(r_, row, col);
        return v ? std::string_view(v, aloop_pg_result_length(r_, row, col)) : std::string_view();
    }
    long long integer(size_t row, size_t col) const {
        const char *v = aloop_pg_result_value(r_, row, col);
        return v ? std::strtoll(v, nullptr, 10) : 0;
    }
    uint64_t affected_rows() const { return aloop_pg_result_affected_rows(r_); }
    std::string_view error_message() const { return aloop_pg_result_error_message(r_); }
    std::string_view sqlstate() const { return aloop_pg_result_sqlstate(r_); }

    /// The name of column `col` ("" out of range).
    std::string_view column_name(size_t col) const {
        const char *n = aloop_pg_result_column_name(r_, col);
        return n ? std::string_view(n) : std::string_view();
    }
    /// The first column named exactly `name`, if any.
    std::optional<size_t> find_column(const std::string &name) const {
        ptrdiff_t i = aloop_pg_result_column_index(r_, name.c_str());
        return i >= 0 ? std::optional<size_t>(static_cast<size_t>(i)) : std::nullopt;
    }
    /// The column named `name`; throws Error(ALOOP_E_NOT_FOUND) if there is none.
    size_t column(const std::string &name) const {
        ptrdiff_t i = aloop_pg_result_column_index(r_, name.c_str());
        if (i < 0)
            throw Error(static_cast<int>(i), "column \"" + name + "\"");
        return static_cast<size_t>(i);
    }
    /// The type OID of column `col` (ALOOP_PG_OID_*; 0 out of range).
    uint32_t type(size_t col) const { return aloop_pg_result_column_type(r_, col); }

    /// The value at (`row`, `col`) as T: an integer type (int2/int4/int8/oid columns; Error
    /// ALOOP_E_PG_TYPE if it does not fit T), bool, double or float (float, numeric and
    /// integer columns), std::string_view (borrowed from the result) or std::string (text),
    /// std::vector<uint8_t> (bytea), or std::optional of one of them (nullopt for NULL).
    /// Throws Error: ALOOP_E_PG_NULL for NULL (unless optional), ALOOP_E_PG_TYPE for another
    /// type, ALOOP_E_NOT_FOUND out of range. Text and binary results alike.
    template <class T> T get(size_t row, size_t col) const {
        if constexpr (detail::is_optional<T>::value) {
            if (is_null(row, col) && row < rows() && col < columns())
                return std::nullopt;
            return get<typename T::value_type>(row, col);
        } else if constexpr (std::is_same_v<T, bool>) {
            int b = 0;
            check(aloop_pg_result_get_bool(r_, row, col, &b), "PgResult::get<bool>");
            return b != 0;
        } else if constexpr (std::is_integral_v<T>) {
            int64_t v = 0;
            check(aloop_pg_result_get_int64(r_, row, col, &v), "PgResult::get<integer>");
            if constexpr (std::is_unsigned_v<T>) {
                if (v < 0 || static_cast<uint64_t>(v) > std::numeric_limits<T>::max())
                    throw Error(ALOOP_E_PG_TYPE, "PgResult::get: out of range");
            } else if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                       v > static_cast<int64_t>(std::numeric_limits<T>::max())) {
                throw Error(ALOOP_E_PG_TYPE, "PgResult::get: out of range");
            }
            return static_cast<T>(v);
        } else if constexpr (std::is_floating_point_v<T>) {
            double d = 0;
            check(aloop_pg_result_get_double(r_, row, col, &d), "PgResult::get<double>");
            return static_cast<T>(d);
        } else if constexpr (std::is_same_v<T, std::string_view>) {
            const char *p = nullptr;
            size_t n = 0;
            check(aloop_pg_result_get_text(r_, row, col, &p, &n), "PgResult::get<text>");
            return std::string_view(p, n);
        } else if constexpr (std::is_same_v<T, std::string>) {
            return std::string(get<std::string_view>(row, col));
        } else if constexpr (std::is_same_v<T, std::vector<uint8_t>>) {
            ptrdiff_t n = aloop_pg_result_get_bytea(r_, row, col, nullptr, 0);
            if (n < 0)
                throw Error(static_cast<int>(n), "PgResult::get<bytea>");
            std::vector<uint8_t> v(static_cast<size_t>(n));
            if (n > 0)
                aloop_pg_result_get_bytea(r_, row, col, v.data(), v.size());
            return v;
        } else {
            static_assert(detail::is_optional<T>::value && !detail::is_optional<T>::value,
                          "PgResult::get: unsupported type");
        }
    }
    /// `get` by column name.
    template <class T> T get(size_t row, const std::string &name) const { return get<T>(row, column(name)); }

  private:
    int status_;
    const aloop_pg_result_t *r_;
};

/// How a transaction, COPY or LISTEN ended: 0, or an error code with the server's SQLSTATE and
/// a message (borrowed during the call).
using PgEndCallback = std::function<void(int status, std::string_view sqlstate, std::string_view message)>;

namespace detail {
inline void pg_end_tramp(int status, const char *state, const char *msg, void *ud) {
    try {
        auto *f = static_cast<PgEndCallback *>(ud);
        if (*f)
            (*f)(status, state, msg);
    } catch (...) {
        report("PostgreSQL");
    }
}
} // namespace detail

/// A running COPY, as its callbacks see it (not owned: valid until its done callback
/// returns; the library ends it).
class PgCopy {
  public:
    explicit PgCopy(aloop_pg_copy_t *c) noexcept : c_(c) {}
    aloop_pg_copy_t *get() const noexcept { return c_; }
    /// COPY FROM STDIN: sends `data` (copied). True: write more now; false: the socket is full,
    /// wait for the ready callback. Throws Error on misuse or a broken connection.
    bool write(std::string_view data) const {
        return check(aloop_pg_copy_write(c_, data.data(), data.size()), "aloop_pg_copy_write") == 0;
    }
    /// COPY FROM STDIN: the data is complete.
    void finish() const { check(aloop_pg_copy_finish(c_), "aloop_pg_copy_finish"); }
    /// COPY TO STDOUT: reads on after the data callback returned false.
    void resume() const { check(aloop_pg_copy_resume(c_), "aloop_pg_copy_resume"); }
    /// Stops it; the done callback follows with ALOOP_E_CANCELLED. Returns 0 or the error
    /// code (ALOOP_E_STALE once it has ended).
    int cancel() const noexcept { return aloop_pg_copy_cancel(c_); }

  private:
    aloop_pg_copy_t *c_;
};

namespace detail {
/// The callbacks of one COPY, on the heap until it ends.
struct PgCopyFns {
    std::function<bool(PgCopy, std::string_view)> data; // COPY OUT: false pauses
    std::function<void(PgCopy)> ready;                   // COPY IN
    std::function<void(int, uint64_t, std::string_view)> done;
};
inline int pg_copy_data(aloop_pg_copy_t *c, const void *data, size_t len, void *ud) {
    try {
        bool more = static_cast<PgCopyFns *>(ud)->data(PgCopy(c), std::string_view(static_cast<const char *>(data), len));
        return more ? 0 : ALOOP_PG_COPY_PAUSE;
    } catch (...) {
        report("COPY");
        aloop_pg_copy_cancel(c);
        return 0;
    }
}
inline void pg_copy_ready(aloop_pg_copy_t *c, void *ud) {
    try {
        static_cast<PgCopyFns *>(ud)->ready(PgCopy(c));
    } catch (...) {
        report("COPY");
        aloop_pg_copy_cancel(c);
    }
}
inline void pg_copy_done(aloop_pg_copy_t *, int status, uint64_t rows, const char *, const char *msg, void *ud) {
    try {
        auto &f = static_cast<PgCopyFns *>(ud)->done;
        if (f)
            f(status, rows, msg);
    } catch (...) {
        report("COPY");
    }
}
} // namespace detail

/// A PostgreSQL pool on one loop, owned.
class PgPool {
  public:
    using Callback = std::function<void(const PgResult &)>;
    /// A parameter: text, or std::nullopt for SQL NULL.
    using Param = std::optional<std::string>;

    /// All of aloop_pg_pool_options_t; `c.conninfo` is replaced by the constructor's argument.
    struct Options {
        aloop_pg_pool_options_t c;
        Options() { aloop_pg_pool_options_init(&c); }
    };

    PgPool(Loop &loop, const std::string &conninfo, size_t size) : PgPool(loop, conninfo, sized(size)) {}
    PgPool(Loop &loop, const std::string &conninfo, const Options &opts) {
        aloop_pg_pool_options_t o = opts.c;
        o.conninfo = conninfo.empty() ? nullptr : conninfo.c_str();
        check(aloop_pg_pool_new(loop.get(), &o, &pool_), "aloop_pg_pool_new");
    }
    PgPool(const PgPool &) = delete;
    PgPool &operator=(const PgPool &) = delete;
    ~PgPool() { aloop_pg_pool_free(pool_); }

    aloop_pg_pool_t *get() const noexcept { return pool_; }

    void prepare(const char *name, const char *sql) { check(aloop_pg_prepare(pool_, name, sql), "aloop_pg_prepare"); }
    /// `flags`: ALOOP_PG_READ_ONLY (may run on a read replica), ALOOP_PG_BINARY (binary
    /// results; read them with PgResult::get).
    void query(const char *sql, const std::vector<Param> &params, Callback cb, uint32_t flags = 0) {
        send(false, sql, params, std::move(cb), flags);
    }
    void execute(const char *name, const std::vector<Param> &params, Callback cb, uint32_t flags = 0) {
        send(true, name, params, std::move(cb), flags);
    }

    /// One statement of a batch: a prepared statement's name (`prepared`) or SQL text (`sql`),
    /// exactly one of them, with its parameters.
    struct Step {
        const char *prepared = nullptr;
        const char *sql = nullptr;
        std::vector<Param> params;
    };
    /// Gets one result per statement, in order, once, on the loop's thread; the results are
    /// borrowed until it returns.
    using BatchCallback = std::function<void(const std::vector<PgResult> &)>;

    /// Runs `steps` in order on one connection as one transaction, sent with a single sync (see
    /// aloop_pg_batch): if one fails, the later ones report ALOOP_E_PG_ABORTED. Names, SQL and
    /// parameters are copied before it returns. Throws aloop::Error (the callback is then never
    /// called), e.g. for an unknown prepared name.
    void batch(const std::vector<Step> &steps, BatchCallback cb, uint32_t flags = 0) {
        std::vector<std::vector<const char *>> values(steps.size());
        std::vector<aloop_pg_statement_t> stmts(steps.size());
        for (size_t i = 0; i < steps.size(); i++) {
            values[i].reserve(steps[i].params.size());
            for (const auto &p : steps[i].params)
                values[i].push_back(p ? p->c_str() : nullptr);
            stmts[i] = aloop_pg_statement_t{steps[i].sql, steps[i].prepared, values[i].size(), values[i].data()};
        }
        auto *heap = new BatchCallback(std::move(cb));
        auto tramp = [](size_t n, const int *status, const aloop_pg_result_t *const *results, void *ud) {
            try {
                std::vector<PgResult> out;
                out.reserve(n);
                for (size_t i = 0; i < n; i++)
                    out.emplace_back(status[i], results[i]);
                (*static_cast<BatchCallback *>(ud))(out);
            } catch (...) {
                detail::report("PostgreSQL");
            }
        };
        int rc = aloop_pg_batch_ex(pool_, stmts.data(), stmts.size(), flags, tramp, heap, detail::delete_fn<BatchCallback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_pg_batch");
        }
    }

    using CopyDone = std::function<void(int status, uint64_t rows, std::string_view message)>;
    /// Runs `sql`, a COPY ... TO STDOUT, on a connection of its own: `on_data` gets the data as
    /// it arrives (return false to pause until PgCopy::resume), `on_done` once at the end with
    /// the rows copied or an error. Throws Error (no callback runs then).
    PgCopy copy_out(const char *sql, std::function<bool(PgCopy, std::string_view)> on_data, CopyDone on_done) {
        auto *fns = new detail::PgCopyFns{std::move(on_data), {}, std::move(on_done)};
        aloop_pg_copy_t *c = nullptr;
        int rc = aloop_pg_copy_out(pool_, sql, detail::pg_copy_data, detail::pg_copy_done, fns,
                                   detail::delete_fn<detail::PgCopyFns>, &c);
        if (rc != 0) {
            delete fns;
            throw Error(rc, "aloop_pg_copy_out");
        }
        return PgCopy(c);
    }
    /// Runs `sql`, a COPY ... FROM STDIN: `on_ready` runs when data may be written (again after
    /// PgCopy::write returned false); end with PgCopy::finish.
    PgCopy copy_in(const char *sql, std::function<void(PgCopy)> on_ready, CopyDone on_done) {
        auto *fns = new detail::PgCopyFns{{}, std::move(on_ready), std::move(on_done)};
        aloop_pg_copy_t *c = nullptr;
        int rc = aloop_pg_copy_in(pool_, sql, detail::pg_copy_ready, detail::pg_copy_done, fns,
                                  detail::delete_fn<detail::PgCopyFns>, &c);
        if (rc != 0) {
            delete fns;
            throw Error(rc, "aloop_pg_copy_in");
        }
        return PgCopy(c);
    }

  private:
    static Options sized(size_t size) {
        Options o;
        o.c.size = size;
        return o;
    }
    void send(bool prepared, const char *what, const std::vector<Param> &params, Callback cb, uint32_t flags) {
        std::vector<const char *> values;
        values.reserve(params.size());
        for (const auto &p : params)
            values.push_back(p ? p->c_str() : nullptr);
        auto *heap = new Callback(std::move(cb));
        auto tramp = [](int status, const aloop_pg_result_t *r, void *ud) {
            try {
                (*static_cast<Callback *>(ud))(PgResult(status, r));
            } catch (...) {
                detail::report("PostgreSQL");
            }
        };
        int rc = prepared ? aloop_pg_execute_ex(pool_, what, values.size(), values.data(), flags, tramp, heap,
                                                detail::delete_fn<Callback>)
                          : aloop_pg_query_ex(pool_, what, values.size(), values.data(), flags, tramp, heap,
                                              detail::delete_fn<Callback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, prepared ? "aloop_pg_execute" : "aloop_pg_query");
        }
    }
    aloop_pg_pool_t *pool_ = nullptr;
};

/// An interactive transaction on a connection leased from a pool. Move-only; the destructor
/// rolls back a transaction that was neither committed nor rolled back (statements not sent
/// yet then complete with ALOOP_E_CANCELLED). Statements may be queued at once: they are sent
/// once the connection is leased.
class Transaction {
  public:
    using Param = PgPool::Param;
    using Callback = PgPool::Callback;
    struct Options {
        aloop_pg_txn_options_t c;
        Options() { aloop_pg_txn_options_init(&c); }
    };

    explicit Transaction(PgPool &pool, const Options &opts = Options()) {
        check(aloop_pg_txn_begin(pool.get(), &opts.c, &txn_), "aloop_pg_txn_begin");
    }
    Transaction(Transaction &&o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
    Transaction &operator=(Transaction &&o) noexcept {
        if (this != &o) {
            aloop_pg_txn_free(txn_);
            txn_ = std::exchange(o.txn_, nullptr);
        }
        return *this;
    }
    Transaction(const Transaction &) = delete;
    Transaction &operator=(const Transaction &) = delete;
    ~Transaction() { aloop_pg_txn_free(txn_); }

    /// False once committed, rolled back or moved from.
    bool active() const noexcept { return txn_ != nullptr; }
    aloop_pg_txn_t *get() const noexcept { return txn_; }

    /// `flags`: 0 or ALOOP_PG_BINARY.
    void query(const char *sql, const std::vector<Param> &params, Callback cb, uint32_t flags = 0) {
        send(false, sql, params, std::move(cb), flags);
    }
    /// A statement registered on the pool with PgPool::prepare.
    void execute(const char *name, const std::vector<Param> &params, Callback cb) {
        send(true, name, params, std::move(cb), 0);
    }
    /// Commits; `cb` gets 0, ALOOP_E_PG_ABORTED (a statement had failed: rolled back), or the
    /// error that ended the transaction. The Transaction is inactive afterwards.
    void commit(PgEndCallback cb = {}) { end(true, std::move(cb)); }
    void rollback(PgEndCallback cb = {}) { end(false, std::move(cb)); }

    /// COPY inside the transaction (see PgPool::copy_out and copy_in).
    PgCopy copy_out(const char *sql, std::function<bool(PgCopy, std::string_view)> on_data, PgPool::CopyDone on_done) {
        auto *fns = new detail::PgCopyFns{std::move(on_data), {}, std::move(on_done)};
        aloop_pg_copy_t *c = nullptr;
        int rc = aloop_pg_txn_copy_out(txn_, sql, detail::pg_copy_data, detail::pg_copy_done, fns,
                                       detail::delete_fn<detail::PgCopyFns>, &c);
        if (rc != 0) {
            delete fns;
            throw Error(rc, "aloop_pg_txn_copy_out");
        }
        return PgCopy(c);
    }
    PgCopy copy_in(const char *sql, std::function<void(PgCopy)> on_ready, PgPool::CopyDone on_done) {
        auto *fns = new detail::PgCopyFns{{}, std::move(on_ready), std::move(on_done)};
        aloop_pg_copy_t *c = nullptr;
        int rc = aloop_pg_txn_copy_in(txn_, sql, detail::pg_copy_ready, detail::pg_copy_done, fns,
                                      detail::delete_fn<detail::PgCopyFns>, &c);
        if (rc != 0) {
            delete fns;
            throw Error(rc, "aloop_pg_txn_copy_in");
        }
        return PgCopy(c);
    }

  private:
    void send(bool prepared, const char *what, const std::vector<Param> &params, Callback cb, uint32_t flags) {
        std::vector<const char *> values;
        values.reserve(params.size());
        for (const auto &p : params)
            values.push_back(p ? p->c_str() : nullptr);
        auto *heap = new Callback(std::move(cb));
        auto tramp = [](int status, const aloop_pg_result_t *r, void *ud) {
            try {
                (*static_cast<Callback *>(ud))(PgResult(status, r));
            } catch (...) {
                detail::report("PostgreSQL");
            }
        };
        int rc = prepared ? aloop_pg_txn_execute(txn_, what, values.size(), values.data(), flags, tramp, heap,
                                                 detail::delete_fn<Callback>)
                          : aloop_pg_txn_query(txn_, what, values.size(), values.data(), flags, tramp, heap,
                                               detail::delete_fn<Callback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, prepared ? "aloop_pg_txn_execute" : "aloop_pg_txn_query");
        }
    }
    void end(bool commit, PgEndCallback cb) {
        auto *heap = new PgEndCallback(std::move(cb));
        int rc = commit ? aloop_pg_txn_commit(txn_, detail::pg_end_tramp, heap, detail::delete_fn<PgEndCallback>)
                        : aloop_pg_txn_rollback(txn_, detail::pg_end_tramp, heap, detail::delete_fn<PgEndCallback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, commit ? "aloop_pg_txn_commit" : "aloop_pg_txn_rollback");
        }
        txn_ = nullptr;
    }
    aloop_pg_txn_t *txn_ = nullptr;
};

/// A LISTEN connection of its own, owned: it reconnects and listens again by itself.
/// Notifications sent while it is disconnected are lost; `on_reconnect` says when that may
/// have happened.
class PgListener {
  public:
    using Callback = std::function<void(std::string_view channel, std::string_view payload, int pid)>;

    PgListener(Loop &loop, const std::string &conninfo, Callback cb) {
        auto *heap = new Callback(std::move(cb));
        auto tramp = [](aloop_pg_listener_t *, const char *ch, const char *payload, int pid, void *ud) {
            try {
                (*static_cast<Callback *>(ud))(ch, payload, pid);
            } catch (...) {
                detail::report("LISTEN");
            }
        };
        int rc = aloop_pg_listener_new(loop.get(), conninfo.c_str(), tramp, heap, detail::delete_fn<Callback>, &l_);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_pg_listener_new");
        }
    }
    PgListener(const PgListener &) = delete;
    PgListener &operator=(const PgListener &) = delete;
    ~PgListener() { aloop_pg_listener_free(l_); }

    aloop_pg_listener_t *get() const noexcept { return l_; }
    bool connected() const { return aloop_pg_listener_connected(l_) == 1; }

    void listen(const std::string &channel, PgEndCallback cb = {}) { call(true, channel, std::move(cb)); }
    void unlisten(const std::string &channel, PgEndCallback cb = {}) { call(false, channel, std::move(cb)); }
    void on_reconnect(std::function<void()> fn) {
        using F = std::function<void()>;
        auto *heap = new F(std::move(fn));
        auto tramp = [](aloop_pg_listener_t *, void *ud) {
            try {
                (*static_cast<F *>(ud))();
            } catch (...) {
                detail::report("LISTEN");
            }
        };
        int rc = aloop_pg_listener_on_reconnect(l_, tramp, heap, detail::delete_fn<F>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, "aloop_pg_listener_on_reconnect");
        }
    }

  private:
    void call(bool listen, const std::string &channel, PgEndCallback cb) {
        auto *heap = new PgEndCallback(std::move(cb));
        int rc = listen ? aloop_pg_listen(l_, channel.c_str(), detail::pg_end_tramp, heap, detail::delete_fn<PgEndCallback>)
                        : aloop_pg_unlisten(l_, channel.c_str(), detail::pg_end_tramp, heap,
                                            detail::delete_fn<PgEndCallback>);
        if (rc != 0) {
            delete heap;
            throw Error(rc, listen ? "aloop_pg_listen" : "aloop_pg_unlisten");
        }
    }
    aloop_pg_listener_t *l_ = nullptr;
};

} // namespace aloop

#endif
