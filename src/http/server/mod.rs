//! The HTTP/1.1 server of one loop: listeners, connections, request slots and timeouts.
//!
//! Each connection parses as much as it has read (many pipelined requests per read), hands each
//! complete request to its handler, and keeps a pipeline of unanswered requests so responses go
//! out strictly in request order, however late each handler answers. Responses that are ready
//! at the front are gathered into one buffer and written with one send. A request lives in a
//! slot until it is answered, even after its client has gone: answering then reports
//! `CANCELLED` and frees the slot. Slots are addressed by a generational `Token`, so answering
//! twice is an error code, never a use-after-free.
//!
//! The files: `slots` (the request-slot table), `connection` (a connection's state machine:
//! reading, parsing, dispatch, pausing, closing), `work` (a connection's working state and the
//! pools it comes from), `respond` (response heads and bodies, chunked bodies, the pipeline's
//! advance, flushing), `body` (streamed request bodies, early answers, paced chunked
//! responses), `timeouts` (the sweeper), `shutdown` and `upgrade` (protocol switches: an
//! answered upgrade hands the connection to a new owner, a WebSocket). The public types live
//! here.

mod body;
mod connection;
mod respond;
mod shutdown;
mod slots;
mod timeouts;
mod upgrade;
mod work;

pub use upgrade::{UpgradeHandler, UpgradedStream};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::Duration;

pub use self::body::{BodyEvent, DISCARD_MAX};

use self::connection::ConnRef;
use self::slots::SlotEntry;
use self::work::ConnWork;
use super::date::DateCache;
use super::head_cache::HeadCache;
use super::parser::{BodyMode, Limits};
use super::prepared::PreparedResponse;
use super::request::RequestData;
use super::router::{Handler, Router};
use crate::error::{Error, Result};
use crate::net::tls::TlsServerConfig;
use crate::net::{socket, Address, ListenOptions, TcpListener};
use crate::reactor::{Loop, Slab, Timer, Token};

/// Server settings (`Default` gives the documented defaults).
#[derive(Clone, Copy, Debug)]
pub struct ServerOptions {
    pub limits: Limits,
    /// Time to receive a request head, from its first byte (or from accept).
    pub header_timeout: Duration,
    /// Time to receive a request body, from the end of its head.
    pub body_timeout: Duration,
    /// Keep-alive idle time before the server closes.
    pub idle_timeout: Duration,
    /// Time queued response bytes may wait without the client taking any of them before the
    /// connection is dropped (reset by every byte of progress, like nginx's send_timeout).
    pub write_timeout: Duration,
    /// Unanswered requests per connection before reading pauses.
    pub max_pipeline: usize,
    /// Unsent response bytes per connection before reading pauses.
    pub max_output: usize,
    /// Listener options (SO_REUSEPORT, backlog).
    pub listen: ListenOptions,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_pipeline: 128,
            max_output: 1 << 20,
            listen: ListenOptions::default(),
        }
    }
}

/// Shared state of a server (one per loop).
pub struct ServerInner {
    lp: Loop,
    opts: ServerOptions,
    router: RefCell<Router>,
    listeners: RefCell<Vec<TcpListener>>,
    listeners_open: Cell<usize>,
    conns: RefCell<Slab<ConnRef>>,
    slots: RefCell<Slab<SlotEntry>>,
    /// Boxed: handlers hold pointers to a request's data, which must not move.
    #[allow(clippy::vec_box)]
    data_pool: RefCell<Vec<Box<RequestData>>>,
    /// Working state of connections that went idle, for reuse (at most `DATA_POOL`).
    #[allow(clippy::vec_box)] // boxed: lent to connections as a unit
    work_pool: RefCell<Vec<Box<ConnWork>>>,
    /// The origin of `now_ms`, in the loop's milliseconds (`Loop::now_ns`).
    epoch_ms: u64,
    /// The `Date` header's text, formatted once per second.
    date: DateCache,
    /// Heads of recent responses, reused by answers with the same status and headers.
    heads: RefCell<HeadCache>,
    /// Requests completed by the parse in progress, in order (scratch, shared by connections:
    /// they are handed to their handlers right after each parse).
    completed: RefCell<Vec<Token>>,
    sweeper: RefCell<Option<Timer>>,
    sweep_buf: RefCell<Vec<ConnRef>>,
    stopping: Cell<bool>,
    on_stopped: RefCell<Option<Box<dyn FnOnce()>>>,
    grace: RefCell<Option<Timer>>,
    /// TLS for connections accepted from now on (each keeps the configuration it began with).
    tls: RefCell<Option<TlsServerConfig>>,
    /// The new owners of connections that switched protocols (or are about to), by connection
    /// key: kept here, not in every connection record.
    upgraded: RefCell<HashMap<Token, Rc<dyn UpgradeHandler>>>,
    me: Weak<ServerInner>,
}

/// An HTTP server on one loop. Clones share it.
#[derive(Clone)]
pub struct HttpServer {
    inner: Rc<ServerInner>,
}

/// A request given to a handler. Answer it exactly once with `respond` (or the chunked
/// writer); dropping it unanswered answers 500. It stays valid after the client has gone.
pub struct Request {
    srv: Rc<ServerInner>,
    slot: Token,
    data: *const RequestData,
    answered: bool,
}

impl HttpServer {
    /// A server on `lp` with no listener yet.
    pub fn new(lp: &Loop, opts: ServerOptions) -> HttpServer {
        HttpServer {
            inner: Rc::new_cyclic(|me| ServerInner {
                lp: lp.clone(),
                opts,
                router: RefCell::new(Router::default()),
                listeners: RefCell::new(Vec::new()),
                listeners_open: Cell::new(0),
                conns: RefCell::new(Slab::default()),
                slots: RefCell::new(Slab::default()),
                data_pool: RefCell::new(Vec::new()),
                work_pool: RefCell::new(Vec::new()),
                epoch_ms: lp.now_ns() / 1_000_000,
                date: DateCache::default(),
                heads: RefCell::new(HeadCache::default()),
                completed: RefCell::new(Vec::new()),
                sweeper: RefCell::new(None),
                sweep_buf: RefCell::new(Vec::new()),
                stopping: Cell::new(false),
                on_stopped: RefCell::new(None),
                grace: RefCell::new(None),
                tls: RefCell::new(None),
                upgraded: RefCell::new(HashMap::new()),
                me: me.clone(),
            }),
        }
    }

    /// The shared state (for the C API).
    pub fn inner(&self) -> &Rc<ServerInner> {
        &self.inner
    }

    /// Routes `method` (None: any) and exactly `path` to `handler`.
    pub fn route(&self, method: Option<&str>, path: &str, handler: impl Fn(Request) + 'static) {
        self.inner.router.borrow_mut().exact(
            method,
            path,
            Rc::new(handler) as Handler,
            BodyMode::Buffer,
        );
    }

    /// Routes like `route`, but the handler gets each request as soon as its head arrived and
    /// reads its body as it comes (`Request::read_body`), up to `max_body` bytes (0: no limit;
    /// 413 beyond, to a `Content-Length` before the handler runs; past it mid-way, the reader
    /// gets `HTTP_TOO_LARGE`). The server's `max_body` does not apply.
    pub fn route_streaming(
        &self,
        method: Option<&str>,
        path: &str,
        max_body: u64,
        handler: impl Fn(Request) + 'static,
    ) {
        let limit = if max_body == 0 { u64::MAX } else { max_body };
        self.inner.router.borrow_mut().exact(
            method,
            path,
            Rc::new(handler) as Handler,
            BodyMode::Stream { limit },
        );
    }

    /// Routes every path starting with `prefix`.
    pub fn route_prefix(
        &self,
        method: Option<&str>,
        prefix: &str,
        handler: impl Fn(Request) + 'static,
    ) {
        self.inner.router.borrow_mut().prefix(
            method,
            prefix,
            Rc::new(handler) as Handler,
            BodyMode::Buffer,
        );
    }

    /// Handles what no route takes (instead of 404/405).
    pub fn fallback(&self, handler: impl Fn(Request) + 'static) {
        self.inner
            .router
            .borrow_mut()
            .fallback(Rc::new(handler) as Handler);
    }

    /// Listens on `addr` (port 0: any free port) and starts accepting. May be called for several
    /// addresses. Returns the bound address.
    pub fn listen(&self, addr: SocketAddr) -> Result<SocketAddr> {
        let srv = &self.inner;
        if srv.stopping.get() {
            return Err(Error::CLOSED);
        }
        let l = TcpListener::bind(&srv.lp, addr, srv.opts.listen)?;
        let bound = l.local_addr();
        self.serve_listener(l)?;
        Ok(bound)
    }

    /// Listens on the Unix stream socket `path` (`@name`: an abstract one) and starts serving,
    /// beside any other listener. A stale socket file left by a server that died is
    /// replaced; `-EADDRINUSE` when a server listens there, `-EEXIST` when the path is not a
    /// socket. The file is removed when the server shuts down. With `reuse_port` in the
    /// listen options, the servers of this process on one path share its socket (see
    /// `TcpListener::bind_unix`).
    pub fn listen_unix(&self, path: &std::path::Path) -> Result<()> {
        let srv = &self.inner;
        if srv.stopping.get() {
            return Err(Error::CLOSED);
        }
        let l = TcpListener::bind_unix(&srv.lp, path, srv.opts.listen)?;
        self.serve_listener(l)?;
        Ok(())
    }

    /// Serves from a socket made elsewhere and already listening, TCP or Unix: socket
    /// activation (systemd's `LISTEN_FDS`), a socket inherited from a parent, or one shared by
    /// the workers of a pre-forking server. The server listens on a duplicate of `fd`, closed
    /// at shutdown; `fd` stays the caller's, so one socket can be given to the servers of
    /// several loops, which then share its connections (as other processes may). Once it
    /// passes the checks, `fd` is made non-blocking (the duplicate shares its flags). A Unix
    /// socket's file stays at shutdown: it is not the server's. `INVALID` for anything but a
    /// listening stream socket, `CLOSED` after shutdown, `-EMFILE`/`-ENFILE` with no
    /// descriptor left for the duplicate. Returns the socket's address.
    pub fn listen_fd(&self, fd: BorrowedFd<'_>) -> Result<Address> {
        self.listen_raw_fd(fd.as_raw_fd())
    }

    /// As `listen_fd`, for the C API, whose descriptor may be any number: one that is not
    /// open is `INVALID`.
    pub(crate) fn listen_raw_fd(&self, fd: RawFd) -> Result<Address> {
        let srv = &self.inner;
        if srv.stopping.get() {
            return Err(Error::CLOSED);
        }
        // Not open: INVALID; out of descriptors (EMFILE, ENFILE) is said as it is.
        let dup = socket::dup_cloexec(fd).map_err(|e| {
            if e == Error::from_errno(libc::EBADF) {
                Error::INVALID
            } else {
                e
            }
        })?;
        let l = TcpListener::adopt(&srv.lp, dup, srv.opts.listen.nodelay)?;
        let local = l.local_address().clone();
        self.serve_listener(l)?;
        Ok(local)
    }

    fn serve_listener(&self, l: TcpListener) -> Result<()> {
        let srv = &self.inner;
        let weak = srv.me.clone();
        l.start_raw(move |r| {
            if let Ok(fd) = r {
                match weak.upgrade() {
                    Some(srv) => srv.accept(fd),
                    // SAFETY: a new connection nobody else owns.
                    None => unsafe { drop(OwnedFd::from_raw_fd(fd)) },
                }
            }
        })
        .inspect_err(|_| l.close(|| {}))?;
        srv.listeners.borrow_mut().push(l);
        srv.listeners_open.set(srv.listeners_open.get() + 1);
        srv.start_sweeper();
        Ok(())
    }

    /// Serves a connection accepted elsewhere (socket activation, another acceptor, or one end
    /// of a `socketpair` in tests): the server owns `fd` from now on and closes it.
    pub fn serve_fd(&self, fd: OwnedFd) -> Result<()> {
        self.serve_raw_fd(fd.as_raw_fd())?;
        let _ = fd.into_raw_fd(); // the connection owns it now
        Ok(())
    }

    /// As `serve_fd`, for the C API: the server takes `fd` only when this succeeds; on an error
    /// (`INVALID` for a descriptor that is not a connected stream socket, `CLOSED` after
    /// shutdown) it stays the caller's.
    pub(crate) fn serve_raw_fd(&self, fd: RawFd) -> Result<()> {
        let srv = &self.inner;
        if srv.stopping.get() {
            return Err(Error::CLOSED);
        }
        let stream = socket::get_opt(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_STREAM);
        let listening = socket::get_opt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) != Ok(0);
        if !stream || listening {
            return Err(Error::INVALID);
        }
        socket::set_nonblocking(fd)?;
        let _ = socket::set_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        srv.accept(fd);
        srv.start_sweeper();
        Ok(())
    }

    /// Serves TLS with `config` on every connection accepted from now on, from the listeners
    /// and `serve_fd` alike: the handshake runs before the first request (within the header
    /// timeout), handlers see plaintext, and a plain-HTTP request gets 400 "plain HTTP request
    /// was sent to HTTPS port". Calling it again replaces the configuration (a new certificate)
    /// for new connections; open ones keep the one they began with.
    pub fn set_tls(&self, config: TlsServerConfig) {
        *self.inner.tls.borrow_mut() = Some(config);
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.inner.conns.borrow().len()
    }

    /// Requests handed to handlers and not answered yet.
    pub fn active_requests(&self) -> usize {
        self.inner.active_slots()
    }

    /// Graceful stop: stop accepting and reading new requests, close idle connections, let
    /// in-flight requests finish for up to `grace` (every response already given is sent, in
    /// whatever order it was given; the last one on a connection carries `Connection: close`
    /// when it is made after the call), then close the rest. `done` runs once every listener
    /// and connection is closed. `ALREADY` for a second shutdown (`done` is then dropped,
    /// never run).
    pub fn shutdown(&self, grace: Duration, done: impl FnOnce() + 'static) -> Result<()> {
        self.inner.clone().shutdown(grace, Box::new(done))
    }

    /// Whether a shutdown finished (no listener, no connection).
    pub fn is_stopped(&self) -> bool {
        self.inner.stopping.get()
            && self.inner.listeners_open.get() == 0
            && self.inner.conns.borrow().is_empty()
    }
}

impl ServerInner {
    pub(crate) fn lp(&self) -> &Loop {
        &self.lp
    }

    /// Milliseconds of loop time since the server was made (connection phase times).
    #[inline]
    fn now_ms(&self) -> u64 {
        (self.lp.now_ns() / 1_000_000).saturating_sub(self.epoch_ms)
    }

    /// The `Date` header's value for a response made now.
    fn http_date(&self) -> [u8; crate::http::date::DATE_LEN] {
        self.date.get(self.lp.now())
    }

    fn me(&self) -> Rc<ServerInner> {
        self.me.upgrade().expect("server alive while in use")
    }
}

impl Request {
    /// The request's method, target, headers and body.
    pub fn data(&self) -> &RequestData {
        // SAFETY: the slot's data lives until the request is answered, and `self` exists only
        // until then (answering consumes or marks it).
        unsafe { &*self.data }
    }

    /// The loop the request arrived on.
    pub fn event_loop(&self) -> &Loop {
        self.srv.lp()
    }

    /// Answers with `status`, `headers` and `body`. A `Connection: close` header closes the
    /// connection after this answer; a `Content-Length` must match the body (or, for a HEAD or
    /// 304 answer, gives the length a GET would get). `INVALID` for a bad status, a header with
    /// CR, LF or NUL, or a framing header that cannot be honoured (the request is then dropped:
    /// a 500, see `Drop`), `CANCELLED` if the client has gone.
    pub fn respond(mut self, status: u16, headers: &[(&[u8], &[u8])], body: &[u8]) -> Result<()> {
        let r = self.srv.respond(self.slot, status, headers, body);
        if r != Err(Error::INVALID) {
            self.answered = true;
        }
        r
    }

    /// Answers with a prepared status and headers and `body` (copied): the same bytes as
    /// `respond` with them would send, without checking the headers again. Errors as for
    /// `respond` (`INVALID`: a prepared `Content-Length` that `body` does not match, and the
    /// request stays unanswered).
    pub fn respond_prepared(mut self, prepared: &PreparedResponse, body: &[u8]) -> Result<()> {
        let r = self.srv.respond_prepared(self.slot, prepared, body);
        if r != Err(Error::INVALID) {
            self.answered = true;
        }
        r
    }

    /// The address of the client that sent the request: an IP and port, or for a Unix socket
    /// its path (usually empty: connecting sockets are unnamed). `CANCELLED` once the client
    /// has gone.
    pub fn peer_address(&self) -> Result<crate::net::Address> {
        self.srv.request_address(self.slot, true)
    }

    /// The address the request came in on: the listener's IP and port, or its Unix socket path.
    /// `CANCELLED` once the client has gone.
    pub fn local_address(&self) -> Result<crate::net::Address> {
        self.srv.request_address(self.slot, false)
    }

    /// Runs `cb` once if the client goes away before this request is answered.
    pub fn on_abort(&self, cb: impl FnOnce() + 'static) -> Result<()> {
        self.srv.on_abort(self.slot, Box::new(cb))
    }

    /// Starts reading the body of a request to a streaming route: `cb` gets its bytes as they
    /// arrive, then `End` or `Error` once (never from inside this call). A client waiting for
    /// `100 Continue` gets it now. Reading goes on until the body ends, `pause_body`, or the
    /// answer (the rest of the body is then discarded, or the connection closes after the
    /// answer: see `DISCARD_MAX`). `INVALID` for a buffered route's request, `ALREADY` once
    /// started, `CANCELLED` when the client has gone (the request must still be answered).
    pub fn read_body(&self, cb: impl FnMut(BodyEvent<'_>) + 'static) -> Result<()> {
        self.srv.body_read(self.slot, Box::new(cb))
    }

    /// Pauses the body reader: no event until `resume_body`; the connection stops reading,
    /// so the client's sending stops when the kernel's buffers are full.
    pub fn pause_body(&self) -> Result<()> {
        self.srv.body_pause(self.slot)
    }

    /// Resumes a paused body reader (events come from the loop, never inside this call).
    pub fn resume_body(&self) -> Result<()> {
        self.srv.body_resume(self.slot)
    }

    /// Starts a chunked response, returning the writer for its body.
    pub fn respond_chunked(
        mut self,
        status: u16,
        headers: &[(&[u8], &[u8])],
    ) -> Result<ChunkedWriter> {
        self.srv.respond_chunked(self.slot, status, headers)?;
        self.answered = true;
        Ok(ChunkedWriter {
            srv: self.srv.clone(),
            slot: self.slot,
            ended: false,
        })
    }

    /// Answers with `head`, a complete switching-protocols (101) head, and hands the connection
    /// to `handler` once every response before this one is out: see `UpgradeHandler`. On
    /// success, or `CANCELLED` (the client has gone), the request is answered. `INVALID` (the
    /// request did not ask to upgrade) and `CLOSED` (the server is shutting down) leave it
    /// unanswered: answer it otherwise.
    pub fn switch_protocols(&mut self, head: &[u8], handler: Rc<dyn UpgradeHandler>) -> Result<()> {
        let r = self.srv.respond_upgrade(self.slot, head, handler);
        if !matches!(r, Err(Error::INVALID) | Err(Error::CLOSED)) {
            self.answered = true;
        }
        r
    }

    /// The request of a live slot again, for the C API (the inverse of `into_raw`): `None`
    /// once it is answered.
    pub(crate) fn from_raw(srv: Rc<ServerInner>, slot: Token) -> Option<Request> {
        let data = srv.slot_data(slot)?;
        Some(Request {
            srv,
            slot,
            data,
            answered: false,
        })
    }

    /// The server and the slot's token, for the C API (which then owns the answer).
    pub(crate) fn into_raw(mut self) -> (Rc<ServerInner>, Token) {
        self.answered = true;
        (self.srv.clone(), self.slot)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.srv.respond(
                self.slot,
                500,
                &[(b"Content-Type", b"text/plain")],
                b"500 Internal Server Error: the handler dropped the request\n",
            );
        }
    }
}

/// The body writer of a chunked response. Dropping it ends the body.
pub struct ChunkedWriter {
    srv: Rc<ServerInner>,
    slot: Token,
    ended: bool,
}

impl ChunkedWriter {
    /// Sends `data` as one chunk (nothing for empty data). `CANCELLED` if the client has gone.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.srv.chunk(self.slot, data, false)
    }

    /// Runs `cb` once everything written so far has reached the kernel, and again after each
    /// later write has: a producer writes a piece, then the next one when `cb` runs, and never
    /// holds more than a piece in memory. If the client goes away, `cb` runs once more and the
    /// next `write` returns `CANCELLED`. Replaces an earlier callback; dropped at the end.
    pub fn on_drain(&self, cb: impl FnMut() + 'static) -> Result<()> {
        self.srv.chunk_on_drain(self.slot, Box::new(cb))
    }

    /// Ends the body.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        self.srv.chunk(self.slot, &[], true)
    }
}

impl Drop for ChunkedWriter {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.srv.chunk(self.slot, &[], true);
        }
    }
}
