//! `aloop_poll_*`: readiness of a file descriptor the application owns (libpq's socket, a pipe).

use std::cell::OnceCell;
use std::ffi::{c_int, c_void};

use super::event_loop::aloop_loop_t;
use super::{aloop_free_fn, guard, not_null, UserData};
use crate::error::Error;
use crate::reactor::{FdWatch, Readiness};

/// The fd is readable (or has an error or hang-up to report).
pub const ALOOP_READABLE: c_int = 1;
/// The fd is writable.
pub const ALOOP_WRITABLE: c_int = 2;

/// A readiness watch (opaque). Owned by the caller of `aloop_poll_new` until `aloop_poll_free`.
/// It never closes the fd.
pub struct aloop_poll_t {
    /// Set right after allocation: the watch's callback needs this struct's address.
    watch: OnceCell<FdWatch>,
}

impl aloop_poll_t {
    fn watch(&self) -> &FdWatch {
        self.watch.get().expect("initialised in aloop_poll_new")
    }
}

/// Called on the loop's thread with `ALOOP_READABLE` or `ALOOP_WRITABLE`. Readiness is level
/// triggered: while wanted and still ready, it is reported again on later turns.
pub type aloop_poll_cb =
    Option<unsafe extern "C" fn(poll: *mut aloop_poll_t, events: c_int, user_data: *mut c_void)>;

/// Creates a watch on `fd` (borrowed; must stay open until the watch is freed or its interest
/// is 0) with no interest yet. `dtor(user_data)` runs at `aloop_poll_free`.
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
        let this = Box::into_raw(Box::new(aloop_poll_t {
            watch: OnceCell::new(),
        }));
        let (ud, armer) = UserData::new(user_data, dtor);
        armer.arm();
        // SAFETY: live loop on its own thread.
        let watch = FdWatch::new(&unsafe { &*lp }.lp, fd, move |r| {
            let ev = if r.readable { ALOOP_READABLE } else { 0 }
                | if r.writable { ALOOP_WRITABLE } else { 0 };
            // SAFETY: the watch (and so this closure) is dropped in aloop_poll_free before the
            // memory `this` points to is freed.
            unsafe { cb(this, ev, ud.ptr()) };
        });
        // SAFETY: `this` is the fresh allocation above; out is non-NULL and writable.
        unsafe {
            let _ = (*this).watch.set(watch);
            out.write(this);
        }
        0
    })
}

/// Sets the interest: a bitwise OR of `ALOOP_READABLE` and `ALOOP_WRITABLE`, or 0 to stop.
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
        // SAFETY: live watch.
        super::rc(unsafe { &*p }.watch().set_interest(want))
    })
}

/// Stops and frees the watch (the destructor runs). Allowed inside its own callback. NULL is
/// ignored.
#[no_mangle]
pub extern "C" fn aloop_poll_free(p: *mut aloop_poll_t) {
    guard(|| {
        if !p.is_null() {
            // SAFETY: p came from aloop_poll_new and is not used after this.
            drop(unsafe { Box::from_raw(p) });
        }
    })
}
