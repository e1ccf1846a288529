//! `aloop_pg_*`: a PostgreSQL connection pool per loop, queries, prepared statements, results.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::rc::Rc;

use super::event_loop::aloop_loop_t;
use super::{aloop_free_fn, c_str, guard, not_null, read_handle, UserData};
use crate::error::{Error, Result};
use crate::pg::{BatchStep, PgError, PgPool, PgResult, PoolOptions, Statement};

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
    /// libpq conninfo string or URI (borrowed during `aloop_pg_pool_new`). Host names in it
    /// are resolved off the loop, and libpq gets their addresses to try in turn.
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
}

/// A connection pool (opaque) on one loop. Owned by the caller of `aloop_pg_pool_new` until
/// `aloop_pg_pool_free`.
pub struct aloop_pg_pool_t {
    pool: PgPool,
    prepared: RefCell<HashMap<String, Rc<Statement>>>,
}

/// A query's outcome (opaque), borrowed during the query callback only.
pub struct aloop_pg_result_t {
    outcome: std::result::Result<PgResult, PgError>,
    message: CString,
    sqlstate: CString,
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
            })
        };
        0
    })
}

/// Creates a pool on `lp` and starts connecting (never blocks). `opts` may be NULL for the
/// defaults. Queries may be sent at once: they wait while the first connections come up.
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
        }
        // SAFETY: live loop on its own thread.
        let pool = PgPool::new(&unsafe { &*lp }.lp, o);
        let p = Box::new(aloop_pg_pool_t {
            pool,
            prepared: RefCell::new(HashMap::new()),
        });
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(Box::into_raw(p)) };
        0
    })
}

/// Closes every connection and frees the pool. Queries still queued or in flight complete
/// with an error (their callbacks run from the loop, later). NULL is ignored.
#[no_mangle]
pub extern "C" fn aloop_pg_pool_free(pool: *mut aloop_pg_pool_t) {
    guard(|| {
        if !pool.is_null() {
            // SAFETY: created by aloop_pg_pool_new; not used after this.
            let p = unsafe { Box::from_raw(pool) };
            p.pool.close();
        }
    })
}

/// Registers the named statement `sql` (with `$n` parameters) for `aloop_pg_execute`. It is
/// prepared on each connection the first time it runs there, reconnected ones included.
/// Registering a name again replaces it for connections that have not prepared it yet.
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
        // SAFETY: live pool.
        let p = unsafe { &*pool };
        p.prepared
            .borrow_mut()
            .insert(name.clone(), Rc::new(Statement::Prepared { name, sql }));
        0
    })
}

fn c_params<'a>(n: usize, values: *const *const c_char) -> Result<Vec<Option<&'a [u8]>>> {
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

fn to_c_result(outcome: std::result::Result<PgResult, PgError>) -> aloop_pg_result_t {
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

fn c_callback(
    cb: unsafe extern "C" fn(c_int, *const aloop_pg_result_t, *mut c_void),
    ud: UserData,
) -> impl FnOnce(std::result::Result<PgResult, PgError>) {
    move |outcome| {
        let (status, message, sqlstate) = match &outcome {
            Ok(_) => (0, CString::default(), CString::default()),
            Err(e) => (
                e.code.code(),
                CString::new(e.message.replace('\0', " ")).unwrap_or_default(),
                CString::new(e.sqlstate.clone()).unwrap_or_default(),
            ),
        };
        let r = aloop_pg_result_t {
            outcome,
            message,
            sqlstate,
        };
        // SAFETY: the result is borrowed for the duration of the callback.
        unsafe { cb(status, &r, ud.ptr()) };
    }
}

/// Checks the arguments every query call shares, then runs `stmt`.
fn run_statement(
    p: &aloop_pg_pool_t,
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
    p.pool.execute(&stmt, &params, c_callback(cb, ud));
    0
}

/// Runs `sql` with `nparams` text parameters (`values[i]` NUL-terminated, or NULL for SQL
/// NULL; copied before the call returns). `cb(status, result, user_data)` runs once from the
/// loop; `dtor(user_data)` right after it. Parameters are the only way values should reach SQL.
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
        // SAFETY: live pool.
        run_statement(
            unsafe { &*pool },
            stmt,
            nparams,
            values,
            cb,
            user_data,
            dtor,
        )
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
        // SAFETY: C string per the contract; live pool.
        let (Ok(name), p) = (unsafe { c_str(name) }, unsafe { &*pool }) else {
            return Error::INVALID.code();
        };
        let Some(stmt) = p.prepared.borrow().get(name).cloned() else {
            return Error::NOT_FOUND.code();
        };
        run_statement(p, stmt, nparams, values, cb, user_data, dtor)
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
        // SAFETY: live pool; `n` statements borrowed during the call.
        let (p, list) = unsafe { (&*pool, std::slice::from_raw_parts(stmts, n)) };
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
        p.pool.batch(&borrowed, move |outcomes| {
            let results: Vec<aloop_pg_result_t> = outcomes.into_iter().map(to_c_result).collect();
            let status: Vec<c_int> = results
                .iter()
                .map(|r| r.outcome.as_ref().err().map_or(0, |e| e.code.code()))
                .collect();
            let ptrs: Vec<*const aloop_pg_result_t> = results
                .iter()
                .map(|r| r as *const aloop_pg_result_t)
                .collect();
            // SAFETY: the arrays and results live for the duration of the callback.
            unsafe { cb(results.len(), status.as_ptr(), ptrs.as_ptr(), ud.ptr()) };
        });
        0
    })
}

/// Connections up, queries in flight and queries waiting; any pointer may be NULL.
#[no_mangle]
pub extern "C" fn aloop_pg_pool_stats(
    pool: *const aloop_pg_pool_t,
    connected: *mut usize,
    busy: *mut usize,
    queued: *mut usize,
) -> c_int {
    guard(|| {
        not_null!(pool);
        // SAFETY: live pool; non-NULL out-parameters are writable.
        let s = unsafe { &*pool }.pool.stats();
        for (p, v) in [(connected, s.connected), (busy, s.busy), (queued, s.queued)] {
            if !p.is_null() {
                // SAFETY: as above.
                unsafe { p.write(v) };
            }
        }
        0
    })
}

fn ok_result(r: *const aloop_pg_result_t) -> Option<&'static PgResult> {
    // SAFETY: results are borrowed during their callback; the 'static never escapes the
    // accessor that uses it.
    read_handle(r, None, |r| {
        r.outcome
            .as_ref()
            .ok()
            .map(|x| unsafe { &*(x as *const PgResult) })
    })
}

/// Rows of a successful result (0 otherwise).
#[no_mangle]
pub extern "C" fn aloop_pg_result_rows(r: *const aloop_pg_result_t) -> usize {
    guard(|| ok_result(r).map_or(0, |x| x.rows()))
}

/// Columns of a successful result (0 otherwise).
#[no_mangle]
pub extern "C" fn aloop_pg_result_columns(r: *const aloop_pg_result_t) -> usize {
    guard(|| ok_result(r).map_or(0, |x| x.columns()))
}

/// Name of column `col`, or NULL.
#[no_mangle]
pub extern "C" fn aloop_pg_result_column_name(
    r: *const aloop_pg_result_t,
    col: usize,
) -> *const c_char {
    guard(|| {
        ok_result(r)
            .filter(|x| col < x.columns())
            .map_or(std::ptr::null(), |x| {
                x.column_name(col)
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
    guard(|| ok_result(r).map_or(std::ptr::null(), |x| x.c_value(row, col)))
}

/// Length in bytes of the value at (`row`, `col`) (0 for NULL or out of range).
#[no_mangle]
pub extern "C" fn aloop_pg_result_length(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
) -> usize {
    guard(|| {
        ok_result(r)
            .and_then(|x| x.value(row, col))
            .map_or(0, |v| v.len())
    })
}

/// 1 if the value at (`row`, `col`) is SQL NULL (or out of range), else 0.
#[no_mangle]
pub extern "C" fn aloop_pg_result_is_null(
    r: *const aloop_pg_result_t,
    row: usize,
    col: usize,
) -> c_int {
    guard(|| ok_result(r).and_then(|x| x.value(row, col)).is_none() as c_int)
}

/// Rows affected by an INSERT, UPDATE or DELETE.
#[no_mangle]
pub extern "C" fn aloop_pg_result_affected_rows(r: *const aloop_pg_result_t) -> u64 {
    guard(|| ok_result(r).map_or(0, |x| x.affected_rows()))
}

/// The error message ("" on success); valid during the callback.
#[no_mangle]
pub extern "C" fn aloop_pg_result_error_message(r: *const aloop_pg_result_t) -> *const c_char {
    guard(|| read_handle(r, c"".as_ptr(), |r| r.message.as_ptr()))
}

/// The server's SQLSTATE ("23505", ...), or "" when the server reported none.
#[no_mangle]
pub extern "C" fn aloop_pg_result_sqlstate(r: *const aloop_pg_result_t) -> *const c_char {
    guard(|| read_handle(r, c"".as_ptr(), |r| r.sqlstate.as_ptr()))
}
