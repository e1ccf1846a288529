//! `aloop_pg_txn_*`: interactive transactions on a connection leased from the pool.

use std::ffi::{c_char, c_int, c_void, CString};
use std::rc::Rc;
use std::time::Duration;

use super::handle::{self, Handle, Kind, LoopId};
use super::pg::{aloop_pg_cb, aloop_pg_pool_t, c_callback, c_params, with_pool};
use super::pg_query_opts::ALOOP_PG_BINARY;
use super::{aloop_free_fn, c_str, guard, not_null, rc, UserData};
use crate::error::{Error, Result};
use crate::pg::{Isolation, PgError, QueryOptions, Statement, Transaction, TxnOptions};

/// The server's default isolation level (normally read committed).
pub const ALOOP_PG_ISOLATION_DEFAULT: c_int = 0;
/// `ISOLATION LEVEL READ COMMITTED`.
pub const ALOOP_PG_ISOLATION_READ_COMMITTED: c_int = 1;
/// `ISOLATION LEVEL REPEATABLE READ`.
pub const ALOOP_PG_ISOLATION_REPEATABLE_READ: c_int = 2;
/// `ISOLATION LEVEL SERIALIZABLE` (never on a replica); retry on SQLSTATE 40001.
pub const ALOOP_PG_ISOLATION_SERIALIZABLE: c_int = 3;

/// Options for `aloop_pg_txn_begin`; fill with `aloop_pg_txn_options_init` first.
#[repr(C)]
pub struct aloop_pg_txn_options_t {
    /// `ALOOP_PG_ISOLATION_*` (default `ALOOP_PG_ISOLATION_DEFAULT`).
    pub isolation: c_int,
    /// Non-zero: `READ ONLY`. Such a transaction may run on a read replica (unless
    /// serializable, which a standby cannot run). Default 0.
    pub read_only: c_int,
    /// Time the whole transaction may take, from `aloop_pg_txn_begin` (waiting for a
    /// connection included) to its end, in ms; past it the statement running is cancelled, the
    /// transaction rolls back and what follows fails with `ALOOP_E_TIMEOUT`. 0 (the default):
    /// the pool's `query_timeout_ms`.
    pub timeout_ms: u64,
}

/// An interactive transaction (opaque). Owned by the caller of `aloop_pg_txn_begin` until
/// `aloop_pg_txn_commit`, `aloop_pg_txn_rollback` or `aloop_pg_txn_free` consumes it; bound to
/// its pool's loop thread.
pub struct aloop_pg_txn_t {
    txn: Transaction,
    /// The pool's handle, for its prepared statements.
    pool: u64,
    lp: LoopId,
}

impl Handle for aloop_pg_txn_t {
    type C = aloop_pg_txn_t;
    const KIND: Kind = Kind::PgTxn;
}

/// Called once when a transaction, a COPY or a LISTEN ends, on the loop's thread: `status` 0,
/// or an error code with the server's SQLSTATE (`""` when it reported none) and a message,
/// both borrowed during the call.
pub type aloop_pg_end_cb = Option<
    unsafe extern "C" fn(
        status: c_int,
        sqlstate: *const c_char,
        message: *const c_char,
        user_data: *mut c_void,
    ),
>;

/// The end callback as a core callback: runs `cb` once, then drops the user data.
pub(super) fn end_callback(
    cb: aloop_pg_end_cb,
    ud: UserData,
) -> impl FnOnce(std::result::Result<(), PgError>) {
    move |r| {
        let Some(cb) = cb else { return drop(ud) };
        let (status, state, msg) = match &r {
            Ok(()) => (0, CString::default(), CString::default()),
            Err(e) => (
                e.code.code(),
                CString::new(e.sqlstate.clone()).unwrap_or_default(),
                CString::new(e.message.replace('\0', " ")).unwrap_or_default(),
            ),
        };
        // SAFETY: the application's callback; the strings live for the call.
        unsafe { cb(status, state.as_ptr(), msg.as_ptr(), ud.ptr()) };
    }
}

/// Fills `opts` with the defaults.
#[no_mangle]
pub extern "C" fn aloop_pg_txn_options_init(opts: *mut aloop_pg_txn_options_t) -> c_int {
    guard(|| {
        not_null!(opts);
        // SAFETY: non-NULL caller-owned memory.
        unsafe {
            opts.write(aloop_pg_txn_options_t {
                isolation: ALOOP_PG_ISOLATION_DEFAULT,
                read_only: 0,
                timeout_ms: 0,
            })
        };
        0
    })
}

fn txn_options(opts: *const aloop_pg_txn_options_t) -> Result<TxnOptions> {
    if opts.is_null() {
        return Ok(TxnOptions::default());
    }
    // SAFETY: non-NULL options, read during the call.
    let o = unsafe { &*opts };
    let isolation = match o.isolation {
        ALOOP_PG_ISOLATION_DEFAULT => Isolation::Default,
        ALOOP_PG_ISOLATION_READ_COMMITTED => Isolation::ReadCommitted,
        ALOOP_PG_ISOLATION_REPEATABLE_READ => Isolation::RepeatableRead,
        ALOOP_PG_ISOLATION_SERIALIZABLE => Isolation::Serializable,
        _ => return Err(Error::INVALID),
    };
    Ok(TxnOptions {
        isolation,
        read_only: o.read_only != 0,
        timeout: (o.timeout_ms > 0).then(|| Duration::from_millis(o.timeout_ms)),
    })
}

/// Starts a transaction on `pool` (`opts` NULL: the defaults) and returns at once: on success
/// `*out` owns it, and statements may be queued right away; they are sent once a connection is
/// leased (`BEGIN` leaves with the first). Waiting for the connection counts against the
/// pool's queue and the time limit: if none can be had, every statement fails with the reason
/// (`ALOOP_E_PG_UNAVAILABLE`, `ALOOP_E_PG_QUEUE_FULL`, `ALOOP_E_TIMEOUT`). On failure `*out`
/// is not written. Errors: `ALOOP_E_NULL`, `ALOOP_E_INVALID` (an unknown isolation),
/// `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_txn_begin(
    pool: *mut aloop_pg_pool_t,
    opts: *const aloop_pg_txn_options_t,
    out: *mut *mut aloop_pg_txn_t,
) -> c_int {
    guard(|| {
        not_null!(pool, out);
        let o = match txn_options(opts) {
            Ok(o) => o,
            Err(e) => return e.code(),
        };
        match with_pool(pool, |p| (p.pool.begin(o), p.lp)) {
            Ok((txn, lp)) => {
                let h = handle::register(
                    lp,
                    Box::new(aloop_pg_txn_t {
                        txn,
                        pool: pool as u64,
                        lp,
                    }),
                );
                // SAFETY: out is non-NULL and writable.
                unsafe { out.write(h) };
                0
            }
            Err(e) => e.code(),
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn txn_statement(
    txn: *mut aloop_pg_txn_t,
    stmt: impl FnOnce(&aloop_pg_txn_t) -> Result<Rc<Statement>>,
    nparams: usize,
    values: *const *const c_char,
    flags: u32,
    cb: aloop_pg_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    let Some(cb) = cb else {
        return Error::NULL_ARG.code();
    };
    if flags & !ALOOP_PG_BINARY != 0 {
        return Error::INVALID.code();
    }
    let params = match c_params(nparams, values) {
        Ok(v) => v,
        Err(e) => return e.code(),
    };
    let r = handle::with(txn, |t: &aloop_pg_txn_t| -> Result<()> {
        let stmt = stmt(t)?;
        let (ud, armer) = UserData::new(user_data, dtor);
        armer.arm();
        let opts = QueryOptions {
            read_only: false,
            binary: flags & ALOOP_PG_BINARY != 0,
        };
        let cb = c_callback(cb, ud, t.lp);
        match &*stmt {
            Statement::Sql(sql) => t.txn.query_with(sql, &params, opts, cb),
            Statement::Prepared { .. } => t.txn.execute(&stmt, &params, cb),
        }
        Ok(())
    });
    rc(r.and_then(|x| x))
}

/// Runs `sql` with `nparams` text parameters (copied before the call returns) in the
/// transaction; `flags` 0 or `ALOOP_PG_BINARY`. `cb(status, result, user_data)` runs once from
/// the loop, `dtor(user_data)` right after it. After `BEGIN` is confirmed, statements are
/// pipelined. A statement that fails leaves the transaction aborted (later ones fail with
/// SQLSTATE 25P02, and commit with `ALOOP_E_PG_ABORTED`) unless the application rolls back to
/// a savepoint. Errors (`cb` and `dtor` then never run): `ALOOP_E_NULL`, `ALOOP_E_INVALID`,
/// `ALOOP_E_STALE` (a transaction already committed, rolled back or freed),
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_txn_query(
    txn: *mut aloop_pg_txn_t,
    sql: *const c_char,
    nparams: usize,
    values: *const *const c_char,
    flags: u32,
    cb: aloop_pg_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(txn, sql);
        // SAFETY: C string per the contract.
        let Ok(sql) = (unsafe { c_str(sql) }) else {
            return Error::INVALID.code();
        };
        let stmt = Rc::new(Statement::Sql(sql.to_string()));
        txn_statement(
            txn,
            move |_| Ok(stmt),
            nparams,
            values,
            flags,
            cb,
            user_data,
            dtor,
        )
    })
}

/// Runs the statement registered on the pool as `name` (`aloop_pg_prepare`) in the
/// transaction; otherwise as `aloop_pg_txn_query` (`flags` must be 0). `ALOOP_E_NOT_FOUND` for
/// an unknown name, `ALOOP_E_STALE` also once the pool was freed.
#[no_mangle]
pub extern "C" fn aloop_pg_txn_execute(
    txn: *mut aloop_pg_txn_t,
    name: *const c_char,
    nparams: usize,
    values: *const *const c_char,
    flags: u32,
    cb: aloop_pg_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(txn, name);
        if flags != 0 {
            return Error::INVALID.code();
        }
        // SAFETY: C string per the contract.
        let Ok(name) = (unsafe { c_str(name) }) else {
            return Error::INVALID.code();
        };
        let lookup = |t: &aloop_pg_txn_t| -> Result<Rc<Statement>> {
            with_pool(t.pool as *const aloop_pg_pool_t, |p| {
                p.prepared.borrow().get(name).cloned()
            })?
            .ok_or(Error::NOT_FOUND)
        };
        txn_statement(txn, lookup, nparams, values, flags, cb, user_data, dtor)
    })
}

fn end(
    txn: *mut aloop_pg_txn_t,
    commit: bool,
    cb: aloop_pg_end_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    match handle::take::<aloop_pg_txn_t>(txn) {
        Ok(t) => {
            let (ud, armer) = UserData::new(user_data, dtor);
            armer.arm();
            let done = end_callback(cb, ud);
            if commit {
                t.txn.commit(done);
            } else {
                t.txn.rollback(done);
            }
            0
        }
        Err(e) => e.code(),
    }
}

/// Commits and consumes `txn` (its handle is stale from now on). `cb` (may be NULL) runs once
/// from the loop: status 0 once the commit is done; `ALOOP_E_PG_ABORTED` when PostgreSQL
/// rolled back instead (a statement had failed); `ALOOP_E_PG_QUERY` with SQLSTATE 40001 for a
/// serialization failure; `ALOOP_E_TIMEOUT` past the time limit; `ALOOP_E_PG_CONNECTION` when
/// the connection broke. The connection goes back to the pool once `COMMIT` is sent. Errors
/// (`cb` and `dtor` then never run, `txn` stays valid): `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_txn_commit(
    txn: *mut aloop_pg_txn_t,
    cb: aloop_pg_end_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| end(txn, true, cb, user_data, dtor))
}

/// Rolls back and consumes `txn`; `cb` (may be NULL) gets 0 (also when the transaction had
/// already failed). Errors as for `aloop_pg_txn_commit`.
#[no_mangle]
pub extern "C" fn aloop_pg_txn_rollback(
    txn: *mut aloop_pg_txn_t,
    cb: aloop_pg_end_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| end(txn, false, cb, user_data, dtor))
}

/// Frees `txn`; allowed inside its statements' callbacks. A transaction not committed or
/// rolled back is rolled back: statements already sent complete normally (their effects are
/// undone), statements not sent yet complete with `ALOOP_E_CANCELLED` (from the loop), and the
/// connection goes back to the pool once `ROLLBACK` is sent. What an application does when its
/// client disconnects or an error it cannot handle occurs. Returns 0, `ALOOP_E_STALE` or
/// `ALOOP_E_WRONG_THREAD`; NULL is ignored (0).
#[no_mangle]
pub extern "C" fn aloop_pg_txn_free(txn: *mut aloop_pg_txn_t) -> c_int {
    guard(|| {
        if txn.is_null() {
            return 0;
        }
        rc(handle::take::<aloop_pg_txn_t>(txn).map(drop))
    })
}

/// Runs `f` on the transaction behind a handle, with its loop.
pub(super) fn with_txn<R>(
    txn: *mut aloop_pg_txn_t,
    f: impl FnOnce(&Transaction, LoopId) -> R,
) -> Result<R> {
    handle::with(txn, |t: &aloop_pg_txn_t| f(&t.txn, t.lp))
}
