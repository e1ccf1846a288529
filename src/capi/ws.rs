//! `aloop_ws_*`: WebSocket connections, accepted by an HTTP handler or connected to a `ws://`
//! URL, with the same message API on both sides.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::rc::Rc;
use std::time::Duration;

use super::event_loop::{aloop_loop_t, loop_of};
use super::handle::{self, Handle, Kind, LoopId};
use super::http_request::{aloop_http_header_t, aloop_http_request_t, with_request};
use super::tls::{aloop_tls_client_config_t, client_config};
use super::{aloop_free_fn, c_str, guard, not_null, rc};
use crate::error::{Error, Result};
use crate::http::ws::{self, CloseInfo, Message, WebSocket, WsHandler, WsOptions};

/// The WebSocket peer broke the protocol: this end closed with 1002, 1007 or 1009 (the `code`
/// of the close callback says which).
pub const ALOOP_E_WS_PROTOCOL: c_int = -10400;
/// A WebSocket handshake failed: an upgrade request that is not valid (answered 400, or 426 for
/// another protocol version), or a server's answer that is not a valid 101.
pub const ALOOP_E_WS_HANDSHAKE: c_int = -10401;
/// The WebSocket's output queue is over `max_queue`: the message was not queued (retry after
/// the drain callback).
pub const ALOOP_E_WS_QUEUE_FULL: c_int = -10402;

/// A text message (UTF-8).
pub const ALOOP_WS_TEXT: c_int = 1;
/// A binary message.
pub const ALOOP_WS_BINARY: c_int = 2;

/// Close code: the purpose of the connection was fulfilled.
pub const ALOOP_WS_CLOSE_NORMAL: c_int = 1000;
/// Close code: the endpoint is going away (the server sends it when it shuts down).
pub const ALOOP_WS_CLOSE_GOING_AWAY: c_int = 1001;
/// Close code: a protocol error (bad framing, masking, opcode, control frame or close code).
pub const ALOOP_WS_CLOSE_PROTOCOL_ERROR: c_int = 1002;
/// Close code: a message of a type the endpoint does not take.
pub const ALOOP_WS_CLOSE_UNSUPPORTED_DATA: c_int = 1003;
/// Reported, never sent: the peer's close frame had no code.
pub const ALOOP_WS_CLOSE_NO_STATUS: c_int = 1005;
/// Reported, never sent: the connection ended without a closing handshake.
pub const ALOOP_WS_CLOSE_ABNORMAL: c_int = 1006;
/// Close code: a text message (or close reason) that is not UTF-8.
pub const ALOOP_WS_CLOSE_INVALID_DATA: c_int = 1007;
/// Close code: a message that breaks the endpoint's policy.
pub const ALOOP_WS_CLOSE_POLICY_VIOLATION: c_int = 1008;
/// Close code: a message over the endpoint's `max_message`.
pub const ALOOP_WS_CLOSE_MESSAGE_TOO_BIG: c_int = 1009;
/// Close code: an unexpected condition on the server.
pub const ALOOP_WS_CLOSE_INTERNAL_ERROR: c_int = 1011;

/// A WebSocket connection (opaque), server or client side. Made by `aloop_ws_accept` or
/// `aloop_ws_connect`; the application uses it until its close callback returns, when the
/// library frees it (from then on the handle is stale: `ALOOP_E_STALE`). There is no free:
/// close it (`aloop_ws_close`), or the peer does; the close callback always comes, last.
/// Bound to its loop's thread.
pub struct aloop_ws_t {
    ws: WebSocket,
    lp: LoopId,
    /// The agreed subprotocol as a C string, made on first ask once it is known.
    subprotocol: RefCell<Option<CString>>,
}

impl Handle for aloop_ws_t {
    type C = aloop_ws_t;
    const KIND: Kind = Kind::WebSocket;
}

/// Options for `aloop_ws_accept` and `aloop_ws_connect`; fill with `aloop_ws_options_init`.
/// Everything is read during the call only.
#[repr(C)]
pub struct aloop_ws_options_t {
    /// Largest message taken, its fragments reassembled, bytes (default 1048576); a larger one
    /// closes the connection with 1009.
    pub max_message: usize,
    /// Output bytes waiting to be sent beyond which `aloop_ws_send` is refused with
    /// `ALOOP_E_WS_QUEUE_FULL` and reading from the peer pauses until the queue has drained
    /// (default 1048576).
    pub max_queue: usize,
    /// Keep-alive: a ping after this much silence from the peer, ms; 0 (the default): none.
    pub ping_interval_ms: u64,
    /// Time a pinged peer has to send anything before the connection is dropped, ms (default
    /// 10000; the close callback then gets `ALOOP_E_TIMEOUT`).
    pub ping_timeout_ms: u64,
    /// Time the closing handshake may take (the peer's close frame, then the end of the TCP
    /// connection) before the connection is dropped, ms (default 5000).
    pub close_timeout_ms: u64,
    /// Subprotocols, comma-separated ("chat, superchat"), or NULL for none. A server picks the
    /// first of its list that the client offered; a client offers them in this order.
    pub subprotocols: *const c_char,
    /// Client: time to connect and complete the handshake, ms (default 10000).
    pub connect_timeout_ms: u64,
    /// Client: `nheaders` extra headers for the handshake request (`Origin`,
    /// `Authorization`, ...); may be NULL when `nheaders` is 0.
    pub headers: *const aloop_http_header_t,
    /// Client: how many `headers` there are.
    pub nheaders: usize,
    /// Client: TLS for `wss://` URLs (borrowed during the call; the connection keeps its own
    /// reference). NULL (the default): verify against the system's roots.
    pub tls: *const aloop_tls_client_config_t,
}

/// The connection is open (the handshake is done); sends made before it are queued until
/// then and go out now.
pub type aloop_ws_open_cb =
    Option<unsafe extern "C" fn(ws: *mut aloop_ws_t, user_data: *mut c_void)>;
/// A whole message: `type` is `ALOOP_WS_TEXT` (valid UTF-8, not NUL-terminated) or
/// `ALOOP_WS_BINARY`; `data` (NULL when `len` is 0) is borrowed until the callback returns.
pub type aloop_ws_message_cb = Option<
    unsafe extern "C" fn(
        ws: *mut aloop_ws_t,
        type_: c_int,
        data: *const c_void,
        len: usize,
        user_data: *mut c_void,
    ),
>;
/// A pong arrived (the answer to `aloop_ws_ping`, or unsolicited); `data` borrowed until the
/// callback returns.
pub type aloop_ws_pong_cb = Option<
    unsafe extern "C" fn(
        ws: *mut aloop_ws_t,
        data: *const c_void,
        len: usize,
        user_data: *mut c_void,
    ),
>;
/// The output queue has emptied after `aloop_ws_send` was refused with `ALOOP_E_WS_QUEUE_FULL`.
pub type aloop_ws_drain_cb =
    Option<unsafe extern "C" fn(ws: *mut aloop_ws_t, user_data: *mut c_void)>;
/// The connection is over: the last callback. `status` is 0 after a closing handshake (started
/// by either side), else why not: `ALOOP_E_WS_PROTOCOL` (this end failed the connection; `code`
/// says which rule), `ALOOP_E_TIMEOUT` (an unanswered ping or closing handshake, or a client's
/// opening past its time), `ALOOP_E_EOF` or a negative errno (the connection ended without a
/// closing handshake), and for a client that never opened `ALOOP_E_DNS`, a connect errno or
/// `ALOOP_E_WS_HANDSHAKE` (the reason then quotes the server's answer). `code` is the peer's
/// close code (`ALOOP_WS_CLOSE_NO_STATUS` when it sent none) after a handshake, the one this
/// end sent when it failed the connection, `ALOOP_WS_CLOSE_ABNORMAL` when no close frame was
/// exchanged; `reason` (UTF-8, `reason_len` bytes, NUL-terminated) is borrowed until the
/// callback returns. When it returns, the handle is freed and the user data's destructor runs.
pub type aloop_ws_close_cb = Option<
    unsafe extern "C" fn(
        ws: *mut aloop_ws_t,
        status: c_int,
        code: c_int,
        reason: *const c_char,
        reason_len: usize,
        user_data: *mut c_void,
    ),
>;

/// A connection's callbacks, copied by the call that takes them; any may be NULL (a message
/// without a callback is dropped). All run on the loop's thread, never inside the call that
/// made the connection, with the `user_data` given to it; each may call any `aloop_ws_*`
/// function on its connection, `aloop_ws_close` included.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct aloop_ws_callbacks_t {
    /// The handshake is done (from the loop, after the accept or connect call returned).
    pub on_open: aloop_ws_open_cb,
    /// Each whole message.
    pub on_message: aloop_ws_message_cb,
    /// Each pong.
    pub on_pong: aloop_ws_pong_cb,
    /// The queue emptied after a refused send.
    pub on_drain: aloop_ws_drain_cb,
    /// The end, once: the last callback; the handle is freed when it returns.
    pub on_close: aloop_ws_close_cb,
}

/// The application's callbacks behind a handle, with its user data (kept here rather than in a
/// `UserData`: one allocation less for every idle connection).
struct CHandler {
    cbs: aloop_ws_callbacks_t,
    user_data: *mut c_void,
    /// Set once the call that made the connection succeeded: run when the handler is dropped,
    /// after the close callback.
    dtor: Cell<aloop_free_fn>,
    /// The connection's handle (filled before any callback can run).
    handle: Cell<u64>,
}

impl CHandler {
    fn h(&self) -> *mut aloop_ws_t {
        self.handle.get() as *mut aloop_ws_t
    }
}

impl Drop for CHandler {
    fn drop(&mut self) {
        if let Some(d) = self.dtor.take() {
            // SAFETY: the application's destructor for its user data, armed by a successful
            // call, run exactly once (taken here).
            unsafe { d(self.user_data) };
        }
    }
}

impl WsHandler for CHandler {
    fn on_open(&self, _ws: &WebSocket) {
        if let Some(cb) = self.cbs.on_open {
            // SAFETY: the application's callback with its live handle and user data.
            unsafe { cb(self.h(), self.user_data) };
        }
    }

    fn on_message(&self, _ws: &WebSocket, msg: Message<'_>) {
        let Some(cb) = self.cbs.on_message else {
            return;
        };
        let (t, bytes) = match msg {
            Message::Text(s) => (ALOOP_WS_TEXT, s.as_bytes()),
            Message::Binary(b) => (ALOOP_WS_BINARY, b),
        };
        let p = if bytes.is_empty() {
            std::ptr::null()
        } else {
            bytes.as_ptr().cast()
        };
        // SAFETY: the application's callback; the bytes live until it returns.
        unsafe { cb(self.h(), t, p, bytes.len(), self.user_data) };
    }

    fn on_pong(&self, _ws: &WebSocket, data: &[u8]) {
        if let Some(cb) = self.cbs.on_pong {
            // SAFETY: as for on_message.
            unsafe { cb(self.h(), data.as_ptr().cast(), data.len(), self.user_data) };
        }
    }

    fn on_drain(&self, _ws: &WebSocket) {
        if let Some(cb) = self.cbs.on_drain {
            // SAFETY: the application's callback with its live handle and user data.
            unsafe { cb(self.h(), self.user_data) };
        }
    }

    fn on_close(&self, _ws: &WebSocket, info: &CloseInfo<'_>) {
        if let Some(cb) = self.cbs.on_close {
            let reason = CString::new(info.reason).unwrap_or_default();
            let status = info.status.err().map_or(0, |e| e.code());
            // SAFETY: the application's callback; the handle is live until it returns, the
            // reason until then too.
            unsafe {
                cb(
                    self.h(),
                    status,
                    info.code as c_int,
                    reason.as_ptr(),
                    info.reason.len(),
                    self.user_data,
                )
            };
        }
        // The end of the handle; the user data's destructor runs when this handler is dropped.
        drop(handle::take::<aloop_ws_t>(self.h()));
    }
}

/// Fills `opts` with the defaults given on each field.
#[no_mangle]
pub extern "C" fn aloop_ws_options_init(opts: *mut aloop_ws_options_t) -> c_int {
    guard(|| {
        not_null!(opts);
        let d = WsOptions::default();
        // SAFETY: non-NULL caller-owned memory.
        unsafe {
            opts.write(aloop_ws_options_t {
                max_message: d.max_message,
                max_queue: d.max_queue,
                ping_interval_ms: 0,
                ping_timeout_ms: d.ping_timeout.as_millis() as u64,
                close_timeout_ms: d.close_timeout.as_millis() as u64,
                subprotocols: std::ptr::null(),
                connect_timeout_ms: d.connect_timeout.as_millis() as u64,
                headers: std::ptr::null(),
                nheaders: 0,
                tls: std::ptr::null(),
            })
        };
        0
    })
}

/// Converts C options (NULL: the defaults). `INVALID` for a zero timeout or size, a
/// subprotocol that is not a token, a header with CR, LF or NUL.
fn options(opts: *const aloop_ws_options_t) -> Result<WsOptions> {
    if opts.is_null() {
        return Ok(WsOptions::default());
    }
    // SAFETY: non-NULL options, read during the call.
    let c = unsafe { &*opts };
    if c.max_queue == 0
        || c.ping_timeout_ms == 0
        || c.close_timeout_ms == 0
        || c.connect_timeout_ms == 0
    {
        return Err(Error::INVALID);
    }
    let ms = Duration::from_millis;
    let mut o = WsOptions {
        max_message: c.max_message,
        max_queue: c.max_queue,
        ping_interval: (c.ping_interval_ms > 0).then(|| ms(c.ping_interval_ms)),
        ping_timeout: ms(c.ping_timeout_ms),
        close_timeout: ms(c.close_timeout_ms),
        connect_timeout: ms(c.connect_timeout_ms),
        ..Default::default()
    };
    if !c.tls.is_null() {
        o.tls = Some(client_config(c.tls)?);
    }
    if !c.subprotocols.is_null() {
        // SAFETY: a C string per the contract.
        let list = unsafe { c_str(c.subprotocols) }?;
        for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !crate::http::response::valid_name(p.as_bytes()) {
                return Err(Error::INVALID);
            }
            o.subprotocols.push(p.to_string());
        }
    }
    if c.nheaders > 0 {
        if c.headers.is_null() {
            return Err(Error::NULL_ARG);
        }
        // SAFETY: `nheaders` headers of two C strings each, per the contract.
        let hs = unsafe { std::slice::from_raw_parts(c.headers, c.nheaders) };
        for h in hs {
            if h.name.is_null() || h.value.is_null() {
                return Err(Error::NULL_ARG);
            }
            // SAFETY: C strings per the contract.
            let (n, v) = unsafe { (CStr::from_ptr(h.name), CStr::from_ptr(h.value)) };
            let (Ok(n), Ok(v)) = (n.to_str(), v.to_str()) else {
                return Err(Error::INVALID);
            };
            if !crate::http::response::valid_name(n.as_bytes())
                || !crate::http::response::valid_value(v.as_bytes())
            {
                return Err(Error::INVALID);
            }
            o.headers.push((n.to_string(), v.to_string()));
        }
    }
    Ok(o)
}

/// The handler and the reserved handle for a new connection.
fn prepare(
    lp: LoopId,
    cbs: *const aloop_ws_callbacks_t,
    user_data: *mut c_void,
) -> (Rc<CHandler>, handle::Reserved<aloop_ws_t>) {
    let reserved = handle::reserve::<aloop_ws_t>(lp);
    let h = Rc::new(CHandler {
        // SAFETY: non-NULL (checked by the callers), read now.
        cbs: unsafe { *cbs },
        user_data,
        dtor: Cell::new(None),
        handle: Cell::new(reserved.handle() as u64),
    });
    (h, reserved)
}

/// Publishes the handle of a connection made with `h`, and arms the destructor.
fn publish(
    ws: WebSocket,
    lp: LoopId,
    h: &CHandler,
    dtor: aloop_free_fn,
    reserved: handle::Reserved<aloop_ws_t>,
    out: *mut *mut aloop_ws_t,
) {
    h.dtor.set(dtor);
    let h = reserved.fill(Box::new(aloop_ws_t {
        ws,
        lp,
        subprotocol: RefCell::new(None),
    }));
    // SAFETY: out is non-NULL and writable.
    unsafe { out.write(h) };
}

/// Accepts the WebSocket upgrade that `req` asks for, from its handler or later (loop thread
/// only): checks the handshake (GET, HTTP/1.1, `Upgrade: websocket`, `Connection: upgrade`,
/// `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`), picks the subprotocol (the first of
/// `opts->subprotocols` the client offered) and answers 101; the connection becomes a
/// WebSocket once every response before this one is out, and the bytes the client sent after
/// its request are read first. `opts` may be NULL for the defaults; `cbs` (required) is
/// copied. On success `req` is consumed and `*out` is the connection, which is the
/// application's until its close callback returns; `dtor(user_data)` runs after that callback.
/// Sends made before the open callback are queued. Errors (`*out` unwritten, no callback and
/// no `dtor` ever): `ALOOP_E_NULL`; `ALOOP_E_INVALID` for bad options (`req` is still
/// unanswered: answer it); `ALOOP_E_WS_HANDSHAKE` (`req` was answered 400, or 426 with
/// `Sec-WebSocket-Version: 13`, and consumed); `ALOOP_E_CLOSED` (the server is shutting
/// down: answered 503 and consumed); `ALOOP_E_CANCELLED` (the client has gone: consumed);
/// `ALOOP_E_ALREADY` (`req` was answered before); `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_ws_accept(
    req: *mut aloop_http_request_t,
    opts: *const aloop_ws_options_t,
    cbs: *const aloop_ws_callbacks_t,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_ws_t,
) -> c_int {
    guard(|| {
        not_null!(req, cbs, out);
        let o = match options(opts) {
            Ok(o) => o,
            Err(e) => return e.code(),
        };
        let r = with_request(req, |request, lp| {
            let (h, reserved) = prepare(lp, cbs, user_data);
            ws::accept(request, &o, h.clone()).map(|ws| publish(ws, lp, &h, dtor, reserved, out))
        });
        rc(r.and_then(|r| r))
    })
}

/// Connects to `url` (`ws://host[:port][/path][?query]`, or `wss://` over TLS verified with
/// `opts->tls` or the system's roots; the host may be a name, resolved off the loop, its
/// addresses tried in turn) and starts the handshake (offering
/// `opts->subprotocols`, sending `opts->headers`), all within `opts->connect_timeout_ms`. `opts`
/// may be NULL for the defaults; `url` and `cbs` (required) are read during the call. On
/// success `*out` is the connection at once: sends are queued until the open callback; if the
/// opening fails, the close callback says why (`ALOOP_E_DNS`, a connect errno,
/// `ALOOP_E_TIMEOUT`, an `ALOOP_E_TLS_*` code with the verifier's reason, `ALOOP_E_TLS_CONFIG`
/// when the system has no usable roots, `ALOOP_E_WS_HANDSHAKE` with the server's answer as the
/// reason). The system's CA store, the first time a process needs it, is read on a worker
/// thread, not the loop's. The handle is the application's until its close callback returns;
/// `dtor(user_data)` runs after it. Errors (`*out` unwritten, no callback, no `dtor`):
/// `ALOOP_E_NULL`, `ALOOP_E_URL` (not a `ws://` or `wss://` URL), `ALOOP_E_INVALID` (bad
/// options), `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_ws_connect(
    lp: *mut aloop_loop_t,
    url: *const c_char,
    opts: *const aloop_ws_options_t,
    cbs: *const aloop_ws_callbacks_t,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_ws_t,
) -> c_int {
    guard(|| {
        not_null!(lp, url, cbs, out);
        // SAFETY: a C string per the contract.
        let url = match unsafe { c_str(url) } {
            Ok(u) => u,
            Err(_) => return Error::BAD_URL.code(),
        };
        let o = match options(opts) {
            Ok(o) => o,
            Err(e) => return e.code(),
        };
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let (h, reserved) = prepare(id, cbs, user_data);
        match ws::connect(&core, url, &o, h.clone()) {
            Ok(ws) => {
                publish(ws, id, &h, dtor, reserved, out);
                0
            }
            Err(e) => e.code(),
        }
    })
}

fn with_ws<R>(ws: *const aloop_ws_t, f: impl FnOnce(&aloop_ws_t) -> R) -> Result<R> {
    handle::with(ws, f)
}

/// Queues a message of `type` (`ALOOP_WS_TEXT`: `data` must be UTF-8; `ALOOP_WS_BINARY`) of
/// `len` bytes, copied (`data` may be NULL when `len` is 0). Messages go out in order, after
/// the handshake; queued ones are sent before a close frame. Errors: `ALOOP_E_WS_QUEUE_FULL`
/// (more than `max_queue` bytes wait: nothing was queued; the drain callback follows when the
/// queue empties), `ALOOP_E_CLOSED` (closing), `ALOOP_E_INVALID` (another type, or text that
/// is not UTF-8), `ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_ws_send(
    ws: *mut aloop_ws_t,
    type_: c_int,
    data: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        not_null!(ws);
        if data.is_null() && len > 0 {
            return Error::NULL_ARG.code();
        }
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `len` readable bytes at `data` during the call.
            unsafe { std::slice::from_raw_parts(data.cast(), len) }
        };
        let r = with_ws(ws, |w| match type_ {
            ALOOP_WS_TEXT => match std::str::from_utf8(bytes) {
                Ok(t) => w.ws.send_text(t),
                Err(_) => Err(Error::INVALID),
            },
            ALOOP_WS_BINARY => w.ws.send_binary(bytes),
            _ => Err(Error::INVALID),
        });
        rc(r.and_then(|r| r))
    })
}

/// Sends a ping with `len` bytes of `data` (at most 125; copied); the pong goes to the pong
/// callback. Errors as for `aloop_ws_send` (`ALOOP_E_INVALID` over 125 bytes; never
/// `ALOOP_E_WS_QUEUE_FULL`).
#[no_mangle]
pub extern "C" fn aloop_ws_ping(ws: *mut aloop_ws_t, data: *const c_void, len: usize) -> c_int {
    guard(|| {
        not_null!(ws);
        if data.is_null() && len > 0 {
            return Error::NULL_ARG.code();
        }
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `len` readable bytes at `data` during the call.
            unsafe { std::slice::from_raw_parts(data.cast(), len) }
        };
        rc(with_ws(ws, |w| w.ws.ping(bytes)).and_then(|r| r))
    })
}

/// Starts the closing handshake: the queued messages go out, then a close frame with `code`
/// (1000..1003, 1007..1014 or 3000..4999) and `reason` (UTF-8, at most 123 bytes, NUL-terminated;
/// NULL for none); the close callback follows the peer's answer and the end of the TCP
/// connection, or the close timeout (`ALOOP_E_TIMEOUT`). May be called inside any callback of
/// the connection. Errors: `ALOOP_E_ALREADY` (closing already), `ALOOP_E_INVALID` (a code that
/// may not be sent, a reason too long or not UTF-8), `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_ws_close(ws: *mut aloop_ws_t, code: c_int, reason: *const c_char) -> c_int {
    guard(|| {
        not_null!(ws);
        let reason = if reason.is_null() {
            ""
        } else {
            // SAFETY: a C string per the contract.
            match unsafe { c_str(reason) } {
                Ok(r) => r,
                Err(e) => return e.code(),
            }
        };
        let Ok(code) = u16::try_from(code) else {
            return Error::INVALID.code();
        };
        rc(with_ws(ws, |w| w.ws.close(code, reason)).and_then(|r| r))
    })
}

/// Output bytes waiting to be sent (0 for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_ws_buffered_amount(ws: *const aloop_ws_t) -> usize {
    guard(|| with_ws(ws, |w| w.ws.buffered_amount()).unwrap_or(0))
}

/// The subprotocol agreed in the handshake (NUL-terminated, valid until the close callback
/// returns), or NULL when none was (or, for a client, before the open callback; and for a
/// NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_ws_subprotocol(ws: *const aloop_ws_t) -> *const c_char {
    guard(|| {
        handle::read(ws, std::ptr::null(), |w: &aloop_ws_t| {
            let mut cached = w.subprotocol.borrow_mut();
            if cached.is_none() {
                *cached = w.ws.subprotocol().and_then(|p| CString::new(p).ok());
            }
            cached.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
        })
    })
}

/// The loop of a connection (NULL for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_ws_loop(ws: *const aloop_ws_t) -> *mut aloop_loop_t {
    guard(|| handle::read(ws, std::ptr::null_mut(), |w: &aloop_ws_t| w.lp.as_ptr()))
}
