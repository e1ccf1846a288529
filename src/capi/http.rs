//! `aloop_http_*`: the HTTP/1.1 server, its requests and responses.
//!
//! A request handle is the address of its slot's header with the slot's generation in the top
//! 16 bits: a handle used after its request was answered is recognised as stale and refused
//! with `ALOOP_E_ALREADY` (slots live as long as the server, which cannot be freed while a
//! request is outstanding).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::event_loop::aloop_loop_t;
use super::{aloop_free_fn, c_str, guard, not_null, rc, read_handle, SendBox, UserData};
use crate::error::{Error, Result};
use crate::http::server::{ServerInner, SlotHeader};
use crate::http::{HttpServer, Request, ServerOptions};
use crate::net::parse_ip_port;

/// An HTTP server (opaque) on one loop. Owned by the caller of `aloop_http_server_new`; free it
/// with `aloop_http_server_free` after `aloop_http_server_shutdown` completed.
pub struct aloop_http_server_t {
    server: HttpServer,
    lp: *mut aloop_loop_t,
}

/// A request (opaque). The handler receives it and owns it until it answers it, exactly once,
/// with `aloop_http_respond` or the chunked calls, right away or later (from any callback or
/// any thread). Pointers it returns stay valid until then.
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

/// Options for `aloop_http_server_new`; fill with `aloop_http_server_options_init` first.
#[repr(C)]
pub struct aloop_http_server_options_t {
    /// Time to receive a request head, ms (default 10000).
    pub header_timeout_ms: u64,
    /// Time to receive a request body after its head, ms (default 30000).
    pub body_timeout_ms: u64,
    /// Keep-alive idle time before the server closes, ms (default 60000).
    pub idle_timeout_ms: u64,
    /// Time queued response bytes may wait without the client reading any of them before the
    /// connection is dropped, ms (default 30000); every byte of progress restarts it.
    pub write_timeout_ms: u64,
    /// Longest request target, bytes (default 8192; 414 beyond).
    pub max_request_line: usize,
    /// Largest header block, bytes (default 16384; 431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (default 100; 431 beyond).
    pub max_headers: usize,
    /// Largest request body, bytes (default 1048576; 413 beyond).
    pub max_body: usize,
    /// Unanswered pipelined requests per connection before reading pauses (default 128).
    pub max_pipeline: usize,
    /// Unsent response bytes per connection before reading pauses (default 1 MiB).
    pub max_output: usize,
    /// Non-zero: SO_REUSEPORT on the listeners (several loops or processes on one port).
    pub reuse_port: c_int,
    /// listen(2) backlog (default 1024).
    pub backlog: c_int,
}

/// A request handler: answer `req` exactly once, now or later.
pub type aloop_http_handler_cb =
    Option<unsafe extern "C" fn(req: *mut aloop_http_request_t, user_data: *mut c_void)>;
/// Called once when the client of an unanswered request goes away. `req` is still valid and
/// must still be answered (the answer returns `ALOOP_E_CANCELLED` and frees it).
pub type aloop_http_abort_cb =
    Option<unsafe extern "C" fn(req: *mut aloop_http_request_t, user_data: *mut c_void)>;
/// Called once when a shutdown has closed every listener and connection.
pub type aloop_http_stopped_cb =
    Option<unsafe extern "C" fn(server: *mut aloop_http_server_t, user_data: *mut c_void)>;

const TAG_SHIFT: u32 = 48;
const ADDR_MASK: u64 = (1 << TAG_SHIFT) - 1;

fn encode(srv: &ServerInner, index: u32, gen: u32) -> *mut aloop_http_request_t {
    let addr = srv.slot_header(index) as u64;
    assert_eq!(addr & !ADDR_MASK, 0, "slot header above 2^48");
    (addr | ((gen as u64 & 0xffff) << TAG_SHIFT)) as *mut aloop_http_request_t
}

/// The slot header of a handle whose tag still matches.
fn header<'a>(req: *mut aloop_http_request_t) -> Result<&'a SlotHeader> {
    if req.is_null() {
        return Err(Error::NULL_ARG);
    }
    let raw = req as u64;
    let h = (raw & ADDR_MASK) as *const SlotHeader;
    // SAFETY: handles are made by `encode` from slot headers, which live as long as their
    // server; the server cannot be freed while any of its requests is unanswered.
    let h = unsafe { &*h };
    let tag = (raw >> TAG_SHIFT) as u32;
    if h.gen.load(Ordering::Acquire) & 0xffff != tag {
        return Err(Error::ALREADY);
    }
    Ok(h)
}

/// On the loop thread: the server and the slot's (index, full generation).
fn resolve(req: *mut aloop_http_request_t) -> Result<(Rc<ServerInner>, u32, u32)> {
    let h = header(req)?;
    if std::thread::current().id() != h.loop_thread {
        return Err(Error::INVALID);
    }
    let srv = h.server.upgrade().ok_or(Error::CLOSED)?;
    Ok((srv, h.index, h.gen.load(Ordering::Relaxed)))
}

fn data<'a>(req: *mut aloop_http_request_t) -> Option<&'a crate::http::RequestData> {
    let (srv, index, gen) = resolve(req).ok()?;
    // SAFETY: the data of a live slot stays until the request is answered.
    srv.slot_data(index, gen).map(|d| unsafe { &*d })
}

/// Fills `opts` with the defaults: the values given for each field of
/// `aloop_http_server_options_t`.
#[no_mangle]
pub extern "C" fn aloop_http_server_options_init(opts: *mut aloop_http_server_options_t) -> c_int {
    guard(|| {
        not_null!(opts);
        let d = ServerOptions::default();
        // SAFETY: non-NULL caller-owned memory.
        unsafe {
            opts.write(aloop_http_server_options_t {
                header_timeout_ms: d.header_timeout.as_millis() as u64,
                body_timeout_ms: d.body_timeout.as_millis() as u64,
                idle_timeout_ms: d.idle_timeout.as_millis() as u64,
                write_timeout_ms: d.write_timeout.as_millis() as u64,
                max_request_line: d.limits.max_request_line,
                max_header_bytes: d.limits.max_header_bytes,
                max_headers: d.limits.max_headers,
                max_body: d.limits.max_body,
                max_pipeline: d.max_pipeline,
                max_output: d.max_output,
                reuse_port: d.listen.reuse_port as c_int,
                backlog: d.listen.backlog,
            })
        };
        0
    })
}

/// Creates a server on `lp` (no listener yet). `opts` may be NULL for the defaults; it is read
/// during the call only. `ALOOP_E_INVALID` for a zero timeout or limit.
#[no_mangle]
pub extern "C" fn aloop_http_server_new(
    lp: *mut aloop_loop_t,
    opts: *const aloop_http_server_options_t,
    out: *mut *mut aloop_http_server_t,
) -> c_int {
    guard(|| {
        not_null!(lp, out);
        let mut o = ServerOptions::default();
        if !opts.is_null() {
            // SAFETY: non-NULL options, read only here.
            let c = unsafe { &*opts };
            let ms = Duration::from_millis;
            if [
                c.header_timeout_ms,
                c.body_timeout_ms,
                c.idle_timeout_ms,
                c.write_timeout_ms,
            ]
            .contains(&0)
                || [
                    c.max_request_line,
                    c.max_header_bytes,
                    c.max_headers,
                    c.max_pipeline,
                    c.max_output,
                ]
                .contains(&0)
                || c.backlog <= 0
            {
                return Error::INVALID.code();
            }
            o.header_timeout = ms(c.header_timeout_ms);
            o.body_timeout = ms(c.body_timeout_ms);
            o.idle_timeout = ms(c.idle_timeout_ms);
            o.write_timeout = ms(c.write_timeout_ms);
            o.limits.max_request_line = c.max_request_line;
            o.limits.max_header_bytes = c.max_header_bytes;
            o.limits.max_headers = c.max_headers;
            o.limits.max_body = c.max_body;
            o.max_pipeline = c.max_pipeline;
            o.max_output = c.max_output;
            o.listen.reuse_port = c.reuse_port != 0;
            o.listen.backlog = c.backlog;
        }
        // SAFETY: live loop on its own thread.
        let server = HttpServer::new(&unsafe { &*lp }.lp, o);
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(Box::into_raw(Box::new(aloop_http_server_t { server, lp }))) };
        0
    })
}

/// # Safety
/// `p` NULL or a C string.
unsafe fn opt_str<'a>(p: *const c_char) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: per the contract.
        unsafe { c_str(p) }.map(Some)
    }
}

fn c_handler(
    cb: unsafe extern "C" fn(*mut aloop_http_request_t, *mut c_void),
    ud: UserData,
) -> impl Fn(Request) {
    move |req: Request| {
        let (srv, index, gen) = req.into_raw();
        let h = encode(&srv, index, gen);
        // SAFETY: the handler owns the request from here on.
        unsafe { cb(h, ud.ptr()) };
    }
}

enum RouteKind {
    Exact,
    Prefix,
    Fallback,
}

fn add_route(
    srv: *mut aloop_http_server_t,
    method: *const c_char,
    path: *const c_char,
    cb: aloop_http_handler_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    kind: RouteKind,
) -> c_int {
    not_null!(srv);
    let Some(cb) = cb else {
        return Error::NULL_ARG.code();
    };
    // SAFETY: method and path are NULL or C strings per the contract.
    let (method, path) = match unsafe { (opt_str(method), opt_str(path)) } {
        (Ok(m), Ok(p)) => (m, p),
        _ => return Error::INVALID.code(),
    };
    if !matches!(kind, RouteKind::Fallback) && path.is_none_or(|p| !p.starts_with('/')) {
        return Error::INVALID.code();
    }
    let (ud, armer) = UserData::new(user_data, dtor);
    armer.arm();
    let h = c_handler(cb, ud);
    // SAFETY: live server.
    let server = &unsafe { &*srv }.server;
    match kind {
        RouteKind::Exact => server.route(method, path.unwrap(), h),
        RouteKind::Prefix => server.route_prefix(method, path.unwrap(), h),
        RouteKind::Fallback => server.fallback(h),
    }
    0
}

/// Routes requests with `method` (NULL: any method; HEAD also reaches a GET route) and exactly
/// `path` (starting with '/', compared without the query) to `cb`. A route added again for the
/// same method and path replaces the old one. `dtor(user_data)` runs when the server is freed.
#[no_mangle]
pub extern "C" fn aloop_http_server_route(
    srv: *mut aloop_http_server_t,
    method: *const c_char,
    path: *const c_char,
    cb: aloop_http_handler_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| add_route(srv, method, path, cb, user_data, dtor, RouteKind::Exact))
}

/// Routes every path starting with `prefix` (longest prefix first, after exact routes).
#[no_mangle]
pub extern "C" fn aloop_http_server_route_prefix(
    srv: *mut aloop_http_server_t,
    method: *const c_char,
    prefix: *const c_char,
    cb: aloop_http_handler_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| add_route(srv, method, prefix, cb, user_data, dtor, RouteKind::Prefix))
}

/// Handles every request no route takes (instead of the default 404 and 405 answers).
#[no_mangle]
pub extern "C" fn aloop_http_server_fallback(
    srv: *mut aloop_http_server_t,
    cb: aloop_http_handler_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        add_route(
            srv,
            std::ptr::null(),
            std::ptr::null(),
            cb,
            user_data,
            dtor,
            RouteKind::Fallback,
        )
    })
}

/// Listens on `ip:port` (numeric address; port 0 picks one) and starts serving. Returns the
/// bound port (> 0) or an error (`-EADDRINUSE`, `ALOOP_E_ADDRESS`, ...). May be called again
/// for more addresses.
#[no_mangle]
pub extern "C" fn aloop_http_server_listen(
    srv: *mut aloop_http_server_t,
    ip: *const c_char,
    port: u16,
) -> c_int {
    guard(|| {
        not_null!(srv, ip);
        // SAFETY: ip is a C string per the contract.
        let addr = match unsafe { c_str(ip) }.and_then(|h| parse_ip_port(h, port)) {
            Ok(a) => a,
            Err(e) => return e.code(),
        };
        // SAFETY: live server.
        match unsafe { &*srv }.server.listen(addr) {
            Ok(bound) => bound.port() as c_int,
            Err(e) => e.code(),
        }
    })
}

/// Serves a connection accepted elsewhere: socket activation, another acceptor, a passed
/// descriptor, one end of a `socketpair`. `fd` must be a connected stream socket; it is made
/// non-blocking. On success (0) the server owns `fd` and closes it; on an error
/// (`ALOOP_E_INVALID` for anything but a connected stream socket: -1, a pipe, a listening
/// socket; `ALOOP_E_CLOSED` after shutdown; `ALOOP_E_NULL`) it stays the caller's. Call it on
/// the loop's thread, like the server's other functions.
#[no_mangle]
pub extern "C" fn aloop_http_server_serve_fd(srv: *mut aloop_http_server_t, fd: c_int) -> c_int {
    guard(|| {
        not_null!(srv);
        if fd < 0 {
            return Error::INVALID.code();
        }
        // SAFETY: live server.
        match unsafe { &*srv }.server.serve_raw_fd(fd) {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    })
}

/// Open connections of the server.
#[no_mangle]
pub extern "C" fn aloop_http_server_connections(srv: *const aloop_http_server_t) -> usize {
    guard(|| read_handle(srv, 0, |h| h.server.connections()))
}

/// Graceful stop: stops accepting, closes idle connections, lets in-flight requests finish
/// (answered with `Connection: close`) for up to `grace_ms`, then closes what is left. `cb`
/// (may be NULL) runs once when every listener and connection is closed.
#[no_mangle]
pub extern "C" fn aloop_http_server_shutdown(
    srv: *mut aloop_http_server_t,
    grace_ms: u64,
    cb: aloop_http_stopped_cb,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        not_null!(srv);
        // SAFETY: live server; the callback runs while it is still allocated (it cannot be
        // freed before the shutdown completed).
        let s = unsafe { &*srv };
        let ud = SendBox(user_data);
        s.server.shutdown(Duration::from_millis(grace_ms), move || {
            let ud = ud;
            if let Some(cb) = cb {
                // SAFETY: see above.
                unsafe { cb(srv, ud.0) };
            }
        });
        0
    })
}

/// Frees the server (route destructors run). `ALOOP_E_BUSY` while it has listeners or
/// connections (shut it down first) or unanswered requests (answer them first).
#[no_mangle]
pub extern "C" fn aloop_http_server_free(srv: *mut aloop_http_server_t) -> c_int {
    guard(|| {
        not_null!(srv);
        // SAFETY: live server.
        if !unsafe { &*srv }.server.inner().can_free() {
            return Error::BUSY.code();
        }
        // SAFETY: created by aloop_http_server_new; not used after this.
        drop(unsafe { Box::from_raw(srv) });
        0
    })
}

/// The loop the server runs on.
#[no_mangle]
pub extern "C" fn aloop_http_server_loop(srv: *const aloop_http_server_t) -> *mut aloop_loop_t {
    guard(|| read_handle(srv, std::ptr::null_mut(), |h| h.lp))
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

/// The minor version of HTTP/1.x (0 or 1), or a negative error.
#[no_mangle]
pub extern "C" fn aloop_http_request_version(req: *mut aloop_http_request_t) -> c_int {
    guard(|| match data(req) {
        Some(d) => d.version_minor() as c_int,
        None => Error::ALREADY.code(),
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
/// until the request is answered). `ALOOP_E_NOT_FOUND` past the end.
#[no_mangle]
pub extern "C" fn aloop_http_request_header_at(
    req: *mut aloop_http_request_t,
    index: usize,
    name: *mut *const c_char,
    value: *mut *const c_char,
) -> c_int {
    guard(|| {
        not_null!(name, value);
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
/// `ALOOP_E_NOT_FOUND` when absent. `buf` may be NULL with `buf_len` 0 to ask the length.
#[no_mangle]
pub extern "C" fn aloop_http_request_query_param(
    req: *mut aloop_http_request_t,
    name: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
) -> isize {
    guard(|| {
        if name.is_null() || (buf.is_null() && buf_len > 0) {
            return Error::NULL_ARG.code() as isize;
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

/// Registers `cb(req, user_data)` to run once if the client goes away before `req` is
/// answered; `dtor(user_data)` runs when the request ends either way. `ALOOP_E_CANCELLED` if
/// the client is already gone.
#[no_mangle]
pub extern "C" fn aloop_http_request_on_abort(
    req: *mut aloop_http_request_t,
    cb: aloop_http_abort_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        let (srv, index, gen) = match resolve(req) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let (ud, armer) = UserData::new(user_data, dtor);
        let r = srv.on_abort(
            index,
            gen,
            Box::new(move || {
                // SAFETY: the request is still unanswered when its abort callback runs.
                unsafe { cb(req, ud.ptr()) };
            }),
        );
        if r.is_ok() {
            armer.arm();
        }
        rc(r)
    })
}

/// Owned copy of a response, for answering from another thread.
struct OwnedResponse {
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

fn collect_headers(
    headers: *const aloop_http_header_t,
    n: usize,
) -> Result<Vec<(&'static [u8], &'static [u8])>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if headers.is_null() {
        return Err(Error::NULL_ARG);
    }
    // SAFETY: the caller passes `n` headers, each with two C strings, borrowed for the call;
    // the 'static lifetime never escapes the call.
    let hs = unsafe { std::slice::from_raw_parts(headers, n) };
    hs.iter()
        .map(|h| {
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
        })
        .collect()
}

/// Answers `req`: `status` (200..999), `nheaders` headers (`Server`, `Date`, `Content-Length`
/// and `Connection` are written by the library; give `Server` or `Date` to replace them) and
/// `len` bytes of `body` (copied). On success the request is consumed. Errors:
/// `ALOOP_E_INVALID` (bad status, or CR/LF/NUL in a header: the request stays unanswered),
/// `ALOOP_E_CANCELLED` (the client has gone: the request is consumed), `ALOOP_E_ALREADY`
/// (already answered). Thread-safe: from another thread the response is copied and handed to
/// the request's loop, and 0 means "queued".
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
        let hs = match collect_headers(headers, nheaders) {
            Ok(h) => h,
            Err(e) => return e.code(),
        };
        let body: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `len` readable bytes at body during the call.
            unsafe { std::slice::from_raw_parts(body.cast(), len) }
        };
        let h = match header(req) {
            Ok(h) => h,
            Err(e) => return e.code(),
        };
        if std::thread::current().id() != h.loop_thread {
            let owned = OwnedResponse {
                status: status as u16,
                headers: hs.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
                body: body.to_vec(),
            };
            if owned.headers.iter().any(|(n, v)| {
                !crate::http::response::valid_name(n) || !crate::http::response::valid_value(v)
            }) {
                return Error::INVALID.code();
            }
            let job = SendBox((req as usize, owned));
            return match h.remote.post(Box::new(move || {
                let job = job;
                let (req, r) = job.0;
                if let Ok((srv, index, gen)) = resolve(req as *mut aloop_http_request_t) {
                    let hs: Vec<(&[u8], &[u8])> =
                        r.headers.iter().map(|(n, v)| (&n[..], &v[..])).collect();
                    let _ = srv.respond(index, gen, r.status, &hs, &r.body);
                }
            })) {
                Ok(()) => 0,
                Err((e, _job)) => e.code(),
            };
        }
        let (srv, index, gen) = match resolve(req) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        rc(srv.respond(index, gen, status as u16, &hs, body))
    })
}

/// Starts a chunked response (`Transfer-Encoding: chunked`) for bodies of unknown length;
/// then `aloop_http_chunk` any number of times and `aloop_http_chunk_end` once. Errors as for
/// `aloop_http_respond`. Loop thread only.
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
        let hs = match collect_headers(headers, nheaders) {
            Ok(h) => h,
            Err(e) => return e.code(),
        };
        let (srv, index, gen) = match resolve(req) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        rc(srv.respond_chunked(index, gen, status as u16, &hs))
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
        let (srv, index, gen) = match resolve(req) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: len readable bytes during the call.
            unsafe { std::slice::from_raw_parts(data.cast(), len) }
        };
        rc(srv.chunk(index, gen, bytes, false))
    })
}

/// Ends a chunked response; the request is consumed.
#[no_mangle]
pub extern "C" fn aloop_http_chunk_end(req: *mut aloop_http_request_t) -> c_int {
    guard(|| {
        let (srv, index, gen) = match resolve(req) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        rc(srv.chunk(index, gen, &[], true))
    })
}
