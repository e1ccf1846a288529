//! The library's error type: a negative `int`, either `-errno` for system errors or one of the
//! library's own codes in `-10000..=-10999`, a range no errno reaches.

use std::ffi::CStr;
use std::fmt;
use std::io;

/// An error code: `-errno` (system) or a library code (`Error::CANCELLED`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error(i32);

/// Result with the library's error.
pub type Result<T> = std::result::Result<T, Error>;

macro_rules! library_codes {
    ($($(#[$doc:meta])* $name:ident = $val:expr, $cname:literal, $msg:literal;)*) => {
        impl Error {
            $($(#[$doc])* pub const $name: Error = Error($val);)*
        }
        fn library_entry(code: i32) -> Option<(&'static CStr, &'static CStr)> {
            match code {
                $($val => Some(($cname, $msg)),)*
                _ => None,
            }
        }
    };
}

library_codes! {
    /// A required pointer argument was NULL.
    NULL_ARG = -10001, c"ALOOP_E_NULL", c"a required argument was NULL";
    /// The requested backend cannot run here (io_uring forbidden or too old).
    BACKEND_UNAVAILABLE = -10002, c"ALOOP_E_BACKEND", c"the requested event loop backend is not available";
    /// The operation was cancelled because its handle was closed (or it was cancelled).
    CANCELLED = -10003, c"ALOOP_E_CANCELLED", c"operation cancelled";
    /// The handle is closing or closed.
    CLOSED = -10004, c"ALOOP_E_CLOSED", c"handle is closing";
    /// An address string could not be parsed as a numeric IPv4 or IPv6 address.
    BAD_ADDRESS = -10005, c"ALOOP_E_ADDRESS", c"invalid IP address";
    /// A Rust panic was caught at the API boundary; the library's state may be inconsistent.
    PANIC = -10006, c"ALOOP_E_PANIC", c"internal error (panic caught at the API boundary)";
    /// The operation is already active (for example reading twice) or was already done.
    ALREADY = -10007, c"ALOOP_E_ALREADY", c"operation already in progress or already done";
    /// The loop is busy: it still has open handles, or it is running.
    BUSY = -10008, c"ALOOP_E_BUSY", c"the loop still has open handles or is running";
    /// An argument is out of range or an enum value is unknown.
    INVALID = -10009, c"ALOOP_E_INVALID", c"invalid argument";
    /// The end of the stream: the peer closed its sending side.
    EOF = -10010, c"ALOOP_E_EOF", c"end of stream";
    /// A connect or request timed out.
    TIMEOUT = -10011, c"ALOOP_E_TIMEOUT", c"operation timed out";
    /// The thing asked for does not exist (a query parameter, a header).
    NOT_FOUND = -10012, c"ALOOP_E_NOT_FOUND", c"not found";
    /// The handle is not a live handle of the kind the function takes: it was freed or closed
    /// already (its memory may have been reused), or it never was one.
    STALE = -10013, c"ALOOP_E_STALE", c"stale handle (already freed or closed, or not a handle of this kind)";
    /// The call was made from a thread other than the one running the handle's loop.
    WRONG_THREAD = -10014, c"ALOOP_E_WRONG_THREAD", c"called from a thread other than the one running the loop";
    /// No database connection is up (the pool is reconnecting); the query was not sent.
    PG_UNAVAILABLE = -10100, c"ALOOP_E_PG_UNAVAILABLE", c"database unavailable";
    /// The database reported an error for the query (see its SQLSTATE and message).
    PG_QUERY = -10101, c"ALOOP_E_PG_QUERY", c"database query failed";
    /// The connection broke while the query was in flight; it may or may not have run.
    PG_CONNECTION = -10102, c"ALOOP_E_PG_CONNECTION", c"database connection lost";
    /// The pool's queue is full; the query was not sent.
    PG_QUEUE_FULL = -10103, c"ALOOP_E_PG_QUEUE_FULL", c"database queue full";
    /// An earlier statement of the same pipeline or transaction failed; this one did not run.
    PG_ABORTED = -10104, c"ALOOP_E_PG_ABORTED", c"skipped: an earlier statement failed";
    /// A typed getter found SQL NULL.
    PG_NULL = -10105, c"ALOOP_E_PG_NULL", c"the value is NULL";
    /// A typed getter was used on a column of another type, or the value does not decode.
    PG_TYPE = -10106, c"ALOOP_E_PG_TYPE", c"the value is not of the type asked for";
    /// The host name could not be resolved.
    DNS = -10200, c"ALOOP_E_DNS", c"host name could not be resolved";
    /// The peer's HTTP response is malformed or ended early.
    HTTP_PROTOCOL = -10201, c"ALOOP_E_HTTP_PROTOCOL", c"malformed or truncated HTTP response";
    /// The HTTP response body is larger than allowed.
    HTTP_TOO_LARGE = -10202, c"ALOOP_E_HTTP_TOO_LARGE", c"HTTP response body too large";
    /// The connection could not be established in time.
    CONNECT_TIMEOUT = -10203, c"ALOOP_E_CONNECT_TIMEOUT", c"connect timed out";
    /// The URL is not an http:// URL the client can use.
    BAD_URL = -10204, c"ALOOP_E_URL", c"invalid or unsupported URL";
    /// No bytes arrived on the connection for longer than the read timeout.
    READ_TIMEOUT = -10205, c"ALOOP_E_READ_TIMEOUT", c"no data received within the read timeout";
    /// The TLS handshake failed (no common protocol or cipher, an alert from the peer, a
    /// malformed handshake, the peer closed during the handshake, ...).
    TLS_HANDSHAKE = -10300, c"ALOOP_E_TLS_HANDSHAKE", c"TLS handshake failed";
    /// The peer's certificate is not issued by a trusted CA (unknown issuer, bad signature,
    /// wrong key usage).
    TLS_UNTRUSTED = -10301, c"ALOOP_E_TLS_UNTRUSTED", c"TLS certificate is not trusted";
    /// The peer's certificate is self-signed and not itself trusted.
    TLS_SELF_SIGNED = -10302, c"ALOOP_E_TLS_SELF_SIGNED", c"TLS certificate is self-signed";
    /// The peer's certificate is valid, but not for the host name asked for.
    TLS_NAME_MISMATCH = -10303, c"ALOOP_E_TLS_NAME_MISMATCH", c"TLS certificate does not match the host name";
    /// The peer's certificate has expired or is not valid yet.
    TLS_EXPIRED = -10304, c"ALOOP_E_TLS_EXPIRED", c"TLS certificate has expired or is not yet valid";
    /// A TLS error after the handshake (a record that fails to decrypt, an unexpected message).
    TLS_PROTOCOL = -10305, c"ALOOP_E_TLS_PROTOCOL", c"TLS protocol error";
    /// The peer sent plain, unencrypted data (such as an HTTP request) on a TLS connection.
    TLS_PLAINTEXT = -10306, c"ALOOP_E_TLS_PLAINTEXT", c"plain (non-TLS) data on a TLS connection";
    /// A TLS configuration could not be made: unreadable or invalid certificate, key or CA
    /// file, a key that does not match its certificate, no usable trusted roots.
    TLS_CONFIG = -10307, c"ALOOP_E_TLS_CONFIG", c"invalid TLS configuration";
    /// The WebSocket peer broke the protocol (bad framing, masking, UTF-8, or a message over the
    /// limit): this end closed the connection with the matching close code.
    WS_PROTOCOL = -10400, c"ALOOP_E_WS_PROTOCOL", c"WebSocket protocol violation";
    /// A WebSocket opening handshake failed: a request that is not a valid upgrade (answered
    /// 400 or 426), or a server's answer that is not a valid 101.
    WS_HANDSHAKE = -10401, c"ALOOP_E_WS_HANDSHAKE", c"WebSocket handshake failed";
    /// The WebSocket's output queue is over its limit: the message was not queued.
    WS_QUEUE_FULL = -10402, c"ALOOP_E_WS_QUEUE_FULL", c"WebSocket output queue full";
}

impl Error {
    /// Lowest library code.
    const LIBRARY_MIN: i32 = -10999;
    /// Highest library code.
    const LIBRARY_MAX: i32 = -10000;

    /// An error from a raw code; `code` must be negative.
    pub fn from_code(code: i32) -> Error {
        debug_assert!(code < 0);
        Error(code)
    }

    /// A system error from a positive errno value.
    pub fn from_errno(errno: i32) -> Error {
        Error(-errno.abs())
    }

    /// The error of the last failed libc call on this thread.
    pub fn last_os_error() -> Error {
        Error::from_errno(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    /// The negative code as the C API returns it.
    pub fn code(self) -> i32 {
        self.0
    }

    /// The errno, when this is a system error.
    pub fn errno(self) -> Option<i32> {
        if self.0 > Self::LIBRARY_MAX || self.0 < Self::LIBRARY_MIN {
            Some(-self.0)
        } else {
            None
        }
    }

    /// A static, human-readable message for any code (unknown codes get a generic text).
    pub fn message(self) -> &'static CStr {
        message_for(self.0)
    }

    /// A static symbolic name (`"ECONNREFUSED"`, `"ALOOP_E_CANCELLED"`, `"UNKNOWN"`).
    pub fn name(self) -> &'static CStr {
        name_for(self.0)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::from_errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name().to_string_lossy(), self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message().to_string_lossy())
    }
}

impl std::error::Error for Error {}

thread_local! {
    /// The reason text of the failure being reported on this thread (see `with_error_detail`).
    static DETAIL: std::cell::RefCell<Option<(i32, std::ffi::CString)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` (which reports the failure `code` to a callback) with `text` readable through
/// `error_detail` on this thread, then forgets the text.
pub fn with_error_detail<R>(code: Error, text: Option<String>, f: impl FnOnce() -> R) -> R {
    let text =
        text.map(|t| std::ffi::CString::new(t.replace('\0', " ")).unwrap_or_else(|_| c"?".into()));
    let before = DETAIL.with(|d| d.replace(text.map(|t| (code.0, t))));
    let r = f();
    DETAIL.with(|d| *d.borrow_mut() = before);
    r
}

/// The reason text of the failure being reported right now on this thread (for TLS failures the
/// verifier's or the peer's words, such as "certificate expired: ..."), or `None`. Meant to be
/// called from the callback that receives the error.
pub fn error_detail() -> Option<String> {
    DETAIL.with(|d| {
        d.borrow()
            .as_ref()
            .map(|(_, t)| t.to_string_lossy().into_owned())
    })
}

/// `error_detail` as a C string with its code, for the C API: the pointer stays valid until
/// the reporting callback returns.
pub fn error_detail_ptr() -> Option<(i32, *const std::ffi::c_char)> {
    DETAIL.with(|d| d.borrow().as_ref().map(|(c, t)| (*c, t.as_ptr())))
}

/// Message for a code: 0 is "success", library codes have their own text, errno values use the C
/// library's text (computed once per code and kept for the life of the process).
pub fn message_for(code: i32) -> &'static CStr {
    if code == 0 {
        return c"success";
    }
    if let Some((_, msg)) = library_entry(code) {
        return msg;
    }
    if code < 0 && code > -4096 {
        return errno_message(-code);
    }
    c"unknown error"
}

/// Symbolic name for a code.
pub fn name_for(code: i32) -> &'static CStr {
    if code == 0 {
        return c"OK";
    }
    if let Some((name, _)) = library_entry(code) {
        return name;
    }
    if code < 0 {
        if let Some(n) = errno_name(-code) {
            return n;
        }
    }
    c"UNKNOWN"
}

fn errno_message(errno: i32) -> &'static CStr {
    use parking_lot::Mutex;
    use std::collections::HashMap;
    static CACHE: Mutex<Option<HashMap<i32, &'static CStr>>> = Mutex::new(None);
    let mut guard = CACHE.lock();
    let map = guard.get_or_insert_with(HashMap::new);
    map.entry(errno).or_insert_with(|| {
        let text = io::Error::from_raw_os_error(errno).to_string();
        // "No such file or directory (os error 2)": keep the C library's part.
        let text = match text.rfind(" (os error") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        let owned = std::ffi::CString::new(text).unwrap_or_else(|_| c"system error".into());
        // Bounded: at most one string per errno value (< 4096), kept for the process lifetime.
        Box::leak(owned.into_boxed_c_str())
    })
}

fn errno_name(errno: i32) -> Option<&'static CStr> {
    use libc::*;
    Some(match errno {
        EPERM => c"EPERM",
        ENOENT => c"ENOENT",
        EINTR => c"EINTR",
        EIO => c"EIO",
        EBADF => c"EBADF",
        EAGAIN => c"EAGAIN",
        ENOMEM => c"ENOMEM",
        EACCES => c"EACCES",
        EFAULT => c"EFAULT",
        EBUSY => c"EBUSY",
        EEXIST => c"EEXIST",
        EINVAL => c"EINVAL",
        ENFILE => c"ENFILE",
        EMFILE => c"EMFILE",
        ENOSPC => c"ENOSPC",
        EPIPE => c"EPIPE",
        ERANGE => c"ERANGE",
        ENOSYS => c"ENOSYS",
        ENOTSOCK => c"ENOTSOCK",
        EMSGSIZE => c"EMSGSIZE",
        EPROTONOSUPPORT => c"EPROTONOSUPPORT",
        EOPNOTSUPP => c"EOPNOTSUPP",
        EAFNOSUPPORT => c"EAFNOSUPPORT",
        EADDRINUSE => c"EADDRINUSE",
        EADDRNOTAVAIL => c"EADDRNOTAVAIL",
        ENETDOWN => c"ENETDOWN",
        ENETUNREACH => c"ENETUNREACH",
        ECONNABORTED => c"ECONNABORTED",
        ECONNRESET => c"ECONNRESET",
        ENOBUFS => c"ENOBUFS",
        EISCONN => c"EISCONN",
        ENOTCONN => c"ENOTCONN",
        ETIMEDOUT => c"ETIMEDOUT",
        ECONNREFUSED => c"ECONNREFUSED",
        EHOSTUNREACH => c"EHOSTUNREACH",
        EALREADY => c"EALREADY",
        EINPROGRESS => c"EINPROGRESS",
        ECANCELED => c"ECANCELED",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_names_and_messages() {
        assert_eq!(Error::CANCELLED.name(), c"ALOOP_E_CANCELLED");
        assert_eq!(
            Error::from_errno(libc::ECONNREFUSED).name(),
            c"ECONNREFUSED"
        );
        assert_eq!(
            Error::from_errno(libc::ECONNREFUSED).message(),
            c"Connection refused"
        );
        assert_eq!(name_for(0), c"OK");
        assert_eq!(name_for(-9999), c"UNKNOWN");
        assert_eq!(message_for(12345), c"unknown error");
        assert!(Error::EOF.errno().is_none());
        assert_eq!(Error::from_errno(libc::EPIPE).errno(), Some(libc::EPIPE));
    }
}
