//! `aloop_pg_*`: a PostgreSQL connection pool per loop, queries, prepared statements, results.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::rc::Rc;

use super::event_loop::{aloop_loop_t, loop_of};
use super::handle::{self, Handle, Kind, LoopId};
use super::{aloop_free_fn, c_str, guard, not_null, rc, UserData};
use crate::error::{Error, Result};
use crate::pg::{BatchStep, PgError, PgPool, PgResult, PoolOptions, QueryOptions, Statement};

/// No database connection is up; the query was not sent.
pub const ALOOP_E_PG_UNAVAILABLE: c_int = -10100;
/// The database reported an error (see `aloop_pg_result_sqlstate` and `_error_message`).
pub const ALOOP_E_PG_QUERY: c_int = -10101;
/// The connection broke while the query was in flight; it may or may not have run.
pub const ALOOP_E_PG_CONNECTION: c_int = -10102;
/// The pool's queue is full; the query was not sent.
pub const ALOOP_E_PG_QUEUE_FULL: c_int = -10103;
/// An earlier statement of the same pipeline failed; this one did not run.
pub const ALOOP_E_PG_ABORTED: c_int = -10104;

/// Options for `aloop_pg_pool_new`; fill with `aloop_pg_pool_options_init` first.
#[repr(C)]
pub struct aloop_pg_pool_options_t {
    /// libpq conninfo string or URI (borrowed during `aloop_pg_pool_new`). Host names (several
    /// hosts too) are resolved off the loop, on the blocking-work pool; the loop never blocks.
    pub conninfo: *const c_char,
    /// Connections (default 4).
    pub size: usize,
    /// Queries waiting for a connection before `ALOOP_E_PG_QUEUE_FULL` (default 65536).
    pub max_queue: usize,
    /// Queries in flight per connection, pipelined (default 256).
    pub max_pipeline: usize,
    /// Time a query may take, queueing included, in ms (0: no limit, the default). Past it the
    /// query is cancelled on the server, without blocking the loop, and completes with
    /// `ALOOP_E_TIMEOUT`; the connection stays usable.
    pub query_timeout_ms: u64,
    /// Time a connection attempt may take, in ms (default 5000).
    pub connect_timeout_ms: u64,
    /// `nreplicas` conninfos of read replicas (streaming standbys), borrowed during
    /// `aloop_pg_pool_new`: work flagged `ALOOP_PG_READ_ONLY` (and read-only transactions) goes
    /// to them round robin, and to the primary while none is up. NULL/0: none (the default).
    pub replicas: *const *const c_char,
    /// How many conninfos `replicas` holds.
    pub nreplicas: usize,
    /// Connections per replica (0, the default: as many as `size`).
    pub replica_size: usize,
    /// Non-zero: never prepare named statements; `aloop_pg_execute` sends the registered SQL
    /// as the unnamed statement each time. For PgBouncer in transaction pooling mode, where
    /// consecutive statements may run on different server connections (default 0).
    pub no_prepare: c_int,
}

/// A connection pool (opaque) on one loop. Owned by the caller of `aloop_pg_pool_new` until
/// `aloop_pg_pool_free`.
pub struct aloop_pg_pool_t {
    pub(super) pool: PgPool,
    pub(super) lp: LoopId,
    pub(super) prepared: RefCell<HashMap<String, Rc<Statement>>>,
}

impl Handle for aloop_pg_pool_t {
    type C = aloop_pg_pool_t;
    const KIND: Kind = Kind::PgPool;
}

/// A query's outcome (opaque), borrowed during the query callback only: afterwards its handle
/// is stale (accessors give 0, NULL or "").
pub struct aloop_pg_result_t {
    pub(super) outcome: std::result::Result<PgResult, PgError>,
    message: CString,
    sqlstate: CString,
}

impl Handle for aloop_pg_result_t {
    type C = aloop_pg_result_t;
    const KIND: Kind = Kind::PgResult;
}

/// Runs `f` on the pool behind a handle.
pub(super) fn with_pool<R>(
    pool: *const aloop_pg_pool_t,
    f: impl FnOnce(&aloop_pg_pool_t) -> R,
) -> Result<R> {
    handle::with(pool, f)
}

/// Called once per query, on the loop's thread: `status` 0 with rows in `result`, or an error
/// code with its details in `result` (never NULL).
pub type aloop_pg_cb = Option<
    unsafe extern "C" fn(status: c_int, result: *const aloop_pg_result_t, user_data: *mut c_void),
>;

/// Fills `opts` with the defaults (conninfo NULL: libpq's PG* environment defaults).
#[no_mangle]
pub extern "C" fn aloop_pg_pool_options_init(opts: *mut aloop_pg_pool_options_t) -> c_int {
    guard(|| {
        not_null!(opts);
        let d = PoolOptions::default();
        // SAFETY: non-NULL caller-owned memory.
        unsafe {
            opts.write(aloop_pg_pool_options_t {
                conninfo: std::ptr::null(),
                size: d.size,
                max_queue: d.max_queue,
                max_pipeline: d.max_pipeline,
                query_timeout_ms: 0,
                connect_timeout_ms: d.connect_timeout.as_millis() as u64,
                replicas: std::ptr::null(),
                nreplicas: 0,
                replica_size: 0,
                no_prepare: 0,
            })
        };
        0
    })
}

/// Creates a pool on `lp` and starts connecting (never blocks). `opts` may be NULL for the
/// defaults. Queries may be sent at once: they wait while the first connections come up. On
/// success `*out` owns the pool; on failure `*out` is not written. Errors: `ALOOP_E_NULL`,
/// `ALOOP_E_INVALID` (a zero size, or a conninfo libpq cannot parse: the reason is in
/// `aloop_last_error_message()`), `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_pool_new(
    lp: *mut aloop_loop_t,
    opts: *const aloop_pg_pool_options_t,
    out: *mut *mut aloop_pg_pool_t,
) -> c_int {
    guard(|| {
        not_null!(lp, out);
        let mut o = PoolOptions::default();
        if !opts.is_null() {
            // SAFETY: non-NULL options, read during the call.
            let c = unsafe { &*opts };
            if !c.conninfo.is_null() {
                // SAFETY: a C string per the contract.
                match unsafe { c_str(c.conninfo) } {
                    Ok(s) => o.conninfo = s.to_string(),
                    Err(e) => return e.code(),
                }
                if let Err(why) = crate::pg::check_conninfo(&o.conninfo) {
                    super::set_last_error(&why);
                    return Error::INVALID.code();
                }
            }
            if c.size == 0 || c.max_pipeline == 0 || c.connect_timeout_ms == 0 {
                return Error::INVALID.code();
            }
            o.size = c.size;
            o.max_queue = c.max_queue;
            o.max_pipeline = c.max_pipeline;
            o.connect_timeout = std::time::Duration::from_millis(c.connect_timeout_ms);
            o.query_timeout = (c.query_timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(c.query_timeout_ms));
            match super::pg_query_opts::replica_conninfos(c.replicas, c.nreplicas) {
                Ok(r) => o.replicas = r,
                Err(e) => return e.code(),
            }
            o.replica_size = c.replica_size;
            o.no_prepare = c.no_prepare != 0;
        }
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let pool = PgPool::new(&core, o);
        let p = Box::new(aloop_pg_pool_t {
            pool,
            lp: id,
            prepared: RefCell::new(HashMap::new()),
        });
        let h = handle::register(id, p);
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(h) };
        0
    })
}

/// Closes every connection and frees the pool; allowed inside its own callbacks. Queries still
/// queued or in flight (transactions' statements and COPYs included; a transaction handle
/// stays to be freed) complete with `ALOOP_E_CANCELLED` (their callbacks run from the loop,
/// later, never inside this call; run the loop until they did). Returns 0, `ALOOP_E_STALE` for
/// a pool already freed or `ALOOP_E_WRONG_THREAD`; NULL is ignored (0).
#[no_mangle]
pub extern "C" fn aloop_pg_pool_free(pool: *mut aloop_pg_pool_t) -> c_int {
    guard(|| {
        if pool.is_null() {
            return 0;
        }
        match handle::take::<aloop_pg_pool_t>(pool) {
            Ok(p) => {
                p.pool.close();
                0
            }
            Err(e) => e.code(),
        }
    })
}

/// Registers the named statement `sql` (with `$n` parameters) for `aloop_pg_execute`. It is
/// prepared on each connection the first time it runs there, reconnected ones included.
/// Registering a name again replaces it for connections that have not prepared it yet.
/// Errors: `ALOOP_E_NULL`, `ALOOP_E_INVALID` (empty name, not UTF-8), `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_prepare(
    pool: *mut aloop_pg_pool_t,
    name: *const c_char,
    sql: *const c_char,
) -> c_int {
    guard(|| {
        not_null!(pool, name, sql);
        // SAFETY: C strings per the contract.
        let (name, sql) = match unsafe { (c_str(name), c_str(sql)) } {
            (Ok(n), Ok(s)) if !n.is_empty() => (n.to_string(), s.to_string()),
            _ => return Error::INVALID.code(),
        };
        rc(with_pool(pool, |p| {
            p.prepared
                .borrow_mut()
                .insert(name.clone(), Rc::new(Statement::Prepared { name, sql }));
        }))
    })
}

pub(super) fn c_params<'a>(
    n: usize,
    values: *const *const c_char,
) -> Result<Vec<Option<&'a [u8]>>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if values.is_null() {
        return Err(Error::NULL_ARG);
    }
    // SAFETY: `n` pointers, each NULL (SQL NULL) or a C string, borrowed during the call.
    let vs = unsafe { std::slice::from_raw_parts(values, n) };
    Ok(vs
        .iter()
        .map(|&p| {
            if p.is_null() {
                None
            } else {
                Some(unsafe { CStr::from_ptr(p) }.to_bytes())
            }
        })
        .collect())
}

pub(super) fn to_c_result(outcome: std::result::Result<PgResult, PgError>) -> aloop_pg_result_t {
    let (message, sqlstate) = match &outcome {
        Ok(_) => (CString::default(), CString::default()),
        Err(e) => (
            CString::new(e.message.replace('\0', " ")).unwrap_or_default(),
            CString::new(e.sqlstate.clone()).unwrap_or_default(),
        ),
    };
    aloop_pg_result_t {
        outcome,
        message,
        sqlstate,
    }
}

pub(super) fn c_callback(
    cb: unsafe extern "C" fn(c_int, *const aloop_pg_result_t, *mut c_void),
    ud: UserData,
    lp: LoopId,
) -> impl FnOnce(std::result::Result<PgResult, PgError>) {
    move |outcome| {
        let r = to_c_result(outcome);
        let status = r.outcome.as_ref().err().map_or(0, |e| e.code.code());
        let h = handle::register(lp, Box::new(r));
        // SAFETY: the application's callback; the result handle is live during the call and
        // retired right after it.
        unsafe { cb(status, h, ud.ptr()) };
        drop(handle::take::<aloop_pg_result_t>(h));
    }
}

/// Checks the arguments every query call shares, then runs `stmt`.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_statement(
    p: &aloop_pg_pool_t,
    opts: QueryOptions,
    stmt: Rc<Statement>,
    nparams: usize,
    values: *const *const c_char,
    cb: aloop_pg_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    let Some(cb) = cb else {
        return Error::NULL_ARG.code();
    };
    let params = match c_params(nparams, values) {
        Ok(v) => v,
        Err(e) => return e.code(),
    };
    let (ud, armer) = UserData::new(user_data, dtor);
    armer.arm();
    p.pool
        .execute_with(&stmt, &params, opts, c_callback(cb, ud, p.lp));
    0
}

/// Runs `sql` with `nparams` text parameters (`values[i]` NUL-terminated, or NULL for SQL
/// NULL; copied before the call returns). `cb(status, result, user_data)` runs once from the
/// loop; `dtor(user_data)` right after it. Parameters are the only way values should reach SQL.
/// Errors (`cb` and `dtor` then never run): `ALOOP_E_NULL`, `ALOOP_E_INVALID`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_query(
    pool: *mut aloop_pg_pool_t,
    sql: *const c_char,
    nparams: usize,
    values: *const *const c_char,
    cb: aloop_pg_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(pool, sql);
        // SAFETY: C string per the contract.
        let Ok(sql) = (unsafe { c_str(sql) }) else {
            return Error::INVALID.code();
        };
        let stmt = Rc::new(Statement::Sql(sql.to_string()));
        with_pool(pool, |p| {
            run_statement(
                p,
                QueryOptions::default(),
                stmt,
                nparams,
                values,
                cb,
                user_data,
                dtor,
            )
        })
        .unwrap_or_else(|e| e.code())
    })
}

/// Runs the statement registered as `name` with `aloop_pg_prepare`; otherwise as
/// `aloop_pg_query`. `ALOOP_E_NOT_FOUND` for an unknown name.
#[no_mangle]
pub extern "C" fn aloop_pg_execute(
    pool: *mut aloop_pg_pool_t,
    name: *const c_char,
    nparams: usize,
    values: *const *const c_char,
    cb: aloop_pg_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(pool, name);
        // SAFETY: C string per the contract.
        let Ok(name) = (unsafe { c_str(name) }) else {
            return Error::INVALID.code();
        };
        with_pool(pool, |p| {
            let Some(stmt) = p.prepared.borrow().get(name).cloned() else {
                return Error::NOT_FOUND.code();
            };
            run_statement(
                p,
                QueryOptions::default(),
                stmt,
                nparams,
                values,
                cb,
                user_data,
                dtor,
            )
        })
        .unwrap_or_else(|e| e.code())
    })
}

/// One statement of `aloop_pg_batch`: `sql`, or the `prepared` name of a statement registered
/// with `aloop_pg_prepare` (exactly one of them non-NULL), and its text parameters.
#[repr(C)]
pub struct aloop_pg_statement_t {
    /// SQL text with `$n` parameters, or NULL when `prepared` is set.
    pub sql: *const c_char,
    /// Name given to `aloop_pg_prepare`, or NULL when `sql` is set.
    pub prepared: *const c_char,
    /// Number of entries in `values`.
    pub nparams: usize,
    /// `nparams` NUL-terminated text values (NULL entries are SQL NULL), copied by the call.
    pub values: *const *const c_char,
}

/// Called once for a batch with one status and one result per statement, in order (arrays of
/// `n`, borrowed during the callback).
pub type aloop_pg_batch_cb = Option<
    unsafe extern "C" fn(
        n: usize,
        status: *const c_int,
        results: *const *const aloop_pg_result_t,
        user_data: *mut c_void,
    ),
>;

/// Runs `n` statements in order on one connection as one transaction: they are sent together
/// with a single sync, so if one fails the later ones are skipped (`ALOOP_E_PG_ABORTED`) and
/// nothing of the batch is committed. Parameters are copied before the call returns.
/// `ALOOP_E_NOT_FOUND` for an unknown prepared name.
#[no_mangle]
pub extern "C" fn aloop_pg_batch(
    pool: *mut aloop_pg_pool_t,
    stmts: *const aloop_pg_statement_t,
    n: usize,
    cb: aloop_pg_batch_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(pool, stmts);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        if n == 0 {
            return Error::INVALID.code();
        }
        // SAFETY: `n` statements borrowed during the call.
        let list = unsafe { std::slice::from_raw_parts(stmts, n) };
        with_pool(pool, |p| {
            run_batch(p, QueryOptions::default(), list, cb, user_data, dtor)
        })
        .unwrap_or_else(|e| e.code())
    })
}

pub(super) fn run_batch(
    p: &aloop_pg_pool_t,
    opts: QueryOptions,
    list: &[aloop_pg_statement_t],
    cb: unsafe extern "C" fn(usize, *const c_int, *const *const aloop_pg_result_t, *mut c_void),
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    {
        let n = list.len();
        let mut steps = Vec::with_capacity(n);
        for s in list {
            let stmt = match (s.sql.is_null(), s.prepared.is_null()) {
                // SAFETY: C strings per the contract.
                (false, true) => match unsafe { c_str(s.sql) } {
                    Ok(sql) => Rc::new(Statement::Sql(sql.to_string())),
                    Err(e) => return e.code(),
                },
                // SAFETY: as above.
                (true, false) => match unsafe { c_str(s.prepared) }
                    .ok()
                    .and_then(|n| p.prepared.borrow().get(n).cloned())
                {
                    Some(st) => st,
                    None => return Error::NOT_FOUND.code(),
                },
                _ => return Error::INVALID.code(),
            };
            match c_params(s.nparams, s.values) {
                Ok(v) => steps.push((stmt, v)),
                Err(e) => return e.code(),
            }
        }
        let borrowed: Vec<BatchStep<'_>> = steps.iter().map(|(s, v)| (s.clone(), &v[..])).collect();
        let (ud, armer) = UserData::new(user_data, dtor);
        armer.arm();
        let lp = p.lp;
        p.pool.batch_with(&borrowed, opts, move |outcomes| {
            let results: Vec<aloop_pg_result_t> = outcomes.into_iter().map(to_c_result).collect();
            let status: Vec<c_int> = results
                .iter()
                .map(|r| r.outcome.as_ref().err().map_or(0, |e| e.code.code()))
                .collect();
            let handles: Vec<*const aloop_pg_result_t> = results
                .into_iter()
                .map(|r| handle::register(lp, Box::new(r)).cast_const())
                .collect();
            // SAFETY: the application's callback; the arrays live and the result handles are
            // live during the call, and the handles are retired right after it.
            unsafe { cb(handles.len(), status.as_ptr(), handles.as_ptr(), ud.ptr()) };
            for h in handles {
                drop(handle::take::<aloop_pg_result_t>(h));
            }
        });
        0
    }
}

/// Connections up, queries in flight and queries waiting; any out pointer may be NULL, and
/// none is written on an error (`ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`).
#[no_mangle]
pub extern "C" fn aloop_pg_pool_stats(
    pool: *const aloop_pg_pool_t,
    connected: *mut usize,
    busy: *mut usize,
    queued: *mut usize,
) -> c_int {
    guard(|| {
        let s = match with_pool(pool, |p| p.pool.stats()) {
            Ok(s) => s,
            Err(e) => return e.code(),
        };
        for (p, v) in [(connected, s.connected), (busy, s.busy), (queued, s.queued)] {
            if !p.is_null() {
                // SAFETY: as above.
                unsafe { p.write(v) };
            }
        }
        0
    })
}

/// Runs `f` on a successful result, or gives `fallback` (an error result, a stale handle).
pub(super) fn ok_result<R>(
    r: *const aloop_pg_result_t,
    fallback: R,
    f: impl FnOnce(&PgResult) -> R,
) -> R {
    handle::read(r, None, |r: &aloop_pg_result_t| {
        r.outcome.as_ref().ok().map(f)
    })
    .unwrap_or(fallback)
}

/// Rows of a successful result (0 otherwise).
#[no_mangle]
pub extern "C" fn aloop_pg_result_rows(r: *const aloop_pg_result_t) -> usize {
    guard(|| ok_result(r, 0, |x| x.rows()))
}

/// Columns of a successful result (0 otherwise).
#[no_mangle]
pub extern "C" fn aloop_pg_result_columns(r: *const aloop_pg_result_t) -> usize {
    guard(|| ok_result(r, 0, |x| x.columns()))
}

/// Name of column `col`, or NULL.
#[no_mangle]
pub extern "C" fn aloop_pg_result_column_name(
    r: *const aloop_pg_result_t,
    col: usize,
) -> *const c_char {
    guard(|| {
        ok_result(r, std::ptr::null(), |x| {
            x.column_name(col)
                .filter(|_| col < x.columns())
                .map_or(std::ptr::null(), |n| n.as_ptr().cast())
        })
    })
}

/// The value at (`row`, `col`) as NUL-terminated text (valid during the callback), or NULL for
/// SQL NULL and out-of-range positions.
#[no_mangle]
pub extern "C" fn aloop_pg_result_value(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
) -> *const c_char {
    guard(|| ok_result(r, std::ptr::null(), |x| x.c_value(row, col)))
}

/// Length in bytes of the value at (`row`, `col`) (0 for NULL or out of range).
#[no_mangle]
pub extern "C" fn aloop_pg_result_length(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
) -> usize {
    guard(|| ok_result(r, 0, |x| x.value(row, col).map_or(0, |v| v.len())))
}

/// 1 if the value at (`row`, `col`) is SQL NULL (or out of range), else 0.
#[no_mangle]
pub extern "C" fn aloop_pg_result_is_null(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
) -> c_int {
    guard(|| ok_result(r, 1, |x| x.value(row, col).is_none() as c_int))
}

/// Rows affected by an INSERT, UPDATE or DELETE.
#[no_mangle]
pub extern "C" fn aloop_pg_result_affected_rows(r: *const aloop_pg_result_t) -> u64 {
    guard(|| ok_result(r, 0, |x| x.affected_rows()))
}

/// The error message ("" on success); valid during the callback.
#[no_mangle]
pub extern "C" fn aloop_pg_result_error_message(r: *const aloop_pg_result_t) -> *const c_char {
    guard(|| handle::read(r, c"".as_ptr(), |r: &aloop_pg_result_t| r.message.as_ptr()))
}

/// The server's SQLSTATE ("23505", ...), or "" when the server reported none.
#[no_mangle]
pub extern "C" fn aloop_pg_result_sqlstate(r: *const aloop_pg_result_t) -> *const c_char {
    guard(|| handle::read(r, c"".as_ptr(), |r: &aloop_pg_result_t| r.sqlstate.as_ptr()))
}
