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

mod connect;
mod read;
mod write;

use connect::Connecting;
use write::Writer;

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

    fn shutdown_pending(&self) -> bool {
        self.inner
            .extra
            .borrow()
            .as_ref()
            .is_some_and(|e| e.shutdown.is_some())
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

    /// Whether the stream is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.flag(CLOSING)
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
