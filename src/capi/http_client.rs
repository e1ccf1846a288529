//! `aloop_http_client_*`: the HTTP client of a loop.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::rc::Rc;
use std::time::Duration;

use super::event_loop::{aloop_loop_t, loop_of};
use super::handle::{self, Handle, Kind, LoopId};
use super::http_request::aloop_http_header_t;
use super::tls::{aloop_tls_client_config_t, client_config};
use super::{aloop_free_fn, c_str, guard, not_null, rc, UserData};
use crate::error::{Error, Result};
use crate::http::client::{ClientEvent, ClientOptions, ClientRequest, HttpClient, RequestHandle};
use crate::http::response_parser::Response;
use crate::reactor::Slab;

/// The host name could not be resolved.
pub const ALOOP_E_DNS: c_int = -10200;
/// The HTTP response is malformed or ended early.
pub const ALOOP_E_HTTP_PROTOCOL: c_int = -10201;
/// The HTTP response body is larger than allowed.
pub const ALOOP_E_HTTP_TOO_LARGE: c_int = -10202;
/// The connection could not be established in time.
pub const ALOOP_E_CONNECT_TIMEOUT: c_int = -10203;
/// The URL is not an http:// or https:// URL the client can use.
pub const ALOOP_E_URL: c_int = -10204;
/// No bytes arrived for longer than the read timeout while waiting for a response.
pub const ALOOP_E_READ_TIMEOUT: c_int = -10205;

/// Options for `aloop_http_client_new`; fill with `aloop_http_client_options_init` first.
#[repr(C)]
pub struct aloop_http_client_options_t {
    /// Time to connect, ms (default 5000; `ALOOP_E_CONNECT_TIMEOUT` past it). A host name's
    /// addresses are tried in turn (IPv4 first), each with an equal share of the time left.
    pub connect_timeout_ms: u64,
    /// Time for the whole request, ms (default 30000; `ALOOP_E_TIMEOUT` past it).
    pub request_timeout_ms: u64,
    /// Largest response body, bytes (default 8 MiB; `ALOOP_E_HTTP_TOO_LARGE` beyond).
    pub max_body: usize,
    /// Keep-alive connections per origin (default 8); more requests wait for one.
    pub max_per_origin: usize,
    /// How long an idle pooled connection is kept, ms (default 30000).
    pub idle_timeout_ms: u64,
    /// Longest silence while waiting for a response, ms (default 15000;
    /// `ALOOP_E_READ_TIMEOUT` past it).
    pub read_timeout_ms: u64,
    /// TLS for https:// URLs (borrowed during `aloop_http_client_new`; the client keeps its
    /// own reference). NULL (the default): verify against the system's roots.
    pub tls: *const aloop_tls_client_config_t,
    /// NULL (default): requests connect to their URL's host and port. Otherwise the path of a
    /// Unix stream socket (`@name`: an abstract one) every request of the client connects to
    /// instead, the URL's host and port only naming the `Host` header (curl's
    /// `--unix-socket`). Copied by `aloop_http_client_new`.
    pub unix_socket: *const c_char,
}

/// A client's requests not yet answered, by id; shared with their callbacks.
type Requests = Rc<RefCell<Slab<RequestHandle>>>;

/// An HTTP client (opaque) on one loop. Owned by the caller of `aloop_http_client_new` until
/// `aloop_http_client_free` (which may be called inside one of its own callbacks).
pub struct aloop_http_client_t {
    client: HttpClient,
    lp: LoopId,
    /// Requests not yet answered, by id; shared with their callbacks.
    requests: Requests,
    /// The Unix socket every request connects to (options' `unix_socket`).
    unix_socket: Option<std::path::PathBuf>,
}

impl Handle for aloop_http_client_t {
    type C = aloop_http_client_t;
    const KIND: Kind = Kind::HttpClient;
}

/// A response (opaque), borrowed during the response callback only: afterwards its handle is
/// stale (accessors give 0, NULL or `ALOOP_E_STALE`).
pub struct aloop_http_response_t {
    resp: Response,
    reason: CString,
    headers: Vec<(CString, CString)>,
}

impl Handle for aloop_http_response_t {
    type C = aloop_http_response_t;
    const KIND: Kind = Kind::HttpResponse;
}

impl aloop_http_response_t {
    fn new(resp: Response) -> Box<aloop_http_response_t> {
        Box::new(aloop_http_response_t {
            reason: CString::new(resp.reason.replace('\0', " ")).unwrap_or_default(),
            headers: resp
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        CString::new(n.as_str()).unwrap_or_default(),
                        CString::new(v.replace('\0', " ")).unwrap_or_default(),
                    )
                })
                .collect(),
            resp,
        })
    }
}

/// Runs `f` on a response handle's data.
fn with_response<R>(
    resp: *const aloop_http_response_t,
    f: impl FnOnce(&aloop_http_response_t) -> R,
) -> Result<R> {
    handle::with(resp, f)
}

/// Called once per request on the loop's thread: `status` 0 with the response in `resp` (any
/// HTTP status), or an error code with `resp` NULL: `ALOOP_E_DNS`, a negative errno from
/// connect, `ALOOP_E_CONNECT_TIMEOUT` (the TLS handshake included), `ALOOP_E_TIMEOUT`,
/// `ALOOP_E_HTTP_PROTOCOL`, `ALOOP_E_READ_TIMEOUT`, `ALOOP_E_HTTP_TOO_LARGE`,
/// `ALOOP_E_CANCELLED`, and for https: `ALOOP_E_TLS_HANDSHAKE`, `ALOOP_E_TLS_UNTRUSTED`,
/// `ALOOP_E_TLS_SELF_SIGNED`, `ALOOP_E_TLS_NAME_MISMATCH`, `ALOOP_E_TLS_EXPIRED`,
/// `ALOOP_E_TLS_PROTOCOL`, `ALOOP_E_TLS_CONFIG`. With an error, `aloop_last_error_message()`
/// called inside the callback gives its reason (the verifier's words for a certificate, the
/// address a connect failed on).
pub type aloop_http_response_cb = Option<
    unsafe extern "C" fn(status: c_int, resp: *const aloop_http_response_t, user_data: *mut c_void),
>;

/// Receives a piece of a streamed response body (see `aloop_http_client_stream`).
pub type aloop_http_chunk_cb =
    Option<unsafe extern "C" fn(data: *const c_void, len: usize, user_data: *mut c_void)>;

/// The head of a streamed response (`aloop_http_client_request_stream()`): `resp` holds the
/// status and headers (its body is empty), borrowed during the call only. `id` is the
/// request's id (for `aloop_http_client_pause()` and the others).
pub type aloop_http_stream_head_cb = Option<
    unsafe extern "C" fn(id: u64, resp: *const aloop_http_response_t, user_data: *mut c_void),
>;
/// A piece of a streamed response body: `len` (> 0) bytes at `data`, borrowed during the call.
pub type aloop_http_stream_data_cb =
    Option<unsafe extern "C" fn(id: u64, data: *const c_void, len: usize, user_data: *mut c_void)>;
/// The end of a streamed request, once: `status` 0 when the whole body arrived, or the error
/// (as for `aloop_http_response_cb`; `ALOOP_E_READ_TIMEOUT` also when the body stalls).
pub type aloop_http_stream_done_cb =
    Option<unsafe extern "C" fn(id: u64, status: c_int, user_data: *mut c_void)>;

/// Fills `opts` with the defaults.
#[no_mangle]
pub extern "C" fn aloop_http_client_options_init(opts: *mut aloop_http_client_options_t) -> c_int {
    guard(|| {
        not_null!(opts);
        let d = ClientOptions::default();
        // SAFETY: non-NULL caller-owned memory.
        unsafe {
            opts.write(aloop_http_client_options_t {
                connect_timeout_ms: d.connect_timeout.as_millis() as u64,
                request_timeout_ms: d.request_timeout.as_millis() as u64,
                max_body: d.max_body,
                max_per_origin: d.max_per_origin,
                idle_timeout_ms: d.idle_timeout.as_millis() as u64,
                read_timeout_ms: d.read_timeout.as_millis() as u64,
                tls: std::ptr::null(),
                unix_socket: std::ptr::null(),
            })
        };
        0
    })
}

/// Creates a client on `lp`. `opts` may be NULL for the defaults; it is read during the call
/// only (its `unix_socket` string is copied). On success `*out` owns the client; on failure
/// `*out` is not written. Errors: `ALOOP_E_NULL`, `ALOOP_E_INVALID` (a zero timeout or pool
/// size, an empty `unix_socket` or one longer than 107 bytes), `ALOOP_E_STALE` (for the loop
/// or `opts->tls`),
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_client_new(
    lp: *mut aloop_loop_t,
    opts: *const aloop_http_client_options_t,
    out: *mut *mut aloop_http_client_t,
) -> c_int {
    guard(|| {
        not_null!(lp, out);
        let mut o = ClientOptions::default();
        let mut unix_socket = None;
        let mut tls = None;
        if !opts.is_null() {
            // SAFETY: non-NULL, read during the call.
            let c = unsafe { &*opts };
            if c.connect_timeout_ms == 0
                || c.request_timeout_ms == 0
                || c.max_per_origin == 0
                || c.idle_timeout_ms == 0
            {
                return Error::INVALID.code();
            }
            o = ClientOptions {
                connect_timeout: Duration::from_millis(c.connect_timeout_ms),
                request_timeout: Duration::from_millis(c.request_timeout_ms),
                max_body: c.max_body,
                max_per_origin: c.max_per_origin,
                idle_timeout: Duration::from_millis(c.idle_timeout_ms),
                read_timeout: Duration::from_millis(c.read_timeout_ms),
            };
            if !c.unix_socket.is_null() {
                // SAFETY: a C string per the contract, read during the call.
                match unsafe { super::tcp::unix_path(c.unix_socket) } {
                    Ok(p) if crate::net::SockAddr::from_unix(&p).is_ok() => unix_socket = Some(p),
                    _ => return Error::INVALID.code(),
                }
            }
            if !c.tls.is_null() {
                match client_config(c.tls) {
                    Ok(t) => tls = Some(t),
                    Err(e) => return e.code(),
                }
            }
        }
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let client = HttpClient::new(&core, o);
        if let Some(t) = tls {
            client.set_tls(t);
        }
        let c = Box::new(aloop_http_client_t {
            client,
            lp: id,
            requests: Default::default(),
            unix_socket,
        });
        let h = handle::register(id, c);
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(h) };
        0
    })
}

/// Cancels every request still pending (their callbacks run now, inside this call, with
/// `ALOOP_E_CANCELLED`; the handle is already stale for them), closes the connections and frees
/// the client. Allowed inside the client's own callbacks. Returns 0, `ALOOP_E_STALE` for a
/// client already freed or `ALOOP_E_WRONG_THREAD`; NULL is ignored (0).
#[no_mangle]
pub extern "C" fn aloop_http_client_free(client: *mut aloop_http_client_t) -> c_int {
    guard(|| {
        if client.is_null() {
            return 0;
        }
        match handle::take::<aloop_http_client_t>(client) {
            Ok(c) => {
                c.client.shut_down();
                0
            }
            Err(e) => e.code(),
        }
    })
}

/// Sends `method` (upper case) to `url` (`http://host[:port]/path?query` or `https://...`,
/// verified as the client's TLS configuration says; the host may be a name, resolved off the
/// loop) with `nheaders` headers and `len` bytes of `body` (all copied
/// before the call returns). `cb` runs once from the loop; `dtor(user_data)` right after it.
/// `*id` (may be NULL) gets an id for `aloop_http_client_cancel` (not written on failure).
/// Errors (`cb` and `dtor` then never run): `ALOOP_E_URL`, `ALOOP_E_INVALID` (a method not in
/// upper case, or CR/LF in a header), `ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_client_request(
    client: *mut aloop_http_client_t,
    method: *const c_char,
    url: *const c_char,
    headers: *const aloop_http_header_t,
    nheaders: usize,
    body: *const c_void,
    len: usize,
    cb: aloop_http_response_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    id: *mut u64,
) -> c_int {
    guard(|| {
        start_request(
            client, method, url, headers, nheaders, body, len, cb, user_data, dtor, id, None,
        )
    })
}

/// The older streaming form, kept working: as `aloop_http_client_request`, but the response
/// body is not collected: `on_chunk(data, len, user_data)` gets it piece by piece as it
/// arrives (borrowed during each call; no size limit), and only then `cb` gets the status and
/// headers (with an empty body). New code should use `aloop_http_client_request_stream()`,
/// which gives the head first and can pause.
#[no_mangle]
pub extern "C" fn aloop_http_client_stream(
    client: *mut aloop_http_client_t,
    method: *const c_char,
    url: *const c_char,
    headers: *const aloop_http_header_t,
    nheaders: usize,
    body: *const c_void,
    len: usize,
    on_chunk: aloop_http_chunk_cb,
    cb: aloop_http_response_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    id: *mut u64,
) -> c_int {
    guard(|| {
        if on_chunk.is_none() {
            return Error::NULL_ARG.code();
        }
        start_request(
            client, method, url, headers, nheaders, body, len, cb, user_data, dtor, id, on_chunk,
        )
    })
}

/// Builds the core request from the C arguments (`ALOOP_E_*` code on failure).
///
/// # Safety
/// The pointers follow `aloop_http_client_request`'s contract.
unsafe fn build_request(
    method: *const c_char,
    url: *const c_char,
    headers: *const aloop_http_header_t,
    nheaders: usize,
    body: *const c_void,
    len: usize,
) -> std::result::Result<ClientRequest, c_int> {
    if method.is_null() || url.is_null() {
        return Err(Error::NULL_ARG.code());
    }
    if body.is_null() && len > 0 || headers.is_null() && nheaders > 0 {
        return Err(Error::NULL_ARG.code());
    }
    // SAFETY: C strings per the contract.
    let (Ok(method), Ok(url)) = (unsafe { c_str(method) }, unsafe { c_str(url) }) else {
        return Err(Error::INVALID.code());
    };
    let mut req = ClientRequest::new(method, url).map_err(|e| e.code())?;
    if nheaders > 0 {
        // SAFETY: `nheaders` headers of two C strings each, borrowed during the call.
        for h in unsafe { std::slice::from_raw_parts(headers, nheaders) } {
            if h.name.is_null() || h.value.is_null() {
                return Err(Error::NULL_ARG.code());
            }
            // SAFETY: as above.
            let (n, v) = unsafe {
                (
                    CStr::from_ptr(h.name).to_bytes(),
                    CStr::from_ptr(h.value).to_bytes(),
                )
            };
            if !crate::http::response::valid_name(n) || !crate::http::response::valid_value(v) {
                return Err(Error::INVALID.code());
            }
            req.headers.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        }
    }
    if len > 0 {
        // SAFETY: `len` readable bytes during the call.
        req.body = unsafe { std::slice::from_raw_parts(body.cast::<u8>(), len) }.to_vec();
    }
    Ok(req)
}

/// The parts of a client handle a request needs; sets the request's Unix socket to the
/// client's.
fn client_parts(
    client: *mut aloop_http_client_t,
    req: &mut ClientRequest,
) -> Result<(HttpClient, LoopId, Requests)> {
    handle::with(client, |c: &aloop_http_client_t| {
        req.unix_socket = c.unix_socket.clone();
        (c.client.clone(), c.lp, c.requests.clone())
    })
}

/// Files a started request under its id (returned, and written to `*id` when not NULL);
/// `slot` learns the id, so the request's last callback can drop the entry.
fn file_request(
    requests: &Requests,
    h: RequestHandle,
    slot: &std::cell::Cell<Option<crate::reactor::Token>>,
    id: *mut u64,
) {
    let t = requests.borrow_mut().insert(h);
    slot.set(Some(t));
    if !id.is_null() {
        // SAFETY: non-NULL out-parameter.
        unsafe { id.write(t.get()) };
    }
}

#[allow(clippy::too_many_arguments)]
fn start_request(
    client: *mut aloop_http_client_t,
    method: *const c_char,
    url: *const c_char,
    headers: *const aloop_http_header_t,
    nheaders: usize,
    body: *const c_void,
    len: usize,
    cb: aloop_http_response_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    id: *mut u64,
    on_chunk: aloop_http_chunk_cb,
) -> c_int {
    not_null!(client, method, url);
    let Some(cb) = cb else {
        return Error::NULL_ARG.code();
    };
    // SAFETY: per this function's callers' contract.
    let mut req = match unsafe { build_request(method, url, headers, nheaders, body, len) } {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (core, lp, requests) = match client_parts(client, &mut req) {
        Ok(x) => x,
        Err(e) => return e.code(),
    };
    let (ud, armer) = UserData::new(user_data, dtor);
    armer.arm();
    let slot = Rc::new(std::cell::Cell::new(None));
    let slot2 = slot.clone();
    let weak_requests = Rc::downgrade(&requests);
    let done = move |r: Result<Response>| {
        if let (Some(t), Some(reqs)) = (slot2.get(), weak_requests.upgrade()) {
            reqs.borrow_mut().remove(t);
        }
        match r {
            Ok(resp) => {
                let h = handle::register(lp, aloop_http_response_t::new(resp));
                // SAFETY: the application's callback; the response handle is live for
                // the duration of the call and retired right after it.
                unsafe { cb(0, h, ud.ptr()) };
                drop(handle::take::<aloop_http_response_t>(h));
            }
            Err(e) => {
                if let Some(why) = crate::error::error_detail() {
                    super::set_last_error(&why);
                }
                // SAFETY: as above, with no response.
                unsafe { cb(e.code(), std::ptr::null(), ud.ptr()) }
            }
        }
    };
    let h = match on_chunk {
        None => core.request(req, done),
        Some(chunk_cb) => core.request_streaming(
            req,
            move |data: &[u8]| {
                // SAFETY: the bytes are borrowed for the callback's duration; user_data is the
                // request's, alive until its final callback.
                unsafe { chunk_cb(data.as_ptr().cast(), data.len(), user_data) }
            },
            done,
        ),
    };
    file_request(&requests, h, &slot, id);
    0
}

/// Sends a request and streams its response: `on_head(id, resp, user_data)` gets the status
/// and headers first, then `on_data(id, data, len, user_data)` (may be NULL to discard the
/// body) each piece of the body as it arrives, straight from the receive buffer (never
/// collected, no size limit), then `on_done(id, status, user_data)` runs once: 0 when the
/// whole body arrived, or an error (also alone, for a request that failed before its head;
/// `ALOOP_E_CANCELLED` after `aloop_http_client_cancel()` or `aloop_http_client_free()`).
/// `aloop_http_client_pause()` and `_resume()` hold the body back: while paused the
/// connection is not read, so a slow consumer holds at most one read's worth and the server
/// is held back by TCP. The whole-request timeout ends when the head arrives; the body is
/// bounded by the read timeout (no byte for that long: `ALOOP_E_READ_TIMEOUT`) instead.
/// Arguments, `*id` and errors as for `aloop_http_client_request()` (`ALOOP_E_NULL` also
/// for a NULL `on_head` or `on_done`); `dtor(user_data)` runs right after `on_done`. The
/// callbacks run on the loop's thread, never inside this call.
#[no_mangle]
pub extern "C" fn aloop_http_client_request_stream(
    client: *mut aloop_http_client_t,
    method: *const c_char,
    url: *const c_char,
    headers: *const aloop_http_header_t,
    nheaders: usize,
    body: *const c_void,
    len: usize,
    on_head: aloop_http_stream_head_cb,
    on_data: aloop_http_stream_data_cb,
    on_done: aloop_http_stream_done_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    id: *mut u64,
) -> c_int {
    guard(|| {
        not_null!(client, method, url);
        let (Some(on_head), Some(on_done)) = (on_head, on_done) else {
            return Error::NULL_ARG.code();
        };
        // SAFETY: per this function's contract.
        let mut req = match unsafe { build_request(method, url, headers, nheaders, body, len) } {
            Ok(r) => r,
            Err(code) => return code,
        };
        let (core, lp, requests) = match client_parts(client, &mut req) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let (ud, armer) = UserData::new(user_data, dtor);
        armer.arm();
        let slot = Rc::new(std::cell::Cell::new(None));
        let slot2 = slot.clone();
        let weak_requests = Rc::downgrade(&requests);
        let mut ud = Some(ud);
        let h = core.request_stream(req, move |ev| {
            let raw = slot2.get().map_or(0, |t: crate::reactor::Token| t.get());
            let Some(u) = ud.as_ref() else { return };
            let p = u.ptr();
            match ev {
                ClientEvent::Head(resp) => {
                    let h = handle::register(lp, aloop_http_response_t::new(resp.clone()));
                    // SAFETY: the application's callback; the response handle is live during
                    // the call and retired right after it.
                    unsafe { on_head(raw, h, p) };
                    drop(handle::take::<aloop_http_response_t>(h));
                }
                ClientEvent::Data(d) => {
                    if let Some(on_data) = on_data {
                        // SAFETY: the bytes are borrowed for the call.
                        unsafe { on_data(raw, d.as_ptr().cast(), d.len(), p) };
                    }
                }
                ClientEvent::Done(r) => {
                    if let (Some(t), Some(reqs)) = (slot2.get(), weak_requests.upgrade()) {
                        reqs.borrow_mut().remove(t);
                    }
                    if r.is_err() {
                        if let Some(why) = crate::error::error_detail() {
                            super::set_last_error(&why);
                        }
                    }
                    // SAFETY: the application's callback with its user data; the destructor
                    // runs right after (the user data is dropped here).
                    unsafe { on_done(raw, rc(r), p) };
                    drop(ud.take());
                }
            }
        });
        file_request(&requests, h, &slot, id);
        0
    })
}

/// Runs `f` on the handle of the request `id` of `client` (`ALOOP_E_ALREADY` once finished).
fn with_request(
    client: *mut aloop_http_client_t,
    id: u64,
    f: impl FnOnce(&RequestHandle) -> Result<()>,
) -> c_int {
    let r = handle::with(client, |c: &aloop_http_client_t| {
        let reqs = c.requests.borrow();
        match crate::reactor::Token::from_raw(id).and_then(|t| reqs.get(t)) {
            Some(h) => f(h),
            None => Err(Error::ALREADY),
        }
    });
    rc(r.and_then(|r| r))
}

/// Pauses the body of the streamed request `id` (`aloop_http_client_request_stream()`): no
/// `on_data` until `aloop_http_client_resume()`; its connection stops reading. May be called
/// from its own callbacks. Errors: `ALOOP_E_INVALID` (not a streamed request),
/// `ALOOP_E_ALREADY` (finished), `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_client_pause(client: *mut aloop_http_client_t, id: u64) -> c_int {
    guard(|| with_request(client, id, |h| h.pause()))
}

/// Resumes a paused streamed request; its callbacks come from the loop, never inside this
/// call. Errors as for `aloop_http_client_pause()`.
#[no_mangle]
pub extern "C" fn aloop_http_client_resume(client: *mut aloop_http_client_t, id: u64) -> c_int {
    guard(|| with_request(client, id, |h| h.resume()))
}

/// Cancels the request with this id: its callback runs with `ALOOP_E_CANCELLED`, inside this
/// call (unless it already ran: then `ALOOP_E_ALREADY`). Called from inside one of that
/// request's own callbacks (a streamed request's head or data callback), the final callback
/// runs right after that callback returns instead. `ALOOP_E_STALE` for a freed client.
#[no_mangle]
pub extern "C" fn aloop_http_client_cancel(client: *mut aloop_http_client_t, id: u64) -> c_int {
    guard(|| {
        let h = handle::with(client, |c: &aloop_http_client_t| {
            crate::reactor::Token::from_raw(id).and_then(|t| c.requests.borrow_mut().remove(t))
        });
        match h {
            Ok(Some(h)) => {
                h.cancel();
                0
            }
            Ok(None) => Error::ALREADY.code(),
            Err(e) => e.code(),
        }
    })
}

/// The HTTP status of the response, or a negative error (`ALOOP_E_NULL`, `ALOOP_E_STALE`
/// after its callback returned).
#[no_mangle]
pub extern "C" fn aloop_http_response_status(resp: *const aloop_http_response_t) -> c_int {
    guard(|| match with_response(resp, |r| r.resp.status) {
        Ok(status) => status as c_int,
        Err(e) => e.code(),
    })
}

/// The reason phrase as sent ("OK"), NUL-terminated.
#[no_mangle]
pub extern "C" fn aloop_http_response_reason(resp: *const aloop_http_response_t) -> *const c_char {
    guard(|| {
        handle::read(resp, std::ptr::null(), |r: &aloop_http_response_t| {
            r.reason.as_ptr()
        })
    })
}

/// The first header called `name` (case-insensitive), or NULL.
#[no_mangle]
pub extern "C" fn aloop_http_response_header(
    resp: *const aloop_http_response_t,
    name: *const c_char,
) -> *const c_char {
    guard(|| {
        if name.is_null() {
            return std::ptr::null();
        }
        // SAFETY: C string per the contract.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        handle::read(resp, std::ptr::null(), |r: &aloop_http_response_t| {
            r.headers
                .iter()
                .find(|(n, _)| n.to_bytes().eq_ignore_ascii_case(name))
                .map_or(std::ptr::null(), |(_, v)| v.as_ptr())
        })
    })
}

/// Number of response headers.
#[no_mangle]
pub extern "C" fn aloop_http_response_header_count(resp: *const aloop_http_response_t) -> usize {
    guard(|| handle::read(resp, 0, |r: &aloop_http_response_t| r.headers.len()))
}

/// Header `index`: sets `*name` and `*value` (valid during the callback). `ALOOP_E_NOT_FOUND`
/// past the end; on any error neither out pointer is written.
#[no_mangle]
pub extern "C" fn aloop_http_response_header_at(
    resp: *const aloop_http_response_t,
    index: usize,
    name: *mut *const c_char,
    value: *mut *const c_char,
) -> c_int {
    guard(|| {
        not_null!(resp, name, value);
        let r = with_response(resp, |r| match r.headers.get(index) {
            Some((n, v)) => {
                // SAFETY: non-NULL out-parameters.
                unsafe {
                    name.write(n.as_ptr());
                    value.write(v.as_ptr());
                }
                Ok(())
            }
            None => Err(Error::NOT_FOUND),
        });
        rc(r.and_then(|r| r))
    })
}

/// The body (not NUL-terminated) and its length in `*len` (may be NULL).
#[no_mangle]
pub extern "C" fn aloop_http_response_body(
    resp: *const aloop_http_response_t,
    len: *mut usize,
) -> *const c_void {
    guard(|| {
        let (p, n) = handle::read(resp, (std::ptr::null(), 0), |r: &aloop_http_response_t| {
            (r.resp.body.as_ptr().cast(), r.resp.body.len())
        });
        if !len.is_null() {
            // SAFETY: non-NULL out-parameter.
            unsafe { len.write(n) };
        }
        p
    })
}
