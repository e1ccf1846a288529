//! `aloop_timer_*`: one-shot and repeating timers.

use std::ffi::{c_int, c_void};
use std::time::Duration;

use super::event_loop::aloop_loop_t;
use super::{aloop_free_fn, guard, not_null, read_handle, UserData};
use crate::error::Error;
use crate::reactor::Timer;

/// A timer (opaque). Owned by the caller of `aloop_timer_new` until `aloop_timer_free`.
pub struct aloop_timer_t {
    timer: Timer,
    lp: *mut aloop_loop_t,
}

/// Called on the loop's thread when the timer fires.
pub type aloop_timer_cb =
    Option<unsafe extern "C" fn(timer: *mut aloop_timer_t, user_data: *mut c_void)>;

/// Creates a stopped timer on `lp`; `*out` owns it until `aloop_timer_free`.
#[no_mangle]
pub extern "C" fn aloop_timer_new(lp: *mut aloop_loop_t, out: *mut *mut aloop_timer_t) -> c_int {
    guard(|| {
        not_null!(lp, out);
        // SAFETY: live loop on its own thread.
        let timer = Timer::new(&unsafe { &*lp }.lp);
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(Box::into_raw(Box::new(aloop_timer_t { timer, lp }))) };
        0
    })
}

/// Starts the timer: `cb(timer, user_data)` runs after `timeout_ms`, then every `repeat_ms` if
/// that is not 0. Restarting a running timer replaces its callback. `dtor(user_data)` (may be
/// NULL) runs once when this registration ends: after a one-shot fires, or on stop, restart or
/// free. The callback may stop, restart or free its own timer.
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
        armer.arm();
        let repeat = (repeat_ms > 0).then(|| Duration::from_millis(repeat_ms));
        // SAFETY: t is a live timer; the closure runs only while it is armed, and freeing the
        // timer disarms it and drops the closure first.
        unsafe { &*t }
            .timer
            .start(Duration::from_millis(timeout_ms), repeat, move || {
                // SAFETY: t is alive while its callback can run (see above).
                unsafe { cb(t, ud.ptr()) };
            });
        0
    })
}

/// Stops the timer (its destructor runs). Stopping a stopped timer is not an error.
#[no_mangle]
pub extern "C" fn aloop_timer_stop(t: *mut aloop_timer_t) -> c_int {
    guard(|| {
        not_null!(t);
        // SAFETY: live timer.
        unsafe { &*t }.timer.stop();
        0
    })
}

/// 1 if armed, 0 if not, `ALOOP_E_NULL` for NULL.
#[no_mangle]
pub extern "C" fn aloop_timer_is_active(t: *const aloop_timer_t) -> c_int {
    guard(|| {
        not_null!(t);
        // SAFETY: live timer.
        unsafe { &*t }.timer.is_active() as c_int
    })
}

/// The loop the timer belongs to.
#[no_mangle]
pub extern "C" fn aloop_timer_loop(t: *const aloop_timer_t) -> *mut aloop_loop_t {
    guard(|| read_handle(t, std::ptr::null_mut(), |h| h.lp))
}

/// Stops and frees the timer at once (also allowed inside its own callback). NULL is ignored.
#[no_mangle]
pub extern "C" fn aloop_timer_free(t: *mut aloop_timer_t) {
    guard(|| {
        if !t.is_null() {
            // SAFETY: t came from aloop_timer_new and is not used after this.
            drop(unsafe { Box::from_raw(t) });
        }
    })
}
