//! `aloop_signal_*`: signal handles, a callback on the loop's thread when the process receives
//! a signal (libuv's `uv_signal_t`).

use std::ffi::{c_int, c_void};

use super::event_loop::{aloop_loop_t, loop_of};
use super::handle::{self, Handle, Kind, LoopId};
use super::{aloop_free_fn, guard, not_null, rc, set_last_error, UserData};
use crate::error::Error;
use crate::reactor::{signal_refusal, Signal};

/// A signal handle (opaque). Owned by the caller of `aloop_signal_new` until
/// `aloop_signal_free`; bound to its loop's thread while the loop runs.
pub struct aloop_signal_t {
    signal: Signal,
    lp: LoopId,
}

impl Handle for aloop_signal_t {
    type C = aloop_signal_t;
    const KIND: Kind = Kind::Signal;
}

/// Called on the loop's thread after `signum` was delivered to the process. Deliveries that
/// arrive before the loop gets to them may be one call (as the kernel itself merges a standard
/// signal that is already pending).
pub type aloop_signal_cb =
    Option<unsafe extern "C" fn(sig: *mut aloop_signal_t, signum: c_int, user_data: *mut c_void)>;

/// Creates a stopped signal handle on `lp`; on success `*out` owns it until
/// `aloop_signal_free` (on failure `*out` is not written). Creating one changes no signal
/// disposition: only `aloop_signal_start` does. Errors: `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`. The handle counts as an open handle of the loop until freed.
#[no_mangle]
pub extern "C" fn aloop_signal_new(lp: *mut aloop_loop_t, out: *mut *mut aloop_signal_t) -> c_int {
    guard(|| {
        not_null!(lp, out);
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let signal = Signal::new(&core);
        let h = handle::register(id, Box::new(aloop_signal_t { signal, lp: id }));
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(h) };
        0
    })
}

/// Starts watching `signum` (`SIGINT`, `SIGTERM`, `SIGHUP`, `SIGUSR1`, ...): `cb(sig, signum,
/// user_data)` runs on the loop's thread after each delivery to the process, whichever thread
/// the kernel delivered it to; deliveries that come before the loop gets to the first make
/// one call. Every started handle of that signal, on this loop and on others, gets its
/// callback. Restarting a started handle replaces its signal and callback.
/// `dtor(user_data)` (may be NULL) runs once when this registration ends: on stop, restart or
/// free (inside the callback too: then after the callback returns). The callback may stop,
/// restart or free its own handle. A started handle keeps `aloop_loop_run` going, as an armed
/// timer does.
///
/// What it does to the process: the first started handle of a signal (in the whole process)
/// installs the library's handler with `sigaction` (`SA_RESTART | SA_ONSTACK`), saving the
/// action it replaces; while any handle of that signal is started, that previous action (the
/// default, `SIG_IGN` or the program's own handler) does not run. When the last one stops or
/// is freed, the saved action is put back, unless the program installed another action
/// meanwhile (which then stays). No thread's signal mask is changed: a signal that every
/// thread blocks stays pending and reaches no handle until some thread unblocks it. The
/// handler does only async-signal-safe work; it never runs application code.
///
/// Errors (`cb` and `dtor` then never run, and the handle is left as it was): `ALOOP_E_NULL`,
/// `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`, `ALOOP_E_INVALID` for a signal that cannot be
/// watched: not in 1..64, `SIGKILL` or `SIGSTOP`, a fault signal (`SIGSEGV`, `SIGBUS`,
/// `SIGFPE`, `SIGILL`), or one the C library reserves for itself (`aloop_last_error_message`
/// says which).
#[no_mangle]
pub extern "C" fn aloop_signal_start(
    sig: *mut aloop_signal_t,
    signum: c_int,
    cb: aloop_signal_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(sig);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        let (ud, armer) = UserData::new(user_data, dtor);
        let handle = sig as usize;
        let r = handle::with(sig, |s: &aloop_signal_t| {
            if let Some(why) = signal_refusal(signum) {
                set_last_error(&format!("signal {signum}: {why}"));
                return Err(Error::INVALID);
            }
            let r = s.signal.start(signum, move |n| {
                // SAFETY: the application's callback, called with its own handle (checked
                // again by any call it makes) and user data.
                unsafe { cb(handle as *mut aloop_signal_t, n, ud.ptr()) };
            });
            if r == Err(Error::INVALID) {
                set_last_error(&format!(
                    "signal {signum}: reserved by the C library (sigaction refused it)"
                ));
            }
            r
        })
        .and_then(|r| r);
        if r.is_ok() {
            armer.arm();
        }
        rc(r)
    })
}

/// Stops watching (the destructor of the user data runs; the last started handle of the
/// signal in the process puts its previous action back, see `aloop_signal_start`). Stopping a
/// stopped handle is not an error. Errors: `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_signal_stop(sig: *mut aloop_signal_t) -> c_int {
    guard(|| rc(handle::with(sig, |s: &aloop_signal_t| s.signal.stop())))
}

/// The signal the handle watches, 0 when it is stopped, or a negative error (`ALOOP_E_NULL`,
/// `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`).
#[no_mangle]
pub extern "C" fn aloop_signal_signum(sig: *const aloop_signal_t) -> c_int {
    guard(
        || match handle::with(sig, |s: &aloop_signal_t| s.signal.signum()) {
            Ok(n) => n.unwrap_or(0),
            Err(e) => e.code(),
        },
    )
}

/// The loop the handle belongs to (NULL for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_signal_loop(sig: *const aloop_signal_t) -> *mut aloop_loop_t {
    guard(|| {
        handle::read(sig, std::ptr::null_mut(), |s: &aloop_signal_t| {
            s.lp.as_ptr()
        })
    })
}

/// Stops and frees the handle at once; allowed inside its own callback (the destructor of its
/// user data then runs when the callback returns). Returns 0, or `ALOOP_E_STALE` for a handle
/// already freed, `ALOOP_E_WRONG_THREAD` from another thread while its loop runs; NULL is
/// ignored (0).
#[no_mangle]
pub extern "C" fn aloop_signal_free(sig: *mut aloop_signal_t) -> c_int {
    guard(|| {
        if sig.is_null() {
            return 0;
        }
        rc(handle::take::<aloop_signal_t>(sig).map(drop))
    })
}
