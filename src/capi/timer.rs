//! `aloop_timer_*`: one-shot and repeating timers.

use std::ffi::{c_int, c_void};
use std::time::Duration;

use super::event_loop::{aloop_loop_t, loop_of};
use super::handle::{self, Handle, Kind, LoopId};
use super::{aloop_free_fn, guard, not_null, rc, UserData};
use crate::error::Error;
use crate::reactor::Timer;

/// A timer (opaque). Owned by the caller of `aloop_timer_new` until `aloop_timer_free`; bound
/// to its loop's thread while the loop runs.
pub struct aloop_timer_t {
    timer: Timer,
    lp: LoopId,
}

impl Handle for aloop_timer_t {
    type C = aloop_timer_t;
    const KIND: Kind = Kind::Timer;
}

/// Called on the loop's thread when the timer fires.
pub type aloop_timer_cb =
    Option<unsafe extern "C" fn(timer: *mut aloop_timer_t, user_data: *mut c_void)>;

/// Creates a stopped timer on `lp`; on success `*out` owns it until `aloop_timer_free` (on
/// failure `*out` is not written). Errors: `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`. The timer counts as an open handle of the loop until freed.
#[no_mangle]
pub extern "C" fn aloop_timer_new(lp: *mut aloop_loop_t, out: *mut *mut aloop_timer_t) -> c_int {
    guard(|| {
        not_null!(lp, out);
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let timer = Timer::new(&core);
        let h = handle::register(id, Box::new(aloop_timer_t { timer, lp: id }));
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(h) };
        0
    })
}

/// Starts the timer: `cb(timer, user_data)` runs after `timeout_ms`, then every `repeat_ms` if
/// that is not 0. Restarting a running timer replaces its callback. `dtor(user_data)` (may be
/// NULL) runs once when this registration ends: after a one-shot fires, or on stop, restart or
/// free (inside the callback too: then after the callback returns). The callback may stop,
/// restart or free its own timer. Errors (`cb` and `dtor` then never run): `ALOOP_E_NULL`,
/// `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_timer_start(
    t: *mut aloop_timer_t,
    timeout_ms: u64,
    repeat_ms: u64,
    cb: aloop_timer_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(t);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        let (ud, armer) = UserData::new(user_data, dtor);
        let repeat = (repeat_ms > 0).then(|| Duration::from_millis(repeat_ms));
        let handle = t as usize;
        let r = handle::with(t, |timer: &aloop_timer_t| {
            timer
                .timer
                .start(Duration::from_millis(timeout_ms), repeat, move || {
                    // SAFETY: the application's callback, called with its own timer handle
                    // (checked again by any call it makes) and user data.
                    unsafe { cb(handle as *mut aloop_timer_t, ud.ptr()) };
                });
        });
        if r.is_ok() {
            armer.arm();
        }
        rc(r)
    })
}

/// Stops the timer (its destructor runs). Stopping a stopped timer is not an error. Errors:
/// `ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_timer_stop(t: *mut aloop_timer_t) -> c_int {
    guard(|| rc(handle::with(t, |timer: &aloop_timer_t| timer.timer.stop())))
}

/// 1 if armed, 0 if not, or a negative error (`ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`).
#[no_mangle]
pub extern "C" fn aloop_timer_is_active(t: *const aloop_timer_t) -> c_int {
    guard(
        || match handle::with(t, |timer: &aloop_timer_t| timer.timer.is_active()) {
            Ok(active) => active as c_int,
            Err(e) => e.code(),
        },
    )
}

/// The loop the timer belongs to (NULL for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_timer_loop(t: *const aloop_timer_t) -> *mut aloop_loop_t {
    guard(|| {
        handle::read(t, std::ptr::null_mut(), |timer: &aloop_timer_t| {
            timer.lp.as_ptr()
        })
    })
}

/// Stops and frees the timer at once; allowed inside its own callback (the destructor of its
/// user data then runs when the callback returns). Returns 0, or `ALOOP_E_STALE` for a timer
/// already freed, `ALOOP_E_WRONG_THREAD` from another thread while its loop runs; NULL is
/// ignored (0).
#[no_mangle]
pub extern "C" fn aloop_timer_free(t: *mut aloop_timer_t) -> c_int {
    guard(|| {
        if t.is_null() {
            return 0;
        }
        rc(handle::take::<aloop_timer_t>(t).map(drop))
    })
}
