//! `aloop_http_prepared_*` and `aloop_http_respond_prepared`: a response's status and headers
//! checked and laid out once, then used for any number of answers with bodies of their own.
//!
//! A prepared response is a handle bound to no loop (like a TLS configuration): immutable, so
//! any thread may use it; the loops' queued answers from other threads hold a reference of
//! their own.

use std::ffi::{c_int, c_void};
use std::sync::Arc;

use super::handle::{self, Handle, Kind, LoopId};
use super::http_request::{
    aloop_http_header_t, aloop_http_request_t, collect_headers, post_answer, route, settle,
    HeaderBuf, Route,
};
use super::{guard, not_null, rc};
use crate::error::Error;
use crate::http::PreparedResponse;

/// A response's status and headers, checked once (opaque): made by
/// `aloop_http_prepared_new()`, used by `aloop_http_respond_prepared()`, owned by the caller
/// until `aloop_http_prepared_free()`.
pub struct aloop_http_prepared_t {
    prepared: Arc<PreparedResponse>,
}

impl Handle for aloop_http_prepared_t {
    type C = aloop_http_prepared_t;
    const KIND: Kind = Kind::HttpPrepared;
}

/// Prepares a response: `status` (200..999) and `nheaders` headers (copied), checked as
/// `aloop_http_respond()` checks them, with the response head laid out once. Answers made with
/// it (`aloop_http_respond_prepared()`) send the bytes `aloop_http_respond()` would send with
/// the same status, headers and body, and skip the work on the headers. Make one per kind of
/// answer at start-up (e.g. `200` with `Content-Type: text/plain`) and keep it. On success
/// `*out` owns it. Errors (`*out` is then not written): `ALOOP_E_INVALID` (what
/// `aloop_http_respond()` refuses whatever the body: a bad status, CR/LF/NUL in a header or an
/// invalid name, another `Connection` option, a malformed `Content-Length`, any
/// `Transfer-Encoding`), `ALOOP_E_NULL`. A `Content-Length` among the headers is checked
/// against each answer's body. Thread-safe: a prepared response is immutable, and requests of
/// any loop may use it, from any thread.
#[no_mangle]
pub extern "C" fn aloop_http_prepared_new(
    status: c_int,
    headers: *const aloop_http_header_t,
    nheaders: usize,
    out: *mut *mut aloop_http_prepared_t,
) -> c_int {
    guard(|| {
        not_null!(out);
        let Ok(status) = u16::try_from(status) else {
            return Error::INVALID.code();
        };
        let mut buf = HeaderBuf::new();
        let hs = match collect_headers(headers, nheaders, &mut buf) {
            Ok(h) => h,
            Err(e) => return e.code(),
        };
        match PreparedResponse::new(status, hs) {
            Ok(p) => {
                let h = handle::register(
                    LoopId::UNBOUND,
                    Box::new(aloop_http_prepared_t {
                        prepared: Arc::new(p),
                    }),
                );
                // SAFETY: out is non-NULL (checked above) and writable.
                unsafe { out.write(h) };
                0
            }
            Err(e) => e.code(),
        }
    })
}

/// Frees a prepared response. Answers queued from other threads with it are unaffected. NULL
/// is ignored (0); one freed already gives `ALOOP_E_STALE`. Thread-safe, but not while another
/// thread is passing the same prepared response to a call.
#[no_mangle]
pub extern "C" fn aloop_http_prepared_free(prepared: *mut aloop_http_prepared_t) -> c_int {
    guard(|| {
        if prepared.is_null() {
            return 0;
        }
        match handle::take::<aloop_http_prepared_t>(prepared) {
            Ok(_) => 0,
            Err(e) => e.code(),
        }
    })
}

/// Answers `req` with a prepared status and headers and `len` bytes of `body` (copied): as
/// `aloop_http_respond()` with them would, framing included (`Server` and `Date` added unless
/// given, `Connection: close` honoured; a prepared `Content-Length` must equal `len`, except
/// for a HEAD request or a 304). On success the request is consumed. Errors:
/// `ALOOP_E_STALE` (`prepared` was freed), `ALOOP_E_NULL` (`req` or `prepared` NULL, or `body`
/// NULL with `len` > 0), `ALOOP_E_INVALID` (a prepared `Content-Length` that `len` does not
/// match: the request stays unanswered), `ALOOP_E_CANCELLED` (the client has gone: the
/// request is consumed), `ALOOP_E_ALREADY` (already answered). Thread-safe as
/// `aloop_http_respond()`: from a thread other than the one running the request's loop, the
/// body is copied and the answer handed to that loop, and 0 means "queued".
#[no_mangle]
pub extern "C" fn aloop_http_respond_prepared(
    req: *mut aloop_http_request_t,
    prepared: *const aloop_http_prepared_t,
    body: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        not_null!(prepared);
        if body.is_null() && len > 0 {
            return Error::NULL_ARG.code();
        }
        let body: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `len` readable bytes at body during the call.
            unsafe { std::slice::from_raw_parts(body.cast(), len) }
        };
        // A reference of its own: a callback the answer runs (an abort) may free the handle.
        let p = match handle::with(prepared, |p: &aloop_http_prepared_t| p.prepared.clone()) {
            Ok(p) => p,
            Err(e) => return e.code(),
        };
        match route(req) {
            Ok(Route::Here(slot)) => {
                let r = slot.srv.respond_prepared(slot.token, &p, body);
                settle(req, &slot);
                rc(r)
            }
            Ok(Route::Remote(remote)) => {
                // What can be checked without the request (a HEAD answer's length is checked
                // on the loop; refused there, the request gets a 500 instead).
                if p.length().is_some_and(|n| n != len as u64 && len > 0) {
                    return Error::INVALID.code();
                }
                let body = body.to_vec();
                post_answer(req, &remote, move |slot| {
                    slot.srv.respond_prepared(slot.token, &p, &body)
                })
            }
            Err(e) => e.code(),
        }
    })
}
