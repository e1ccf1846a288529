//! `aloop_http_server_*`: the HTTP/1.1 server of a loop: options, routes, listeners, graceful
//! shutdown. Requests and responses are in `http_request`.

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use super::event_loop::{aloop_loop_t, loop_of};
use super::handle::{self, Handle, Kind, LoopId};
use super::http_request::{aloop_http_request_t, register_request};
use super::tls::{aloop_tls_server_config_t, server_config};
use super::{aloop_free_fn, c_str, guard, not_null, rc, SendBox, UserData};
use crate::error::{Error, Result};
use crate::http::{HttpServer, Request, ServerOptions};
use crate::net::parse_ip_port;

/// An HTTP server (opaque) on one loop. Owned by the caller of `aloop_http_server_new`; free it
/// with `aloop_http_server_free` after `aloop_http_server_shutdown` completed.
pub struct aloop_http_server_t {
    pub(crate) server: HttpServer,
    lp: LoopId,
}

impl Handle for aloop_http_server_t {
    type C = aloop_http_server_t;
    const KIND: Kind = Kind::HttpServer;
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
    /// Non-zero: SO_REUSEPORT on the listeners (several loops or processes on one port); the
    /// servers of this process on one Unix path share its socket (`aloop_http_server_listen_unix`).
    pub reuse_port: c_int,
    /// listen(2) backlog (default 1024).
    pub backlog: c_int,
    /// Serve TLS (HTTPS) with this configuration on every connection (borrowed during
    /// `aloop_http_server_new`; the server keeps its own reference). NULL (the default):
    /// plain HTTP. `aloop_http_server_set_tls` replaces it later.
    pub tls: *const aloop_tls_server_config_t,
}

/// A request handler: answer `req` exactly once, now or later.
pub type aloop_http_handler_cb =
    Option<unsafe extern "C" fn(req: *mut aloop_http_request_t, user_data: *mut c_void)>;
/// Called once when a shutdown has closed every listener and connection.
pub type aloop_http_stopped_cb =
    Option<unsafe extern "C" fn(server: *mut aloop_http_server_t, user_data: *mut c_void)>;

/// Runs `f` on the server behind a handle.
fn with_server<R>(srv: *const aloop_http_server_t, f: impl FnOnce(&HttpServer) -> R) -> Result<R> {
    handle::with(srv, |s: &aloop_http_server_t| f(&s.server))
}

/// Fills `opts` with the defaults given on each field.
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
                tls: std::ptr::null(),
            })
        };
        0
    })
}

fn server_options(c: &aloop_http_server_options_t) -> Result<ServerOptions> {
    let timeouts = [
        c.header_timeout_ms,
        c.body_timeout_ms,
        c.idle_timeout_ms,
        c.write_timeout_ms,
    ];
    let limits = [
        c.max_request_line,
        c.max_header_bytes,
        c.max_headers,
        c.max_pipeline,
        c.max_output,
    ];
    if timeouts.contains(&0) || limits.contains(&0) || c.backlog <= 0 {
        return Err(Error::INVALID);
    }
    let ms = Duration::from_millis;
    let mut o = ServerOptions {
        header_timeout: ms(c.header_timeout_ms),
        body_timeout: ms(c.body_timeout_ms),
        idle_timeout: ms(c.idle_timeout_ms),
        write_timeout: ms(c.write_timeout_ms),
        ..Default::default()
    };
    o.limits.max_request_line = c.max_request_line;
    o.limits.max_header_bytes = c.max_header_bytes;
    o.limits.max_headers = c.max_headers;
    o.limits.max_body = c.max_body;
    o.max_pipeline = c.max_pipeline;
    o.max_output = c.max_output;
    o.listen.reuse_port = c.reuse_port != 0;
    o.listen.backlog = c.backlog;
    Ok(o)
}

/// Creates a server on `lp` (no listener yet). `opts` may be NULL for the defaults; it is read
/// during the call only. On success `*out` owns the server; on failure `*out` is not written.
/// Errors: `ALOOP_E_NULL`, `ALOOP_E_INVALID` (a zero timeout or limit), `ALOOP_E_STALE` (for
/// the loop or `opts->tls`), `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_server_new(
    lp: *mut aloop_loop_t,
    opts: *const aloop_http_server_options_t,
    out: *mut *mut aloop_http_server_t,
) -> c_int {
    guard(|| {
        not_null!(lp, out);
        let o = if opts.is_null() {
            ServerOptions::default()
        } else {
            // SAFETY: non-NULL options, read only here.
            match server_options(unsafe { &*opts }) {
                Ok(o) => o,
                Err(e) => return e.code(),
            }
        };
        // SAFETY: non-NULL options, read only here.
        let tls_ptr = if opts.is_null() {
            std::ptr::null()
        } else {
            unsafe { (*opts).tls }
        };
        let tls = if tls_ptr.is_null() {
            None
        } else {
            match server_config(tls_ptr) {
                Ok(t) => Some(t),
                Err(e) => return e.code(),
            }
        };
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let server = HttpServer::new(&core, o);
        if let Some(t) = tls {
            server.set_tls(t);
        }
        let h = handle::register(id, Box::new(aloop_http_server_t { server, lp: id }));
        // SAFETY: out is non-NULL and writable.
        unsafe { out.write(h) };
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
    lp: LoopId,
) -> impl Fn(Request) {
    move |req: Request| {
        let h = register_request(req, lp);
        // SAFETY: the application's handler; it owns the request from here on.
        unsafe { cb(h, ud.ptr()) };
    }
}

enum RouteKind {
    Exact,
    Prefix,
    Fallback,
    /// Exact, with the body streamed (limit; 0: none).
    Streaming(u64),
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
    if method.is_some_and(|m| !crate::http::valid_method(m)) {
        return Error::INVALID.code();
    }
    let (ud, armer) = UserData::new(user_data, dtor);
    let r = handle::with(srv, |s: &aloop_http_server_t| {
        let h = c_handler(cb, ud, s.lp);
        match kind {
            RouteKind::Exact => s.server.route(method, path.unwrap(), h),
            RouteKind::Prefix => s.server.route_prefix(method, path.unwrap(), h),
            RouteKind::Fallback => s.server.fallback(h),
            RouteKind::Streaming(max) => s.server.route_streaming(method, path.unwrap(), max, h),
        }
    });
    if r.is_ok() {
        armer.arm();
    }
    rc(r)
}

/// Routes requests with `method` (NULL: any method; HEAD also reaches a GET route) and exactly
/// `path` (starting with '/', compared without the query) to `cb`. Methods are case-sensitive
/// and given in upper case ("GET", "POST", an extension method like "PURGE"); anything else
/// is `ALOOP_E_INVALID`. A route added again for the same method and path replaces the old
/// one. `dtor(user_data)` runs when the server is freed (or the route replaced). On an error
/// (`ALOOP_E_NULL`, `ALOOP_E_INVALID`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`) nothing is
/// registered and `dtor` never runs.
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

/// Routes like `aloop_http_server_route`, but the request body is not collected: the handler
/// gets the request as soon as its head has arrived (`aloop_http_request_body()` gives 0
/// bytes) and reads the body as it comes with `aloop_http_request_body_start()`, pausing and
/// resuming at will. `max_body` bounds the body (0: no limit; the server's `max_body` does
/// not apply): a `Content-Length` above it is answered `413` by the server before the handler
/// runs; a chunked body that grows past it gives the reader `ALOOP_E_HTTP_TOO_LARGE`.
/// `Expect: 100-continue` is answered when the handler starts reading. Errors and ownership
/// as for `aloop_http_server_route`.
#[no_mangle]
pub extern "C" fn aloop_http_server_route_stream(
    srv: *mut aloop_http_server_t,
    method: *const c_char,
    path: *const c_char,
    max_body: u64,
    cb: aloop_http_handler_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        add_route(
            srv,
            method,
            path,
            cb,
            user_data,
            dtor,
            RouteKind::Streaming(max_body),
        )
    })
}

/// Routes every path starting with `prefix` (longest prefix first, after exact routes);
/// otherwise as `aloop_http_server_route`.
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

/// Handles every request no route takes (instead of the default 404 and 405 answers);
/// otherwise as `aloop_http_server_route`.
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
/// bound port (> 0) or an error (`-EADDRINUSE`, `ALOOP_E_ADDRESS`, `ALOOP_E_CLOSED` after
/// shutdown, ...). May be called again for more addresses.
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
        match with_server(srv, |s| s.listen(addr)).and_then(|r| r) {
            Ok(bound) => bound.port() as c_int,
            Err(e) => e.code(),
        }
    })
}

/// Listens on the Unix stream socket `path` (`@name`: Linux's abstract namespace) and
/// starts serving, beside any TCP listener (a reverse proxy on the same machine, nginx's
/// `proxy_pass http://unix:PATH:`). A socket file left by a server that died is replaced; a
/// live one is not: `-EADDRINUSE`, with `aloop_last_error_message()` saying a server listens
/// there; `-EEXIST` when the path is not a socket; `ALOOP_E_INVALID` for an empty path or one
/// longer than 107 bytes; `ALOOP_E_CLOSED` after shutdown; `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`. The socket file is removed when the server shuts down. With the
/// server's `reuse_port`, the servers of this process (one per loop and thread) that listen on
/// one path share one socket: each accepts from it and the kernel gives each connection to
/// one waiting loop (SO_REUSEPORT does not spread a Unix socket's connections); the file is
/// removed when the last of them shuts down. `path` is borrowed during the call. Returns 0.
#[no_mangle]
pub extern "C" fn aloop_http_server_listen_unix(
    srv: *mut aloop_http_server_t,
    path: *const c_char,
) -> c_int {
    guard(|| {
        not_null!(srv, path);
        // SAFETY: path is a C string per the contract.
        let path = match unsafe { super::tcp::unix_path(path) } {
            Ok(p) => p,
            Err(e) => return e.code(),
        };
        let r = with_server(srv, |s| s.listen_unix(&path)).and_then(|r| r);
        if let Err(e) = r {
            super::tcp::explain_unix_listen(&path, e);
        }
        rc(r)
    })
}

/// Serves from a socket made elsewhere and already listening, TCP or Unix: socket activation
/// (systemd's `LISTEN_FDS`), a socket inherited from a parent, or one shared by the workers
/// of a pre-forking server. The server listens on a duplicate of `fd`, closed at shutdown;
/// `fd` stays the caller's, so one socket can be given to the servers of several loops, which
/// then share its connections (as other processes accepting from it may). Once it passes the
/// checks, `fd` is made non-blocking (the duplicate shares its flags). A Unix socket's file is
/// left in place at shutdown: it is not the server's. Returns the socket's TCP port (> 0), or
/// 0 for a Unix socket; `ALOOP_E_INVALID` for anything but a listening stream socket (-1, a
/// descriptor not open, a pipe, a connected or unlistened socket, UDP), with
/// `aloop_last_error_message()` saying so; `-EMFILE` or `-ENFILE` when no descriptor is left
/// for the duplicate; `ALOOP_E_CLOSED` after shutdown; `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_server_listen_fd(srv: *mut aloop_http_server_t, fd: c_int) -> c_int {
    guard(|| {
        not_null!(srv);
        match with_server(srv, |s| s.listen_raw_fd(fd)).and_then(|r| r) {
            Ok(crate::net::Address::Ip(a)) => c_int::from(a.port()),
            Ok(_) => 0,
            Err(e) => {
                if e == Error::INVALID {
                    let why = format!("descriptor {fd} is not a listening stream socket");
                    super::set_last_error(&why);
                }
                e.code()
            }
        }
    })
}

/// Serves a connection accepted elsewhere: socket activation, another acceptor, a passed
/// descriptor, one end of a `socketpair`. `fd` must be a connected stream socket; it is made
/// non-blocking. On success (0) the server owns `fd` and closes it; on an error
/// (`ALOOP_E_INVALID` for anything but a connected stream socket: -1, a pipe, a listening
/// socket; `ALOOP_E_CLOSED` after shutdown; `ALOOP_E_NULL`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`) it stays the caller's.
#[no_mangle]
pub extern "C" fn aloop_http_server_serve_fd(srv: *mut aloop_http_server_t, fd: c_int) -> c_int {
    guard(|| {
        not_null!(srv);
        if fd < 0 {
            return Error::INVALID.code();
        }
        rc(with_server(srv, |s| s.serve_raw_fd(fd)).and_then(|r| r))
    })
}

/// Open connections of the server (0 for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_http_server_connections(srv: *const aloop_http_server_t) -> usize {
    guard(|| with_server(srv, |s| s.connections()).unwrap_or(0))
}

/// Graceful stop: stops accepting and reading new requests, closes idle connections, lets
/// in-flight requests finish for up to `grace_ms` (every response already given is sent whole,
/// in every order of calls; the last response of a connection carries `Connection: close`),
/// then closes what is left. `cb` (may be NULL) runs once when every listener and connection
/// is closed, never inside this call. Errors (then `cb` never runs): `ALOOP_E_ALREADY` for a
/// second shutdown, `ALOOP_E_NULL`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_http_server_shutdown(
    srv: *mut aloop_http_server_t,
    grace_ms: u64,
    cb: aloop_http_stopped_cb,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        let ud = SendBox(user_data);
        let raw = srv as usize;
        rc(with_server(srv, |s| {
            s.shutdown(Duration::from_millis(grace_ms), move || {
                let ud = ud;
                if let Some(cb) = cb {
                    // SAFETY: the application's callback with its server handle (which cannot
                    // be freed before the shutdown completed) and user data.
                    unsafe { cb(raw as *mut aloop_http_server_t, ud.0) };
                }
            })
        })
        .and_then(|r| r))
    })
}

/// Frees the server (route destructors run). `ALOOP_E_BUSY` while it has listeners or
/// connections (shut it down first) or unanswered requests (answer them first);
/// `ALOOP_E_STALE` once freed. Allowed inside its shutdown callback.
#[no_mangle]
pub extern "C" fn aloop_http_server_free(srv: *mut aloop_http_server_t) -> c_int {
    guard(|| {
        match with_server(srv, |s| s.inner().can_free()) {
            Ok(true) => {}
            Ok(false) => return Error::BUSY.code(),
            Err(e) => return e.code(),
        }
        rc(handle::take::<aloop_http_server_t>(srv).map(drop))
    })
}

/// The loop the server runs on (NULL for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_http_server_loop(srv: *const aloop_http_server_t) -> *mut aloop_loop_t {
    guard(|| {
        handle::read(srv, std::ptr::null_mut(), |s: &aloop_http_server_t| {
            s.lp.as_ptr()
        })
    })
}
