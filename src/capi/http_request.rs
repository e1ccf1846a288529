//! `aloop_http_request_*` and `aloop_http_respond*`: a request's data and its answer.
//!
//! A request handle is an inline handle (no allocation per request): its two words are the
//! server (a `Weak<ServerInner>` turned into a raw pointer, owned by the handle) and the
//! server's slot token (index and full 32-bit generation). The handle lives until the request is consumed by its
//! answer; a handle used after that is refused with `ALOOP_E_ALREADY`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use super::handle::{self, Kind, LoopId};
use super::{aloop_free_fn, c_str, guard, not_null, rc, UserData};
use crate::error::{Error, Result};
use crate::http::server::ServerInner;
use crate::http::{BodyEvent, Request, RequestData};
use crate::reactor::{Remote, Token};

/// A request (opaque). The handler receives it and owns it until it answers it, exactly once,
/// with `aloop_http_respond` or the chunked calls, right away or later (from any callback, or
/// `aloop_http_respond` from any thread). Pointers it returns stay valid until then. A handle
/// already answered gives `ALOOP_E_ALREADY` (pointer accessors: NULL); from a thread other than
/// the one running its loop, the accessors give NULL or `ALOOP_E_WRONG_THREAD`.
pub struct aloop_http_request_t {
    _opaque: [u8; 0],
}

/// A header (of a response, or of a client's request): NUL-terminated name and value,
/// borrowed during the call that takes it (the library copies what it keeps).
#[repr(C)]
pub struct aloop_http_header_t {
    /// The field name ("Content-Type"); no CR, LF or NUL.
    pub name: *const c_char,
    /// The field value ("text/plain"); no CR, LF or NUL.
    pub value: *const c_char,
}

/// Called once when the client of an unanswered request goes away. `req` is still valid and
/// must still be answered (the answer returns `ALOOP_E_CANCELLED` and frees it).
pub type aloop_http_abort_cb =
    Option<unsafe extern "C" fn(req: *mut aloop_http_request_t, user_data: *mut c_void)>;

/// Receives a streamed request body (see `aloop_http_request_body_start()`): `nread` > 0
/// bytes at `data` (borrowed until the callback returns); then once `ALOOP_E_EOF` (the whole
/// body arrived) or an error, with `data` NULL: `ALOOP_E_HTTP_TOO_LARGE` (past the route's
/// limit), `ALOOP_E_HTTP_PROTOCOL` (malformed, or the client closed before the end),
/// `ALOOP_E_TIMEOUT` (no byte for `body_timeout_ms`), `ALOOP_E_CANCELLED` (the client went
/// away). `req` is still unanswered in every case and must be answered.
pub type aloop_http_body_cb = Option<
    unsafe extern "C" fn(
        req: *mut aloop_http_request_t,
        nread: isize,
        data: *const c_void,
        user_data: *mut c_void,
    ),
>;

/// Called when a chunked response's output so far has reached the kernel (see
/// `aloop_http_chunk_on_drain()`).
pub type aloop_http_drain_cb =
    Option<unsafe extern "C" fn(req: *mut aloop_http_request_t, user_data: *mut c_void)>;

/// A server slot named by a request handle.
pub(super) struct Slot {
    pub(super) srv: Rc<ServerInner>,
    pub(super) token: Token,
}

/// Hands a request to C: the returned handle owns it until it is answered.
pub(crate) fn register_request(req: Request, lp: LoopId) -> *mut aloop_http_request_t {
    let (srv, token) = req.into_raw();
    let weak = Rc::downgrade(&srv).into_raw() as u64;
    let raw = handle::register_inline(Kind::HttpRequest, lp, [weak, token.get()]);
    raw as *mut aloop_http_request_t
}

fn slot_of(words: [u64; 2]) -> Result<Slot> {
    let weak = words[0] as *const ServerInner;
    // SAFETY: the handle owns one weak count of this allocation (made by `Weak::into_raw` in
    // `register_request`, released only in `consumed`); ManuallyDrop keeps that count.
    let weak = std::mem::ManuallyDrop::new(unsafe { Weak::from_raw(weak) });
    let srv = weak.upgrade().ok_or(Error::CLOSED)?;
    let token = Token::from_raw(words[1]).ok_or(Error::ALREADY)?;
    Ok(Slot { srv, token })
}

/// The live request behind a handle, on its loop's thread. Stale handles give `ALREADY`: the
/// request was answered.
pub(super) fn resolve(req: *mut aloop_http_request_t) -> Result<Slot> {
    match handle::inline_words(req as u64, Kind::HttpRequest) {
        Ok(w) => slot_of(w),
        Err(Error::STALE) => Err(Error::ALREADY),
        Err(e) => Err(e),
    }
}

/// Retires the handle once the server no longer has its slot (the answer consumed it). The
/// call that answered checked the handle for this thread already.
pub(super) fn settle(req: *mut aloop_http_request_t, slot: &Slot) {
    if slot.srv.slot_data(slot.token).is_none() {
        if let Ok(words) = handle::retire_inline_checked(req as u64, Kind::HttpRequest) {
            // SAFETY: the weak count the handle owned (see `slot_of`), released once, here.
            drop(unsafe { Weak::from_raw(words[0] as *const ServerInner) });
        }
    }
}

/// Runs `f` with the `Request` behind a live handle, for a call that answers it its own way (a
/// WebSocket accept), and retires the handle if `f` answered it. Also gives the loop the
/// request is bound to. Errors as for the accessors (`ALREADY` for an answered request).
pub(crate) fn with_request<R>(
    req: *mut aloop_http_request_t,
    f: impl FnOnce(Request, LoopId) -> R,
) -> Result<R> {
    let slot = resolve(req)?;
    let lp = handle::bound_loop(req as u64, Kind::HttpRequest)?;
    let request = Request::from_raw(slot.srv.clone(), slot.token).ok_or(Error::ALREADY)?;
    let r = f(request, lp);
    settle(req, &slot);
    Ok(r)
}

fn data<'a>(req: *mut aloop_http_request_t) -> Option<&'a RequestData> {
    let slot = resolve(req).ok()?;
    // SAFETY: the data of a live slot stays until the request is answered, and the accessors'
    // results are documented as valid until then.
    slot.srv.slot_data(slot.token).map(|d| unsafe { &*d })
}

fn request_piece(req: *mut aloop_http_request_t, which: usize) -> *const c_char {
    match data(req) {
        Some(d) => d.c_ptr(&d.ranges()[which]).cast(),
        None => std::ptr::null(),
    }
}

/// The method ("GET"), NUL-terminated; valid until the request is answered. NULL for an
/// answered request or when called from another thread (as for every accessor below).
#[no_mangle]
pub extern "C" fn aloop_http_request_method(req: *mut aloop_http_request_t) -> *const c_char {
    guard(|| request_piece(req, 0))
}

/// The request target as sent ("/path?query").
#[no_mangle]
pub extern "C" fn aloop_http_request_target(req: *mut aloop_http_request_t) -> *const c_char {
    guard(|| request_piece(req, 1))
}

/// The path part of the target, not percent-decoded ("/path").
#[no_mangle]
pub extern "C" fn aloop_http_request_path(req: *mut aloop_http_request_t) -> *const c_char {
    guard(|| request_piece(req, 2))
}

/// The raw query after '?' ("" when there is none).
#[no_mangle]
pub extern "C" fn aloop_http_request_query(req: *mut aloop_http_request_t) -> *const c_char {
    guard(|| request_piece(req, 3))
}

/// The minor version of HTTP/1.x (0 or 1), or a negative error (`ALOOP_E_NULL`,
/// `ALOOP_E_ALREADY`, `ALOOP_E_WRONG_THREAD`).
#[no_mangle]
pub extern "C" fn aloop_http_request_version(req: *mut aloop_http_request_t) -> c_int {
    guard(|| {
        not_null!(req);
        match resolve(req).map(|_| data(req)) {
            Ok(Some(d)) => d.version_minor() as c_int,
            Ok(None) => Error::ALREADY.code(),
            Err(e) => e.code(),
        }
    })
}

/// The first header called `name` (case-insensitive), NUL-terminated, or NULL when absent.
#[no_mangle]
pub extern "C" fn aloop_http_request_header(
    req: *mut aloop_http_request_t,
    name: *const c_char,
) -> *const c_char {
    guard(|| {
        if name.is_null() {
            return std::ptr::null();
        }
        let Some(d) = data(req) else {
            return std::ptr::null();
        };
        // SAFETY: name is a C string per the contract.
        let Ok(name) = (unsafe { CStr::from_ptr(name) }).to_str() else {
            return std::ptr::null();
        };
        match d.header_index(name).and_then(|i| d.header_ranges(i)) {
            Some((_, v)) => d.c_ptr(&v).cast(),
            None => std::ptr::null(),
        }
    })
}

/// Number of header fields.
#[no_mangle]
pub extern "C" fn aloop_http_request_header_count(req: *mut aloop_http_request_t) -> usize {
    guard(|| data(req).map_or(0, |d| d.header_count()))
}

/// Header `index` (in the order received): sets `*name` and `*value` (NUL-terminated, valid
/// until the request is answered). `ALOOP_E_NOT_FOUND` past the end; on any error neither out
/// pointer is written.
#[no_mangle]
pub extern "C" fn aloop_http_request_header_at(
    req: *mut aloop_http_request_t,
    index: usize,
    name: *mut *const c_char,
    value: *mut *const c_char,
) -> c_int {
    guard(|| {
        not_null!(req, name, value);
        if let Err(e) = resolve(req) {
            return e.code();
        }
        let Some(d) = data(req) else {
            return Error::ALREADY.code();
        };
        match d.header_ranges(index) {
            Some((n, v)) => {
                // SAFETY: non-NULL out-parameters.
                unsafe {
                    name.write(d.c_ptr(&n).cast());
                    value.write(d.c_ptr(&v).cast());
                }
                0
            }
            None => Error::NOT_FOUND.code(),
        }
    })
}

/// The body: its bytes (valid until the request is answered; not NUL-terminated) and length in
/// `*len` (may be NULL). A request without a body gives length 0.
#[no_mangle]
pub extern "C" fn aloop_http_request_body(
    req: *mut aloop_http_request_t,
    len: *mut usize,
) -> *const c_void {
    guard(|| {
        let (p, n) = match data(req) {
            Some(d) => (d.body().as_ptr().cast(), d.body().len()),
            None => (std::ptr::null(), 0),
        };
        if !len.is_null() {
            // SAFETY: non-NULL out-parameter.
            unsafe { len.write(n) };
        }
        p
    })
}

/// Copies the first query parameter `name`, percent-decoded, into `buf` (`buf_len` bytes,
/// NUL-terminated, truncated to fit) and returns its full decoded length, like snprintf.
/// `ALOOP_E_NOT_FOUND` when absent (`buf` untouched). `buf` may be NULL with `buf_len` 0 to ask
/// the length. Errors: `ALOOP_E_NULL` (req, name, or buf with a length), `ALOOP_E_ALREADY`
/// (answered), `ALOOP_E_WRONG_THREAD`, `ALOOP_E_INVALID` (name not UTF-8).
#[no_mangle]
pub extern "C" fn aloop_http_request_query_param(
    req: *mut aloop_http_request_t,
    name: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
) -> isize {
    guard(|| {
        if req.is_null() || name.is_null() || (buf.is_null() && buf_len > 0) {
            return Error::NULL_ARG.code() as isize;
        }
        if let Err(e) = resolve(req) {
            return e.code() as isize;
        }
        let Some(d) = data(req) else {
            return Error::ALREADY.code() as isize;
        };
        // SAFETY: C string per the contract.
        let Ok(name) = (unsafe { c_str(name) }) else {
            return Error::INVALID.code() as isize;
        };
        match d.query_param(name) {
            Some(v) => {
                if buf_len > 0 {
                    let n = v.len().min(buf_len - 1);
                    // SAFETY: buf has buf_len writable bytes; n + 1 <= buf_len.
                    unsafe {
                        std::ptr::copy_nonoverlapping(v.as_ptr(), buf.cast::<u8>(), n);
                        *buf.add(n) = 0;
                    }
                }
                v.len() as isize
            }
            None => Error::NOT_FOUND.code() as isize,
        }
    })
}

/// Writes the address of the client that sent `req` into `buf` (`buf_len` bytes,
/// NUL-terminated; may be NULL): its IP as text (46 bytes always suffice), or for a request
/// that came on a Unix socket the peer's path, usually "" (connecting sockets are unnamed;
/// 108 bytes suffice); and its port into `*port` (may be NULL; 0 for a Unix socket). For
/// logs, rate limits, or checking a proxy before trusting its `X-Forwarded-For`. Returns 0;
/// `-ENOSPC` when `buf_len` is too small (nothing written), `ALOOP_E_CANCELLED` once the
/// client has gone, `ALOOP_E_ALREADY` for an answered request, `ALOOP_E_NULL`,
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_request_peer_address(
    req: *mut aloop_http_request_t,
    buf: *mut c_char,
    buf_len: usize,
    port: *mut u16,
) -> c_int {
    guard(|| match resolve(req) {
        Ok(s) => {
            super::tcp::write_address(s.srv.request_address(s.token, true), buf, buf_len, port)
        }
        Err(e) => e.code(),
    })
}

/// As `aloop_http_request_peer_address()`, for the server's end: the address and port the
/// request came in on (the listener's), or the path of its Unix socket.
#[no_mangle]
pub extern "C" fn aloop_http_request_local_address(
    req: *mut aloop_http_request_t,
    buf: *mut c_char,
    buf_len: usize,
    port: *mut u16,
) -> c_int {
    guard(|| match resolve(req) {
        Ok(s) => {
            super::tcp::write_address(s.srv.request_address(s.token, false), buf, buf_len, port)
        }
        Err(e) => e.code(),
    })
}

/// The shape of the calls that register a callback on a request: `cb` must be set and the
/// request live; `install` gets the found request, the callback, the request's handle as an
/// integer (for the closure) and the user data, whose destructor is armed only if `install`
/// succeeds. With `settle`, the request is released if that was its end.
fn register<C>(
    req: *mut aloop_http_request_t,
    cb: Option<C>,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    settle_after: bool,
    install: impl FnOnce(&Slot, C, usize, UserData) -> Result<()>,
) -> c_int {
    let Some(cb) = cb else {
        return Error::NULL_ARG.code();
    };
    let slot = match resolve(req) {
        Ok(x) => x,
        Err(e) => return e.code(),
    };
    let (ud, armer) = UserData::new(user_data, dtor);
    let r = install(&slot, cb, req as usize, ud);
    if r.is_ok() {
        armer.arm();
    }
    if settle_after {
        settle(req, &slot);
    }
    rc(r)
}

/// Registers `cb(req, user_data)` to run once if the client goes away before `req` is
/// answered; `dtor(user_data)` runs when the request ends either way. `ALOOP_E_CANCELLED` if
/// the client is already gone (nothing registered; answer the request still).
#[no_mangle]
pub extern "C" fn aloop_http_request_on_abort(
    req: *mut aloop_http_request_t,
    cb: aloop_http_abort_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        register(req, cb, user_data, dtor, false, |slot, cb, raw, ud| {
            slot.srv.on_abort(
                slot.token,
                Box::new(move || {
                    // SAFETY: the application's callback with its (still unanswered) request
                    // and user data.
                    unsafe { cb(raw as *mut aloop_http_request_t, ud.ptr()) };
                }),
            )
        })
    })
}

/// Starts reading the body of a request whose route streams
/// (`aloop_http_server_route_stream()`): `cb(req, nread, data, user_data)` runs for each piece
/// as it arrives, then once with `ALOOP_E_EOF` or an error (see `aloop_http_body_cb`); never
/// from inside this call. A client waiting for `100 Continue` is sent it now. The pieces come
/// straight from the receive buffer: while the reader is paused
/// (`aloop_http_request_body_pause()`) or not started, the connection stops reading, so memory
/// stays bounded whatever the body's size. `dtor(user_data)` runs when reading ends: after
/// the last callback, or when the request is answered first (the rest of the body is then
/// read and discarded when it is known to be at most 64 KiB, else the connection closes
/// after the answer). Loop thread only. Errors (`cb` and `dtor` then never run):
/// `ALOOP_E_INVALID` (the route does not stream), `ALOOP_E_ALREADY` (reading started, or
/// the request was answered), `ALOOP_E_CANCELLED` (the client has gone: answer the request
/// still), `ALOOP_E_NULL`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_request_body_start(
    req: *mut aloop_http_request_t,
    cb: aloop_http_body_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        register(req, cb, user_data, dtor, false, |slot, cb, raw, ud| {
            slot.srv.body_read(
                slot.token,
                Box::new(move |ev: BodyEvent<'_>| {
                    let req = raw as *mut aloop_http_request_t;
                    // SAFETY: the application's callback with its (still unanswered) request
                    // and user data; `data` is borrowed for the call.
                    unsafe {
                        match ev {
                            BodyEvent::Data(d) => {
                                cb(req, d.len() as isize, d.as_ptr().cast(), ud.ptr())
                            }
                            BodyEvent::End => {
                                cb(req, Error::EOF.code() as isize, std::ptr::null(), ud.ptr())
                            }
                            BodyEvent::Error(e) => {
                                cb(req, e.code() as isize, std::ptr::null(), ud.ptr())
                            }
                        }
                    }
                }),
            )
        })
    })
}

/// Pauses a started body reader: no callback until `aloop_http_request_body_resume()`; the
/// connection stops reading, and the client's sending stops once the kernel's buffers are
/// full. At most what one read brought in is held meanwhile. Loop thread only. Errors:
/// `ALOOP_E_INVALID` (not started, or the route does not stream), `ALOOP_E_ALREADY`
/// (answered), `ALOOP_E_NULL`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_request_body_pause(req: *mut aloop_http_request_t) -> c_int {
    guard(|| match resolve(req) {
        Ok(slot) => rc(slot.srv.body_pause(slot.token)),
        Err(e) => e.code(),
    })
}

/// Resumes a paused body reader; the callbacks come from the loop, never inside this call.
/// Errors as for `aloop_http_request_body_pause()`.
#[no_mangle]
pub extern "C" fn aloop_http_request_body_resume(req: *mut aloop_http_request_t) -> c_int {
    guard(|| match resolve(req) {
        Ok(slot) => rc(slot.srv.body_resume(slot.token)),
        Err(e) => e.code(),
    })
}

/// Where an answer to a request runs.
pub(super) enum Route {
    /// On this thread, its loop's: answer now.
    Here(Slot),
    /// On another thread: post the answer to its loop.
    Remote(Arc<Remote>),
}

/// Where an answer to `req` runs, from any thread. On the loop's thread (the common case) the
/// handle's payload comes with the check. `ALREADY` for an answered request.
pub(super) fn route(req: *mut aloop_http_request_t) -> Result<Route> {
    let local = match handle::inline_words_here(req as u64, Kind::HttpRequest) {
        Ok(w) => w,
        Err(Error::STALE) => return Err(Error::ALREADY),
        Err(e) => return Err(e),
    };
    if local.is_none() {
        match handle::remote_of(req as u64, Kind::HttpRequest) {
            Ok((r, false)) => return Ok(Route::Remote(r)),
            Ok((_, true)) => {}
            Err(Error::STALE) => return Err(Error::ALREADY),
            Err(e) => return Err(e),
        }
    }
    local.map_or_else(|| resolve(req), slot_of).map(Route::Here)
}

/// Posts an answer to `req`'s loop: `answer` runs there if the request is still unanswered,
/// and a response it refuses (`INVALID`: what could not be checked before, a HEAD answer's
/// length) becomes a 500. 0 ("queued") or the error of the post.
pub(super) fn post_answer(
    req: *mut aloop_http_request_t,
    remote: &Remote,
    answer: impl FnOnce(&Slot) -> Result<()> + Send + 'static,
) -> c_int {
    let req = req as usize;
    match remote.post(Box::new(move || {
        let req = req as *mut aloop_http_request_t;
        if let Ok(slot) = resolve(req) {
            if answer(&slot) == Err(Error::INVALID) {
                let _ = slot.srv.respond(
                    slot.token,
                    500,
                    &[(b"Content-Type", b"text/plain")],
                    b"500 Internal Server Error: the handler's answer was refused\n",
                );
            }
            settle(req, &slot);
        }
    })) {
        Ok(()) => 0,
        Err((e, _job)) => e.code(),
    }
}

/// Owned copy of a response, for answering from another thread.
struct OwnedResponse {
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

/// Headers most answers fit in without an allocation.
const FEW_HEADERS: usize = 8;

type HeaderPair = (&'static [u8], &'static [u8]);

/// Storage for a call's headers, borrowed for the call: on the caller's stack up to
/// `FEW_HEADERS`, else in a Vec.
pub(super) struct HeaderBuf {
    few: [HeaderPair; FEW_HEADERS],
    many: Vec<HeaderPair>,
}

impl HeaderBuf {
    pub(super) fn new() -> HeaderBuf {
        HeaderBuf {
            few: [(&[], &[]); FEW_HEADERS],
            many: Vec::new(),
        }
    }
}

pub(super) fn collect_headers(
    headers: *const aloop_http_header_t,
    n: usize,
    buf: &mut HeaderBuf,
) -> Result<&[HeaderPair]> {
    if n == 0 {
        return Ok(&[]);
    }
    if headers.is_null() {
        return Err(Error::NULL_ARG);
    }
    // SAFETY: the caller passes `n` headers, each with two C strings, borrowed for the call;
    // the 'static lifetime never escapes the call.
    let hs = unsafe { std::slice::from_raw_parts(headers, n) };
    let one = |h: &aloop_http_header_t| {
        if h.name.is_null() || h.value.is_null() {
            return Err(Error::NULL_ARG);
        }
        // SAFETY: as above.
        Ok(unsafe {
            (
                CStr::from_ptr(h.name).to_bytes(),
                CStr::from_ptr(h.value).to_bytes(),
            )
        })
    };
    if n <= FEW_HEADERS {
        for (slot, h) in buf.few.iter_mut().zip(hs) {
            *slot = one(h)?;
        }
        return Ok(&buf.few[..n]);
    }
    buf.many = hs.iter().map(one).collect::<Result<_>>()?;
    Ok(&buf.many)
}

/// Answers `req`: `status` (200..999), `nheaders` headers and `len` bytes of `body` (copied).
/// `Server` and `Date` are added unless given. The framing headers are the library's, and a
/// handler's own are honoured or refused, never dropped: `Connection: close` closes the
/// connection after this response (requests pipelined behind it go unanswered), `keep-alive`
/// is the default; a `Content-Length` must equal `len`, except for a HEAD request or a 304,
/// where it gives the length a GET would get (no body is sent). On success the request is
/// consumed. Errors:
/// `ALOOP_E_INVALID` (bad status, CR/LF/NUL in a header, another `Connection` option, a
/// `Content-Length` that does not fit, any `Transfer-Encoding` (see
/// `aloop_http_respond_chunked()`): the request stays unanswered),
/// `ALOOP_E_CANCELLED` (the client has gone: the request is consumed), `ALOOP_E_ALREADY`
/// (already answered), `ALOOP_E_NULL`. Thread-safe: from a thread other than the one running
/// the request's loop, the response is copied and handed to that loop, and 0 means "queued".
#[no_mangle]
pub extern "C" fn aloop_http_respond(
    req: *mut aloop_http_request_t,
    status: c_int,
    headers: *const aloop_http_header_t,
    nheaders: usize,
    body: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        if body.is_null() && len > 0 {
            return Error::NULL_ARG.code();
        }
        if !(200..=999).contains(&status) {
            return Error::INVALID.code();
        }
        let mut buf = HeaderBuf::new();
        let hs = match collect_headers(headers, nheaders, &mut buf) {
            Ok(h) => h,
            Err(e) => return e.code(),
        };
        let body: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `len` readable bytes at body during the call.
            unsafe { std::slice::from_raw_parts(body.cast(), len) }
        };
        let remote = match route(req) {
            Ok(Route::Here(slot)) => {
                let r = slot.srv.respond(slot.token, status as u16, hs, body);
                settle(req, &slot);
                return rc(r);
            }
            Ok(Route::Remote(remote)) => remote,
            Err(e) => return e.code(),
        };
        // What can be checked without the request (a HEAD answer's length is checked on
        // the loop; refused there, the request gets a 500 instead).
        match crate::http::response::check_headers(hs) {
            Some(a) if a.chunked => return Error::INVALID.code(),
            Some(a) if a.length.is_some_and(|n| n != len as u64 && len > 0) => {
                return Error::INVALID.code()
            }
            None => return Error::INVALID.code(),
            Some(_) => {}
        }
        let owned = OwnedResponse {
            status: status as u16,
            headers: hs.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
            body: body.to_vec(),
        };
        post_answer(req, &remote, move |slot| {
            let hs: Vec<(&[u8], &[u8])> = owned
                .headers
                .iter()
                .map(|(n, v)| (&n[..], &v[..]))
                .collect();
            slot.srv.respond(slot.token, owned.status, &hs, &owned.body)
        })
    })
}

/// Starts a chunked response (`Transfer-Encoding: chunked`) for bodies of unknown length;
/// then `aloop_http_chunk` any number of times and `aloop_http_chunk_end` once. Headers as
/// for `aloop_http_respond()` (`Connection: close` honoured), but a `Content-Length` is
/// `ALOOP_E_INVALID`. Errors as for `aloop_http_respond`. Loop thread only (`ALOOP_E_WRONG_THREAD` from another).
#[no_mangle]
pub extern "C" fn aloop_http_respond_chunked(
    req: *mut aloop_http_request_t,
    status: c_int,
    headers: *const aloop_http_header_t,
    nheaders: usize,
) -> c_int {
    guard(|| {
        if !(200..=999).contains(&status) {
            return Error::INVALID.code();
        }
        let mut buf = HeaderBuf::new();
        let hs = match collect_headers(headers, nheaders, &mut buf) {
            Ok(h) => h,
            Err(e) => return e.code(),
        };
        let slot = match resolve(req) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let r = slot.srv.respond_chunked(slot.token, status as u16, hs);
        settle(req, &slot);
        rc(r)
    })
}

/// Sends `len` bytes (copied) as one chunk of a chunked response. `ALOOP_E_CANCELLED` if the
/// client has gone (the request is then consumed: stop writing).
#[no_mangle]
pub extern "C" fn aloop_http_chunk(
    req: *mut aloop_http_request_t,
    data: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        if data.is_null() && len > 0 {
            return Error::NULL_ARG.code();
        }
        let slot = match resolve(req) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: len readable bytes during the call.
            unsafe { std::slice::from_raw_parts(data.cast(), len) }
        };
        let r = slot.srv.chunk(slot.token, bytes, false);
        settle(req, &slot);
        rc(r)
    })
}

/// Paces a chunked response: `cb(req, user_data)` runs once everything the response wrote so
/// far has been handed to the kernel, and again after each later `aloop_http_chunk()` has
/// (never from inside this call). A producer writes a piece, then the next one when `cb`
/// runs: however large the body, it holds one piece at a time, and the client's reading
/// speed sets the pace. If the client goes away, `cb` runs once more and the next
/// `aloop_http_chunk()` returns `ALOOP_E_CANCELLED`. Registering again replaces the callback
/// (the old `dtor` runs). `dtor(user_data)` runs when the response ends (chunk end, or the
/// request consumed by `ALOOP_E_CANCELLED`). Loop thread only. Errors (`cb` and `dtor` then
/// never run): `ALOOP_E_INVALID` (`aloop_http_respond_chunked()` not called yet),
/// `ALOOP_E_CANCELLED` (the client has gone: the request is consumed), `ALOOP_E_ALREADY`,
/// `ALOOP_E_NULL`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_chunk_on_drain(
    req: *mut aloop_http_request_t,
    cb: aloop_http_drain_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        register(req, cb, user_data, dtor, true, |slot, cb, raw, ud| {
            slot.srv.chunk_on_drain(
                slot.token,
                Box::new(move || {
                    // SAFETY: the application's callback with its (still unanswered) request
                    // and user data.
                    unsafe { cb(raw as *mut aloop_http_request_t, ud.ptr()) };
                }),
            )
        })
    })
}

/// Ends a chunked response; the request is consumed.
#[no_mangle]
pub extern "C" fn aloop_http_chunk_end(req: *mut aloop_http_request_t) -> c_int {
    guard(|| {
        let slot = match resolve(req) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let r = slot.srv.chunk(slot.token, &[], true);
        settle(req, &slot);
        rc(r)
    })
}
