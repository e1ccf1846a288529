//! The C ABI: every `extern "C"` function, grouped like the core. Conversions only: each
//! function checks its pointers, converts arguments, calls the safe core, and converts back,
//! inside `guard`, the one panic boundary. Handles become references only in `handle`, which
//! checks their generation and the calling thread.

#![allow(non_camel_case_types)]
// These functions are called from C with the pointer contracts stated in their doc comments;
// every dereference sits in an `unsafe` block with its SAFETY reason.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod error;
mod event_loop;
mod handle;
mod http_client;
mod http_prepared;
mod http_request;
mod http_server;
mod pg;
mod pg_copy;
mod pg_notify;
mod pg_query_opts;
mod pg_txn;
mod pg_value;
mod poll;
mod signal;
mod tcp;
mod timer;
mod tls;
mod ws;

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use crate::error::Error;

pub(crate) use error::set_last_error;
pub use error::*;
pub use event_loop::*;
pub use http_client::*;
pub use http_prepared::*;
pub use http_request::*;
pub use http_server::*;
pub use pg::*;
pub use pg_copy::*;
pub use pg_notify::*;
pub use pg_query_opts::*;
pub use pg_txn::*;
pub use pg_value::*;
pub use poll::*;
pub use signal::*;
pub use tcp::*;
pub use timer::*;
pub use tls::*;
pub use ws::*;

/// Destructor for a registration's user data; called exactly once, on the loop's thread, when
/// the registration ends (see each function). Never called when the registering call fails.
pub type aloop_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// What a function returns when a panic was caught at the boundary.
pub(crate) trait OnPanic {
    fn on_panic() -> Self;
}
impl OnPanic for c_int {
    fn on_panic() -> Self {
        Error::PANIC.code()
    }
}
impl OnPanic for () {
    fn on_panic() -> Self {}
}
impl<T> OnPanic for *const T {
    fn on_panic() -> Self {
        std::ptr::null()
    }
}
impl<T> OnPanic for *mut T {
    fn on_panic() -> Self {
        std::ptr::null_mut()
    }
}
impl OnPanic for isize {
    fn on_panic() -> Self {
        Error::PANIC.code() as isize
    }
}
impl OnPanic for usize {
    fn on_panic() -> Self {
        0
    }
}
impl OnPanic for u32 {
    fn on_panic() -> Self {
        0
    }
}
impl OnPanic for u64 {
    fn on_panic() -> Self {
        0
    }
}

/// The panic boundary: runs `f`, turning a panic into the return type's error value.
pub(crate) fn guard<R: OnPanic>(f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| R::on_panic())
}

/// `Ok(())` -> 0, `Err(e)` -> its negative code.
pub(crate) fn rc(r: crate::error::Result<()>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

/// Returns `ALOOP_E_NULL` from the enclosing function when any pointer is NULL.
macro_rules! not_null {
    ($($p:expr),+) => {
        if $($p.is_null())||+ {
            return crate::error::Error::NULL_ARG.code();
        }
    };
}
pub(crate) use not_null;

/// User data with its optional destructor. Dropping it runs the destructor once, provided the
/// registering call succeeded and armed it through its `DtorGuard`. A failed call drops it
/// unarmed: the caller keeps ownership of its data.
pub(crate) struct UserData {
    ptr: *mut c_void,
    dtor: Rc<Cell<aloop_free_fn>>,
}

/// Arms a `UserData`'s destructor once the call that registered it has succeeded.
pub(crate) struct DtorGuard(Rc<Cell<aloop_free_fn>>, aloop_free_fn);

impl DtorGuard {
    pub(crate) fn arm(self) {
        self.0.set(self.1);
    }
}

impl UserData {
    /// Unarmed user data and the guard that arms it.
    pub(crate) fn new(ptr: *mut c_void, dtor: aloop_free_fn) -> (UserData, DtorGuard) {
        let cell = Rc::new(Cell::new(None));
        (
            UserData {
                ptr,
                dtor: cell.clone(),
            },
            DtorGuard(cell, dtor),
        )
    }
    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(d) = self.dtor.take() {
            // SAFETY: the application registered this destructor for this pointer and asked
            // for exactly one call, which this is (dtor was taken).
            unsafe { d(self.ptr) };
        }
    }
}

/// Marks data moved to the loop's thread by a thread-safe call (`aloop_loop_post`): the C
/// caller promises its user data may be used there.
pub(crate) struct SendBox<T>(pub T);
// SAFETY: only used for values that the C API documents as handed to the loop's thread.
unsafe impl<T> Send for SendBox<T> {}

/// Borrows a C string as UTF-8.
///
/// # Safety
/// `p` must be a valid NUL-terminated string for the duration of the borrow.
pub(crate) unsafe fn c_str<'a>(p: *const c_char) -> Result<&'a str, Error> {
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::INVALID)
}
