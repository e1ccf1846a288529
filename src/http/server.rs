//! The HTTP/1.1 server of one loop: listeners, connections, request slots and timeouts.
//!
//! Each connection parses as much as it has read (many pipelined requests per read), hands each
//! complete request to its handler, and keeps a pipeline of unanswered requests so responses go
//! out strictly in request order, however late each handler answers. Responses that are ready
//! at the front are gathered into one buffer and written with one send. A request lives in a
//! slot until it is answered, even after its client has gone: answering then reports
//! `CANCELLED` and frees the slot. Slots are addressed by (index, generation), so answering
//! twice is an error code, never a use-after-free.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::date::http_date;
use super::parser::{HttpError, Limits, Outcome, RequestParser, Sink};
use super::request::RequestData;
use super::response::{self, Framing};
use super::router::{Handler, Route, Router};
use crate::error::{Error, Result};
use crate::net::{socket, ListenOptions, ReadEvent, Stream, StreamEvents, TcpListener, WeakStream};
use crate::reactor::{Loop, Remote, Slab, Timer, Token};

/// Server settings; the defaults are listed in docs/http-server.md.
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

/// Request storage kept for reuse per server (see `recycle_data`).
const DATA_POOL: usize = 256;

/// How long a closing connection keeps reading (and discarding) after its last response, so
/// the client's unread bytes do not turn the close into a reset that loses that response.
const LINGER: Duration = Duration::from_secs(2);

/// The part of a slot that outlives its requests and can be read from any thread: C handles
/// point here (with the generation in their top bits).
pub struct SlotHeader {
    /// Bumped each time the slot is freed; a handle with another generation is stale.
    pub gen: AtomicU32,
    pub index: u32,
    pub remote: Arc<Remote>,
    pub loop_thread: ThreadId,
    /// Owning server (loop thread only).
    #[allow(dead_code)] // no longer read by the C API; goes when slots move to reactor::token
    pub(crate) server: Weak<ServerInner>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SlotState {
    Free,
    Waiting,
    Streaming,
}

struct SlotEntry {
    header: Box<SlotHeader>,
    state: SlotState,
    data: Option<Box<RequestData>>,
    conn: WeakStream<Conn>,
    seq: u64,
    abort: Option<Box<dyn FnOnce()>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Receiving a body.
    Body,
    /// Requests are with their handlers; no read timeout.
    Busy,
    /// Keep-alive, nothing pending.
    Idle,
    /// Last response sent, write side shut down, discarding input until EOF.
    Linger,
}

/// One request's place in a connection's pipeline.
struct Pending {
    seq: u64,
    /// The request's slot (None for responses the server makes itself).
    slot: Option<(u32, u32)>,
    done: bool,
    close: bool,
    /// Response bytes made while earlier responses were still outstanding.
    buf: Vec<u8>,
}

/// A connection: the server's record of it, kept inside its stream (one allocation).
type ConnRef = Stream<Conn>;

struct Conn {
    srv: Weak<ServerInner>,
    /// Its entry in the server's connection table, once registered.
    key: Cell<Option<Token>>,
    /// Only while a request is in progress or responses are pending: idle connections return
    /// theirs to the server's pool.
    work: RefCell<Option<Box<ConnWork>>>,
    next_seq: Cell<u64>,
    phase: Cell<Phase>,
    /// When the phase began (`ServerInner::now_ms`).
    since: Cell<u64>,
    close_after: Cell<bool>,
    /// A framing error or an upgrade ended parsing: later bytes are not requests.
    stop_parsing: Cell<bool>,
    read_paused: Cell<bool>,
    eof: Cell<bool>,
    closing: Cell<bool>,
    flush_scheduled: Cell<bool>,
    in_read: Cell<bool>,
}

/// A connection's working state: the parser, the pipeline of unanswered requests and the
/// output not yet written. Lent from the server's pool while the connection has a request in
/// progress or responses pending, so an idle connection holds none.
struct ConnWork {
    /// Taken out while it parses (its sink reaches the rest of this struct).
    parser: Option<RequestParser<ConnSink>>,
    pipeline: VecDeque<Pending>,
    /// Response bytes ready to be written, in order.
    out: Vec<u8>,
}

/// Shared state of a server (one per loop).
pub struct ServerInner {
    lp: Loop,
    opts: ServerOptions,
    router: RefCell<Router>,
    listeners: RefCell<Vec<TcpListener>>,
    listeners_open: Cell<usize>,
    conns: RefCell<Slab<ConnRef>>,
    slots: RefCell<Vec<SlotEntry>>,
    free_slots: RefCell<Vec<u32>>,
    active_slots: Cell<usize>,
    /// Boxed: handlers hold pointers to a request's data, which must not move.
    #[allow(clippy::vec_box)]
    data_pool: RefCell<Vec<Box<RequestData>>>,
    /// Working state of connections that went idle, for reuse (at most `DATA_POOL`).
    #[allow(clippy::vec_box)] // boxed: lent to connections as a unit
    work_pool: RefCell<Vec<Box<ConnWork>>>,
    /// The origin of `now_ms`.
    epoch: Instant,
    /// Requests completed by the parse in progress, in order (scratch, shared by connections:
    /// they are handed to their handlers right after each parse).
    completed: RefCell<Vec<(u32, u32)>>,
    sweeper: RefCell<Option<Timer>>,
    sweep_buf: RefCell<Vec<ConnRef>>,
    stopping: Cell<bool>,
    on_stopped: RefCell<Option<Box<dyn FnOnce()>>>,
    grace: RefCell<Option<Timer>>,
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
    index: u32,
    gen: u32,
    data: *const RequestData,
    answered: bool,
}

struct ConnSink {
    srv: Rc<ServerInner>,
    conn: ConnRef,
}

impl Sink for ConnSink {
    fn new_request(&mut self) -> Box<RequestData> {
        self.srv.data_pool.borrow_mut().pop().unwrap_or_default()
    }

    fn head_complete(&mut self, req: &mut RequestData) -> std::result::Result<(), HttpError> {
        self.conn.set_phase(Phase::Body, self.srv.now_ms());
        if req.expect_continue && self.conn.pipeline_is_empty() {
            let mut w = self.srv.work(&self.conn);
            if w.out.capacity() == 0 {
                w.out = self.srv.lp.take_buffer();
            }
            w.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        Ok(())
    }

    fn request_complete(&mut self, req: Box<RequestData>) {
        let seq = self.conn.take_seq();
        let id = self.srv.alloc_slot(req, &self.conn, seq);
        self.srv.work(&self.conn).pipeline.push_back(Pending {
            seq,
            slot: Some(id),
            done: false,
            close: false,
            buf: Vec::new(),
        });
        self.srv.completed.borrow_mut().push(id);
        self.conn.set_phase(Phase::Busy, self.srv.now_ms());
    }
}

impl StreamEvents for Conn {
    fn on_read(conn: &ConnRef, ev: ReadEvent<'_>) {
        if let Some(srv) = conn.srv.upgrade() {
            srv.on_read(conn, ev);
        }
    }

    fn on_drain(conn: &ConnRef, r: Result<()>) {
        if let Some(srv) = conn.srv.upgrade() {
            match r {
                Ok(()) => srv.on_drain(conn),
                // The client is gone: nothing more can reach it.
                Err(_) => srv.close_now(conn),
            }
        }
    }

    fn on_closed(conn: &ConnRef) {
        if let Some(srv) = conn.srv.upgrade() {
            if let Some(key) = conn.key.get() {
                srv.conns.borrow_mut().remove(key);
            }
            srv.check_stopped();
        }
    }
}

impl Conn {
    /// True between the first byte of a request and its completion.
    fn in_request(&self) -> bool {
        self.work
            .borrow()
            .as_ref()
            .and_then(|w| w.parser.as_ref())
            .is_some_and(|p| p.in_request())
    }

    fn pipeline_len(&self) -> usize {
        self.work.borrow().as_ref().map_or(0, |w| w.pipeline.len())
    }

    fn pipeline_is_empty(&self) -> bool {
        self.pipeline_len() == 0
    }

    /// The output not yet written (empty when there is no working state).
    fn take_out(&self) -> Vec<u8> {
        self.work
            .borrow_mut()
            .as_mut()
            .map(|w| std::mem::take(&mut w.out))
            .unwrap_or_default()
    }

    fn take_seq(&self) -> u64 {
        let s = self.next_seq.get();
        self.next_seq.set(s + 1);
        s
    }

    fn set_phase(&self, p: Phase, now_ms: u64) {
        if self.phase.get() != p {
            self.phase.set(p);
            self.since.set(now_ms);
        }
    }

    /// Index in the pipeline of the entry with sequence `seq`.
    fn position(&self, seq: u64) -> Option<usize> {
        let w = self.work.borrow();
        let p = &w.as_ref()?.pipeline;
        let front = p.front()?.seq;
        let i = seq.checked_sub(front)? as usize;
        (i < p.len()).then_some(i)
    }
}

fn error_body(status: u16) -> String {
    format!("{} {}\n", status, response::reason(status))
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
                slots: RefCell::new(Vec::new()),
                free_slots: RefCell::new(Vec::new()),
                active_slots: Cell::new(0),
                data_pool: RefCell::new(Vec::new()),
                work_pool: RefCell::new(Vec::new()),
                epoch: lp.now(),
                completed: RefCell::new(Vec::new()),
                sweeper: RefCell::new(None),
                sweep_buf: RefCell::new(Vec::new()),
                stopping: Cell::new(false),
                on_stopped: RefCell::new(None),
                grace: RefCell::new(None),
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
        self.inner
            .router
            .borrow_mut()
            .exact(method, path, Rc::new(handler) as Handler);
    }

    /// Routes every path starting with `prefix`.
    pub fn route_prefix(
        &self,
        method: Option<&str>,
        prefix: &str,
        handler: impl Fn(Request) + 'static,
    ) {
        self.inner
            .router
            .borrow_mut()
            .prefix(method, prefix, Rc::new(handler) as Handler);
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
        let bound = l.local_addr();
        srv.listeners.borrow_mut().push(l);
        srv.listeners_open.set(srv.listeners_open.get() + 1);
        srv.start_sweeper();
        Ok(bound)
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

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.inner.conns.borrow().len()
    }

    /// Requests handed to handlers and not answered yet.
    pub fn active_requests(&self) -> usize {
        self.inner.active_slots.get()
    }

    /// Graceful stop: stop accepting, close idle connections, let in-flight requests finish
    /// (their responses carry `Connection: close`) for up to `grace`, then close the rest.
    /// `done` runs once every listener and connection is closed.
    pub fn shutdown(&self, grace: Duration, done: impl FnOnce() + 'static) {
        self.inner.clone().shutdown(grace, Box::new(done));
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
    fn now_ms(&self) -> u64 {
        self.lp
            .now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }

    fn me(&self) -> Rc<ServerInner> {
        self.me.upgrade().expect("server alive while in use")
    }

    fn start_sweeper(&self) {
        if self.sweeper.borrow().is_some() {
            return;
        }
        let o = &self.opts;
        let shortest = o
            .header_timeout
            .min(o.body_timeout)
            .min(o.idle_timeout)
            .min(o.write_timeout);
        let period = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let t = Timer::new(&self.lp);
        let weak = self.me.clone();
        t.start(period, Some(period), move || {
            if let Some(srv) = weak.upgrade() {
                srv.sweep();
            }
        });
        *self.sweeper.borrow_mut() = Some(t);
    }

    /// Serves `fd`, a connected non-blocking socket the server owns from now on.
    fn accept(&self, fd: RawFd) {
        if self.stopping.get() {
            // SAFETY: the server owns fd and nothing else refers to it yet.
            unsafe { drop(OwnedFd::from_raw_fd(fd)) };
            return;
        }
        let now = self.now_ms();
        let conn = Stream::from_accepted(
            &self.lp,
            fd,
            Conn {
                srv: self.me.clone(),
                key: Cell::new(None),
                work: RefCell::new(None),
                next_seq: Cell::new(0),
                phase: Cell::new(Phase::Head),
                since: Cell::new(now),
                close_after: Cell::new(false),
                stop_parsing: Cell::new(false),
                read_paused: Cell::new(false),
                eof: Cell::new(false),
                closing: Cell::new(false),
                flush_scheduled: Cell::new(false),
                in_read: Cell::new(false),
            },
        );
        let key = self.conns.borrow_mut().insert(conn.clone());
        conn.key.set(Some(key));
        if let Err(_e) = self.start_reading(&conn) {
            self.close_now(&conn);
        }
    }

    fn start_reading(&self, conn: &ConnRef) -> Result<()> {
        conn.read_paused.set(false);
        conn.start_reading()
    }

    fn pause_reading(&self, conn: &ConnRef) {
        if !conn.read_paused.replace(true) {
            conn.read_stop();
        }
    }

    fn on_read(&self, conn: &ConnRef, ev: ReadEvent<'_>) {
        if conn.closing.get() {
            return;
        }
        match ev {
            ReadEvent::Data(data) => {
                if conn.phase.get() == Phase::Linger {
                    return; // discarding
                }
                if conn.close_after.get() || conn.stop_parsing.get() {
                    return; // no more requests on this connection
                }
                if conn.phase.get() == Phase::Idle {
                    conn.set_phase(Phase::Head, self.now_ms());
                }
                self.parse(conn, data);
            }
            ReadEvent::Eof => {
                conn.eof.set(true);
                if conn.phase.get() == Phase::Linger || self.nothing_pending(conn) {
                    self.close_now(conn);
                } else {
                    conn.close_after.set(true);
                    self.maybe_finish(conn);
                }
            }
            ReadEvent::Error(_) => self.close_now(conn),
        }
    }

    fn nothing_pending(&self, conn: &ConnRef) -> bool {
        conn.work
            .borrow()
            .as_ref()
            .is_none_or(|w| w.pipeline.is_empty() && w.out.is_empty())
            && conn.write_queue_size() == 0
    }

    fn parse(&self, conn: &ConnRef, data: &[u8]) {
        let mut sink = ConnSink {
            srv: self.me(),
            conn: conn.clone(),
        };
        conn.in_read.set(true);
        let mut parser = self.work(conn).parser.take().unwrap_or_else(|| {
            debug_assert!(false, "a connection parses once at a time");
            RequestParser::new(self.opts.limits)
        });
        let r = parser.execute(data, &mut sink);
        self.work(conn).parser = Some(parser);
        match r {
            Ok(Outcome::Continue) => {}
            Ok(Outcome::Upgrade) => {
                // Upgrades are not supported: answer what was asked (with Connection: close),
                // then close.
                conn.stop_parsing.set(true);
                if let Some(&(index, gen)) = self.completed.borrow().last() {
                    if let Some(d) = self.slot_data(index, gen) {
                        // SAFETY: live slot; no other reference to its data exists right now.
                        unsafe { (*(d as *mut RequestData)).keep_alive = false };
                    }
                }
                self.pause_reading(conn);
            }
            Err(e) => {
                self.drop_parser(conn);
                self.queue_error(conn, e.status, e.reason);
            }
        }
        // Hand the complete requests to their handlers, in order.
        let mut completed = std::mem::take(&mut *self.completed.borrow_mut());
        for &(index, gen) in completed.iter() {
            self.dispatch(index, gen);
        }
        completed.clear();
        *self.completed.borrow_mut() = completed;
        conn.in_read.set(false);
        let now = self.now_ms();
        if conn.in_request() {
            if conn.phase.get() == Phase::Busy {
                conn.set_phase(Phase::Head, now);
            }
        } else if conn.pipeline_is_empty() && conn.phase.get() != Phase::Linger {
            conn.set_phase(Phase::Idle, now);
        }
        if conn.pipeline_len() >= self.opts.max_pipeline {
            self.pause_reading(conn);
        }
        self.flush(conn);
    }

    /// Queues a response the server makes itself (an error) after those already pending, and
    /// closes once it is sent.
    fn queue_error(&self, conn: &ConnRef, status: u16, reason: &str) {
        conn.stop_parsing.set(true);
        let seq = conn.take_seq();
        let mut buf = if conn.pipeline_is_empty() {
            conn.take_out()
        } else {
            Vec::new()
        };
        let body = format!("{} {}: {}\n", status, response::reason(status), reason);
        let date = http_date(self.lp.now());
        let headers: [(&[u8], &[u8]); 1] = [(b"Content-Type", b"text/plain")];
        response::write_head(
            &mut buf,
            status,
            &date,
            headers.iter().copied(),
            Framing::Length(body.len()),
            true,
            false,
        );
        buf.extend_from_slice(body.as_bytes());
        if conn.pipeline_is_empty() {
            self.work(conn).out = buf;
            conn.close_after.set(true);
        } else {
            self.work(conn).pipeline.push_back(Pending {
                seq,
                slot: None,
                done: true,
                close: true,
                buf,
            });
        }
        self.pause_reading(conn);
    }

    fn dispatch(&self, index: u32, gen: u32) {
        let data = match self.slot_data(index, gen) {
            Some(d) => d,
            None => return,
        };
        // SAFETY: the slot's data lives until the request is answered; the references end
        // before the handler (which may answer) runs.
        let route = unsafe {
            self.router
                .borrow()
                .resolve((*data).method(), (*data).path())
        };
        let req = Request {
            srv: self.me(),
            index,
            gen,
            data,
            answered: false,
        };
        match route {
            Route::Found(h) => h(req),
            Route::NotFound => {
                let _ = req.respond(
                    404,
                    &[(b"Content-Type", b"text/plain")],
                    error_body(404).as_bytes(),
                );
            }
            Route::MethodNotAllowed(allow) => {
                let _ = req.respond(
                    405,
                    &[
                        (b"Content-Type", b"text/plain"),
                        (b"Allow", allow.as_bytes()),
                    ],
                    error_body(405).as_bytes(),
                );
            }
        }
    }

    // ---- slots -------------------------------------------------------------------------

    fn alloc_slot(&self, data: Box<RequestData>, conn: &ConnRef, seq: u64) -> (u32, u32) {
        let mut slots = self.slots.borrow_mut();
        let index = match self.free_slots.borrow_mut().pop() {
            Some(i) => i,
            None => {
                let i = slots.len() as u32;
                slots.push(SlotEntry {
                    header: Box::new(SlotHeader {
                        gen: AtomicU32::new(1),
                        index: i,
                        remote: self.lp.remote(),
                        loop_thread: std::thread::current().id(),
                        server: self.me.clone(),
                    }),
                    state: SlotState::Free,
                    data: None,
                    conn: WeakStream::default(),
                    seq: 0,
                    abort: None,
                });
                i
            }
        };
        let e = &mut slots[index as usize];
        e.state = SlotState::Waiting;
        e.data = Some(data);
        e.conn = conn.downgrade();
        e.seq = seq;
        self.active_slots.set(self.active_slots.get() + 1);
        (index, e.header.gen.load(Ordering::Relaxed))
    }

    /// Frees a slot: its generation advances (stale handles are refused) and its data returns
    /// to the pool.
    fn free_slot(&self, index: u32) {
        let (data, abort) = {
            let mut slots = self.slots.borrow_mut();
            let e = &mut slots[index as usize];
            if e.state == SlotState::Free {
                return;
            }
            e.state = SlotState::Free;
            let g = e.header.gen.load(Ordering::Relaxed);
            e.header
                .gen
                .store(g.wrapping_add(1).max(1), Ordering::Release);
            e.conn = WeakStream::default();
            (e.data.take(), e.abort.take())
        };
        drop(abort);
        if let Some(d) = data {
            self.recycle_data(d);
        }
        self.free_slots.borrow_mut().push(index);
        self.active_slots.set(self.active_slots.get() - 1);
    }

    /// Ends the request a connection's parser is in the middle of (its storage returns to the
    /// pool); the parser starts over.
    fn drop_parser(&self, conn: &Conn) {
        if let Some(p) = conn
            .work
            .borrow_mut()
            .as_mut()
            .and_then(|w| w.parser.as_mut())
        {
            self.restart_parser(p);
        }
    }

    /// Puts a parser back at the start of a request; a request it was in the middle of
    /// returns its storage to the pool.
    fn restart_parser(&self, p: &mut RequestParser<ConnSink>) {
        if let Some(partial) = p.take_partial() {
            self.recycle_data(partial);
        }
        p.reset();
    }

    /// A connection's working state, lent from the pool on first need.
    fn work<'a>(&self, conn: &'a Conn) -> std::cell::RefMut<'a, ConnWork> {
        std::cell::RefMut::map(conn.work.borrow_mut(), |w| {
            &mut **w.get_or_insert_with(|| {
                let pooled = self.work_pool.borrow_mut().pop();
                pooled.unwrap_or_else(|| {
                    Box::new(ConnWork {
                        parser: Some(RequestParser::new(self.opts.limits)),
                        pipeline: VecDeque::new(),
                        out: Vec::new(),
                    })
                })
            })
        })
    }

    /// Returns a connection's working state to the pool once it has nothing in progress: no
    /// partial request, no pending response, no unwritten output (an idle connection may stay
    /// idle for long).
    fn release_work(&self, conn: &Conn) {
        let idle = conn.work.borrow().as_ref().is_some_and(|w| {
            w.parser.as_ref().is_some_and(|p| !p.in_request())
                && w.pipeline.is_empty()
                && w.out.is_empty()
        });
        if idle {
            let w = conn.work.borrow_mut().take();
            self.recycle_work(w);
        }
    }

    /// Keeps working state for the next busy connection, up to `DATA_POOL` of them.
    fn recycle_work(&self, w: Option<Box<ConnWork>>) {
        let Some(mut w) = w else { return };
        self.lp.recycle_buffer(std::mem::take(&mut w.out));
        for e in w.pipeline.drain(..) {
            self.lp.recycle_buffer(e.buf);
        }
        let Some(p) = w.parser.as_mut() else { return };
        self.restart_parser(p);
        let mut pool = self.work_pool.borrow_mut();
        if pool.len() < DATA_POOL {
            if w.pipeline.capacity() > 16 {
                w.pipeline = VecDeque::new();
            }
            pool.push(w);
        }
    }

    /// Keeps request storage for reuse, up to `DATA_POOL` of them: the pool serves steady
    /// traffic without allocating, but does not keep a burst's peak forever.
    fn recycle_data(&self, mut d: Box<RequestData>) {
        let mut pool = self.data_pool.borrow_mut();
        if pool.len() < DATA_POOL {
            d.clear();
            pool.push(d);
        }
    }

    /// The request data of a live slot.
    pub(crate) fn slot_data(&self, index: u32, gen: u32) -> Option<*const RequestData> {
        let slots = self.slots.borrow();
        let e = slots.get(index as usize)?;
        if e.state == SlotState::Free || e.header.gen.load(Ordering::Relaxed) != gen {
            return None;
        }
        e.data.as_deref().map(|d| d as *const RequestData)
    }

    /// The stable header of slot `index` (for C handles).
    #[allow(dead_code)] // no longer used by the C API; goes when slots move to reactor::token
    pub(crate) fn slot_header(&self, index: u32) -> *const SlotHeader {
        &*self.slots.borrow()[index as usize].header
    }

    /// Checks a handle; `Ok(conn)` when the client is still there, `Err(CANCELLED)` (slot freed)
    /// when it is gone, `Err(ALREADY)` for a stale handle.
    fn live(&self, index: u32, gen: u32, want: SlotState) -> Result<(ConnRef, u64)> {
        let (conn, seq) = {
            let slots = self.slots.borrow();
            let e = slots.get(index as usize).ok_or(Error::ALREADY)?;
            if e.state != want || e.header.gen.load(Ordering::Relaxed) != gen {
                return Err(Error::ALREADY);
            }
            (e.conn.upgrade(), e.seq)
        };
        match conn {
            Some(c) if !c.closing.get() => Ok((c, seq)),
            _ => {
                self.free_slot(index);
                Err(Error::CANCELLED)
            }
        }
    }

    /// Registers `cb` to run once if the client goes away before the request is answered.
    pub(crate) fn on_abort(&self, index: u32, gen: u32, cb: Box<dyn FnOnce()>) -> Result<()> {
        let mut slots = self.slots.borrow_mut();
        let e = slots.get_mut(index as usize).ok_or(Error::ALREADY)?;
        if e.state == SlotState::Free || e.header.gen.load(Ordering::Relaxed) != gen {
            return Err(Error::ALREADY);
        }
        if e.conn.upgrade().is_none_or(|c| c.closing.get()) {
            return Err(Error::CANCELLED);
        }
        e.abort = Some(cb);
        Ok(())
    }

    fn check_headers(headers: &[(&[u8], &[u8])]) -> Result<()> {
        if headers
            .iter()
            .all(|(n, v)| response::valid_name(n) && response::valid_value(v))
        {
            Ok(())
        } else {
            Err(Error::INVALID)
        }
    }

    /// Writes into the buffer of the pipeline entry at `pos`: the connection's output when it
    /// is at the front, its own buffer otherwise.
    fn with_buf<R>(&self, conn: &Conn, pos: usize, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let mut w = self.work(conn);
        if pos == 0 {
            if w.out.capacity() == 0 {
                w.out = self.lp.take_buffer();
            }
            f(&mut w.out)
        } else {
            let buf = &mut w.pipeline[pos].buf;
            if buf.capacity() == 0 {
                *buf = self.lp.take_buffer();
            }
            f(buf)
        }
    }

    /// Whether the response to `data` ends the connection (`Connection: close`, later
    /// pipelined requests unanswered): the client asked for it, or the server is stopping. A
    /// client's half-close does not: its requests are all answered, then the server closes.
    fn ends_connection(data: &RequestData, stopping: bool) -> bool {
        !data.keep_alive || stopping
    }

    fn head_for(
        &self,
        data: &RequestData,
        status: u16,
        headers: &[(&[u8], &[u8])],
        framing: Framing,
    ) -> (Vec<u8>, bool) {
        let close = Self::ends_connection(data, self.stopping.get());
        let mut head = Vec::new();
        let date = http_date(self.lp.now());
        response::write_head(
            &mut head,
            status,
            &date,
            headers.iter().copied(),
            framing,
            close,
            data.version_minor == 0 && !close,
        );
        (head, close)
    }

    /// Answers a request with a complete response.
    pub(crate) fn respond(
        &self,
        index: u32,
        gen: u32,
        status: u16,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
    ) -> Result<()> {
        if !(100..=999).contains(&status) || (100..200).contains(&status) {
            return Err(Error::INVALID);
        }
        Self::check_headers(headers)?;
        let (conn, seq) = self.live(index, gen, SlotState::Waiting)?;
        let data = self.slot_data(index, gen).ok_or(Error::ALREADY)?;
        // SAFETY: the slot is live; its data stays until free_slot below.
        let data = unsafe { &*data };
        let is_head = data.method() == "HEAD";
        let no_body = matches!(status, 204 | 304);
        let framing = Framing::Length(if no_body { 0 } else { body.len() });
        let close = Self::ends_connection(data, self.stopping.get());
        let pos = conn.position(seq).ok_or(Error::ALREADY)?;
        self.with_buf(&conn, pos, |buf| {
            let date = http_date(self.lp.now());
            response::write_head(
                buf,
                status,
                &date,
                headers.iter().copied(),
                framing,
                close,
                data.version_minor == 0 && !close,
            );
            if !is_head && !no_body {
                buf.extend_from_slice(body);
            }
        });
        {
            let mut w = self.work(&conn);
            w.pipeline[pos].done = true;
            w.pipeline[pos].close = close;
        }
        self.free_slot(index);
        self.advance(&conn);
        self.schedule_flush(&conn);
        Ok(())
    }

    /// Starts a chunked response; the body follows with `chunk` and ends with `chunk_end`.
    pub(crate) fn respond_chunked(
        &self,
        index: u32,
        gen: u32,
        status: u16,
        headers: &[(&[u8], &[u8])],
    ) -> Result<()> {
        if !(200..=999).contains(&status) || matches!(status, 204 | 304) {
            return Err(Error::INVALID);
        }
        Self::check_headers(headers)?;
        let (conn, seq) = self.live(index, gen, SlotState::Waiting)?;
        // SAFETY: live slot.
        let data = unsafe { &*self.slot_data(index, gen).ok_or(Error::ALREADY)? };
        let (head, close) = self.head_for(data, status, headers, Framing::Chunked);
        let pos = conn.position(seq).ok_or(Error::ALREADY)?;
        self.with_buf(&conn, pos, |buf| buf.extend_from_slice(&head));
        self.work(&conn).pipeline[pos].close = close;
        self.slots.borrow_mut()[index as usize].state = SlotState::Streaming;
        self.schedule_flush(&conn);
        Ok(())
    }

    /// Sends one chunk of a chunked response (or, with `last`, ends it).
    pub(crate) fn chunk(&self, index: u32, gen: u32, data: &[u8], last: bool) -> Result<()> {
        let (conn, seq) = self.live(index, gen, SlotState::Streaming)?;
        // SAFETY: live slot.
        let is_head =
            unsafe { &*self.slot_data(index, gen).ok_or(Error::ALREADY)? }.method() == "HEAD";
        let pos = conn.position(seq).ok_or(Error::ALREADY)?;
        if !is_head {
            self.with_buf(&conn, pos, |buf| {
                response::write_chunk(buf, data);
                if last {
                    response::write_last_chunk(buf);
                }
            });
        }
        if last {
            self.work(&conn).pipeline[pos].done = true;
            self.free_slot(index);
            self.advance(&conn);
        }
        self.schedule_flush(&conn);
        Ok(())
    }

    /// Moves finished responses from the front of the pipeline to the output, in order.
    fn advance(&self, conn: &ConnRef) {
        loop {
            let front = {
                let mut work = conn.work.borrow_mut();
                let Some(w) = work.as_deref_mut() else { break };
                let (p, out) = (&mut w.pipeline, &mut w.out);
                let Some(f) = p.front_mut() else { break };
                if !f.buf.is_empty() {
                    if out.is_empty() {
                        let old = std::mem::replace(&mut *out, std::mem::take(&mut f.buf));
                        self.lp.recycle_buffer(old);
                    } else {
                        out.extend_from_slice(&f.buf);
                        self.lp.recycle_buffer(std::mem::take(&mut f.buf));
                    }
                }
                if !f.done {
                    break;
                }
                p.pop_front().unwrap()
            };
            if front.close {
                // Connection: close was sent: later requests are not answered.
                conn.close_after.set(true);
                self.abort_pipeline(conn);
                break;
            }
        }
        if conn.pipeline_is_empty() && !conn.in_request() && !conn.in_read.get() {
            conn.set_phase(Phase::Idle, self.now_ms());
        }
        if conn.read_paused.get()
            && !conn.close_after.get()
            && conn.pipeline_len() < self.opts.max_pipeline
            && conn.write_queue_size() <= self.opts.max_output
            && !conn.closing.get()
        {
            let _ = self.start_reading(conn);
        }
    }

    /// Cancels every request still in the pipeline: their slots report `CANCELLED` when
    /// answered, and their abort callbacks run now.
    fn abort_pipeline(&self, conn: &Conn) {
        let entries = conn
            .work
            .borrow_mut()
            .as_mut()
            .map(|w| std::mem::take(&mut w.pipeline))
            .unwrap_or_default();
        for e in entries {
            self.lp.recycle_buffer(e.buf);
            if let Some((index, gen)) = e.slot {
                let abort = {
                    let mut slots = self.slots.borrow_mut();
                    let s = &mut slots[index as usize];
                    if s.state != SlotState::Free && s.header.gen.load(Ordering::Relaxed) == gen {
                        s.conn = WeakStream::default();
                        s.abort.take()
                    } else {
                        None
                    }
                };
                if let Some(cb) = abort {
                    cb();
                }
            }
        }
    }

    fn schedule_flush(&self, conn: &ConnRef) {
        if conn.in_read.get() || conn.flush_scheduled.replace(true) {
            return; // the read path flushes when it is done
        }
        let (weak_srv, c) = (self.me.clone(), conn.clone());
        self.lp.defer(move || {
            c.flush_scheduled.set(false);
            if let Some(srv) = weak_srv.upgrade() {
                srv.flush(&c);
            }
        });
    }

    fn flush(&self, conn: &ConnRef) {
        if conn.closing.get() {
            return;
        }
        let out = conn.take_out();
        if !out.is_empty() {
            if conn.write(out, None).is_err() {
                self.close_now(conn);
                return;
            }
            if conn.write_queue_size() > self.opts.max_output {
                self.pause_reading(conn);
            }
        } else {
            self.lp.recycle_buffer(out);
        }
        self.release_work(conn);
        self.maybe_finish(conn);
    }

    fn on_drain(&self, conn: &ConnRef) {
        if conn.read_paused.get()
            && !conn.close_after.get()
            && conn.pipeline_len() < self.opts.max_pipeline
            && !conn.closing.get()
        {
            let _ = self.start_reading(conn);
        }
        self.maybe_finish(conn);
    }

    /// Closes gracefully once a connection that must close has nothing left to send: shut
    /// down the write side, then linger reading until EOF (or `LINGER`).
    fn maybe_finish(&self, conn: &ConnRef) {
        if !conn.close_after.get() || conn.closing.get() || conn.phase.get() == Phase::Linger {
            return;
        }
        if !self.nothing_pending(conn) {
            return;
        }
        if conn.eof.get() {
            self.close_now(conn);
            return;
        }
        conn.set_phase(Phase::Linger, self.now_ms());
        let r = conn.shutdown(|_| {});
        if r.is_err() {
            self.close_now(conn);
            return;
        }
        if conn.read_paused.get() && self.start_reading(conn).is_err() {
            self.close_now(conn);
        }
    }

    /// Closes at once: requests still unanswered are cancelled (abort callbacks run).
    fn close_now(&self, conn: &ConnRef) {
        if conn.closing.replace(true) {
            return;
        }
        self.abort_pipeline(conn);
        let work = conn.work.borrow_mut().take();
        self.recycle_work(work); // ends a partial request too
        conn.begin_close(); // Conn::on_closed finishes
    }

    fn sweep(&self) {
        let now = self.lp.now();
        let now_ms = self.now_ms();
        let mut list = std::mem::take(&mut *self.sweep_buf.borrow_mut());
        list.extend(self.conns.borrow().iter().map(|(_, c)| c.clone()));
        let o = &self.opts;
        for conn in list.drain(..) {
            if conn.closing.get() {
                continue;
            }
            if conn
                .write_stalled_since()
                .is_some_and(|t| now.duration_since(t) >= o.write_timeout)
            {
                self.close_now(&conn);
                continue;
            }
            let age = Duration::from_millis(now_ms.saturating_sub(conn.since.get()));
            match conn.phase.get() {
                Phase::Head if conn.pipeline_is_empty() && age >= o.header_timeout => {
                    if conn.in_request() {
                        self.timeout_408(&conn);
                    } else {
                        self.close_now(&conn);
                    }
                }
                Phase::Body if age >= o.body_timeout => self.timeout_408(&conn),
                Phase::Idle if age >= o.idle_timeout => self.close_now(&conn),
                Phase::Linger if age >= LINGER => self.close_now(&conn),
                _ => {}
            }
        }
        *self.sweep_buf.borrow_mut() = list;
    }

    fn timeout_408(&self, conn: &ConnRef) {
        self.drop_parser(conn);
        if conn.pipeline_is_empty() && conn.write_queue_size() == 0 {
            self.queue_error(conn, 408, "request not received in time");
            self.flush(conn);
        } else {
            self.close_now(conn);
        }
    }

    fn shutdown(self: Rc<Self>, grace: Duration, done: Box<dyn FnOnce()>) {
        if self.stopping.replace(true) {
            return;
        }
        *self.on_stopped.borrow_mut() = Some(done);
        for l in self.listeners.borrow_mut().drain(..) {
            let weak = self.me.clone();
            l.close(move || {
                if let Some(srv) = weak.upgrade() {
                    srv.listeners_open.set(srv.listeners_open.get() - 1);
                    srv.check_stopped();
                }
            });
        }
        let conns: Vec<ConnRef> = self.conns.borrow().iter().map(|(_, c)| c.clone()).collect();
        for conn in conns {
            if conn.pipeline_is_empty() && !conn.in_request() {
                self.close_now(&conn);
            } else {
                conn.close_after.set(true);
                self.maybe_finish(&conn);
            }
        }
        let t = Timer::new(&self.lp);
        let weak = self.me.clone();
        t.start(grace, None, move || {
            if let Some(srv) = weak.upgrade() {
                let conns: Vec<ConnRef> =
                    srv.conns.borrow().iter().map(|(_, c)| c.clone()).collect();
                for c in conns {
                    srv.close_now(&c);
                }
            }
        });
        *self.grace.borrow_mut() = Some(t);
        self.check_stopped();
    }

    fn check_stopped(&self) {
        if self.stopping.get() && self.listeners_open.get() == 0 && self.conns.borrow().is_empty() {
            let grace = self.grace.borrow_mut().take();
            drop(grace);
            let sweeper = self.sweeper.borrow_mut().take();
            drop(sweeper);
            if let Some(cb) = self.on_stopped.borrow_mut().take() {
                self.lp.defer(cb);
            }
        }
    }

    /// Whether a shutdown has completed and no request is outstanding (the server may be freed).
    pub(crate) fn can_free(&self) -> bool {
        self.listeners_open.get() == 0
            && self.conns.borrow().is_empty()
            && self.active_slots.get() == 0
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

    /// Answers with `status`, `headers` and `body`. `INVALID` for a bad status or a header with
    /// CR, LF or NUL (the request stays unanswered), `CANCELLED` if the client has gone.
    pub fn respond(mut self, status: u16, headers: &[(&[u8], &[u8])], body: &[u8]) -> Result<()> {
        let r = self
            .srv
            .respond(self.index, self.gen, status, headers, body);
        if r != Err(Error::INVALID) {
            self.answered = true;
        }
        r
    }

    /// Runs `cb` once if the client goes away before this request is answered.
    pub fn on_abort(&self, cb: impl FnOnce() + 'static) -> Result<()> {
        self.srv.on_abort(self.index, self.gen, Box::new(cb))
    }

    /// Starts a chunked response, returning the writer for its body.
    pub fn respond_chunked(
        mut self,
        status: u16,
        headers: &[(&[u8], &[u8])],
    ) -> Result<ChunkedWriter> {
        self.srv
            .respond_chunked(self.index, self.gen, status, headers)?;
        self.answered = true;
        Ok(ChunkedWriter {
            srv: self.srv.clone(),
            index: self.index,
            gen: self.gen,
            ended: false,
        })
    }

    /// (index, generation) of the slot, for the C API.
    pub(crate) fn into_raw(mut self) -> (Rc<ServerInner>, u32, u32) {
        self.answered = true;
        (self.srv.clone(), self.index, self.gen)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.srv.respond(
                self.index,
                self.gen,
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
    index: u32,
    gen: u32,
    ended: bool,
}

impl ChunkedWriter {
    /// Sends `data` as one chunk (nothing for empty data). `CANCELLED` if the client has gone.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.srv.chunk(self.index, self.gen, data, false)
    }

    /// Ends the body.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        self.srv.chunk(self.index, self.gen, &[], true)
    }
}

impl Drop for ChunkedWriter {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.srv.chunk(self.index, self.gen, &[], true);
        }
    }
}
