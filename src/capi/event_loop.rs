//! `aloop_loop_*`: create, run, stop, post, free.

use std::ffi::{c_char, c_int, c_void};

use super::handle::{self, Handle, Kind, LoopId};
use super::{aloop_free_fn, guard, not_null, rc, SendBox, UserData};
use crate::error::{Error, Result};
use crate::reactor::{Backend, Loop, LoopOptions, RunMode};

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
/// While `aloop_loop_run` runs, the loop and every handle bound to it belong to the running
/// thread: calls from other threads get `ALOOP_E_WRONG_THREAD`, except the ones marked
/// thread-safe. Between runs it may be used from any one thread at a time (created on one
/// thread, run on another, freed on a third, as long as the application orders those calls).
pub struct aloop_loop_t {
    pub(crate) lp: Loop,
}

impl Handle for aloop_loop_t {
    type C = aloop_loop_t;
    const KIND: Kind = Kind::Loop;
}

/// The core loop behind a C loop handle, for the functions that create handles on it, and
/// the id those handles record. Thread-checked.
pub(crate) fn loop_of(lp: *mut aloop_loop_t) -> Result<(Loop, LoopId)> {
    handle::with(lp, |l: &aloop_loop_t| l.lp.clone()).map(|l| (l, handle::loop_id(lp)))
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
/// success `*out` owns the new loop (free it with `aloop_loop_free`); on failure `*out` is not
/// written. Errors: `ALOOP_E_NULL`, `ALOOP_E_INVALID` (unknown backend), `ALOOP_E_BACKEND`
/// (io_uring asked for and unavailable), or a system error.
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
                let h = handle::register_loop(Box::new(aloop_loop_t { lp }), remote);
                // SAFETY: out is non-NULL and writable.
                unsafe { out.write(h) };
                0
            }
            Err(e) => e.code(),
        }
    })
}

/// Frees a loop. Fails with `ALOOP_E_BUSY`, and frees nothing, while `aloop_loop_run` is
/// running (from one of the loop's callbacks: free it after `run` returned) or while handles
/// are open (close them and run the loop until their close callbacks ran; timers and polls
/// must be freed, TCP handles, listeners, servers, clients and pools closed or freed). Jobs
/// posted and not run are dropped (their destructors run). `ALOOP_E_WRONG_THREAD` from a thread
/// other than the one running it; `ALOOP_E_STALE` for a loop already freed. Posting from other
/// threads after the free returns `ALOOP_E_STALE`.
#[no_mangle]
pub extern "C" fn aloop_loop_free(lp: *mut aloop_loop_t) -> c_int {
    guard(|| {
        not_null!(lp);
        match handle::runs_here(lp) {
            Ok(true) => return Error::BUSY.code(),
            Ok(false) => {}
            Err(e) => return e.code(),
        }
        if let Err(e) = handle::with(lp, |l: &aloop_loop_t| l.lp.close()).and_then(|r| r) {
            return e.code();
        }
        rc(handle::take_loop::<aloop_loop_t>(lp).map(drop))
    })
}

/// Runs the loop in `mode` (`ALOOP_RUN_*`) on the calling thread, where its callbacks run.
/// Returns 1 if handles or operations are still active, 0 if not, or a negative error:
/// `ALOOP_E_ALREADY` when called from one of the loop's own callbacks, `ALOOP_E_WRONG_THREAD`
/// while another thread runs it. Idle keep-alive connections of an HTTP client do not keep it
/// running.
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
        let _running = match handle::enter_run(lp) {
            Ok(g) => g,
            Err(e) => return e.code(),
        };
        match handle::with(lp, |l: &aloop_loop_t| l.lp.run(mode)).and_then(|r| r) {
            Ok(alive) => alive as c_int,
            Err(e) => e.code(),
        }
    })
}

/// Makes `aloop_loop_run` return after the current turn. Thread-safe. `ALOOP_E_STALE` for a
/// freed loop.
#[no_mangle]
pub extern "C" fn aloop_loop_stop(lp: *mut aloop_loop_t) -> c_int {
    guard(|| {
        not_null!(lp);
        match handle::remote_of(lp as u64, Kind::Loop) {
            Ok((remote, _)) => {
                remote.stop();
                0
            }
            Err(e) => e.code(),
        }
    })
}

/// Runs `cb(lp, user_data)` on the loop's thread at its next turn. Thread-safe; wake-ups are
/// coalesced. `dtor` (may be NULL) runs on the loop's thread right after `cb`, or when the loop
/// is freed with the job still queued. `user_data` must be usable from the loop's thread.
/// Errors (the callback and destructor then never run): `ALOOP_E_NULL` (lp or cb),
/// `ALOOP_E_STALE` (freed loop), `ALOOP_E_CLOSED` (loop being freed).
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
        let remote = match handle::remote_of(lp as u64, Kind::Loop) {
            Ok((remote, _)) => remote,
            Err(e) => return e.code(),
        };
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

/// The backend the loop runs on: `ALOOP_BACKEND_URING` or `ALOOP_BACKEND_EPOLL`, or a
/// negative error (`ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`).
#[no_mangle]
pub extern "C" fn aloop_loop_backend(lp: *const aloop_loop_t) -> c_int {
    guard(|| {
        let backend = handle::with(lp, |l: &aloop_loop_t| l.lp.backend());
        match backend {
            Ok(Backend::Uring) => ALOOP_BACKEND_URING,
            Ok(Backend::Epoll) => ALOOP_BACKEND_EPOLL,
            Ok(Backend::Auto) => ALOOP_BACKEND_AUTO,
            Err(e) => e.code(),
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

/// Milliseconds on a monotonic clock, as cached at the start of the current loop turn (0 for
/// a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_loop_now_ms(lp: *const aloop_loop_t) -> u64 {
    guard(|| {
        handle::read(lp, 0, |l: &aloop_loop_t| {
            crate::reactor::monotonic_ms(l.lp.now())
        })
    })
}
