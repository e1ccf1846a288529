//! `aloop_pg_listener_*`, `aloop_pg_listen`: LISTEN/NOTIFY on a connection of its own that
//! listens again after every reconnect.

use std::ffi::{c_char, c_int, c_void, CString};

use super::event_loop::{aloop_loop_t, loop_of};
use super::handle::{self, Handle, Kind};
use super::pg_txn::{aloop_pg_end_cb, end_callback};
use super::{aloop_free_fn, c_str, guard, not_null, rc, UserData};
use crate::error::Error;
use crate::pg::{ListenerOptions, PgListener};

/// A listening connection (opaque). Owned by the caller of `aloop_pg_listener_new` until
/// `aloop_pg_listener_free`; bound to its loop's thread.
pub struct aloop_pg_listener_t {
    listener: PgListener,
}

impl Handle for aloop_pg_listener_t {
    type C = aloop_pg_listener_t;
    const KIND: Kind = Kind::PgListener;
}

/// A notification, on the loop's thread: its channel and payload (NUL-terminated, borrowed
/// during the call) and the process id of the sending session's backend.
pub type aloop_pg_notify_cb = Option<
    unsafe extern "C" fn(
        listener: *mut aloop_pg_listener_t,
        channel: *const c_char,
        payload: *const c_char,
        pid: c_int,
        user_data: *mut c_void,
    ),
>;

/// The listening connection is back after a break and listens again on every channel.
/// Notifications sent while it was down are lost (PostgreSQL keeps them only for sessions
/// listening at the time): re-read what the application watches.
pub type aloop_pg_reconnect_cb =
    Option<unsafe extern "C" fn(listener: *mut aloop_pg_listener_t, user_data: *mut c_void)>;

/// Creates a listener on `lp` connecting to `conninfo` (a session on the primary: directly, or
/// through PgBouncer in session mode; transaction pooling cannot carry LISTEN). It connects in
/// the background and reconnects with backoff (100 ms to 5 s) whenever the connection breaks,
/// then issues LISTEN again for every channel. `cb(listener, channel, payload, pid, user_data)`
/// gets every notification; `dtor(user_data)` runs once when the listener is freed. On success
/// `*out` owns the listener; on failure `*out` is not written and no callback runs. Errors:
/// `ALOOP_E_NULL`, `ALOOP_E_INVALID` (a conninfo libpq cannot parse: the reason is in
/// `aloop_last_error_message()`), `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_listener_new(
    lp: *mut aloop_loop_t,
    conninfo: *const c_char,
    cb: aloop_pg_notify_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_pg_listener_t,
) -> c_int {
    guard(|| {
        not_null!(lp, conninfo, out);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        // SAFETY: C string per the contract.
        let conninfo = match unsafe { c_str(conninfo) } {
            Ok(s) => s.to_string(),
            Err(e) => return e.code(),
        };
        if let Err(why) = crate::pg::check_conninfo(&conninfo) {
            super::set_last_error(&why);
            return Error::INVALID.code();
        }
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let reserved = handle::reserve::<aloop_pg_listener_t>(id);
        let raw = reserved.handle() as u64;
        let (ud, armer) = UserData::new(user_data, dtor);
        armer.arm();
        let listener = PgListener::new(
            &core,
            ListenerOptions {
                conninfo,
                ..Default::default()
            },
            move |n| {
                let ch = CString::new(n.channel.as_str()).unwrap_or_default();
                let pl = CString::new(n.payload.as_str()).unwrap_or_default();
                // SAFETY: the application's callback with its handle; the strings live for
                // the call.
                unsafe {
                    cb(
                        raw as *mut aloop_pg_listener_t,
                        ch.as_ptr(),
                        pl.as_ptr(),
                        n.pid,
                        ud.ptr(),
                    )
                };
            },
        );
        let h = reserved.fill(Box::new(aloop_pg_listener_t { listener }));
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(h) };
        0
    })
}

/// Registers `cb(listener, user_data)` to run each time the connection came back after a break
/// and listens again (replacing an earlier one; its destructor runs). `dtor(user_data)` runs
/// when the registration ends (replaced, or the listener freed). Errors (`dtor` then never
/// runs): `ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_listener_on_reconnect(
    listener: *mut aloop_pg_listener_t,
    cb: aloop_pg_reconnect_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        let raw = listener as u64;
        let (ud, armer) = UserData::new(user_data, dtor);
        let r = handle::with(listener, |l: &aloop_pg_listener_t| {
            l.listener.on_reconnect(move || {
                // SAFETY: the application's callback with its handle.
                unsafe { cb(raw as *mut aloop_pg_listener_t, ud.ptr()) };
            });
        });
        if r.is_ok() {
            armer.arm();
        }
        rc(r)
    })
}

fn listen_call(
    listener: *mut aloop_pg_listener_t,
    channel: *const c_char,
    listen: bool,
    cb: aloop_pg_end_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    not_null!(listener, channel);
    // SAFETY: C string per the contract.
    let Ok(ch) = (unsafe { c_str(channel) }) else {
        return Error::INVALID.code();
    };
    if ch.is_empty() {
        return Error::INVALID.code();
    }
    let (ud, armer) = UserData::new(user_data, dtor);
    let r = handle::with(listener, |l: &aloop_pg_listener_t| {
        armer.arm();
        let done = end_callback(cb, ud);
        if listen {
            l.listener.listen(ch, done);
        } else {
            l.listener.unlisten(ch, done);
        }
    });
    rc(r)
}

/// Listens on `channel` from now on, across reconnects (the name is quoted: any text works,
/// case kept). `cb` (may be NULL) runs once from the loop: 0 when the server confirmed;
/// `ALOOP_E_PG_UNAVAILABLE` when the connection is down (the channel stays registered and is
/// listened to once it is back); `ALOOP_E_CANCELLED` when the listener is freed first.
/// `dtor(user_data)` runs after it. Errors (`cb` and `dtor` then never run): `ALOOP_E_NULL`,
/// `ALOOP_E_INVALID` (an empty name), `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_pg_listen(
    listener: *mut aloop_pg_listener_t,
    channel: *const c_char,
    cb: aloop_pg_end_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| listen_call(listener, channel, true, cb, user_data, dtor))
}

/// Stops listening on `channel`; as `aloop_pg_listen` (0 also when it was not listened to).
#[no_mangle]
pub extern "C" fn aloop_pg_unlisten(
    listener: *mut aloop_pg_listener_t,
    channel: *const c_char,
    cb: aloop_pg_end_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| listen_call(listener, channel, false, cb, user_data, dtor))
}

/// 1 while the listening connection is up, 0 while it is not, or a negative error
/// (`ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`).
#[no_mangle]
pub extern "C" fn aloop_pg_listener_connected(listener: *const aloop_pg_listener_t) -> c_int {
    guard(|| {
        match handle::with(listener, |l: &aloop_pg_listener_t| {
            l.listener.is_connected()
        }) {
            Ok(up) => up as c_int,
            Err(e) => e.code(),
        }
    })
}

/// Closes the connection and frees the listener; allowed inside its own callbacks. No
/// notification is delivered after this returns; `aloop_pg_listen`/`_unlisten` calls not
/// answered yet complete with `ALOOP_E_CANCELLED` (from the loop); the destructors of the
/// notification and reconnect registrations run (at once, or when the callback running
/// returns). Returns 0, `ALOOP_E_STALE` or `ALOOP_E_WRONG_THREAD`; NULL is ignored (0).
#[no_mangle]
pub extern "C" fn aloop_pg_listener_free(listener: *mut aloop_pg_listener_t) -> c_int {
    guard(|| {
        if listener.is_null() {
            return 0;
        }
        match handle::take::<aloop_pg_listener_t>(listener) {
            Ok(l) => {
                l.listener.close();
                0
            }
            Err(e) => e.code(),
        }
    })
}
