//! `aloop_tcp_*`: listeners and connections.

use std::ffi::{c_char, c_int, c_void};
use std::net::SocketAddr;
use std::time::Duration;

use super::event_loop::aloop_loop_t;
use super::{aloop_free_fn, c_str, guard, not_null, rc, read_handle, UserData};
use crate::error::{Error, Result};
use crate::net::{parse_ip_port, ListenOptions, ReadEvent, TcpListener, TcpStream};

/// Options for `aloop_tcp_listen`; fill with `aloop_listen_options_init` first.
#[repr(C)]
pub struct aloop_listen_options_t {
    /// `listen(2)` backlog (default 1024).
    pub backlog: c_int,
    /// Non-zero: SO_REUSEPORT, so several loops or processes can listen on the same port.
    pub reuse_port: c_int,
    /// Non-zero: an IPv6 listener takes IPv6 only (IPV6_V6ONLY).
    pub ipv6_only: c_int,
    /// Non-zero (default): TCP_NODELAY on accepted connections.
    pub nodelay: c_int,
}

/// A listening socket (opaque). Owned by the caller of `aloop_tcp_listen`; ends with
/// `aloop_tcp_listener_close`, freed after its close callback.
pub struct aloop_tcp_listener_t {
    listener: TcpListener,
    lp: *mut aloop_loop_t,
    data: *mut c_void,
}

/// A TCP connection (opaque). Owned by the application from `aloop_tcp_connect` or the accept
/// callback; ends with `aloop_tcp_close`, freed after its close callback.
pub struct aloop_tcp_t {
    stream: TcpStream,
    lp: *mut aloop_loop_t,
    data: *mut c_void,
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
/// callback. Errors: `ALOOP_E_NULL`, `ALOOP_E_ADDRESS`, or a system error such as `-EADDRINUSE`.
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
        // SAFETY: live loop on its own thread.
        let listener = match TcpListener::bind(&unsafe { &*lp }.lp, addr, o) {
            Ok(l) => l,
            Err(e) => return e.code(),
        };
        let this = Box::into_raw(Box::new(aloop_tcp_listener_t {
            listener: listener.clone(),
            lp,
            data: std::ptr::null_mut(),
        }));
        let (ud, armer) = UserData::new(user_data, dtor);
        let started = listener.start(move |r| {
            let (status, conn) = match r {
                Ok(stream) => (
                    0,
                    Box::into_raw(Box::new(aloop_tcp_t {
                        stream,
                        lp,
                        data: std::ptr::null_mut(),
                    })),
                ),
                Err(e) => (e.code(), std::ptr::null_mut()),
            };
            // SAFETY: the listener struct lives until its close callback, and the core drops
            // this closure when close starts.
            unsafe { cb(this, status, conn, ud.ptr()) };
        });
        match started {
            Ok(()) => {
                armer.arm();
                // SAFETY: out is non-NULL and writable.
                unsafe { out.write(this) };
                0
            }
            Err(e) => {
                listener.close(|| {});
                // SAFETY: `this` was never handed out.
                drop(unsafe { Box::from_raw(this) });
                e.code()
            }
        }
    })
}

/// The port the listener is bound to (useful after binding port 0), or a negative error.
#[no_mangle]
pub extern "C" fn aloop_tcp_listener_port(l: *const aloop_tcp_listener_t) -> c_int {
    guard(|| {
        not_null!(l);
        // SAFETY: live listener.
        unsafe { &*l }.listener.local_addr().port() as c_int
    })
}

/// Stops accepting and closes the listener. `cb(listener, user_data)` (may be NULL) runs once on
/// the loop's thread when it is closed; then the listener's memory and registration end (the
/// accept destructor runs). `ALOOP_E_ALREADY` if already closing.
#[no_mangle]
pub extern "C" fn aloop_tcp_listener_close(
    l: *mut aloop_tcp_listener_t,
    cb: aloop_listener_close_cb,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        not_null!(l);
        // SAFETY: live listener; freed below only after the close callback.
        let listener = unsafe { &*l }.listener.clone();
        if listener.fd() < 0 {
            return Error::ALREADY.code();
        }
        listener.close(move || {
            if let Some(cb) = cb {
                // SAFETY: the listener is still allocated during its close callback.
                unsafe { cb(l, user_data) };
            }
            // SAFETY: allocated by aloop_tcp_listen; nothing uses it after the close callback.
            drop(unsafe { Box::from_raw(l) });
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
    guard(|| {
        not_null!(l);
        // SAFETY: live listener.
        unsafe { (*l).data = data };
        0
    })
}

/// The listener's data slot (NULL for a NULL listener).
#[no_mangle]
pub extern "C" fn aloop_tcp_listener_get_data(l: *const aloop_tcp_listener_t) -> *mut c_void {
    guard(|| read_handle(l, std::ptr::null_mut(), |h| h.data))
}

/// The loop of a listener (NULL for a NULL listener).
#[no_mangle]
pub extern "C" fn aloop_tcp_listener_loop(l: *const aloop_tcp_listener_t) -> *mut aloop_loop_t {
    guard(|| read_handle(l, std::ptr::null_mut(), |h| h.lp))
}

/// Starts connecting to `ip:port` (numeric IPv4 or IPv6; `ip` borrowed during the call).
/// `cb(tcp, status, user_data)` runs once: 0, a negative errno (`-ECONNREFUSED`, ...),
/// `ALOOP_E_TIMEOUT` when `timeout_ms` (0: none) passes first, or `ALOOP_E_CANCELLED` when the
/// handle is closed first. `*out` gets the handle at once; the caller owns it and must close it
/// whatever the result. `dtor(user_data)` runs right after `cb`.
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
        let (ud, armer) = UserData::new(user_data, dtor);
        // The handle's address must be known to the callback before the stream exists.
        let this = Box::into_raw(Box::new(std::mem::MaybeUninit::<aloop_tcp_t>::uninit()))
            as *mut aloop_tcp_t;
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        // SAFETY: live loop on its own thread.
        let r = TcpStream::connect(&unsafe { &*lp }.lp, addr, timeout, move |r| {
            let ud = ud;
            // SAFETY: the handle is initialised below before the loop runs again, and it lives
            // until its close callback, which comes after this one.
            unsafe { cb(this, rc(r), ud.ptr()) };
        });
        match r {
            Ok(stream) => {
                armer.arm();
                // SAFETY: `this` is our fresh allocation; out is non-NULL and writable.
                unsafe {
                    this.write(aloop_tcp_t {
                        stream,
                        lp,
                        data: std::ptr::null_mut(),
                    });
                    out.write(this);
                }
                0
            }
            Err(e) => {
                // SAFETY: never initialised, never handed out; freed as the MaybeUninit it is.
                drop(unsafe { Box::from_raw(this as *mut std::mem::MaybeUninit<aloop_tcp_t>) });
                e.code()
            }
        }
    })
}

/// Starts reading: `cb(tcp, nread, data, user_data)` per received chunk, then once with
/// `ALOOP_E_EOF` or an error. `dtor(user_data)` runs when reading ends (stop, EOF, error,
/// close). `ALOOP_E_ALREADY` if reading, `ALOOP_E_CLOSED` if closing.
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
        // SAFETY: live handle; the closure is dropped when reading ends or at close, before
        // the handle is freed.
        let r = unsafe { &*tcp }.stream.read_start(move |ev| {
            let _own = &ud;
            // SAFETY: see above; data is valid for the duration of the call.
            unsafe {
                match ev {
                    ReadEvent::Data(d) => cb(tcp, d.len() as isize, d.as_ptr().cast(), udp),
                    ReadEvent::Eof => cb(tcp, Error::EOF.code() as isize, std::ptr::null(), udp),
                    ReadEvent::Error(e) => cb(tcp, e.code() as isize, std::ptr::null(), udp),
                }
            }
        });
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
    guard(|| {
        not_null!(tcp);
        // SAFETY: live handle.
        unsafe { &*tcp }.stream.read_stop();
        0
    })
}

/// Queues `len` bytes from `data` for sending. The bytes are copied before the call returns
/// (`data` stays the caller's). `cb(tcp, status, user_data)` (may be NULL) runs once when all
/// were handed to the kernel, or with the error (`ALOOP_E_CANCELLED` on close). Never raises
/// SIGPIPE. Errors: `ALOOP_E_CLOSED`, `-EPIPE` after shutdown, `-ENOTCONN` while connecting.
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
        let done: Option<Box<dyn FnOnce(Result<()>)>> = cb.map(|cb| {
            Box::new(move |r: Result<()>| {
                // SAFETY: write callbacks run before the close callback frees the handle.
                unsafe { cb(tcp, rc(r), user_data) }
            }) as Box<dyn FnOnce(Result<()>)>
        });
        // SAFETY: live handle.
        rc(unsafe { &*tcp }.stream.write(bytes, done))
    })
}

/// Bytes queued by `aloop_tcp_write` and not yet handed to the kernel (0 for NULL).
#[no_mangle]
pub extern "C" fn aloop_tcp_write_queue_size(tcp: *const aloop_tcp_t) -> usize {
    guard(|| read_handle(tcp, 0, |h| h.stream.write_queue_size()))
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
        not_null!(tcp);
        // SAFETY: live handle; the callback runs before the close callback.
        rc(unsafe { &*tcp }.stream.shutdown(move |r| {
            if let Some(cb) = cb {
                // SAFETY: as above.
                unsafe { cb(tcp, rc(r), user_data) };
            }
        }))
    })
}

/// Closes the connection. Pending writes, shutdown and connect complete with
/// `ALOOP_E_CANCELLED` (unless they already finished), reading ends, then `cb(tcp, user_data)`
/// (may be NULL) runs last, and the handle is freed when it returns. `ALOOP_E_ALREADY` if
/// already closing. Never call it from a thread other than the loop's.
#[no_mangle]
pub extern "C" fn aloop_tcp_close(
    tcp: *mut aloop_tcp_t,
    cb: aloop_tcp_close_cb,
    user_data: *mut c_void,
) -> c_int {
    guard(|| {
        not_null!(tcp);
        // SAFETY: live handle; freed below only after every other callback of it.
        let stream = unsafe { &*tcp }.stream.clone();
        if stream.is_closing() {
            return Error::ALREADY.code();
        }
        stream.close(move || {
            if let Some(cb) = cb {
                // SAFETY: still allocated during its close callback.
                unsafe { cb(tcp, user_data) };
            }
            // SAFETY: allocated by connect/accept; nothing uses it after the close callback.
            drop(unsafe { Box::from_raw(tcp) });
        });
        0
    })
}

/// TCP_NODELAY on (non-zero) or off.
#[no_mangle]
pub extern "C" fn aloop_tcp_nodelay(tcp: *mut aloop_tcp_t, on: c_int) -> c_int {
    guard(|| {
        not_null!(tcp);
        // SAFETY: live handle.
        rc(unsafe { &*tcp }.stream.set_nodelay(on != 0))
    })
}

/// The socket's fd, borrowed (do not close it), or a negative error.
#[no_mangle]
pub extern "C" fn aloop_tcp_fd(tcp: *const aloop_tcp_t) -> c_int {
    guard(|| {
        not_null!(tcp);
        // SAFETY: live handle.
        let fd = unsafe { &*tcp }.stream.fd();
        if fd < 0 {
            Error::CLOSED.code()
        } else {
            fd
        }
    })
}

fn write_address(a: Result<SocketAddr>, ip: *mut c_char, ip_len: usize, port: *mut u16) -> c_int {
    let a = match a {
        Ok(a) => a,
        Err(e) => return e.code(),
    };
    if !ip.is_null() {
        let text = a.ip().to_string();
        if text.len() + 1 > ip_len {
            return Error::from_errno(libc::ENOSPC).code();
        }
        // SAFETY: ip has ip_len writable bytes (caller's contract), and text fits with its NUL.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), ip.cast::<u8>(), text.len());
            *ip.add(text.len()) = 0;
        }
    }
    if !port.is_null() {
        // SAFETY: non-NULL, writable per contract.
        unsafe { *port = a.port() };
    }
    0
}

/// Writes the peer's IP as text into `ip` (`ip_len` bytes; 46 always suffice) and its port into
/// `*port`; either may be NULL. `-ENOSPC` if `ip_len` is too small.
#[no_mangle]
pub extern "C" fn aloop_tcp_peer_address(
    tcp: *const aloop_tcp_t,
    ip: *mut c_char,
    ip_len: usize,
    port: *mut u16,
) -> c_int {
    guard(|| {
        not_null!(tcp);
        // SAFETY: live handle.
        write_address(unsafe { &*tcp }.stream.peer_addr(), ip, ip_len, port)
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
    guard(|| {
        not_null!(tcp);
        // SAFETY: live handle.
        write_address(unsafe { &*tcp }.stream.local_addr(), ip, ip_len, port)
    })
}

/// Application data slot of the connection (initially NULL); never touched by the library.
#[no_mangle]
pub extern "C" fn aloop_tcp_set_data(tcp: *mut aloop_tcp_t, data: *mut c_void) -> c_int {
    guard(|| {
        not_null!(tcp);
        // SAFETY: live handle.
        unsafe { (*tcp).data = data };
        0
    })
}

/// The connection's data slot (NULL for a NULL handle).
#[no_mangle]
pub extern "C" fn aloop_tcp_get_data(tcp: *const aloop_tcp_t) -> *mut c_void {
    guard(|| read_handle(tcp, std::ptr::null_mut(), |h| h.data))
}

/// The loop of a connection (NULL for a NULL handle).
#[no_mangle]
pub extern "C" fn aloop_tcp_loop(tcp: *const aloop_tcp_t) -> *mut aloop_loop_t {
    guard(|| read_handle(tcp, std::ptr::null_mut(), |h| h.lp))
}
