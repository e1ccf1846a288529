//! TCP stream: reads arrive as borrowed slices of the loop's receive buffers; writes are queued
//! (the data is owned by the queue) and sent with one `sendmsg` of up to `MAX_IOV` pieces at a
//! time; shutdown waits for queued writes; close cancels what is in flight, closes the fd
//! through the driver, and calls its callback after every other callback of the stream.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::addr::SockAddr;
use super::socket;
use crate::error::{Error, Result};
use crate::reactor::{Completion, Loop, Op, OpOwner, Timer, Token};

/// Pieces gathered into one `sendmsg`.
const MAX_IOV: usize = 64;

/// What a read callback receives.
#[derive(Debug)]
pub enum ReadEvent<'a> {
    /// Bytes received, borrowed until the callback returns.
    Data(&'a [u8]),
    /// The peer shut down its sending side; no more data will come.
    Eof,
    /// The connection failed (reset, ...); reading has stopped.
    Error(Error),
}

type ReadCb = Box<dyn FnMut(ReadEvent<'_>)>;
type DoneCb = Box<dyn FnOnce(Result<()>)>;
type DrainCb = Box<dyn FnMut(Result<()>)>;

struct WriteReq {
    data: Vec<u8>,
    offset: usize,
    cb: Option<DoneCb>,
}

/// How reading ended while nobody was reading (reported at the next `read_start`).
#[derive(Clone, Copy)]
enum ReadEnd {
    Eof,
    Error(Error),
}

struct StreamInner {
    lp: Loop,
    fd: Cell<RawFd>,
    // Reading.
    recv: Cell<Option<Token>>,
    reading: Cell<bool>,
    on_read: RefCell<Option<ReadCb>>,
    stash: RefCell<Vec<u8>>,
    read_end: Cell<Option<ReadEnd>>,
    // Writing.
    /// Present only while output is queued or a send is in flight (idle connections keep no
    /// write state); lent from a per-thread pool.
    writer: RefCell<Option<Box<Writer>>>,
    queued_bytes: Cell<usize>,
    send: Cell<Option<Token>>,
    shutdown: RefCell<Option<DoneCb>>,
    shutdown_done: Cell<bool>,
    on_drain: RefCell<Option<DrainCb>>,
    // Connecting.
    connect: Cell<Option<Token>>,
    /// Only while connecting: accepted connections never allocate it.
    connecting: RefCell<Option<Box<Connecting>>>,
    // Closing.
    closing: Cell<bool>,
    close_op: Cell<Option<Token>>,
    close_cb: RefCell<Option<Box<dyn FnOnce()>>>,
}

/// A stream's output while it has any: the queue and the kernel-facing send arguments.
struct Writer {
    queue: VecDeque<WriteReq>,
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
        debug_assert!(w.queue.is_empty());
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

/// A TCP connection. Clones share it; it must be closed with `close`.
#[derive(Clone)]
pub struct TcpStream {
    inner: Rc<StreamInner>,
}

impl TcpStream {
    fn from_fd(lp: &Loop, fd: RawFd) -> TcpStream {
        lp.handle_opened();
        TcpStream {
            inner: Rc::new(StreamInner {
                lp: lp.clone(),
                fd: Cell::new(fd),
                recv: Cell::new(None),
                reading: Cell::new(false),
                on_read: RefCell::new(None),
                stash: RefCell::new(Vec::new()),
                read_end: Cell::new(None),
                writer: RefCell::new(None),
                queued_bytes: Cell::new(0),
                send: Cell::new(None),
                shutdown: RefCell::new(None),
                shutdown_done: Cell::new(false),
                on_drain: RefCell::new(None),
                connect: Cell::new(None),
                connecting: RefCell::new(None),
                closing: Cell::new(false),
                close_op: Cell::new(None),
                close_cb: RefCell::new(None),
            }),
        }
    }

    pub(crate) fn from_accepted(lp: &Loop, fd: RawFd, nodelay: bool) -> TcpStream {
        if nodelay {
            let _ = socket::set_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        }
        TcpStream::from_fd(lp, fd)
    }

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
        let _ = socket::set_opt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            1,
        );
        let s = TcpStream::from_fd(lp, fd.into_raw_fd());
        let inner = &s.inner;
        let state = Box::new(Connecting {
            addr: SockAddr::from_std(&addr),
            cb: Some(Box::new(cb)),
            timer: None,
            timed_out: false,
        });
        // The address lives in the box, which stays put until the connect completes (only
        // on_connect drops it): the kernel may read it until then.
        let op = Op::Connect {
            fd: inner.fd.get(),
            addr: state.addr.as_ptr(),
            len: state.addr.len,
        };
        *inner.connecting.borrow_mut() = Some(state);
        match lp.submit(op, inner.clone()) {
            Ok(t) => inner.connect.set(Some(t)),
            Err(e) => {
                inner.connecting.borrow_mut().take();
                s.close(|| {});
                return Err(e);
            }
        }
        if let Some(d) = timeout {
            let timer = Timer::new(lp);
            let weak = Rc::downgrade(inner);
            timer.start(d, None, move || {
                if let Some(i) = weak.upgrade() {
                    if let Some(t) = i.connect.get() {
                        if let Some(c) = i.connecting.borrow_mut().as_mut() {
                            c.timed_out = true;
                        }
                        i.lp.cancel(t);
                    }
                }
            });
            if let Some(c) = inner.connecting.borrow_mut().as_mut() {
                c.timer = Some(timer);
            }
        }
        Ok(s)
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
        if self.inner.closing.get() {
            Err(Error::CLOSED)
        } else {
            Ok(self.inner.fd.get())
        }
    }

    /// Bytes queued and not yet handed to the kernel.
    pub fn write_queue_size(&self) -> usize {
        self.inner.queued_bytes.get()
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
        self.inner.closing.get()
    }

    /// Starts reading: `cb` gets data, then `Eof` or `Error` once. `ALREADY` if reading,
    /// `CLOSED` if closing.
    pub fn read_start(&self, cb: impl FnMut(ReadEvent<'_>) + 'static) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.get() {
            return Err(Error::CLOSED);
        }
        if inner.reading.get() {
            return Err(Error::ALREADY);
        }
        *inner.on_read.borrow_mut() = Some(Box::new(cb));
        inner.reading.set(true);
        if !inner.stash.borrow().is_empty() || inner.read_end.get().is_some() {
            // Deliver what arrived while reading was stopped, from the loop, not from here.
            let i = inner.clone();
            inner.lp.defer(move || i.deliver_stash());
        } else if let Err(e) = inner.clone().arm_recv() {
            inner.reading.set(false);
            inner.on_read.borrow_mut().take();
            return Err(e);
        }
        Ok(())
    }

    /// Stops reading; the read callback is dropped. Data that still arrives is kept for the
    /// next `read_start`.
    pub fn read_stop(&self) {
        let inner = &self.inner;
        inner.reading.set(false);
        let cb = inner.on_read.borrow_mut().take();
        drop(cb);
        if let Some(t) = inner.recv.get() {
            inner.lp.cancel(t);
        }
    }

    /// Whether reading is on.
    pub fn is_reading(&self) -> bool {
        self.inner.reading.get()
    }

    /// Queues `data` (owned by the stream from now on); `cb`, if any, runs once with `Ok` when
    /// all of it was handed to the kernel, or the error (`CANCELLED` on close). `CLOSED` if
    /// closing, `-EPIPE` after `shutdown`.
    pub fn write(&self, data: Vec<u8>, cb: Option<DoneCb>) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.get() {
            return Err(Error::CLOSED);
        }
        if inner.shutdown.borrow().is_some() || inner.shutdown_done.get() {
            return Err(Error::from_errno(libc::EPIPE));
        }
        if inner.connect.get().is_some() {
            return Err(Error::from_errno(libc::ENOTCONN));
        }
        let len = data.len();
        {
            let mut w = inner.writer.borrow_mut();
            let w = w.get_or_insert_with(Writer::take);
            if inner.queued_bytes.get() == 0 {
                w.progress_at = Some(inner.lp.now());
            }
            w.queue.push_back(WriteReq {
                data,
                offset: 0,
                cb,
            });
        }
        inner.queued_bytes.set(inner.queued_bytes.get() + len);
        if inner.send.get().is_none() {
            if let Err(e) = inner.clone().flush() {
                // Nothing was sent: report the error to every queued write, from the loop.
                let i = inner.clone();
                inner.lp.defer(move || i.fail_writes(e));
            }
        }
        Ok(())
    }

    /// Sets a callback run each time the write queue empties: `Ok` after a successful send,
    /// the error when queued writes failed (the peer went away). Set once per connection
    /// instead of a callback per write; not run for writes cancelled by `close`, and dropped
    /// at close.
    pub fn set_on_drain(&self, cb: impl FnMut(Result<()>) + 'static) {
        *self.inner.on_drain.borrow_mut() = Some(Box::new(cb));
    }

    /// Shuts down the sending side once queued writes are sent; `cb` gets the result.
    pub fn shutdown(&self, cb: impl FnOnce(Result<()>) + 'static) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.get() {
            return Err(Error::CLOSED);
        }
        if inner.shutdown.borrow().is_some() || inner.shutdown_done.get() {
            return Err(Error::ALREADY);
        }
        *inner.shutdown.borrow_mut() = Some(Box::new(cb));
        if inner.send.get().is_none() && !inner.has_queued() {
            let i = inner.clone();
            inner.lp.defer(move || i.do_shutdown());
        }
        Ok(())
    }

    /// Closes the stream: reading stops, pending writes, shutdown and connect complete with
    /// `CANCELLED` (unless they finish first), the fd is closed, then `cb` runs, last of all
    /// the stream's callbacks. Closing twice does nothing the second time.
    pub fn close(&self, cb: impl FnOnce() + 'static) {
        let inner = &self.inner;
        if inner.closing.replace(true) {
            return;
        }
        *inner.close_cb.borrow_mut() = Some(Box::new(cb));
        inner.reading.set(false);
        let read_cb = inner.on_read.borrow_mut().take();
        drop(read_cb);
        let drain_cb = inner.on_drain.borrow_mut().take();
        drop(drain_cb);
        inner.stash.borrow_mut().clear();
        let timer = inner
            .connecting
            .borrow_mut()
            .as_mut()
            .and_then(|c| c.timer.take());
        drop(timer);
        for t in [inner.recv.get(), inner.send.get(), inner.connect.get()]
            .into_iter()
            .flatten()
        {
            inner.lp.cancel(t);
        }
        if inner.send.get().is_none() {
            let i = inner.clone();
            inner.lp.defer(move || i.fail_writes(Error::CANCELLED));
        }
        let fd = inner.fd.replace(-1);
        inner.close_op.set(inner.lp.submit_close(fd, inner.clone()));
        inner.clone().maybe_finish_close();
    }
}

impl StreamInner {
    fn arm_recv(self: Rc<Self>) -> Result<()> {
        let t = self
            .lp
            .submit(Op::Recv { fd: self.fd.get() }, self.clone())?;
        self.recv.set(Some(t));
        Ok(())
    }

    /// Calls the read callback with `ev`, keeping it unless it was replaced or reading stopped.
    fn emit(&self, ev: ReadEvent<'_>) {
        let cb = self.on_read.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb(ev);
            if self.reading.get() && !self.closing.get() {
                let mut slot = self.on_read.borrow_mut();
                if slot.is_none() {
                    *slot = Some(cb);
                }
            }
        }
    }

    fn end_reading(&self, end: ReadEnd) {
        self.read_end.set(Some(end));
        if self.reading.get() {
            self.reading.set(false);
            let ev = match end {
                ReadEnd::Eof => ReadEvent::Eof,
                ReadEnd::Error(e) => ReadEvent::Error(e),
            };
            self.emit(ev);
            let cb = self.on_read.borrow_mut().take();
            drop(cb);
        }
    }

    fn deliver_stash(self: Rc<Self>) {
        if !self.reading.get() || self.closing.get() {
            return;
        }
        let data = std::mem::take(&mut *self.stash.borrow_mut());
        if !data.is_empty() {
            self.emit(ReadEvent::Data(&data));
        }
        if !self.reading.get() {
            return;
        }
        if let Some(end) = self.read_end.get() {
            self.reading.set(true);
            self.end_reading(end);
        } else if self.recv.get().is_none() {
            if let Err(e) = self.clone().arm_recv() {
                self.end_reading(ReadEnd::Error(e));
            }
        }
    }

    fn on_recv(self: Rc<Self>, c: &Completion, data: &[u8]) {
        if !c.more && self.recv.get() == Some(c.token) {
            self.recv.set(None);
        }
        if self.closing.get() {
            return;
        }
        if c.res > 0 {
            if self.reading.get() {
                self.emit(ReadEvent::Data(data));
            } else {
                self.stash.borrow_mut().extend_from_slice(data);
            }
        } else if c.res == 0 {
            self.end_reading(ReadEnd::Eof);
            return;
        } else if c.res != -libc::ECANCELED && c.res != -libc::ENOBUFS {
            self.end_reading(ReadEnd::Error(Error::from_code(c.res)));
            return;
        }
        // Multishot ended (buffers ran out, or a cancel raced with read_start): re-arm.
        if self.reading.get()
            && !self.closing.get()
            && self.recv.get().is_none()
            && self.read_end.get().is_none()
        {
            if let Err(e) = self.clone().arm_recv() {
                self.end_reading(ReadEnd::Error(e));
            }
        }
    }

    /// Whether any write is queued.
    fn has_queued(&self) -> bool {
        self.writer
            .borrow()
            .as_ref()
            .is_some_and(|w| !w.queue.is_empty())
    }

    /// Gives the writer back to the pool once nothing is queued and no send is in flight.
    fn release_writer(&self) {
        if self.send.get().is_some() || self.has_queued() {
            return;
        }
        let w = self.writer.borrow_mut().take();
        if let Some(w) = w {
            Writer::recycle(w);
        }
    }

    /// Submits one sendmsg over the front of the queue.
    fn flush(self: Rc<Self>) -> Result<()> {
        let msg: *const libc::msghdr = {
            let mut guard = self.writer.borrow_mut();
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
                    w.msg.msg_iov = &mut w.iov_one;
                    w.msg.msg_iovlen = 1;
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
                }
            }
            &w.msg
        };
        let t = self.lp.submit(
            Op::Send {
                fd: self.fd.get(),
                msg,
            },
            self.clone(),
        )?;
        self.send.set(Some(t));
        Ok(())
    }

    fn on_send(self: Rc<Self>, res: i32) {
        self.send.set(None);
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
        self.queued_bytes.set(self.queued_bytes.get() - sent);
        let mut done: Vec<DoneCb> = Vec::new();
        let more = {
            let mut guard = self.writer.borrow_mut();
            let Some(w) = guard.as_mut() else { return };
            if sent > 0 {
                w.progress_at = Some(self.lp.now());
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
                    self.lp.recycle_buffer(req.data);
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
        if more && !self.closing.get() {
            if let Err(e) = self.clone().flush() {
                flush_err = Some(e);
            }
        }
        for cb in done {
            cb(Ok(()));
        }
        if let Some(e) = flush_err {
            self.fail_writes(e);
        } else if self.closing.get() {
            self.fail_writes(Error::CANCELLED);
        } else if !more && self.send.get().is_none() {
            if self.shutdown.borrow().is_some() {
                self.do_shutdown();
            }
            self.notify_drain(Ok(()));
        }
    }

    /// Runs the drain callback with `r` (it may close the stream or set another callback).
    fn notify_drain(&self, r: Result<()>) {
        let cb = self.on_drain.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb(r);
            let mut slot = self.on_drain.borrow_mut();
            if slot.is_none() && !self.closing.get() {
                *slot = Some(cb);
            }
        }
    }

    /// Fails every queued write (and a pending shutdown) with `e`.
    fn fail_writes(&self, e: Error) {
        let had_writes = self.has_queued();
        loop {
            let req = self
                .writer
                .borrow_mut()
                .as_mut()
                .and_then(|w| w.queue.pop_front());
            let Some(req) = req else { break };
            self.queued_bytes
                .set(self.queued_bytes.get() - (req.data.len() - req.offset));
            if let Some(cb) = req.cb {
                cb(Err(e));
            }
        }
        self.release_writer();
        let sd = self.shutdown.borrow_mut().take();
        if let Some(cb) = sd {
            self.shutdown_done.set(true);
            cb(Err(e));
        }
        if had_writes && !self.closing.get() {
            self.notify_drain(Err(e));
        }
    }

    fn do_shutdown(&self) {
        let cb = self.shutdown.borrow_mut().take();
        let Some(cb) = cb else { return };
        self.shutdown_done.set(true);
        if self.closing.get() {
            cb(Err(Error::CANCELLED));
            return;
        }
        // SAFETY: plain syscall on our open fd.
        let r = unsafe { libc::shutdown(self.fd.get(), libc::SHUT_WR) };
        cb(if r < 0 {
            Err(Error::last_os_error())
        } else {
            Ok(())
        });
    }

    fn on_connect(self: Rc<Self>, res: i32) {
        self.connect.set(None);
        let Some(state) = self.connecting.borrow_mut().take() else {
            return;
        };
        let Connecting {
            cb,
            timer,
            timed_out,
            ..
        } = *state;
        drop(timer);
        let r = if res >= 0 {
            Ok(())
        } else if res == -libc::ECANCELED {
            Err(if timed_out && !self.closing.get() {
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

    fn maybe_finish_close(self: Rc<Self>) {
        if self.closing.get()
            && self.recv.get().is_none()
            && self.send.get().is_none()
            && self.connect.get().is_none()
            && self.close_op.get().is_none()
        {
            let cb = self.close_cb.borrow_mut().take();
            if let Some(cb) = cb {
                self.lp.defer_close(cb);
            }
        }
    }
}

impl OpOwner for StreamInner {
    fn complete(self: Rc<Self>, _lp: &Loop, op: Op, c: &Completion, data: &[u8]) {
        match op {
            Op::Recv { .. } => self.clone().on_recv(c, data),
            Op::Send { .. } => self.clone().on_send(c.res),
            Op::Connect { .. } => self.clone().on_connect(c.res),
            Op::Close { .. } => self.close_op.set(None),
            _ => {}
        }
        self.maybe_finish_close();
    }
}
