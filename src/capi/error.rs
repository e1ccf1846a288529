//! Error codes and their texts, the detail message of the last failure, version.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

use super::guard;
use crate::error as core_error;

/// A required pointer argument was NULL.
pub const ALOOP_E_NULL: c_int = -10001;
/// The requested event loop backend is not available here.
pub const ALOOP_E_BACKEND: c_int = -10002;
/// The operation was cancelled (its handle was closed first).
pub const ALOOP_E_CANCELLED: c_int = -10003;
/// The handle is closing or closed.
pub const ALOOP_E_CLOSED: c_int = -10004;
/// The address is not a numeric IPv4 or IPv6 address.
pub const ALOOP_E_ADDRESS: c_int = -10005;
/// Internal error: a panic was caught at the API boundary.
pub const ALOOP_E_PANIC: c_int = -10006;
/// Already in progress or already done (reading twice, closing twice, ...).
pub const ALOOP_E_ALREADY: c_int = -10007;
/// The loop still has open handles.
pub const ALOOP_E_BUSY: c_int = -10008;
/// An argument is out of range or not one of the listed values.
pub const ALOOP_E_INVALID: c_int = -10009;
/// End of stream (passed to read callbacks).
pub const ALOOP_E_EOF: c_int = -10010;
/// A connect or request timed out.
pub const ALOOP_E_TIMEOUT: c_int = -10011;
/// The thing asked for does not exist (a query parameter, a header).
pub const ALOOP_E_NOT_FOUND: c_int = -10012;
/// The handle is not a live handle of the kind the function takes: it was freed or closed
/// already, or it never was one. Never a crash: handles are generation-checked ids.
pub const ALOOP_E_STALE: c_int = -10013;
/// Called from a thread other than the one running the handle's loop (only the functions
/// documented as thread-safe may be).
pub const ALOOP_E_WRONG_THREAD: c_int = -10014;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the detail message of a failure for `aloop_last_error_message` (this thread).
pub(crate) fn set_last_error(text: &str) {
    let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

/// The detail message of the most recent failure on this thread that had more to say than
/// its code: the functions that record one say so (`aloop_pg_pool_new` for a conninfo libpq
/// cannot parse, for example). "" when there is none. The text stays valid until the next such
/// failure on this thread; read it right after the failed call. Thread-safe (per thread).
#[no_mangle]
pub extern "C" fn aloop_last_error_message() -> *const c_char {
    guard(|| {
        LAST_ERROR
            .try_with(|e| e.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
}

/// A static, human-readable message for any code this library returns (0 included). Never
/// NULL; unknown codes get "unknown error". Thread-safe; the string is never freed.
#[no_mangle]
pub extern "C" fn aloop_strerror(code: c_int) -> *const c_char {
    guard(|| core_error::message_for(code).as_ptr())
}

/// The symbolic name of a code: "OK", "ECONNREFUSED", "ALOOP_E_CANCELLED", or "UNKNOWN". Never
/// NULL. Thread-safe; the string is never freed.
#[no_mangle]
pub extern "C" fn aloop_err_name(code: c_int) -> *const c_char {
    guard(|| core_error::name_for(code).as_ptr())
}

/// The library version, "MAJOR.MINOR.PATCH" (the same numbers as `ALOOP_VERSION_*`).
/// Thread-safe; static string.
#[no_mangle]
pub extern "C" fn aloop_version() -> *const c_char {
    guard(|| concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn c_constants_match_the_core_codes() {
        for (c, e) in [
            (ALOOP_E_NULL, Error::NULL_ARG),
            (ALOOP_E_BACKEND, Error::BACKEND_UNAVAILABLE),
            (ALOOP_E_CANCELLED, Error::CANCELLED),
            (ALOOP_E_CLOSED, Error::CLOSED),
            (ALOOP_E_ADDRESS, Error::BAD_ADDRESS),
            (ALOOP_E_PANIC, Error::PANIC),
            (ALOOP_E_ALREADY, Error::ALREADY),
            (ALOOP_E_BUSY, Error::BUSY),
            (ALOOP_E_INVALID, Error::INVALID),
            (ALOOP_E_EOF, Error::EOF),
            (ALOOP_E_TIMEOUT, Error::TIMEOUT),
            (ALOOP_E_NOT_FOUND, Error::NOT_FOUND),
            (ALOOP_E_STALE, Error::STALE),
            (ALOOP_E_WRONG_THREAD, Error::WRONG_THREAD),
            (super::super::ALOOP_E_PG_UNAVAILABLE, Error::PG_UNAVAILABLE),
            (super::super::ALOOP_E_PG_QUERY, Error::PG_QUERY),
            (super::super::ALOOP_E_PG_CONNECTION, Error::PG_CONNECTION),
            (super::super::ALOOP_E_PG_QUEUE_FULL, Error::PG_QUEUE_FULL),
            (super::super::ALOOP_E_PG_ABORTED, Error::PG_ABORTED),
            (super::super::ALOOP_E_DNS, Error::DNS),
            (super::super::ALOOP_E_HTTP_PROTOCOL, Error::HTTP_PROTOCOL),
            (super::super::ALOOP_E_HTTP_TOO_LARGE, Error::HTTP_TOO_LARGE),
            (
                super::super::ALOOP_E_CONNECT_TIMEOUT,
                Error::CONNECT_TIMEOUT,
            ),
            (super::super::ALOOP_E_URL, Error::BAD_URL),
            (super::super::ALOOP_E_READ_TIMEOUT, Error::READ_TIMEOUT),
            (super::super::ALOOP_E_WS_PROTOCOL, Error::WS_PROTOCOL),
            (super::super::ALOOP_E_WS_HANDSHAKE, Error::WS_HANDSHAKE),
            (super::super::ALOOP_E_WS_QUEUE_FULL, Error::WS_QUEUE_FULL),
        ] {
            assert_eq!(c, e.code(), "{e:?}");
        }
    }
}
