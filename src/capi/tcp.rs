//! `aloop_tcp_*`: listeners and connections, TCP or Unix stream sockets (`aloop_unix_*` make
//! them; the handles are the same).

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::net::SocketAddr;
use std::time::Duration;

use super::event_loop::{aloop_loop_t, loop_of};
use super::handle::{self, Handle, Kind, LoopId};
use super::{aloop_free_fn, c_str, guard, not_null, rc, UserData};
use crate::error::{Error, Result};
use crate::net::{parse_ip_port, Address, ListenOptions, ReadEvent, TcpListener, TcpStream};

/// Options for `aloop_tcp_listen`; fill with `aloop_listen_options_init` first.
#[repr(C)]
pub struct aloop_listen_options_t {
    /// `listen(2)` backlog (default 1024).
    pub backlog: c_int,
    /// Non-zero: SO_REUSEPORT, so several loops or processes can listen on the same port (on a
    /// Unix path, the loops of this process share its socket: see `aloop_unix_listen`).
    pub reuse_port: c_int,
    /// Non-zero: an IPv6 listener takes IPv6 only (IPV6_V6ONLY).
    pub ipv6_only: c_int,
    /// Non-zero (default): TCP_NODELAY on accepted connections.
    pub nodelay: c_int,
}

/// A listening socket (opaque), TCP or Unix. Owned by the caller of `aloop_tcp_listen` or
/// `aloop_unix_listen`; ends with
/// `aloop_tcp_listener_close`, freed after its close callback (then the handle is stale).
pub struct aloop_tcp_listener_t {
    listener: TcpListener,
    lp: LoopId,
    data: Cell<*mut c_void>,
}

impl Handle for aloop_tcp_listener_t {
    type C = aloop_tcp_listener_t;
    const KIND: Kind = Kind::TcpListener;
}

/// A connection (opaque), TCP or Unix stream socket. Owned by the application from
/// `aloop_tcp_connect`, `aloop_unix_connect` or the accept callback; ends with `aloop_tcp_close`, freed after its close callback (then the handle is
/// stale: every call returns `ALOOP_E_STALE`).
pub struct aloop_tcp_t {
    stream: TcpStream,
    lp: LoopId,
    data: Cell<*mut c_void>,
}

impl Handle for aloop_tcp_t {
    type C = aloop_tcp_t;
    const KIND: Kind = Kind::Tcp;
}

impl aloop_tcp_t {
    fn new(stream: TcpStream, lp: LoopId) -> Box<aloop_tcp_t> {
        Box::new(aloop_tcp_t {
            stream,
            lp,
            data: Cell::new(std::ptr::null_mut()),
        })
    }
}

/// Runs `f` on the stream of a live connection handle.
fn with_stream<R>(tcp: *const aloop_tcp_t, f: impl FnOnce(&TcpStream) -> R) -> Result<R> {
    handle::with(tcp, |t: &aloop_tcp_t| f(&t.stream))
}

/// A new connection (`status` 0, `conn` owned by the callee, who must close it) or a transient
/// accept error (`status` < 0, `conn` NULL; accepting pauses 100 ms, then resumes by itself).
pub type aloop_accept_cb = Option<
    unsafe extern "C" fn(
        listener: *mut aloop_tcp_listener_t,
        status: c_int,
        conn: *mut aloop_tcp_t,
        user_data: *mut c_void,
    ),
>;
/// Connect result: 0, a negative errno, `ALOOP_E_TIMEOUT` or `ALOOP_E_CANCELLED`.
pub type aloop_connect_cb =
    Option<unsafe extern "C" fn(tcp: *mut aloop_tcp_t, status: c_int, user_data: *mut c_void)>;
/// Received data: `nread` > 0 bytes at `data` (borrowed until the callback returns); or
/// `nread` == `ALOOP_E_EOF` (the peer finished sending) or another negative error, with `data`
/// NULL, after which reading has stopped.
pub type aloop_read_cb = Option<
    unsafe extern "C" fn(
        tcp: *mut aloop_tcp_t,
        nread: isize,
        data: *const c_char,
        user_data: *mut c_void,
    ),
>;
/// Write or shutdown result: 0, a negative errno, or `ALOOP_E_CANCELLED` (closed first).
pub type aloop_write_cb =
    Option<unsafe extern "C" fn(tcp: *mut aloop_tcp_t, status: c_int, user_data: *mut c_void)>;
/// The connection is closed; after this callback returns its memory is freed.
pub type aloop_tcp_close_cb =
    Option<unsafe extern "C" fn(tcp: *mut aloop_tcp_t, user_data: *mut c_void)>;
/// The listener is closed; after this callback returns its memory is freed.
pub type aloop_listener_close_cb =
    Option<unsafe extern "C" fn(listener: *mut aloop_tcp_listener_t, user_data: *mut c_void)>;

/// Fills `opts` with the defaults: backlog 1024, no SO_REUSEPORT, dual-stack IPv6, TCP_NODELAY.
#[no_mangle]
pub extern "C" fn aloop_listen_options_init(opts: *mut aloop_listen_options_t) -> c_int {
    guard(|| {
        not_null!(opts);
        let d = ListenOptions::default();
        // SAFETY: non-NULL caller-owned memory.
        unsafe {
            opts.write(aloop_listen_options_t {
                backlog: d.backlog,
                reuse_port: d.reuse_port as c_int,
                ipv6_only: d.ipv6_only as c_int,
                nodelay: d.nodelay as c_int,
            })
        };
        0
    })
}

/// # Safety
/// `ip` must be NULL or a valid C string.
unsafe fn address(ip: *const c_char, port: u16) -> Result<SocketAddr> {
    if ip.is_null() {
        return Err(Error::NULL_ARG);
    }
    // SAFETY: per this function's contract.
    parse_ip_port(unsafe { c_str(ip) }?, port)
}

/// Binds `ip:port` (numeric IPv4 or IPv6; port 0 picks a free port, see
/// `aloop_tcp_listener_port`), listens and starts accepting: `cb(listener, status, conn,
/// user_data)` runs for each connection. `opts` may be NULL for the defaults and is only read
/// during the call; `ip` is borrowed during the call. `dtor(user_data)` runs after the close
/// callback. On success `*out` owns the listener; on failure `*out` is not written and neither
/// `cb` nor `dtor` ever runs. Errors: `ALOOP_E_NULL`, `ALOOP_E_ADDRESS`, `ALOOP_E_STALE`,
/// `ALOOP_E_WRONG_THREAD`, or a system error such as `-EADDRINUSE`.
#[no_mangle]
pub extern "C" fn aloop_tcp_listen(
    lp: *mut aloop_loop_t,
    ip: *const c_char,
    port: u16,
    opts: *const aloop_listen_options_t,
    cb: aloop_accept_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_tcp_listener_t,
) -> c_int {
    guard(|| {
        not_null!(lp, ip, out);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        // SAFETY: ip is non-NULL and, per the contract, a C string.
        let addr = match unsafe { address(ip, port) } {
            Ok(a) => a,
            Err(e) => return e.code(),
        };
        let mut o = ListenOptions::default();
        if !opts.is_null() {
            // SAFETY: non-NULL options, read only here.
            let c = unsafe { &*opts };
            o = ListenOptions {
                backlog: c.backlog,
                reuse_port: c.reuse_port != 0,
                ipv6_only: c.ipv6_only != 0,
                nodelay: c.nodelay != 0,
            };
        }
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let listener = match TcpListener::bind(&core, addr, o) {
            Ok(l) => l,
            Err(e) => return e.code(),
        };
        start_listener(listener, id, cb, user_data, dtor, out)
    })
}

/// Starts accepting on a bound listener and hands it to C in `*out`.
fn start_listener(
    listener: TcpListener,
    id: LoopId,
    cb: unsafe extern "C" fn(*mut aloop_tcp_listener_t, c_int, *mut aloop_tcp_t, *mut c_void),
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_tcp_listener_t,
) -> c_int {
    let reserved = handle::reserve::<aloop_tcp_listener_t>(id);
    let this = reserved.handle() as usize;
    let (ud, armer) = UserData::new(user_data, dtor);
    let started = listener.start(move |r| {
        let (status, conn) = match r {
            Ok(stream) => (0, handle::register(id, aloop_tcp_t::new(stream, id))),
            Err(e) => (e.code(), std::ptr::null_mut()),
        };
        // SAFETY: the application's callback with its listener handle (checked again by
        // any call it makes), a new connection handle it now owns, and its user data.
        unsafe { cb(this as *mut aloop_tcp_listener_t, status, conn, ud.ptr()) };
    });
    match started {
        Ok(()) => {
            armer.arm();
            let h = reserved.fill(Box::new(aloop_tcp_listener_t {
                listener,
                lp: id,
                data: Cell::new(std::ptr::null_mut()),
            }));
            // SAFETY: out is non-NULL and writable.
            unsafe { out.write(h) };
            0
        }
        Err(e) => {
            listener.close(|| {});
            e.code()
        }
    }
}

/// Listens on the Unix stream socket `path` (`@name` for Linux's abstract namespace, where
/// no file is made) and starts accepting, as `aloop_tcp_listen` does: connections arrive as
/// `aloop_tcp_t` handles, and every `aloop_tcp_*` call applies to them. A socket file left
/// by a server that died (connecting to it is refused) is replaced; a live one is not: the
/// call fails with `-EADDRINUSE` (`aloop_last_error_message()` says a server listens there);
/// `-EEXIST` when the path exists and is not a socket. The file is removed when the listener
/// closes, unless another socket has replaced it meanwhile. `opts` may be NULL; `backlog` and
/// `reuse_port` apply. With `reuse_port`, listeners of this process on one path (on any loops,
/// all asking `reuse_port`) share one socket, since SO_REUSEPORT does not spread a Unix
/// socket's connections: the first call binds it, later ones accept from it too, the kernel
/// gives each connection to one loop that is waiting, and the file is removed when the last
/// of them closes. `path` is borrowed during the call. Errors otherwise as for
/// `aloop_tcp_listen`, and `ALOOP_E_INVALID` for a path longer than 107 bytes.
#[no_mangle]
pub extern "C" fn aloop_unix_listen(
    lp: *mut aloop_loop_t,
    path: *const c_char,
    opts: *const aloop_listen_options_t,
    cb: aloop_accept_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_tcp_listener_t,
) -> c_int {
    guard(|| {
        not_null!(lp, path, out);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        // SAFETY: path is non-NULL and a C string per the contract.
        let path = match unsafe { unix_path(path) } {
            Ok(p) => p,
            Err(e) => return e.code(),
        };
        let mut o = ListenOptions::default();
        if !opts.is_null() {
            // SAFETY: non-NULL options, read only here.
            let c = unsafe { &*opts };
            o.backlog = c.backlog;
            o.reuse_port = c.reuse_port != 0;
        }
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let listener = match TcpListener::bind_unix(&core, &path, o) {
            Ok(l) => l,
            Err(e) => {
                explain_unix_listen(&path, e);
                return e.code();
            }
        };
        start_listener(listener, id, cb, user_data, dtor, out)
    })
}

/// A Unix socket path from C (`INVALID` for an empty one).
///
/// # Safety
/// `p` must be a valid C string.
pub(crate) unsafe fn unix_path(p: *const c_char) -> Result<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Error::INVALID);
    }
    Ok(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

/// Records why listening on a Unix path failed, for `aloop_last_error_message()`.
pub(crate) fn explain_unix_listen(path: &std::path::Path, e: Error) {
    let p = path.display();
    if e == Error::from_errno(libc::EADDRINUSE) {
        super::set_last_error(&format!("a server is listening on the Unix socket {p}"));
    } else if e == Error::from_errno(libc::EEXIST) {
        super::set_last_error(&format!("{p} exists and is not a socket"));
    }
}

/// The port the listener is bound to (useful after binding port 0), or a negative error
/// (`ALOOP_E_INVALID` for a Unix listener).
#[no_mangle]
pub extern "C" fn aloop_tcp_listener_port(l: *const aloop_tcp_listener_t) -> c_int {
    guard(|| {
        match handle::with(l, |h: &aloop_tcp_listener_t| {
            h.listener.local_address().ip().map(|a| a.port())
        }) {
            Ok(Some(port)) => port as c_int,
            Ok(None) => Error::INVALID.code(),
            Err(e) => e.code(),
        }
    })
}

/// Stops accepting and closes the listener. `cb(listener, user_data)` (may be NULL) runs once on
/// the loop's thread when it is closed; then the listener's memory and registration end (the
/// accept destructor runs) and the handle is stale. `ALOOP_E_ALREADY` if already closing,
/// `ALOOP_E_STALE` once closed. May be called inside its own accept callback.
#[no_mangle]
pub extern "C" fn aloop_tcp_listener_close(
    l: *mut aloop_tcp_listener_t,
    cb: aloop_listener_close_cb,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        not_null!(l);
        let listener = match handle::with(l, |h: &aloop_tcp_listener_t| h.listener.clone()) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        if listener.fd() < 0 {
            return Error::ALREADY.code();
        }
        let raw = l as usize;
        listener.close(move || {
            if let Some(cb) = cb {
                // SAFETY: the application's close callback; the handle is still live during it.
                unsafe { cb(raw as *mut aloop_tcp_listener_t, user_data) };
            }
            drop(handle::take::<aloop_tcp_listener_t>(raw as *const _));
        });
        0
    })
}

/// Application data slot of the listener (initially NULL); never touched by the library.
#[no_mangle]
pub extern "C" fn aloop_tcp_listener_set_data(
    l: *mut aloop_tcp_listener_t,
    data: *mut c_void,
) -> c_int {
    guard(|| rc(handle::with(l, |h: &aloop_tcp_listener_t| h.data.set(data))))
}

/// The listener's data slot (NULL for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_tcp_listener_get_data(l: *const aloop_tcp_listener_t) -> *mut c_void {
    guard(|| {
        handle::read(l, std::ptr::null_mut(), |h: &aloop_tcp_listener_t| {
            h.data.get()
        })
    })
}

/// The loop of a listener (NULL for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_tcp_listener_loop(l: *const aloop_tcp_listener_t) -> *mut aloop_loop_t {
    guard(|| {
        handle::read(l, std::ptr::null_mut(), |h: &aloop_tcp_listener_t| {
            h.lp.as_ptr()
        })
    })
}

/// Starts connecting to `ip:port` (numeric IPv4 or IPv6; `ip` borrowed during the call).
/// `cb(tcp, status, user_data)` runs once: 0, a negative errno (`-ECONNREFUSED`, ...),
/// `ALOOP_E_TIMEOUT` when `timeout_ms` (0: none) passes first, or `ALOOP_E_CANCELLED` when the
/// handle is closed first. On success `*out` gets the handle at once; the caller owns it and
/// must close it whatever the result. `dtor(user_data)` runs right after `cb`. On failure
/// `*out` is not written and neither `cb` nor `dtor` ever runs. Errors: `ALOOP_E_NULL`,
/// `ALOOP_E_ADDRESS`, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`, or a system error.
#[no_mangle]
pub extern "C" fn aloop_tcp_connect(
    lp: *mut aloop_loop_t,
    ip: *const c_char,
    port: u16,
    timeout_ms: u64,
    cb: aloop_connect_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_tcp_t,
) -> c_int {
    guard(|| {
        not_null!(lp, ip, out);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        // SAFETY: ip is non-NULL and a C string per the contract.
        let addr = match unsafe { address(ip, port) } {
            Ok(a) => a,
            Err(e) => return e.code(),
        };
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let (ud, armer) = UserData::new(user_data, dtor);
        // The callback needs the handle before the stream exists.
        let reserved = handle::reserve::<aloop_tcp_t>(id);
        let this = reserved.handle() as usize;
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        let r = TcpStream::connect(&core, addr, timeout, move |r| {
            let ud = ud;
            // SAFETY: the application's callback with its connection handle (published before
            // the loop runs again) and its user data.
            unsafe { cb(this as *mut aloop_tcp_t, rc(r), ud.ptr()) };
        });
        match r {
            Ok(stream) => {
                armer.arm();
                let h = reserved.fill(aloop_tcp_t::new(stream, id));
                // SAFETY: out is non-NULL and writable.
                unsafe { out.write(h) };
                0
            }
            Err(e) => e.code(),
        }
    })
}

/// Starts connecting to the Unix stream socket `path` (`@name`: an abstract one; borrowed
/// during the call), as `aloop_tcp_connect` does: `cb(tcp, status, user_data)` runs once with
/// 0, `-ENOENT` (no such socket), `-ECONNREFUSED` (nobody accepts on it), `-EAGAIN` (its
/// backlog is full), another negative errno, `ALOOP_E_TIMEOUT` or `ALOOP_E_CANCELLED`. The
/// handle, ownership and errors are as for `aloop_tcp_connect` (`ALOOP_E_INVALID` for an
/// empty path or one longer than 107 bytes).
#[no_mangle]
pub extern "C" fn aloop_unix_connect(
    lp: *mut aloop_loop_t,
    path: *const c_char,
    timeout_ms: u64,
    cb: aloop_connect_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
    out: *mut *mut aloop_tcp_t,
) -> c_int {
    guard(|| {
        not_null!(lp, path, out);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        // SAFETY: path is non-NULL and a C string per the contract.
        let path = match unsafe { unix_path(path) } {
            Ok(p) => p,
            Err(e) => return e.code(),
        };
        let (core, id) = match loop_of(lp) {
            Ok(x) => x,
            Err(e) => return e.code(),
        };
        let (ud, armer) = UserData::new(user_data, dtor);
        let reserved = handle::reserve::<aloop_tcp_t>(id);
        let this = reserved.handle() as usize;
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        let r = TcpStream::connect_unix(&core, &path, timeout, move |r| {
            let ud = ud;
            // SAFETY: the application's callback with its connection handle (published before
            // the loop runs again) and its user data.
            unsafe { cb(this as *mut aloop_tcp_t, rc(r), ud.ptr()) };
        });
        match r {
            Ok(stream) => {
                armer.arm();
                let h = reserved.fill(aloop_tcp_t::new(stream, id));
                // SAFETY: out is non-NULL and writable.
                unsafe { out.write(h) };
                0
            }
            Err(e) => e.code(),
        }
    })
}

/// Starts reading: `cb(tcp, nread, data, user_data)` per received chunk, then once with
/// `ALOOP_E_EOF` or an error. `dtor(user_data)` runs when reading ends (stop, EOF, error,
/// close). `ALOOP_E_ALREADY` if reading, `ALOOP_E_CLOSED` if closing; on any error neither `cb`
/// nor `dtor` ever runs.
#[no_mangle]
pub extern "C" fn aloop_tcp_read_start(
    tcp: *mut aloop_tcp_t,
    cb: aloop_read_cb,
    user_data: *mut c_void,
    dtor: aloop_free_fn,
) -> c_int {
    guard(|| {
        not_null!(tcp);
        let Some(cb) = cb else {
            return Error::NULL_ARG.code();
        };
        let (ud, armer) = UserData::new(user_data, dtor);
        let udp = ud.ptr();
        let this = tcp as usize;
        let r = with_stream(tcp, |s| {
            s.read_start(move |ev| {
                let _own = &ud;
                let tcp = this as *mut aloop_tcp_t;
                // SAFETY: the application's callback with its handle and user data; `data` is
                // valid for the duration of the call.
                unsafe {
                    match ev {
                        ReadEvent::Data(d) => cb(tcp, d.len() as isize, d.as_ptr().cast(), udp),
                        ReadEvent::Eof => {
                            cb(tcp, Error::EOF.code() as isize, std::ptr::null(), udp)
                        }
                        ReadEvent::Error(e) => cb(tcp, e.code() as isize, std::ptr::null(), udp),
                    }
                }
            })
        })
        .and_then(|r| r);
        if r.is_ok() {
            armer.arm();
        }
        rc(r)
    })
}

/// Stops reading (the read destructor runs). Data arriving meanwhile is kept and delivered at
/// the next `aloop_tcp_read_start`.
#[no_mangle]
pub extern "C" fn aloop_tcp_read_stop(tcp: *mut aloop_tcp_t) -> c_int {
    guard(|| rc(with_stream(tcp, |s| s.read_stop())))
}

/// Queues `len` bytes from `data` for sending. The bytes are copied before the call returns
/// (`data` stays the caller's). `cb(tcp, status, user_data)` (may be NULL) runs once when all
/// were handed to the kernel, or with the error (`ALOOP_E_CANCELLED` on close). Never raises
/// SIGPIPE. Errors (`cb` then never runs): `ALOOP_E_CLOSED`, `-EPIPE` after shutdown,
/// `-ENOTCONN` while connecting, `ALOOP_E_STALE`, `ALOOP_E_WRONG_THREAD`.
#[no_mangle]
pub extern "C" fn aloop_tcp_write(
    tcp: *mut aloop_tcp_t,
    data: *const c_void,
    len: usize,
    cb: aloop_write_cb,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        not_null!(tcp);
        if data.is_null() && len > 0 {
            return Error::NULL_ARG.code();
        }
        let bytes = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: the caller guarantees `len` readable bytes at `data` during the call.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }.to_vec()
        };
        let this = tcp as usize;
        let done: Option<Box<dyn FnOnce(Result<()>)>> = cb.map(|cb| {
            Box::new(move |r: Result<()>| {
                // SAFETY: the application's callback with its handle and user data.
                unsafe { cb(this as *mut aloop_tcp_t, rc(r), user_data) }
            }) as Box<dyn FnOnce(Result<()>)>
        });
        rc(with_stream(tcp, |s| s.write(bytes, done)).and_then(|r| r))
    })
}

/// Bytes queued by `aloop_tcp_write` and not yet handed to the kernel (0 for a NULL, stale or
/// wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_tcp_write_queue_size(tcp: *const aloop_tcp_t) -> usize {
    guard(|| with_stream(tcp, |s| s.write_queue_size()).unwrap_or(0))
}

/// Shuts down the sending side after the queued writes; `cb` (may be NULL) gets the result.
/// `ALOOP_E_ALREADY` if shutdown was already requested.
#[no_mangle]
pub extern "C" fn aloop_tcp_shutdown(
    tcp: *mut aloop_tcp_t,
    cb: aloop_write_cb,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        let this = tcp as usize;
        let r = with_stream(tcp, |s| {
            s.shutdown(move |r| {
                if let Some(cb) = cb {
                    // SAFETY: the application's callback with its handle and user data.
                    unsafe { cb(this as *mut aloop_tcp_t, rc(r), user_data) };
                }
            })
        });
        rc(r.and_then(|r| r))
    })
}

/// Closes the connection. Pending writes, shutdown and connect complete with
/// `ALOOP_E_CANCELLED` (unless they already finished), reading ends, then `cb(tcp, user_data)`
/// (may be NULL) runs last, and the handle is freed when it returns (from then on it is stale).
/// `ALOOP_E_ALREADY` if already closing, `ALOOP_E_STALE` once closed, `ALOOP_E_WRONG_THREAD`
/// from another thread while the loop runs. May be called inside any of the handle's own
/// callbacks.
#[no_mangle]
pub extern "C" fn aloop_tcp_close(
    tcp: *mut aloop_tcp_t,
    cb: aloop_tcp_close_cb,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        let stream = match with_stream(tcp, |s| s.clone()) {
            Ok(s) => s,
            Err(e) => return e.code(),
        };
        if stream.is_closing() {
            return Error::ALREADY.code();
        }
        let this = tcp as usize;
        stream.close(move || {
            if let Some(cb) = cb {
                // SAFETY: the application's close callback; the handle is live during it.
                unsafe { cb(this as *mut aloop_tcp_t, user_data) };
            }
            drop(handle::take::<aloop_tcp_t>(this as *const _));
        });
        0
    })
}

/// TCP_NODELAY on (non-zero) or off.
#[no_mangle]
pub extern "C" fn aloop_tcp_nodelay(tcp: *mut aloop_tcp_t, on: c_int) -> c_int {
    guard(|| rc(with_stream(tcp, |s| s.set_nodelay(on != 0)).and_then(|r| r)))
}

/// The socket's fd, borrowed (do not close it), or a negative error.
#[no_mangle]
pub extern "C" fn aloop_tcp_fd(tcp: *const aloop_tcp_t) -> c_int {
    guard(|| match with_stream(tcp, |s| s.fd()) {
        Ok(fd) if fd < 0 => Error::CLOSED.code(),
        Ok(fd) => fd,
        Err(e) => e.code(),
    })
}

/// Writes an address as text into `buf` (`buf_len` bytes, NUL-terminated; may be NULL) and
/// its port into `*port` (may be NULL).
pub(crate) fn write_address(
    a: Result<Address>,
    buf: *mut c_char,
    buf_len: usize,
    port: *mut u16,
) -> c_int {
    let a = match a {
        Ok(a) => a,
        Err(e) => return e.code(),
    };
    if !buf.is_null() {
        let text = a.host_text();
        if text.len() + 1 > buf_len {
            return Error::from_errno(libc::ENOSPC).code();
        }
        // SAFETY: buf has buf_len writable bytes (caller's contract), and text fits with its
        // NUL.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            *buf.add(text.len()) = 0;
        }
    }
    if !port.is_null() {
        // SAFETY: non-NULL, writable per contract.
        unsafe { *port = a.port() };
    }
    0
}

/// Writes the peer's IP as text into `ip` (`ip_len` bytes; 46 always suffice for an IP) and
/// its port into `*port`; either may be NULL. For a Unix socket: its path (`@name` for an
/// abstract one; "" for an unnamed peer, as connecting clients are) and port 0 (108 bytes
/// suffice). `-ENOSPC` if `ip_len` is too small (nothing written).
#[no_mangle]
pub extern "C" fn aloop_tcp_peer_address(
    tcp: *const aloop_tcp_t,
    ip: *mut c_char,
    ip_len: usize,
    port: *mut u16,
) -> c_int {
    guard(|| match with_stream(tcp, |s| s.peer_address()) {
        Ok(a) => write_address(a, ip, ip_len, port),
        Err(e) => e.code(),
    })
}

/// As `aloop_tcp_peer_address`, for the local end.
#[no_mangle]
pub extern "C" fn aloop_tcp_local_address(
    tcp: *const aloop_tcp_t,
    ip: *mut c_char,
    ip_len: usize,
    port: *mut u16,
) -> c_int {
    guard(|| match with_stream(tcp, |s| s.local_address()) {
        Ok(a) => write_address(a, ip, ip_len, port),
        Err(e) => e.code(),
    })
}

/// Application data slot of the connection (initially NULL); never touched by the library.
#[no_mangle]
pub extern "C" fn aloop_tcp_set_data(tcp: *mut aloop_tcp_t, data: *mut c_void) -> c_int {
    guard(|| rc(handle::with(tcp, |t: &aloop_tcp_t| t.data.set(data))))
}

/// The connection's data slot (NULL for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_tcp_get_data(tcp: *const aloop_tcp_t) -> *mut c_void {
    guard(|| handle::read(tcp, std::ptr::null_mut(), |t: &aloop_tcp_t| t.data.get()))
}

/// The loop of a connection (NULL for a NULL, stale or wrong-thread handle).
#[no_mangle]
pub extern "C" fn aloop_tcp_loop(tcp: *const aloop_tcp_t) -> *mut aloop_loop_t {
    guard(|| handle::read(tcp, std::ptr::null_mut(), |t: &aloop_tcp_t| t.lp.as_ptr()))
}
