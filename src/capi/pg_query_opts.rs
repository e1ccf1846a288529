//! `aloop_pg_*_ex`: queries with flags (read-only work for the replicas, binary results), and
//! the pool's extended counters.

use std::ffi::{c_char, c_int, c_void};
use std::rc::Rc;

use super::handle;
use super::pg::{
    aloop_pg_batch_cb, aloop_pg_cb, aloop_pg_pool_t, aloop_pg_statement_t, run_batch,
    run_statement, with_pool,
};
use super::{aloop_free_fn, c_str, guard, not_null};
use crate::error::{Error, Result};
use crate::pg::{QueryOptions, Statement};

/// Query flag: the query only reads. It may run on a read replica (round robin), or on the
/// primary when no replica is up.
pub const ALOOP_PG_READ_ONLY: u32 = 1;
/// Query flag: results in binary format (each type's send form); read them with the typed
/// getters (`aloop_pg_result_get_int64`, ...): `aloop_pg_result_value` then gives raw bytes.
pub const ALOOP_PG_BINARY: u32 = 2;

/// The replica conninfos of the pool options, copied.
pub(super) fn replica_conninfos(list: *const *const c_char, n: usize) -> Result<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if list.is_null() {
        return Err(Error::NULL_ARG);
    }
    // SAFETY: `n` C strings, borrowed during the call (the options' contract).
    let items = unsafe { std::slice::from_raw_parts(list, n) };
    let mut out = Vec::with_capacity(n);
    for &p in items {
        if p.is_null() {
            return Err(Error::NULL_ARG);
        }
        // SAFETY: a C string per the contract.
        let s = unsafe { c_str(p) }?;
        if let Err(why) = crate::pg::check_conninfo(s) {
            super::set_last_error(&why);
            return Err(Error::INVALID);
        }
        out.push(s.to_string());
    }
    Ok(out)
}

fn options(flags: u32) -> Result<QueryOptions> {
    if flags & !(ALOOP_PG_READ_ONLY | ALOOP_PG_BINARY) != 0 {
        return Err(Error::INVALID);
    }
    Ok(QueryOptions {
        read_only: flags & ALOOP_PG_READ_ONLY != 0,
        binary: flags & ALOOP_PG_BINARY != 0,
    })
}

/// `aloop_pg_query` with `flags` (`ALOOP_PG_READ_ONLY`, `ALOOP_PG_BINARY`, or 0). Errors as
/// for `aloop_pg_query`, and `ALOOP_E_INVALID` for an unknown flag.
#[no_mangle]
pub extern "C" fn aloop_pg_query_ex(
    pool: *mut aloop_pg_pool_t,
    sql: *const c_char,
    nparams: usize,
    values: *const *const c_char,
    flags: u32,
    cb: aloop_pg_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(pool, sql);
        let opts = match options(flags) {
            Ok(o) => o,
            Err(e) => return e.code(),
        };
        // SAFETY: C string per the contract.
        let Ok(sql) = (unsafe { c_str(sql) }) else {
            return Error::INVALID.code();
        };
        let stmt = Rc::new(Statement::Sql(sql.to_string()));
        with_pool(pool, |p| {
            run_statement(p, opts, stmt, nparams, values, cb, user_data, dtor)
        })
        .unwrap_or_else(|e| e.code())
    })
}

/// `aloop_pg_execute` with `flags` (see `aloop_pg_query_ex`).
#[no_mangle]
pub extern "C" fn aloop_pg_execute_ex(
    pool: *mut aloop_pg_pool_t,
    name: *const c_char,
    nparams: usize,
    values: *const *const c_char,
    flags: u32,
    cb: aloop_pg_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(pool, name);
        let opts = match options(flags) {
            Ok(o) => o,
            Err(e) => return e.code(),
        };
        // SAFETY: C string per the contract.
        let Ok(name) = (unsafe { c_str(name) }) else {
            return Error::INVALID.code();
        };
        with_pool(pool, |p| {
            let Some(stmt) = p.prepared.borrow().get(name).cloned() else {
                return Error::NOT_FOUND.code();
            };
            run_statement(p, opts, stmt, nparams, values, cb, user_data, dtor)
        })
        .unwrap_or_else(|e| e.code())
    })
}

/// `aloop_pg_batch` with `flags` (see `aloop_pg_query_ex`): a read-only batch may run on a
/// replica.
#[no_mangle]
pub extern "C" fn aloop_pg_batch_ex(
    pool: *mut aloop_pg_pool_t,
    stmts: *const aloop_pg_statement_t,
    n: usize,
    flags: u32,
    cb: aloop_pg_batch_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(pool, stmts);
        let opts = match options(flags) {
            Ok(o) => o,
            Err(e) => return e.code(),
        };
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        if n == 0 {
            return Error::INVALID.code();
        }
        // SAFETY: `n` statements borrowed during the call.
        let list = unsafe { std::slice::from_raw_parts(stmts, n) };
        with_pool(pool, |p| run_batch(p, opts, list, cb, user_data, dtor))
            .unwrap_or_else(|e| e.code())
    })
}

/// A pool's counters (`aloop_pg_pool_stats_ex`).
#[repr(C)]
pub struct aloop_pg_pool_stats_t {
    /// Connections to the primary that are up.
    pub connected: usize,
    /// Queries sent and not yet answered.
    pub busy: usize,
    /// Queries, transactions and COPYs waiting for a connection.
    pub queued: usize,
    /// Connections to replicas that are up.
    pub replicas_connected: usize,
    /// Connections lent to a transaction or a COPY.
    pub leased: usize,
}

/// Fills `*out` with the pool's counters (not written on an error: `ALOOP_E_NULL`,
/// `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`).
#[no_mangle]
pub extern "C" fn aloop_pg_pool_stats_ex(
    pool: *const aloop_pg_pool_t,
    out: *mut aloop_pg_pool_stats_t,
) -> c_int {
    guard(|| {
        not_null!(out);
        match handle::with(pool, |p: &aloop_pg_pool_t| p.pool.stats()) {
            Ok(s) => {
                // SAFETY: out is non-NULL and writable.
                unsafe {
                    out.write(aloop_pg_pool_stats_t {
                        connected: s.connected,
                        busy: s.busy,
                        queued: s.queued,
                        replicas_connected: s.replicas_connected,
                        leased: s.leased,
                    })
                };
                0
            }
            Err(e) => e.code(),
        }
    })
}
