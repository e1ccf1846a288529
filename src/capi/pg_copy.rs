//! `aloop_pg_copy_*`: `COPY ... TO STDOUT` and `COPY ... FROM STDIN`, streamed with
//! backpressure both ways.

use std::ffi::{c_char, c_int, c_void, CString};
use std::rc::Rc;

use super::handle::{self, Handle, Kind, LoopId};
use super::pg::{aloop_pg_pool_t, with_pool};
use super::pg_txn::aloop_pg_txn_t;
use super::{aloop_free_fn, c_str, guard, rc, UserData};
use crate::error::{Error, Result};
use crate::pg::{CopyIn, CopyOut, Flow, PgError, PgPool, Transaction};

/// Returned by a COPY data callback: stop reading until `aloop_pg_copy_resume`.
pub const ALOOP_PG_COPY_PAUSE: c_int = 1;
/// Returned by `aloop_pg_copy_write`: the data was taken, but the socket is full; write more
/// once the ready callback runs again.
pub const ALOOP_PG_COPY_FULL: c_int = 1;

/// A running COPY (opaque). Owned by the library: valid from the call that started it until
/// its done callback returns (then stale); never freed by the application.
pub struct aloop_pg_copy_t {
    out: Option<CopyOut>,
    inn: Option<CopyIn>,
}

impl Handle for aloop_pg_copy_t {
    type C = aloop_pg_copy_t;
    const KIND: Kind = Kind::PgCopy;
}

/// `COPY ... TO STDOUT` data, on the loop's thread: `len` bytes at `data` (one row for the
/// text and CSV formats), borrowed during the call. Return 0 for more, or
/// `ALOOP_PG_COPY_PAUSE` to stop reading until `aloop_pg_copy_resume` (the server then waits
/// on a full socket).
pub type aloop_pg_copy_data_cb = Option<
    unsafe extern "C" fn(
        copy: *mut aloop_pg_copy_t,
        data: *const c_void,
        len: usize,
        user_data: *mut c_void,
    ) -> c_int,
>;

/// `COPY ... FROM STDIN` may take data: write with `aloop_pg_copy_write` until it returns
/// `ALOOP_PG_COPY_FULL` (this callback runs again once the socket drained), and end with
/// `aloop_pg_copy_finish`.
pub type aloop_pg_copy_ready_cb =
    Option<unsafe extern "C" fn(copy: *mut aloop_pg_copy_t, user_data: *mut c_void)>;

/// Called once when the COPY ends: `status` 0 with the number of `rows` copied, or an error
/// code with the server's SQLSTATE (`""` if none) and a message (borrowed during the call). The
/// handle is stale after this returns; `dtor(user_data)` runs right after.
pub type aloop_pg_copy_done_cb = Option<
    unsafe extern "C" fn(
        copy: *mut aloop_pg_copy_t,
        status: c_int,
        rows: u64,
        sqlstate: *const c_char,
        message: *const c_char,
        user_data: *mut c_void,
    ),
>;

/// Where a COPY runs: a connection of its own from a pool, or a transaction's connection.
#[derive(Clone, Copy)]
enum Target {
    Pool(*mut aloop_pg_pool_t),
    Txn(*mut aloop_pg_txn_t),
}

/// Which way the data goes, with the callback that moves it.
#[derive(Clone, Copy)]
enum Direction {
    /// `COPY ... TO STDOUT`: the data callback.
    Out(aloop_pg_copy_data_cb),
    /// `COPY ... FROM STDIN`: the ready callback.
    In(aloop_pg_copy_ready_cb),
}

/// Where a checked COPY runs.
enum Runner<'a> {
    Pool(&'a PgPool),
    Txn(&'a Transaction),
}

type DoneFn = unsafe extern "C" fn(
    *mut aloop_pg_copy_t,
    c_int,
    u64,
    *const c_char,
    *const c_char,
    *mut c_void,
);

fn done_closure(
    raw: u64,
    done: DoneFn,
    ud: Rc<UserData>,
) -> impl FnOnce(std::result::Result<u64, PgError>) {
    move |r| {
        let (status, rows, state, msg) = match &r {
            Ok(n) => (0, *n, CString::default(), CString::default()),
            Err(e) => (
                e.code.code(),
                0,
                CString::new(e.sqlstate.clone()).unwrap_or_default(),
                CString::new(e.message.replace('\0', " ")).unwrap_or_default(),
            ),
        };
        let h = raw as *mut aloop_pg_copy_t;
        // SAFETY: the application's callback with its (still live) handle; the strings live
        // for the call.
        unsafe { done(h, status, rows, state.as_ptr(), msg.as_ptr(), ud.ptr()) };
        drop(handle::take::<aloop_pg_copy_t>(h));
    }
}

/// Starts a checked COPY; the handle it returns lives until the done callback returns.
fn start(
    runner: Runner<'_>,
    lp: LoopId,
    sql: &str,
    direction: Direction,
    done: DoneFn,
    ud: UserData,
) -> *mut aloop_pg_copy_t {
    let reserved = handle::reserve::<aloop_pg_copy_t>(lp);
    let raw = reserved.handle() as u64;
    let ud = Rc::new(ud);
    let on_done = done_closure(raw, done, ud.clone());
    let value = match direction {
        Direction::Out(data) => {
            let data = data.expect("checked by begin");
            let on_data = move |chunk: &[u8]| {
                // SAFETY: the application's callback; the chunk is borrowed during the call.
                let r = unsafe {
                    data(
                        raw as *mut aloop_pg_copy_t,
                        chunk.as_ptr().cast(),
                        chunk.len(),
                        ud.ptr(),
                    )
                };
                if r == ALOOP_PG_COPY_PAUSE {
                    Flow::Pause
                } else {
                    Flow::Continue
                }
            };
            let h = match runner {
                Runner::Pool(p) => p.copy_out(sql, on_data, on_done),
                Runner::Txn(t) => t.copy_out(sql, on_data, on_done),
            };
            aloop_pg_copy_t {
                out: Some(h),
                inn: None,
            }
        }
        Direction::In(ready) => {
            let ready = ready.expect("checked by begin");
            let on_ready = move |_: &CopyIn| {
                // SAFETY: the application's callback with its handle.
                unsafe { ready(raw as *mut aloop_pg_copy_t, ud.ptr()) };
            };
            let h = match runner {
                Runner::Pool(p) => p.copy_in(sql, on_ready, on_done),
                Runner::Txn(t) => t.copy_in(sql, on_ready, on_done),
            };
            aloop_pg_copy_t {
                out: None,
                inn: Some(h),
            }
        }
    };
    reserved.fill(Box::new(value))
}

/// The four starting calls: checks the arguments, starts the COPY on its target and writes its
/// handle to `out`. The user data's destructor is armed only when the COPY started.
fn begin(
    target: Target,
    sql: *const c_char,
    direction: Direction,
    done: aloop_pg_copy_done_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_pg_copy_t,
) -> c_int {
    let target_null = match target {
        Target::Pool(p) => p.is_null(),
        Target::Txn(t) => t.is_null(),
    };
    let cb_null = match direction {
        Direction::Out(cb) => cb.is_none(),
        Direction::In(cb) => cb.is_none(),
    };
    if target_null || cb_null || sql.is_null() {
        return Error::NULL_ARG.code();
    }
    let Some(done) = done else {
        return Error::NULL_ARG.code();
    };
    // SAFETY: C string per the contract.
    let Ok(sql) = (unsafe { c_str(sql) }) else {
        return Error::INVALID.code();
    };
    // Armed once the target is known to be live (nothing fails after that): a call that fails
    // leaves the user data to the caller.
    let (ud, armer) = UserData::new(user_data, dtor);
    let started = match target {
        Target::Pool(pool) => with_pool(pool, |p| {
            armer.arm();
            start(Runner::Pool(&p.pool), p.lp, sql, direction, done, ud)
        }),
        Target::Txn(txn) => super::pg_txn::with_txn(txn, |t, lp| {
            armer.arm();
            start(Runner::Txn(t), lp, sql, direction, done, ud)
        }),
    };
    match started {
        Ok(h) => {
            write_out(out, h);
            0
        }
        Err(e) => e.code(),
    }
}

fn write_out(out: *mut *mut aloop_pg_copy_t, h: *mut aloop_pg_copy_t) {
    if !out.is_null() {
        // SAFETY: a non-NULL out pointer is writable.
        unsafe { out.write(h) };
    }
}

/// Runs `sql`, a `COPY ... TO STDOUT` (a table, or `(SELECT ...)`), on a connection of its own
/// once one is free: `data_cb` gets the data as it arrives, `done_cb` runs once at the end.
/// Waiting for the connection counts against the pool's queue and `query_timeout_ms`; the COPY
/// itself has no time limit (`aloop_pg_copy_cancel` stops it). `*out` (may be NULL) receives
/// the COPY's handle, valid until `done_cb` returns. `dtor(user_data)` runs after `done_cb`.
/// A statement that is no COPY ends with `ALOOP_E_INVALID`. Errors (no callback runs):
/// `ALOOP_E_NULL`, `ALOOP_E_INVALID`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_copy_out(
    pool: *mut aloop_pg_pool_t,
    sql: *const c_char,
    data_cb: aloop_pg_copy_data_cb,
    done_cb: aloop_pg_copy_done_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_pg_copy_t,
) -> c_int {
    guard(|| {
        begin(
            Target::Pool(pool),
            sql,
            Direction::Out(data_cb),
            done_cb,
            user_data,
            dtor,
            out,
        )
    })
}

/// Runs `sql`, a `COPY ... FROM STDIN`, on a connection of its own: `ready_cb` runs when data
/// may be written (and again after each `ALOOP_PG_COPY_FULL`), `done_cb` once at the end with
/// the rows stored. Otherwise as `aloop_pg_copy_out`.
#[no_mangle]
pub extern "C" fn aloop_pg_copy_in(
    pool: *mut aloop_pg_pool_t,
    sql: *const c_char,
    ready_cb: aloop_pg_copy_ready_cb,
    done_cb: aloop_pg_copy_done_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_pg_copy_t,
) -> c_int {
    guard(|| {
        begin(
            Target::Pool(pool),
            sql,
            Direction::In(ready_cb),
            done_cb,
            user_data,
            dtor,
            out,
        )
    })
}

/// `aloop_pg_copy_out` inside a transaction: it starts once the statements before it are done;
/// statements after it wait for it.
#[no_mangle]
pub extern "C" fn aloop_pg_txn_copy_out(
    txn: *mut aloop_pg_txn_t,
    sql: *const c_char,
    data_cb: aloop_pg_copy_data_cb,
    done_cb: aloop_pg_copy_done_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_pg_copy_t,
) -> c_int {
    guard(|| {
        begin(
            Target::Txn(txn),
            sql,
            Direction::Out(data_cb),
            done_cb,
            user_data,
            dtor,
            out,
        )
    })
}

/// `aloop_pg_copy_in` inside a transaction (see `aloop_pg_txn_copy_out`).
#[no_mangle]
pub extern "C" fn aloop_pg_txn_copy_in(
    txn: *mut aloop_pg_txn_t,
    sql: *const c_char,
    ready_cb: aloop_pg_copy_ready_cb,
    done_cb: aloop_pg_copy_done_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_pg_copy_t,
) -> c_int {
    guard(|| {
        begin(
            Target::Txn(txn),
            sql,
            Direction::In(ready_cb),
            done_cb,
            user_data,
            dtor,
            out,
        )
    })
}

/// Sends `len` bytes (copied) of a `COPY ... FROM STDIN`: 0 (write more now),
/// `ALOOP_PG_COPY_FULL` (taken; wait for the ready callback), or an error: `ALOOP_E_INVALID`
/// (not a COPY IN, not started yet, or already finished), `ALOOP_E_PG_CONNECTION`,
/// `ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_copy_write(
    copy: *mut aloop_pg_copy_t,
    data: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        if data.is_null() && len > 0 {
            return Error::NULL_ARG.code();
        }
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: len readable bytes during the call.
            unsafe { std::slice::from_raw_parts(data.cast(), len) }
        };
        let r = handle::with(copy, |c: &aloop_pg_copy_t| match &c.inn {
            Some(i) => i.write(bytes),
            None => Err(Error::INVALID),
        });
        match r.and_then(|x| x) {
            Ok(true) => 0,
            Ok(false) => ALOOP_PG_COPY_FULL,
            Err(e) => e.code(),
        }
    })
}

fn act(copy: *mut aloop_pg_copy_t, f: impl FnOnce(&aloop_pg_copy_t) -> Result<()>) -> c_int {
    rc(handle::with(copy, f).and_then(|x| x))
}

/// Ends the data of a `COPY ... FROM STDIN`; the done callback follows once the server has
/// stored it. Errors: `ALOOP_E_INVALID` (not a COPY IN), `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_copy_finish(copy: *mut aloop_pg_copy_t) -> c_int {
    guard(|| {
        act(copy, |c| {
            c.inn.as_ref().ok_or(Error::INVALID)?.finish();
            Ok(())
        })
    })
}

/// Reads on after the data callback returned `ALOOP_PG_COPY_PAUSE` (a no-op otherwise).
/// Errors: `ALOOP_E_INVALID` (not a COPY OUT), `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_copy_resume(copy: *mut aloop_pg_copy_t) -> c_int {
    guard(|| {
        act(copy, |c| {
            c.out.as_ref().ok_or(Error::INVALID)?.resume();
            Ok(())
        })
    })
}

/// Stops the COPY: a COPY OUT is cancelled on the server (data still arriving is dropped), a
/// COPY IN is aborted (nothing of it is stored). The done callback follows, from the loop,
/// with `ALOOP_E_CANCELLED`. Errors: `ALOOP_E_NULL`, `ALOOP_E_STALE` (it has ended),
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_copy_cancel(copy: *mut aloop_pg_copy_t) -> c_int {
    guard(|| {
        act(copy, |c| {
            if let Some(o) = &c.out {
                o.cancel();
            }
            if let Some(i) = &c.inn {
                i.abort();
            }
            Ok(())
        })
    })
}
