//! TCP stream: reads arrive as borrowed slices of the loop's receive buffers; writes are queued
//! (the data is owned by the queue) and sent with one `sendmsg` of up to `MAX_IOV` pieces at a
//! time; shutdown waits for queued writes; close cancels what is in flight, closes the fd
//! through the driver, and reports last of all the stream's events.
//!
//! A `Stream<H>` carries its owner's per-connection state `H` in the same allocation (the HTTP
//! server keeps its connection record there, so an idle connection is one allocation); `H`
//! receives the stream's events through `StreamEvents`. `TcpStream` is the stream whose events
//! go to closures set at run time (`read_start`, `set_on_drain`, `close`).
//!
//! A stream may carry TLS (`start_tls_server`, `start_tls_client`; see `net::tls`): then
//! ciphertext received is decrypted before `on_read` sees it and every write is sealed into
//! the same write queue, so the owner reads and writes plaintext through the same calls.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Deref;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::addr::{Address, SockAddr};
use super::socket;
use super::tls::TlsSession;
use crate::error::{Error, Result};
use crate::reactor::{Completion, Loop, Op, OpOwner, Timer, Token};

/// Pieces gathered into one `sendmsg`.
const MAX_IOV: usize = 64;

/// What a read callback receives.
#[derive(Debug)]
pub enum ReadEvent<'a> {
    /// Bytes received, borrowed until the callback returns. They are the receiver's to modify
    /// in place meanwhile (a WebSocket unmasks frames there instead of copying them).
    Data(&'a mut [u8]),
    /// The peer shut down its sending side; no more data will come.
    Eof,
    /// The connection failed (reset, ...); reading has stopped.
    Error(Error),
}

/// The receiver of a stream's events: the per-connection state stored inside the stream.
/// Events are delivered from the loop, one at a time; an event handler may call any method of
/// the stream, including `begin_close`.
pub trait StreamEvents: Sized + 'static {
    /// Data while reading is on, then `Eof` or `Error` once (reading is then off; the one
    /// exception, `TLS_PLAINTEXT` on a TLS stream, is described at `write_plaintext_reply`).
    fn on_read(stream: &Stream<Self>, ev: ReadEvent<'_>);
    /// The write queue emptied: `Ok` after a successful send, the error when queued writes
    /// failed (the peer went away). Not reported for writes cancelled by closing.
    fn on_drain(_stream: &Stream<Self>, _r: Result<()>) {}
    /// Closing finished (the fd is closed): the last event of the stream.
    fn on_closed(_stream: &Stream<Self>) {}
    /// Reading stopped (`read_stop`, after `Eof`/`Error`, or closing).
    fn on_read_stopped(&self) {}
    /// Closing began: no `on_read` or `on_drain` follows.
    fn on_closing(&self) {}
}

type ReadCb = Box<dyn FnMut(ReadEvent<'_>)>;
pub(in crate::net) type DoneCb = Box<dyn FnOnce(Result<()>)>;
type DrainCb = Box<dyn FnMut(Result<()>)>;

struct WriteReq {
    data: Vec<u8>,
    offset: usize,
    cb: Option<DoneCb>,
}

/// How reading ended while nobody was reading (reported at the next read start).
#[derive(Clone, Copy)]
pub(in crate::net) enum ReadEnd {
    Eof,
    Error(Error),
}

/// Bits of `StreamInner::flags`.
pub(in crate::net) const READING: u8 = 1;
const CLOSING: u8 = 2;
const SHUTDOWN_DONE: u8 = 4;
/// `on_closed` was scheduled.
const CLOSE_REPORTED: u8 = 8;
/// The pending receive does not keep the loop running (`set_keeps_loop_alive(false)`).
const UNREF: u8 = 16;
/// The stream carries TLS: nothing is ever written unsealed (`tls` holds the session).
pub(in crate::net) const TLS: u8 = 32;

/// A stream's state. Everything an idle connection does not need lives in boxes that exist
/// only while needed (`writer`) or only for streams that ever need them (`extra`).
pub(in crate::net) struct StreamInner<H> {
    pub(in crate::net) lp: Loop,
    fd: Cell<RawFd>,
    flags: Cell<u8>,
    pub(in crate::net) read_end: Cell<Option<ReadEnd>>,
    /// The multishot receive in flight.
    pub(in crate::net) recv: Cell<Option<Token>>,
    /// The send in flight.
    pub(in crate::net) send: Cell<Option<Token>>,
    close_op: Cell<Option<Token>>,
    /// Present only while output is queued or a send is in flight; lent from a per-thread pool.
    writer: RefCell<Option<Box<Writer>>>,
    /// Made on first need, kept until the stream is freed (the connect address in it must not
    /// move while the kernel may read it).
    extra: RefCell<Option<Box<Extra>>>,
    /// The TLS session of a TLS stream (taken out while it is being driven).
    pub(in crate::net) tls: Cell<Option<Box<TlsSession>>>,
    events: H,
}

/// The rarely used part of a stream.
#[derive(Default)]
struct Extra {
    /// Bytes that arrived while reading was stopped.
    stash: Vec<u8>,
    /// A shutdown waiting for the write queue to empty.
    shutdown: Option<DoneCb>,
    /// The connect in flight.
    connect: Option<Token>,
    connecting: Option<Connecting>,
}

/// A stream's output while it has any: the queue and the kernel-facing send arguments.
struct Writer {
    queue: VecDeque<WriteReq>,
    /// Bytes queued and not yet handed to the kernel.
    queued_bytes: usize,
    /// When the queued output last made progress (or was queued on an empty queue); the
    /// server's write timeout reads it.
    progress_at: Option<Instant>,
    /// The iovec of a single-buffer send (the common case).
    iov_one: libc::iovec,
    /// The iovecs of a gathered send.
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

/// Writers kept for reuse per thread, at most this many.
const WRITER_POOL: usize = 256;

thread_local! {
    #[allow(clippy::vec_box)] // boxed: the kernel holds pointers into a writer while it sends
    static WRITERS: RefCell<Vec<Box<Writer>>> = const { RefCell::new(Vec::new()) };
}

impl Writer {
    fn take() -> Box<Writer> {
        WRITERS.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| {
            Box::new(Writer {
                queue: VecDeque::new(),
                queued_bytes: 0,
                progress_at: None,
                iov_one: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                iov: Vec::new(),
                // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control data).
                msg: unsafe { std::mem::zeroed() },
            })
        })
    }

    /// Back to the pool; only with an empty queue and no send in flight.
    fn recycle(mut w: Box<Writer>) {
        debug_assert!(w.queue.is_empty() && w.queued_bytes == 0);
        w.progress_at = None;
        w.iov.clear();
        if w.iov.capacity() > MAX_IOV {
            w.iov = Vec::new();
        }
        let _ = WRITERS.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < WRITER_POOL {
                p.push(w);
            }
        });
    }
}

/// A connect in progress.
struct Connecting {
    /// Read by the kernel until the connect completes.
    addr: SockAddr,
    cb: Option<DoneCb>,
    timer: Option<Timer>,
    timed_out: bool,
}

/// A TCP connection carrying the state `H` (reachable through `Deref`). Clones share it; it
/// must be closed (`begin_close`, or `close` for a `TcpStream`).
pub struct Stream<H: StreamEvents> {
    pub(in crate::net) inner: Rc<StreamInner<H>>,
}

impl<H: StreamEvents> Clone for Stream<H> {
    fn clone(&self) -> Self {
        Stream {
            inner: self.inner.clone(),
        }
    }
}

impl<H: StreamEvents> Deref for Stream<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.inner.events
    }
}

/// A reference to a stream that does not keep it alive.
pub struct WeakStream<H: StreamEvents> {
    inner: Weak<StreamInner<H>>,
}

impl<H: StreamEvents> Clone for WeakStream<H> {
    fn clone(&self) -> Self {
        WeakStream {
            inner: self.inner.clone(),
        }
    }
}

impl<H: StreamEvents> Default for WeakStream<H> {
    fn default() -> Self {
        WeakStream { inner: Weak::new() }
    }
}

impl<H: StreamEvents> WeakStream<H> {
    /// The stream, if it still exists.
    pub fn upgrade(&self) -> Option<Stream<H>> {
        self.inner.upgrade().map(|inner| Stream { inner })
    }
}

/// The events of a `TcpStream`: closures set while it runs.
#[derive(Default)]
pub struct Callbacks {
    read: RefCell<Option<ReadCb>>,
    drain: RefCell<Option<DrainCb>>,
    closed: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl StreamEvents for Callbacks {
    fn on_read(stream: &Stream<Self>, ev: ReadEvent<'_>) {
        // Taken out while it runs (it may replace itself or stop reading); put back after
        // unless it was replaced or reading stopped.
        let cb = stream.read.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb(ev);
            if stream.is_reading() && !stream.is_closing() {
                let mut slot = stream.read.borrow_mut();
                if slot.is_none() {
                    *slot = Some(cb);
                }
            }
        }
    }

    fn on_drain(stream: &Stream<Self>, r: Result<()>) {
        let cb = stream.drain.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb(r);
            let mut slot = stream.drain.borrow_mut();
            if slot.is_none() && !stream.is_closing() {
                *slot = Some(cb);
            }
        }
    }

    fn on_closed(stream: &Stream<Self>) {
        let cb = stream.closed.borrow_mut().take();
        if let Some(cb) = cb {
            cb();
        }
    }

    fn on_read_stopped(&self) {
        let cb = self.read.borrow_mut().take();
        drop(cb);
    }

    fn on_closing(&self) {
        let cbs = (
            self.read.borrow_mut().take(),
            self.drain.borrow_mut().take(),
        );
        drop(cbs);
    }
}

/// A TCP connection whose events go to closures. Clones share it; it must be closed with
/// `close`.
pub type TcpStream = Stream<Callbacks>;

impl Stream<Callbacks> {
    /// Starts connecting to `addr`; `cb` gets the result: `Ok`, `-errno`, `TIMEOUT` when
    /// `timeout` passes first, `CANCELLED` when the stream is closed first. The stream is
    /// returned at once (close it to cancel) and must be closed in every case.
    pub fn connect(
        lp: &Loop,
        addr: SocketAddr,
        timeout: Option<Duration>,
        cb: impl FnOnce(Result<()>) + 'static,
    ) -> Result<TcpStream> {
        let fd = socket::tcp_socket(&addr)?;
        let _ = socket::set_opt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        let s = Stream::from_fd(lp, fd.into_raw_fd(), Callbacks::default());
        s.start_connect(SockAddr::from_std(&addr), timeout, Box::new(cb))?;
        Ok(s)
    }

    /// As `connect`, to the Unix stream socket `path` (`@name`: an abstract one). `INVALID`
    /// for a path too long for `sun_path`; a missing socket is `-ENOENT`, one nobody accepts
    /// on `-ECONNREFUSED`, a server whose backlog is full `-EAGAIN` (all through `cb`).
    pub fn connect_unix(
        lp: &Loop,
        path: &std::path::Path,
        timeout: Option<Duration>,
        cb: impl FnOnce(Result<()>) + 'static,
    ) -> Result<TcpStream> {
        let sa = SockAddr::from_unix(path)?;
        let fd = socket::unix_socket()?;
        let s = Stream::from_fd(lp, fd.into_raw_fd(), Callbacks::default());
        s.start_connect(sa, timeout, Box::new(cb))?;
        Ok(s)
    }

    /// Starts reading: `cb` gets data, then `Eof` or `Error` once. `ALREADY` if reading,
    /// `CLOSED` if closing.
    pub fn read_start(&self, cb: impl FnMut(ReadEvent<'_>) + 'static) -> Result<()> {
        if self.is_closing() {
            return Err(Error::CLOSED);
        }
        if self.is_reading() {
            return Err(Error::ALREADY);
        }
        *self.read.borrow_mut() = Some(Box::new(cb));
        self.start_reading().inspect_err(|_| {
            self.read.borrow_mut().take();
        })
    }

    /// Sets a callback run each time the write queue empties: `Ok` after a successful send,
    /// the error when queued writes failed (the peer went away). Set once per connection
    /// instead of a callback per write; not run for writes cancelled by `close`, and dropped
    /// at close.
    pub fn set_on_drain(&self, cb: impl FnMut(Result<()>) + 'static) {
        *self.drain.borrow_mut() = Some(Box::new(cb));
    }

    /// Closes the stream: reading stops, pending writes, shutdown and connect complete with
    /// `CANCELLED` (unless they finish first), the fd is closed, then `cb` runs, last of all
    /// the stream's callbacks. Closing twice does nothing the second time.
    pub fn close(&self, cb: impl FnOnce() + 'static) {
        if self.is_closing() {
            return;
        }
        *self.closed.borrow_mut() = Some(Box::new(cb));
        self.begin_close();
    }
}

impl<H: StreamEvents> Stream<H> {
    fn from_fd(lp: &Loop, fd: RawFd, events: H) -> Stream<H> {
        lp.handle_opened();
        Stream {
            inner: Rc::new(StreamInner {
                lp: lp.clone(),
                fd: Cell::new(fd),
                flags: Cell::new(0),
                read_end: Cell::new(None),
                recv: Cell::new(None),
                send: Cell::new(None),
                close_op: Cell::new(None),
                writer: RefCell::new(None),
                extra: RefCell::new(None),
                tls: Cell::new(None),
                events,
            }),
        }
    }

    /// A stream over `fd`, a connected non-blocking TCP socket the stream owns from now on,
    /// carrying `events`.
    pub(crate) fn from_accepted(lp: &Loop, fd: RawFd, events: H) -> Stream<H> {
        Stream::from_fd(lp, fd, events)
    }

    /// A stream over `fd`, a connected stream socket (made non-blocking here) that the stream
    /// owns from now on, carrying the state `events`; reading starts with `start_reading`.
    pub fn adopt(lp: &Loop, fd: OwnedFd, events: H) -> Result<Stream<H>> {
        socket::set_nonblocking(fd.as_raw_fd())?;
        Ok(Stream::from_fd(lp, fd.into_raw_fd(), events))
    }

    pub(in crate::net) fn flag(&self, bit: u8) -> bool {
        self.inner.flags.get() & bit != 0
    }

    pub(in crate::net) fn set_flag(&self, bit: u8, on: bool) {
        let f = self.inner.flags.get();
        self.inner.flags.set(if on { f | bit } else { f & !bit });
    }

    /// The rarely used state, made on first use.
    fn extra(&self) -> std::cell::RefMut<'_, Extra> {
        std::cell::RefMut::map(self.inner.extra.borrow_mut(), |e| {
            &mut **e.get_or_insert_with(Default::default)
        })
    }

    pub(in crate::net) fn connect_token(&self) -> Option<Token> {
        self.inner.extra.borrow().as_ref().and_then(|e| e.connect)
    }

    fn shutdown_pending(&self) -> bool {
        self.inner
            .extra
            .borrow()
            .as_ref()
            .is_some_and(|e| e.shutdown.is_some())
    }

    fn start_connect(&self, addr: SockAddr, timeout: Option<Duration>, cb: DoneCb) -> Result<()> {
        let inner = &self.inner;
        let op = {
            let mut extra = self.extra();
            let state = extra.connecting.insert(Connecting {
                addr,
                cb: Some(cb),
                timer: None,
                timed_out: false,
            });
            // The address lives in the extra box, which stays put until the stream is freed,
            // and the loop keeps the stream alive until the connect completes.
            Op::Connect {
                fd: inner.fd.get(),
                addr: state.addr.as_ptr(),
                len: state.addr.len as u16, // a sockaddr_storage is 128 bytes
            }
        };
        // SAFETY: the address lives in the extra box, which stays put until the stream is
        // freed, and the loop keeps the stream (`inner`) alive until the final completion.
        match unsafe { inner.lp.submit_borrowing(op, inner.clone()) } {
            Ok(t) => self.extra().connect = Some(t),
            Err(e) => {
                self.extra().connecting.take();
                self.begin_close();
                return Err(e);
            }
        }
        if let Some(d) = timeout {
            let timer = Timer::new(&inner.lp);
            let weak = self.downgrade();
            timer.start(d, None, move || {
                if let Some(s) = weak.upgrade() {
                    if let Some(t) = s.connect_token() {
                        if let Some(c) = s.extra().connecting.as_mut() {
                            c.timed_out = true;
                        }
                        s.inner.lp.cancel(t);
                    }
                }
            });
            if let Some(c) = self.extra().connecting.as_mut() {
                c.timer = Some(timer);
            }
        }
        Ok(())
    }

    /// A reference that does not keep the stream alive.
    pub fn downgrade(&self) -> WeakStream<H> {
        WeakStream {
            inner: Rc::downgrade(&self.inner),
        }
    }

    /// Whether two handles name the same stream.
    pub fn ptr_eq(&self, other: &Stream<H>) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// The loop the stream runs on.
    pub fn event_loop(&self) -> &Loop {
        &self.inner.lp
    }

    /// The socket's fd (-1 once closing). Borrowed: do not close it.
    pub fn fd(&self) -> RawFd {
        self.inner.fd.get()
    }

    /// Local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.open_fd().and_then(socket::local_addr)
    }

    /// Peer address.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        self.open_fd().and_then(socket::peer_addr)
    }

    /// Local address, TCP or Unix.
    pub fn local_address(&self) -> Result<Address> {
        self.open_fd().and_then(socket::local_address)
    }

    /// Peer address, TCP or Unix (a Unix peer that connected is unnamed: an empty path).
    pub fn peer_address(&self) -> Result<Address> {
        self.open_fd().and_then(socket::peer_address)
    }

    /// TCP_NODELAY on or off.
    pub fn set_nodelay(&self, on: bool) -> Result<()> {
        socket::set_opt(
            self.open_fd()?,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            on as i32,
        )
    }

    fn open_fd(&self) -> Result<RawFd> {
        if self.is_closing() {
            Err(Error::CLOSED)
        } else {
            Ok(self.inner.fd.get())
        }
    }

    /// Bytes queued and not yet handed to the kernel.
    pub fn write_queue_size(&self) -> usize {
        self.inner
            .writer
            .borrow()
            .as_ref()
            .map_or(0, |w| w.queued_bytes)
    }

    /// Since when queued output has waited without any byte reaching the kernel: `None` when
    /// nothing is queued. A slow reader that keeps taking bytes never looks stalled.
    pub fn write_stalled_since(&self) -> Option<Instant> {
        self.inner
            .writer
            .borrow()
            .as_ref()
            .and_then(|w| w.progress_at)
    }

    /// Whether the stream is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.flag(CLOSING)
    }

    /// Whether reading is on.
    pub fn is_reading(&self) -> bool {
        self.flag(READING)
    }

    /// Starts reading: data goes to `H::on_read`, then `Eof` or `Error` once. `ALREADY` if
    /// reading, `CLOSED` if closing.
    pub fn start_reading(&self) -> Result<()> {
        if self.is_closing() {
            return Err(Error::CLOSED);
        }
        if self.is_reading() {
            return Err(Error::ALREADY);
        }
        self.set_flag(READING, true);
        if self.flag(TLS) {
            return self.tls_start_reading();
        }
        let stashed = self
            .inner
            .extra
            .borrow()
            .as_ref()
            .is_some_and(|e| !e.stash.is_empty());
        if stashed || self.inner.read_end.get().is_some() {
            // Deliver what arrived while reading was stopped, from the loop, not from here.
            let s = self.clone();
            self.inner.lp.defer(move || s.deliver_stash());
        } else if let Err(e) = self.arm_recv() {
            self.set_flag(READING, false);
            self.inner.events.on_read_stopped();
            return Err(e);
        }
        Ok(())
    }

    /// Puts `data` back in front of what is still to be read: the next read start delivers it
    /// first. For a reader that stops in the middle of what it was given (a protocol switch,
    /// or backpressure), so the rest is not lost; nothing happens while closing.
    pub fn unread(&self, data: &[u8]) {
        if self.is_closing() || data.is_empty() {
            return;
        }
        if self.flag(TLS) {
            // Plaintext waits in the session's own stash, delivered by `tls_deliver_pending`.
            let _ = self.with_tls(|s| {
                s.stash.splice(0..0, data.iter().copied());
            });
            return;
        }
        let mut extra = self.extra();
        let stash = &mut extra.stash;
        stash.splice(0..0, data.iter().copied());
    }

    /// Stops reading. Data that still arrives is kept for the next read start.
    pub fn read_stop(&self) {
        self.set_flag(READING, false);
        self.inner.events.on_read_stopped();
        if let Some(t) = self.inner.recv.get() {
            if !self.tls_handshaking() {
                self.inner.lp.cancel(t); // a TLS handshake reads on by itself
            }
        }
    }

    /// Queues `data` (owned by the stream from now on); `cb`, if any, runs once with `Ok` when
    /// all of it was handed to the kernel, or the error (`CANCELLED` on close). `CLOSED` if
    /// closing, `-EPIPE` after `shutdown`.
    pub fn write(&self, data: Vec<u8>, cb: Option<DoneCb>) -> Result<()> {
        if self.is_closing() {
            return Err(Error::CLOSED);
        }
        if self.shutdown_pending() || self.flag(SHUTDOWN_DONE) {
            return Err(Error::from_errno(libc::EPIPE));
        }
        if self.connect_token().is_some() {
            return Err(Error::from_errno(libc::ENOTCONN));
        }
        if self.flag(TLS) {
            return self.tls_write(data, cb);
        }
        self.queue_raw(data, cb);
        Ok(())
    }

    /// Queues `data` as it is (ciphertext on a TLS stream) and starts sending it.
    pub(in crate::net) fn queue_raw(&self, data: Vec<u8>, cb: Option<DoneCb>) {
        let inner = &self.inner;
        {
            let mut w = inner.writer.borrow_mut();
            let w = w.get_or_insert_with(Writer::take);
            if w.queued_bytes == 0 {
                w.progress_at = Some(inner.lp.now());
            }
            w.queued_bytes += data.len();
            w.queue.push_back(WriteReq {
                data,
                offset: 0,
                cb,
            });
        }
        if inner.send.get().is_none() {
            if let Err(e) = self.flush() {
                // Nothing was sent: report the error to every queued write, from the loop.
                let s = self.clone();
                inner.lp.defer(move || s.fail_writes(e));
            }
        }
    }

    /// Tells the owner reading stopped.
    pub(in crate::net) fn read_stopped_event(&self) {
        self.inner.events.on_read_stopped();
    }

    /// Whether a send is in flight or anything is queued.
    pub(in crate::net) fn sending(&self) -> bool {
        self.inner.send.get().is_some() || self.has_queued()
    }

    /// Shuts down the sending side once queued writes are sent; `cb` gets the result.
    pub fn shutdown(&self, cb: impl FnOnce(Result<()>) + 'static) -> Result<()> {
        if self.is_closing() {
            return Err(Error::CLOSED);
        }
        if self.shutdown_pending() || self.flag(SHUTDOWN_DONE) {
            return Err(Error::ALREADY);
        }
        if self.flag(TLS) {
            self.tls_close_notify();
        }
        self.extra().shutdown = Some(Box::new(cb));
        if self.inner.send.get().is_none() && !self.has_queued() {
            let s = self.clone();
            self.inner.lp.defer(move || s.do_shutdown());
        }
        Ok(())
    }

    /// Closes the stream: reading stops, pending writes, shutdown and connect complete with
    /// `CANCELLED` (unless they finish first), the fd is closed, then `H::on_closed` runs,
    /// last of all the stream's events. Closing twice does nothing the second time.
    pub fn begin_close(&self) {
        let inner = &self.inner;
        if self.is_closing() {
            return;
        }
        self.set_flag(CLOSING, true);
        self.set_flag(READING, false);
        // Closing keeps the loop running until it is done, unref'd receive included.
        self.set_keeps_loop_alive(true);
        inner.events.on_closing();
        if self.flag(TLS) {
            self.tls_on_close();
        }
        let timer = inner.extra.borrow_mut().as_mut().and_then(|e| {
            e.stash = Vec::new();
            e.connecting.as_mut().and_then(|c| c.timer.take())
        });
        drop(timer);
        for t in [inner.recv.get(), inner.send.get(), self.connect_token()]
            .into_iter()
            .flatten()
        {
            inner.lp.cancel(t);
        }
        if inner.send.get().is_none() {
            let s = self.clone();
            inner.lp.defer(move || s.fail_writes(Error::CANCELLED));
        }
        let fd = inner.fd.replace(-1);
        inner.close_op.set(inner.lp.submit_close(fd, inner.clone()));
        self.maybe_finish_close();
    }

    pub(in crate::net) fn arm_recv(&self) -> Result<()> {
        let inner = &self.inner;
        let t = inner
            .lp
            .submit(Op::Recv { fd: inner.fd.get() }, inner.clone())?;
        self.set_recv(Some(t));
        Ok(())
    }

    /// Records the receive in flight, counting it out of the loop's liveness when `UNREF`.
    fn set_recv(&self, t: Option<Token>) {
        let was = self.inner.recv.replace(t).is_some();
        if self.flag(UNREF) && was != t.is_some() {
            if t.is_some() {
                self.inner.lp.unref_op();
            } else {
                self.inner.lp.ref_op();
            }
        }
    }

    /// Whether the pending receive keeps `Loop::run` going (the default). An idle pooled client
    /// connection reads only to notice the server closing it, and should not hold a program
    /// whose work is done (libuv's `uv_unref`).
    pub fn set_keeps_loop_alive(&self, keeps: bool) {
        if self.flag(UNREF) != keeps {
            return;
        }
        if self.inner.recv.get().is_some() {
            if keeps {
                self.inner.lp.ref_op();
            } else {
                self.inner.lp.unref_op();
            }
        }
        self.set_flag(UNREF, !keeps);
    }

    pub(in crate::net) fn end_reading(&self, end: ReadEnd) {
        self.inner.read_end.set(Some(end));
        if self.is_reading() {
            self.set_flag(READING, false);
            let ev = match end {
                ReadEnd::Eof => ReadEvent::Eof,
                ReadEnd::Error(e) => ReadEvent::Error(e),
            };
            H::on_read(self, ev);
            if !self.is_reading() {
                self.inner.events.on_read_stopped();
            }
        }
    }

    fn deliver_stash(&self) {
        if !self.is_reading() || self.is_closing() {
            return;
        }
        let mut data = self
            .inner
            .extra
            .borrow_mut()
            .as_mut()
            .map(|e| std::mem::take(&mut e.stash))
            .unwrap_or_default();
        if !data.is_empty() {
            H::on_read(self, ReadEvent::Data(&mut data));
        }
        if !self.is_reading() {
            return;
        }
        if let Some(end) = self.inner.read_end.get() {
            self.end_reading(end);
        } else if self.inner.recv.get().is_none() {
            if let Err(e) = self.arm_recv() {
                self.end_reading(ReadEnd::Error(e));
            }
        }
    }

    fn on_recv(&self, c: &Completion, data: &mut [u8]) {
        let inner = &self.inner;
        if !c.more && inner.recv.get() == Some(c.token) {
            self.set_recv(None);
        }
        if self.is_closing() {
            return;
        }
        if c.res > 0 {
            if self.flag(TLS) {
                self.tls_on_data(data);
            } else if self.is_reading() {
                H::on_read(self, ReadEvent::Data(data));
            } else {
                self.extra().stash.extend_from_slice(data);
            }
        } else if c.res == 0 {
            self.read_ended(ReadEnd::Eof);
            return;
        } else if c.res != -libc::ECANCELED && c.res != -libc::ENOBUFS {
            self.read_ended(ReadEnd::Error(Error::from_code(c.res)));
            return;
        }
        // Multishot ended (buffers ran out, or a cancel raced with a read start): re-arm.
        if self.wants_recv()
            && !self.is_closing()
            && inner.recv.get().is_none()
            && inner.read_end.get().is_none()
        {
            if let Err(e) = self.arm_recv() {
                self.end_reading(ReadEnd::Error(e));
            }
        }
    }

    /// The connection's read side ended (EOF or an error).
    fn read_ended(&self, end: ReadEnd) {
        if self.flag(TLS) {
            self.tls_on_end(end);
        } else {
            self.end_reading(end);
        }
    }

    /// Whether a receive should stay armed: while reading, or while a TLS handshake runs.
    fn wants_recv(&self) -> bool {
        self.is_reading() || self.tls_handshaking()
    }

    /// Whether any write is queued.
    fn has_queued(&self) -> bool {
        self.inner
            .writer
            .borrow()
            .as_ref()
            .is_some_and(|w| !w.queue.is_empty())
    }

    /// Gives the writer back to the pool once nothing is queued and no send is in flight.
    fn release_writer(&self) {
        if self.inner.send.get().is_some() || self.has_queued() {
            return;
        }
        let w = self.inner.writer.borrow_mut().take();
        if let Some(w) = w {
            Writer::recycle(w);
        }
    }

    /// Submits one send of the front of the queue: a plain send for one buffer, a sendmsg
    /// gathering up to `MAX_IOV` otherwise.
    fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        let fd = inner.fd.get();
        let op = {
            let mut guard = inner.writer.borrow_mut();
            let Some(w) = guard.as_mut() else {
                return Ok(());
            };
            // No send is in flight (send is None), so the kernel does not read the writer's
            // iovecs or msghdr now; they stay untouched, in the boxed writer (which is not
            // released while a send is in flight), until this send's completion.
            let w = &mut **w;
            match w.queue.len() {
                0 => return Ok(()),
                1 => {
                    let rest = &w.queue[0].data[w.queue[0].offset..];
                    w.iov_one = libc::iovec {
                        iov_base: rest.as_ptr() as *mut _,
                        iov_len: rest.len(),
                    };
                    Op::SendOne {
                        fd,
                        iov: &w.iov_one,
                    }
                }
                _ => {
                    w.iov.clear();
                    for req in w.queue.iter().take(MAX_IOV) {
                        let rest = &req.data[req.offset..];
                        w.iov.push(libc::iovec {
                            iov_base: rest.as_ptr() as *mut _,
                            iov_len: rest.len(),
                        });
                    }
                    w.msg.msg_iov = w.iov.as_mut_ptr();
                    w.msg.msg_iovlen = w.iov.len();
                    Op::Send { fd, msg: &w.msg }
                }
            }
        };
        // SAFETY: the msghdr and iovecs live in the boxed writer, which stays with the stream
        // (`inner`, kept alive by the loop until the final completion) and is not returned to
        // its pool while `send` is set; the buffers they name are neither freed nor modified
        // until `on_send` (writes meanwhile only append to the queue).
        let t = unsafe { inner.lp.submit_borrowing(op, inner.clone()) }?;
        inner.send.set(Some(t));
        Ok(())
    }

    fn on_send(&self, res: i32) {
        let inner = &self.inner;
        inner.send.set(None);
        if res < 0 {
            let e = if res == -libc::ECANCELED {
                Error::CANCELLED
            } else {
                Error::from_code(res)
            };
            self.fail_writes(e);
            return;
        }
        // Account for the bytes sent before any callback runs, then keep the queue moving, so
        // writes made from callbacks simply join the queue.
        let mut sent = res as usize;
        let mut done: Vec<DoneCb> = Vec::new();
        let more = {
            let mut guard = inner.writer.borrow_mut();
            let Some(w) = guard.as_mut() else { return };
            w.queued_bytes -= sent;
            if sent > 0 {
                w.progress_at = Some(inner.lp.now());
            }
            let q = &mut w.queue;
            while let Some(front) = q.front_mut() {
                let left = front.data.len() - front.offset;
                if sent >= left {
                    sent -= left;
                    let req = q.pop_front().unwrap();
                    if let Some(cb) = req.cb {
                        done.push(cb);
                    }
                    inner.lp.recycle_buffer(req.data);
                } else {
                    front.offset += sent;
                    break;
                }
            }
            !q.is_empty()
        };
        if !more {
            self.release_writer(); // idle connections keep no write state
        }
        let mut flush_err = None;
        if more && !self.is_closing() {
            if let Err(e) = self.flush() {
                flush_err = Some(e);
            }
        }
        for cb in done {
            cb(Ok(()));
        }
        if let Some(e) = flush_err {
            self.fail_writes(e);
        } else if self.is_closing() {
            self.fail_writes(Error::CANCELLED);
        } else if !more && inner.send.get().is_none() {
            if self.shutdown_pending() {
                self.do_shutdown();
            }
            if !self.is_closing() {
                H::on_drain(self, Ok(()));
            }
        }
    }

    /// Fails every queued write (and a pending shutdown) with `e`.
    fn fail_writes(&self, e: Error) {
        let had_writes = self.has_queued();
        loop {
            let req = self.inner.writer.borrow_mut().as_mut().and_then(|w| {
                let req = w.queue.pop_front()?;
                w.queued_bytes -= req.data.len() - req.offset;
                Some(req)
            });
            let Some(req) = req else { break };
            if let Some(cb) = req.cb {
                cb(Err(e));
            }
        }
        self.release_writer();
        let sd = self
            .inner
            .extra
            .borrow_mut()
            .as_mut()
            .and_then(|x| x.shutdown.take());
        if let Some(cb) = sd {
            self.set_flag(SHUTDOWN_DONE, true);
            cb(Err(e));
        }
        if had_writes && !self.is_closing() {
            H::on_drain(self, Err(e));
        }
    }

    fn do_shutdown(&self) {
        let cb = self
            .inner
            .extra
            .borrow_mut()
            .as_mut()
            .and_then(|x| x.shutdown.take());
        let Some(cb) = cb else { return };
        self.set_flag(SHUTDOWN_DONE, true);
        if self.is_closing() {
            cb(Err(Error::CANCELLED));
            return;
        }
        // SAFETY: plain syscall on our open fd.
        let r = unsafe { libc::shutdown(self.inner.fd.get(), libc::SHUT_WR) };
        cb(if r < 0 {
            Err(Error::last_os_error())
        } else {
            Ok(())
        });
    }

    fn on_connect(&self, res: i32) {
        let state = {
            let mut extra = self.extra();
            extra.connect = None;
            extra.connecting.take()
        };
        let Some(Connecting {
            cb,
            timer,
            timed_out,
            ..
        }) = state
        else {
            return;
        };
        drop(timer);
        let r = if res >= 0 {
            Ok(())
        } else if res == -libc::ECANCELED {
            Err(if timed_out && !self.is_closing() {
                Error::TIMEOUT
            } else {
                Error::CANCELLED
            })
        } else {
            Err(Error::from_code(res))
        };
        if let Some(cb) = cb {
            cb(r);
        }
    }

    fn maybe_finish_close(&self) {
        let inner = &self.inner;
        if self.is_closing()
            && inner.recv.get().is_none()
            && inner.send.get().is_none()
            && self.connect_token().is_none()
            && inner.close_op.get().is_none()
            && !self.flag(CLOSE_REPORTED)
        {
            self.set_flag(CLOSE_REPORTED, true);
            let s = self.clone();
            inner.lp.defer_close(move || H::on_closed(&s));
        }
    }
}

impl<H: StreamEvents> OpOwner for StreamInner<H> {
    fn complete(self: Rc<Self>, _lp: &Loop, op: Op, c: &Completion, data: &mut [u8]) {
        let s = Stream { inner: self };
        match op {
            Op::Recv { .. } => s.on_recv(c, data),
            Op::Send { .. } | Op::SendOne { .. } => s.on_send(c.res),
            Op::Connect { .. } => s.on_connect(c.res),
            Op::Close { .. } => s.inner.close_op.set(None),
            _ => {}
        }
        s.maybe_finish_close();
    }
}
