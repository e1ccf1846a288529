//! `aloop_poll_*`: readiness of a file descriptor the application owns (libpq's socket, a pipe).

use std::ffi::{c_int, c_void};

use super::event_loop::{aloop_loop_t, loop_of};
use super::handle::{self, Handle, Kind};
use super::{aloop_free_fn, guard, not_null, rc, UserData};
use crate::error::Error;
use crate::reactor::{FdWatch, Readiness};

/// The fd is readable (or has an error or hang-up to report).
pub const ALOOP_READABLE: c_int = 1;
/// The fd is writable.
pub const ALOOP_WRITABLE: c_int = 2;

/// A readiness watch (opaque). Owned by the caller of `aloop_poll_new` until `aloop_poll_free`.
/// It never closes the fd.
pub struct aloop_poll_t {
    watch: FdWatch,
    /// Counts the watch as an open handle of the loop until it is freed.
    lp: crate::reactor::Loop,
}

impl Drop for aloop_poll_t {
    fn drop(&mut self) {
        self.lp.handle_closed();
    }
}

impl Handle for aloop_poll_t {
    type C = aloop_poll_t;
    const KIND: Kind = Kind::Poll;
}

/// Called on the loop's thread with `ALOOP_READABLE` or `ALOOP_WRITABLE`. Readiness is level
/// triggered: while wanted and still ready, it is reported again on later turns.
pub type aloop_poll_cb =
    Option<unsafe extern "C" fn(poll: *mut aloop_poll_t, events: c_int, user_data: *mut c_void)>;

/// Creates a watch on `fd` (borrowed; must stay open until the watch is freed or its interest
/// is 0) with no interest yet. `dtor(user_data)` runs at `aloop_poll_free`. On success `*out`
/// owns the watch; on failure `*out` is not written and neither `cb` nor `dtor` ever runs.
/// Errors: `ALOOP_E_NULL`, `-EBADF`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_poll_new(
    lp: *mut aloop_loop_t,
    fd: c_int,
    cb: aloop_poll_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_poll_t,
) -> c_int {
    guard(|| {
        not_null!(lp, out);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        if fd < 0 {
            return Error::from_errno(libc::EBADF).code();
        }
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let reserved = handle::reserve::<aloop_poll_t>(id);
        let this = reserved.handle() as usize;
        let (ud, armer) = UserData::new(user_data, dtor);
        armer.arm();
        let watch = FdWatch::new(&core, fd, move |r| {
            let ev = if r.readable { ALOOP_READABLE } else { 0 }
                | if r.writable { ALOOP_WRITABLE } else { 0 };
            // SAFETY: the application's callback with its own handle (checked again by any
            // call it makes) and user data.
            unsafe { cb(this as *mut aloop_poll_t, ev, ud.ptr()) };
        });
        core.handle_opened();
        let h = reserved.fill(Box::new(aloop_poll_t { watch, lp: core }));
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(h) };
        0
    })
}

/// Sets the interest: a bitwise OR of `ALOOP_READABLE` and `ALOOP_WRITABLE`, or 0 to stop.
/// Errors: `ALOOP_E_NULL`, `ALOOP_E_INVALID`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_poll_set(p: *mut aloop_poll_t, events: c_int) -> c_int {
    guard(|| {
        not_null!(p);
        if events & !(ALOOP_READABLE | ALOOP_WRITABLE) != 0 {
            return Error::INVALID.code();
        }
        let want = Readiness {
            readable: events & ALOOP_READABLE != 0,
            writable: events & ALOOP_WRITABLE != 0,
        };
        rc(handle::with(p, |w: &aloop_poll_t| w.watch.set_interest(want)).and_then(|r| r))
    })
}

/// Stops and frees the watch; allowed inside its own callback (the destructor then runs when
/// the callback returns, otherwise at once). Returns 0, `ALOOP_E_STALE` for a watch already
/// freed, or `ALOOP_E_WRONG_THREAD`; NULL is ignored (0).
#[no_mangle]
pub extern "C" fn aloop_poll_free(p: *mut aloop_poll_t) -> c_int {
    guard(|| {
        if p.is_null() {
            return 0;
        }
        rc(handle::take::<aloop_poll_t>(p).map(drop))
    })
}
