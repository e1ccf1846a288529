//! `aloop_loop_*`: create, run, stop, post, free.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::{aloop_free_fn, guard, not_null, rc, SendBox, UserData};
use crate::error::Error;
use crate::reactor::{Backend, Loop, LoopOptions, Remote, RunMode};

/// Backend: io_uring when the kernel allows it, else epoll.
pub const ALOOP_BACKEND_AUTO: c_int = 0;
/// Backend: io_uring only (`ALOOP_E_BACKEND` where unavailable).
pub const ALOOP_BACKEND_URING: c_int = 1;
/// Backend: epoll.
pub const ALOOP_BACKEND_EPOLL: c_int = 2;

/// Run until `aloop_loop_stop` or until no handle, timer or operation is active.
pub const ALOOP_RUN_DEFAULT: c_int = 0;
/// Run one turn, waiting for at least one event if anything is active.
pub const ALOOP_RUN_ONCE: c_int = 1;
/// Run one turn without waiting.
pub const ALOOP_RUN_NOWAIT: c_int = 2;

/// Options for `aloop_loop_new`; fill with `aloop_loop_options_init` first.
#[repr(C)]
pub struct aloop_loop_options_t {
    /// `ALOOP_BACKEND_*`. The environment variable `ASYNCLOOP_BACKEND` (auto, uring, epoll)
    /// overrides it.
    pub backend: c_int,
    /// io_uring submission queue size (rounded up to a power of two, 8..32768).
    pub queue_depth: u32,
}

/// An event loop (opaque). Owned by the caller of `aloop_loop_new` until `aloop_loop_free`.
/// Used from one thread, the one that runs it, except the calls marked thread-safe.
pub struct aloop_loop_t {
    pub(crate) lp: Loop,
    pub(crate) remote: Arc<Remote>,
}

/// Called on the loop's thread for `aloop_loop_post`.
pub type aloop_post_cb =
    Option<unsafe extern "C" fn(lp: *mut aloop_loop_t, user_data: *mut c_void)>;

fn backend_from_c(b: c_int) -> Option<Backend> {
    match b {
        ALOOP_BACKEND_AUTO => Some(Backend::Auto),
        ALOOP_BACKEND_URING => Some(Backend::Uring),
        ALOOP_BACKEND_EPOLL => Some(Backend::Epoll),
        _ => None,
    }
}

/// Fills `opts` with the defaults (AUTO backend, queue depth 1024).
#[no_mangle]
pub extern "C" fn aloop_loop_options_init(opts: *mut aloop_loop_options_t) -> c_int {
    guard(|| {
        not_null!(opts);
        let d = LoopOptions::default();
        // SAFETY: opts is non-NULL and points to caller-owned writable memory.
        unsafe {
            opts.write(aloop_loop_options_t {
                backend: ALOOP_BACKEND_AUTO,
                queue_depth: d.queue_depth,
            })
        };
        0
    })
}

/// Creates a loop. `opts` may be NULL for the defaults; it is only read during the call. On
/// success `*out` owns the new loop (free it with `aloop_loop_free`). Errors: `ALOOP_E_NULL`,
/// `ALOOP_E_INVALID` (unknown backend), `ALOOP_E_BACKEND` (io_uring asked for and unavailable),
/// or a system error.
#[no_mangle]
pub extern "C" fn aloop_loop_new(
    opts: *const aloop_loop_options_t,
    out: *mut *mut aloop_loop_t,
) -> c_int {
    guard(|| {
        not_null!(out);
        let mut o = LoopOptions::default();
        if !opts.is_null() {
            // SAFETY: non-NULL, points to a caller-owned options struct read only here.
            let c = unsafe { &*opts };
            o.backend = match backend_from_c(c.backend) {
                Some(b) => b,
                None => return Error::INVALID.code(),
            };
            o.queue_depth = c.queue_depth;
        }
        match Loop::new(o) {
            Ok(lp) => {
                let remote = lp.remote();
                // SAFETY: out is non-NULL and writable.
                unsafe { out.write(Box::into_raw(Box::new(aloop_loop_t { lp, remote }))) };
                0
            }
            Err(e) => e.code(),
        }
    })
}

/// Frees a loop. Fails with `ALOOP_E_BUSY`, and frees nothing, while handles are open (close
/// them and run the loop until their close callbacks ran). Timers and polls must be freed,
/// TCP handles closed. Jobs still posted and not run are dropped (their destructors run). Not
/// thread-safe: no other thread may post to the loop during or after this call.
#[no_mangle]
pub extern "C" fn aloop_loop_free(lp: *mut aloop_loop_t) -> c_int {
    guard(|| {
        not_null!(lp);
        // SAFETY: lp came from aloop_loop_new and is not used after a successful free.
        let r = unsafe { &*lp }.lp.close();
        if r.is_ok() {
            // SAFETY: as above; ownership returns to Rust and the loop is dropped.
            drop(unsafe { Box::from_raw(lp) });
        }
        rc(r)
    })
}

/// Runs the loop in `mode` (`ALOOP_RUN_*`). Returns 1 if handles or operations are still
/// active, 0 if not, or a negative error (`ALOOP_E_ALREADY` when called from one of the loop's
/// own callbacks). Callbacks run on the calling thread, which must always be the same one.
#[no_mangle]
pub extern "C" fn aloop_loop_run(lp: *mut aloop_loop_t, mode: c_int) -> c_int {
    guard(|| {
        not_null!(lp);
        let mode = match mode {
            ALOOP_RUN_DEFAULT => RunMode::Default,
            ALOOP_RUN_ONCE => RunMode::Once,
            ALOOP_RUN_NOWAIT => RunMode::NoWait,
            _ => return Error::INVALID.code(),
        };
        // SAFETY: lp is a live loop used from its own thread.
        match unsafe { &*lp }.lp.run(mode) {
            Ok(alive) => alive as c_int,
            Err(e) => e.code(),
        }
    })
}

/// Makes `aloop_loop_run` return after the current turn. Thread-safe.
#[no_mangle]
pub extern "C" fn aloop_loop_stop(lp: *mut aloop_loop_t) -> c_int {
    guard(|| {
        not_null!(lp);
        // SAFETY: only the thread-safe `remote` field is touched, through a raw place
        // projection, so no reference to the loop's single-threaded part is created.
        let remote: &Arc<Remote> = unsafe { &*std::ptr::addr_of!((*lp).remote) };
        remote.stop();
        0
    })
}

/// Runs `cb(lp, user_data)` on the loop's thread at its next turn. Thread-safe; wake-ups are
/// coalesced. `dtor` (may be NULL) runs on the loop's thread right after `cb`, or when the loop
/// is freed with the job still queued. `user_data` must be usable from the loop's thread.
/// Errors: `ALOOP_E_NULL` (lp or cb), `ALOOP_E_CLOSED` (loop being freed).
#[no_mangle]
pub extern "C" fn aloop_loop_post(
    lp: *mut aloop_loop_t,
    cb: aloop_post_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(lp);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        // SAFETY: as in aloop_loop_stop: only the thread-safe field is read.
        let remote: &Arc<Remote> = unsafe { &*std::ptr::addr_of!((*lp).remote) };
        let (ud, armer) = UserData::new(user_data, dtor);
        armer.arm(); // on failure the job is forgotten, not dropped
        let job = SendBox((lp, ud));
        let r = remote.post(Box::new(move || {
            let job = job;
            let (lp, ud) = job.0;
            // SAFETY: runs on the loop's thread while the loop lives (jobs are dropped, not
            // run, when it is freed).
            unsafe { cb(lp, ud.ptr()) };
        }));
        match r {
            Ok(()) => 0,
            Err((e, job)) => {
                // The caller keeps its user data: the destructor must not run. Forgetting the
                // rejected job leaks its small box, on a path reached only by posting to a
                // loop that is being freed.
                std::mem::forget(job);
                e.code()
            }
        }
    })
}

/// The backend the loop runs on: `ALOOP_BACKEND_URING` or `ALOOP_BACKEND_EPOLL`.
#[no_mangle]
pub extern "C" fn aloop_loop_backend(lp: *const aloop_loop_t) -> c_int {
    guard(|| {
        not_null!(lp);
        // SAFETY: live loop, its own thread.
        match unsafe { &*lp }.lp.backend() {
            Backend::Uring => ALOOP_BACKEND_URING,
            Backend::Epoll => ALOOP_BACKEND_EPOLL,
            Backend::Auto => ALOOP_BACKEND_AUTO,
        }
    })
}

/// "auto", "uring" or "epoll" for an `ALOOP_BACKEND_*` value; NULL for another value. Static.
#[no_mangle]
pub extern "C" fn aloop_backend_name(backend: c_int) -> *const c_char {
    guard(|| match backend_from_c(backend) {
        Some(Backend::Auto) => c"auto".as_ptr(),
        Some(Backend::Uring) => c"uring".as_ptr(),
        Some(Backend::Epoll) => c"epoll".as_ptr(),
        None => std::ptr::null(),
    })
}

/// Milliseconds on a monotonic clock, as cached at the start of the current loop turn.
#[no_mangle]
pub extern "C" fn aloop_loop_now_ms(lp: *const aloop_loop_t) -> u64 {
    guard(|| {
        if lp.is_null() {
            return 0;
        }
        // SAFETY: live loop, its own thread.
        let now = unsafe { &*lp }.lp.now();
        crate::reactor::monotonic_ms(now)
    })
}
