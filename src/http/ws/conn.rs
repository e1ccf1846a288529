//! A WebSocket connection's state machine, the same for both sides: received frames become
//! messages for the handler (reading pauses while the output is over its limit), pings are
//! answered, keep-alive pings sent after silence, sends are framed into one output buffer that
//! is written once per read (or once per loop turn outside one), and the closing handshake runs
//! both ways with a timeout. The byte stream under it is a `Transport`: the HTTP server's
//! upgraded stream, or the client's TCP stream.
//!
//! Ending: once the closing handshake is over (or this end failed the connection) the sending
//! side is shut down after the queue, input is discarded, and the TCP connection is closed when
//! the peer's end arrives or the close timeout passes. `on_close` is the last callback, given
//! when the transport is closed.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::frame::{self, close_code, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use super::reader::{Event, Reader, Role};
use super::{CloseInfo, Endpoint, Message, WebSocket, WsHandler, WsOptions};
use crate::error::{Error, Result};
use crate::reactor::{Loop, Timer};

/// The byte stream a WebSocket runs on.
pub(crate) trait Transport: 'static {
    /// Queues bytes after those queued before.
    fn write(&self, data: Vec<u8>) -> Result<()>;
    /// Bytes queued and not yet handed to the kernel.
    fn queued(&self) -> usize;
    /// Shuts down the sending side once the queue is sent.
    fn shutdown(&self);
    /// Closes at once; `WsConn::on_closed` follows, from the loop.
    fn close(&self);
    /// Stops reading; `rest` comes first when reading resumes.
    fn pause_reading(&self, rest: &[u8]);
    fn resume_reading(&self);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// A server's 101 is not out yet; a client is connecting or handshaking.
    Opening,
    Open,
    /// This end sent a close frame and waits for the peer's.
    Closing,
    /// The closing handshake is over, or the connection failed: waiting for the TCP end.
    Ending,
    /// `on_close` was given.
    Done,
}

/// Bits of `WsConn::flags`.
const IN_READ: u8 = 1;
const FLUSH_SCHEDULED: u8 = 2;
const READ_PAUSED: u8 = 4;
/// A send was refused: `on_drain` is owed.
const WANT_DRAIN: u8 = 8;
const SENT_CLOSE: u8 = 16;
/// The transport is writable (the switch happened, or the client's handshake is done).
const OPENED: u8 = 32;
/// `on_open` is owed.
const OPEN_PENDING: u8 = 64;
/// A keep-alive ping went out and nothing came back since (`deadline` is the pong's).
const PING_SENT: u8 = 128;

/// How the connection ended, recorded when that is known (kept until `on_close`).
struct End {
    status: Result<()>,
    code: u16,
    reason: Vec<u8>,
}

/// The timing settings (see `WsOptions`), in milliseconds (an idle connection's memory counts).
struct Timing {
    /// 0: no keep-alive pings.
    ping_interval_ms: u32,
    ping_timeout_ms: u32,
    close_timeout_ms: u32,
}

fn ms32(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(v as u64)
}

pub(crate) struct WsConn<T: Transport> {
    me: Weak<WsConn<T>>,
    lp: Loop,
    role: Role,
    state: Cell<State>,
    flags: Cell<u8>,
    max_queue: usize,
    timing: Timing,
    transport: RefCell<Option<T>>,
    /// Taken out and put back around each use (a `Cell` is a word smaller than a `RefCell`).
    handler: Cell<Option<Rc<dyn WsHandler>>>,
    reader: RefCell<Reader>,
    /// Frames not yet written (none while idle: the buffer is lent by the loop when needed).
    out: RefCell<Vec<u8>>,
    end: Cell<Option<Box<End>>>,
    last_rx: Cell<Instant>,
    /// What must happen by when: the handshake (a client opening), the pong (open, after a
    /// keep-alive ping: `PING_SENT` is set), the closing handshake (closing, ending).
    deadline: Cell<Option<Instant>>,
    /// Made when a deadline or keep-alive needs it.
    timer: Cell<Option<Timer>>,
    subprotocol: Cell<Option<Box<str>>>,
    /// A client's masking key generator.
    rng: Cell<u64>,
}

/// A seed for the masking keys: from the kernel's random source (the time if it fails).
fn seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, libc::GRND_NONBLOCK) };
    let s = u64::from_ne_bytes(b);
    if n == 8 && s != 0 {
        s
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E3779B97F4A7C15, |d| d.as_nanos() as u64 | 1)
    }
}

impl<T: Transport> WsConn<T> {
    pub(crate) fn new(
        lp: &Loop,
        role: Role,
        opts: &WsOptions,
        handler: Rc<dyn WsHandler>,
        subprotocol: Option<&str>,
    ) -> Rc<WsConn<T>> {
        Rc::new_cyclic(|me| WsConn {
            me: me.clone(),
            lp: lp.clone(),
            role,
            state: Cell::new(State::Opening),
            flags: Cell::new(0),
            max_queue: opts.max_queue,
            timing: Timing {
                ping_interval_ms: opts.ping_interval.map_or(0, |d| {
                    if d.is_zero() {
                        0
                    } else {
                        ms32(d)
                    }
                }),
                ping_timeout_ms: ms32(opts.ping_timeout),
                close_timeout_ms: ms32(opts.close_timeout),
            },
            transport: RefCell::new(None),
            handler: Cell::new(Some(handler)),
            reader: RefCell::new(Reader::new(role, opts.max_message)),
            out: RefCell::new(Vec::new()),
            end: Cell::new(None),
            last_rx: Cell::new(lp.now()),
            deadline: Cell::new(None),
            timer: Cell::new(None),
            subprotocol: Cell::new(subprotocol.map(Into::into)),
            rng: Cell::new(if role == Role::Client { seed() } else { 0 }),
        })
    }

    /// The application's handle.
    pub(crate) fn handle(self: &Rc<Self>) -> WebSocket {
        WebSocket {
            inner: self.clone() as Rc<dyn Endpoint>,
        }
    }

    fn flag(&self, bit: u8) -> bool {
        self.flags.get() & bit != 0
    }

    fn set_flag(&self, bit: u8, on: bool) {
        let f = self.flags.get();
        self.flags.set(if on { f | bit } else { f & !bit });
    }

    pub(crate) fn event_loop(&self) -> &Loop {
        &self.lp
    }

    pub(crate) fn set_transport(&self, t: T) {
        *self.transport.borrow_mut() = Some(t);
    }

    pub(crate) fn with_transport<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.transport.borrow().as_ref().map(f)
    }

    /// Whether the connection is still being opened (client: connecting or handshaking).
    pub(crate) fn is_opening(&self) -> bool {
        self.state.get() == State::Opening
    }

    /// Sets the deadline of the opening (a client's connect and handshake).
    pub(crate) fn set_open_deadline(&self, d: Duration) {
        self.deadline.set(Some(self.lp.now() + d));
        self.arm_timer();
    }

    fn handler(&self) -> Option<Rc<dyn WsHandler>> {
        let h = self.handler.take();
        self.handler.set(h.clone());
        h
    }

    fn ws(&self) -> Option<WebSocket> {
        self.me.upgrade().map(|rc| rc.handle())
    }

    /// The transport is writable: queued sends go out, `on_open` follows (from the loop when
    /// `defer`, else now).
    pub(crate) fn open(&self, subprotocol: Option<String>, defer: bool) {
        if self.flag(OPENED) || self.state.get() == State::Done {
            return;
        }
        self.set_flag(OPENED, true);
        self.set_flag(OPEN_PENDING, true);
        if let Some(p) = subprotocol {
            self.subprotocol.set(Some(p.into()));
        }
        if self.state.get() == State::Opening {
            self.state.set(State::Open);
            self.deadline.set(None);
        }
        self.last_rx.set(self.lp.now());
        self.flush();
        self.arm_timer();
        if defer {
            let me = self.me.clone();
            self.lp.defer(move || {
                if let Some(ws) = me.upgrade() {
                    ws.fire_open();
                }
            });
        } else {
            self.fire_open();
        }
    }

    fn fire_open(&self) {
        if !self.flag(OPEN_PENDING) {
            return;
        }
        self.set_flag(OPEN_PENDING, false);
        if matches!(self.state.get(), State::Open | State::Closing) {
            if let (Some(h), Some(ws)) = (self.handler(), self.ws()) {
                h.on_open(&ws);
            }
        }
    }

    // ---- input ------------------------------------------------------------------------

    /// Bytes from the peer (unmasked in place).
    pub(crate) fn on_data(&self, data: &mut [u8]) {
        if !matches!(self.state.get(), State::Open | State::Closing) {
            return; // ending: what comes after the close is discarded
        }
        self.fire_open();
        self.last_rx.set(self.lp.now());
        if self.flag(PING_SENT) {
            self.set_flag(PING_SENT, false); // anything from the peer answers a keep-alive ping
            self.deadline.set(None);
        }
        self.set_flag(IN_READ, true);
        let r = self.reader.borrow_mut().feed(data, |ev| self.on_event(ev));
        self.set_flag(IN_READ, false);
        match r {
            Ok(n) if n < data.len() && self.over_queue() => {
                if matches!(self.state.get(), State::Open | State::Closing) {
                    self.set_flag(READ_PAUSED, true);
                    self.with_transport(|t| t.pause_reading(&data[n..]));
                }
            }
            Ok(_) => {}
            Err(v) => self.fail(Err(Error::WS_PROTOCOL), v.code, v.reason.as_bytes()),
        }
        self.flush();
    }

    /// One frame's worth of input; returns whether to go on reading.
    fn on_event(&self, ev: Event<'_>) -> bool {
        match ev {
            Event::Text(t) => self.deliver(Message::Text(t)),
            Event::Binary(b) => self.deliver(Message::Binary(b)),
            Event::Ping(p) => {
                if !self.flag(SENT_CLOSE) {
                    self.queue_frame(OP_PONG, p);
                }
            }
            Event::Pong(p) => {
                if let (Some(h), Some(ws)) = (self.handler(), self.ws()) {
                    h.on_pong(&ws, p);
                }
            }
            Event::Close(code, reason) => {
                self.peer_closed(code, reason);
                return false;
            }
        }
        matches!(self.state.get(), State::Open | State::Closing) && !self.over_queue()
    }

    fn deliver(&self, msg: Message<'_>) {
        // After this end's close frame, messages are dropped.
        if self.state.get() == State::Open {
            if let (Some(h), Some(ws)) = (self.handler(), self.ws()) {
                h.on_message(&ws, msg);
            }
        }
    }

    /// The peer's close frame: answered (unless this end's went first), and the handshake is
    /// over.
    fn peer_closed(&self, code: u16, reason: &[u8]) {
        if !self.flag(SENT_CLOSE) {
            self.set_flag(SENT_CLOSE, true);
            let (p, n) = frame::close_payload(code, &[]);
            self.queue_frame(OP_CLOSE, &p[..n]);
        }
        self.end(Ok(()), code, reason);
    }

    /// The peer finished sending.
    pub(crate) fn on_eof(&self) {
        match self.state.get() {
            State::Done => {}
            State::Ending => self.close_transport(),
            _ => self.abort(Err(Error::EOF), b""),
        }
    }

    /// The connection failed (reset).
    pub(crate) fn on_error(&self, e: Error) {
        self.abort(Err(e), b"");
    }

    /// The transport's write queue emptied.
    pub(crate) fn on_drain(&self) {
        if self.flag(READ_PAUSED)
            && !self.over_queue()
            && matches!(self.state.get(), State::Open | State::Closing)
        {
            self.set_flag(READ_PAUSED, false);
            self.with_transport(|t| t.resume_reading());
        }
        if self.flag(WANT_DRAIN) && self.buffered() == 0 && self.state.get() == State::Open {
            self.set_flag(WANT_DRAIN, false);
            if let (Some(h), Some(ws)) = (self.handler(), self.ws()) {
                h.on_drain(&ws);
            }
        }
    }

    /// The server is stopping: close with 1001.
    pub(crate) fn on_shutdown(&self) {
        if matches!(self.state.get(), State::Opening | State::Open) {
            let _ = self.start_close(close_code::GOING_AWAY, b"server shutting down");
        }
    }

    /// The transport is closed: the end, for the handler.
    pub(crate) fn on_closed(&self) {
        if self.state.replace(State::Done) == State::Done {
            return;
        }
        drop(self.timer.take());
        let end = self.end.take();
        let end = end.unwrap_or_else(|| {
            Box::new(End {
                status: Err(Error::EOF),
                code: close_code::ABNORMAL,
                reason: Vec::new(),
            })
        });
        let out = std::mem::take(&mut *self.out.borrow_mut());
        self.lp.recycle_buffer(out);
        *self.reader.borrow_mut() = Reader::new(self.role, 0);
        let transport = self.transport.borrow_mut().take();
        drop(transport);
        let handler = self.handler.take();
        if let (Some(h), Some(ws)) = (handler, self.ws()) {
            h.on_close(
                &ws,
                &CloseInfo {
                    status: end.status,
                    code: end.code,
                    reason: &end.reason,
                },
            );
        }
    }

    // ---- ending -----------------------------------------------------------------------

    /// Records how the connection ended (the first account stands).
    fn record_end(&self, status: Result<()>, code: u16, reason: &[u8]) {
        let end = self.end.take();
        self.end.set(Some(end.unwrap_or_else(|| {
            Box::new(End {
                status,
                code,
                reason: reason.to_vec(),
            })
        })));
    }

    /// The handshake is over (or the connection failed): send what is queued, shut down,
    /// discard input, and close when the peer's end comes (or the close timeout passes).
    fn end(&self, status: Result<()>, code: u16, reason: &[u8]) {
        if matches!(self.state.get(), State::Ending | State::Done) {
            return;
        }
        self.record_end(status, code, reason);
        self.state.set(State::Ending);
        self.deadline
            .set(Some(self.lp.now() + ms(self.timing.close_timeout_ms)));
        self.flush();
        self.with_transport(|t| t.shutdown());
        if self.flag(READ_PAUSED) {
            self.set_flag(READ_PAUSED, false);
            self.with_transport(|t| t.resume_reading()); // to see the peer's end
        }
        self.arm_timer();
    }

    /// Fails the connection: a close frame with `code` (unless one went already), then the end.
    fn fail(&self, status: Result<()>, code: u16, reason: &[u8]) {
        if matches!(self.state.get(), State::Ending | State::Done) {
            return;
        }
        if !self.flag(SENT_CLOSE) {
            self.set_flag(SENT_CLOSE, true);
            let (p, n) = frame::close_payload(code, reason);
            self.queue_frame(OP_CLOSE, &p[..n]);
        }
        self.end(status, code, reason);
    }

    /// Drops the connection at once (no closing handshake); `reason` says why (for `on_close`).
    pub(crate) fn abort(&self, status: Result<()>, reason: &[u8]) {
        if self.state.get() == State::Done {
            return;
        }
        self.record_end(status, close_code::ABNORMAL, reason);
        if self.state.get() != State::Ending {
            self.state.set(State::Ending);
        }
        self.close_transport();
    }

    fn close_transport(&self) {
        if self.transport.borrow().is_none() {
            // Never had one (a client that did not connect): the end is now, from the loop.
            let me = self.me.clone();
            self.lp.defer(move || {
                if let Some(ws) = me.upgrade() {
                    ws.on_closed();
                }
            });
            return;
        }
        self.with_transport(|t| t.close());
    }

    /// This end's close frame: `Closing` until the peer answers (or the close timeout).
    fn start_close(&self, code: u16, reason: &[u8]) -> Result<()> {
        if !matches!(self.state.get(), State::Opening | State::Open) || self.flag(SENT_CLOSE) {
            return Err(Error::ALREADY);
        }
        self.set_flag(SENT_CLOSE, true);
        let (p, n) = frame::close_payload(code, reason);
        self.queue_frame(OP_CLOSE, &p[..n]);
        self.state.set(State::Closing);
        self.deadline
            .set(Some(self.lp.now() + ms(self.timing.close_timeout_ms)));
        self.schedule_flush();
        self.arm_timer();
        Ok(())
    }

    // ---- timers -----------------------------------------------------------------------

    fn next_deadline(&self) -> Option<Instant> {
        match self.state.get() {
            State::Opening | State::Closing | State::Ending => self.deadline.get(),
            State::Open => {
                if self.timing.ping_interval_ms == 0 {
                    return None;
                }
                if self.flag(PING_SENT) {
                    return self.deadline.get();
                }
                Some(self.last_rx.get() + ms(self.timing.ping_interval_ms))
            }
            State::Done => None,
        }
    }

    /// Arms the timer for the next deadline (made on first need).
    fn arm_timer(&self) {
        let timer = self.timer.take();
        let Some(when) = self.next_deadline() else {
            if let Some(t) = &timer {
                t.stop();
            }
            self.timer.set(timer);
            return;
        };
        let after = when.saturating_duration_since(self.lp.now());
        let timer = timer.unwrap_or_else(|| Timer::new(&self.lp));
        let me = self.me.clone();
        timer.start(after, None, move || {
            if let Some(ws) = me.upgrade() {
                ws.on_timer();
            }
        });
        self.timer.set(Some(timer));
    }

    fn on_timer(&self) {
        let now = self.lp.now();
        match self.state.get() {
            State::Done => return,
            State::Opening | State::Closing | State::Ending => {
                if self.deadline.get().is_some_and(|d| now >= d) {
                    return self.abort(Err(Error::TIMEOUT), b"");
                }
            }
            State::Open if self.timing.ping_interval_ms > 0 => {
                if self.flag(PING_SENT) {
                    if self.deadline.get().is_some_and(|d| now >= d) {
                        return self.abort(Err(Error::TIMEOUT), b"");
                    }
                } else if now >= self.last_rx.get() + ms(self.timing.ping_interval_ms) {
                    self.queue_frame(OP_PING, b"");
                    self.set_flag(PING_SENT, true);
                    self.deadline
                        .set(Some(now + ms(self.timing.ping_timeout_ms)));
                    self.schedule_flush();
                }
            }
            State::Open => {}
        }
        self.arm_timer();
    }

    // ---- output -----------------------------------------------------------------------

    fn next_mask(&self) -> [u8; 4] {
        // xorshift64*: cheap, seeded per connection from the kernel's random source.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 32) as u32).to_ne_bytes()
    }

    /// Appends a frame to the output (masked when this is a client).
    fn queue_frame(&self, opcode: u8, payload: &[u8]) {
        let mask = (self.role == Role::Client).then(|| self.next_mask());
        let mut out = self.out.borrow_mut();
        if out.capacity() == 0 {
            *out = self.lp.take_buffer();
        }
        frame::write_frame(&mut out, opcode, payload, mask);
    }

    pub(crate) fn buffered(&self) -> usize {
        self.out.borrow().len() + self.with_transport(|t| t.queued()).unwrap_or(0)
    }

    fn over_queue(&self) -> bool {
        self.buffered() > self.max_queue
    }

    fn schedule_flush(&self) {
        if self.flag(IN_READ) || self.flag(FLUSH_SCHEDULED) {
            return; // the read path flushes when it is done
        }
        self.set_flag(FLUSH_SCHEDULED, true);
        let me = self.me.clone();
        self.lp.defer(move || {
            if let Some(ws) = me.upgrade() {
                ws.set_flag(FLUSH_SCHEDULED, false);
                ws.flush();
            }
        });
    }

    /// Writes the output, once the transport is writable.
    fn flush(&self) {
        if !self.flag(OPENED) || self.state.get() == State::Done {
            return;
        }
        let out = std::mem::take(&mut *self.out.borrow_mut());
        if out.is_empty() {
            self.lp.recycle_buffer(out);
            return;
        }
        let r = self.with_transport(|t| t.write(out));
        if matches!(r, Some(Err(_))) {
            self.abort(Err(Error::CLOSED), b"");
        }
    }
}

impl<T: Transport> Endpoint for WsConn<T> {
    fn send(&self, opcode: u8, data: &[u8]) -> Result<()> {
        if !matches!(self.state.get(), State::Opening | State::Open) || self.flag(SENT_CLOSE) {
            return Err(Error::CLOSED);
        }
        if opcode == OP_PING {
            if data.len() > frame::MAX_CONTROL {
                return Err(Error::INVALID);
            }
        } else if self.over_queue() {
            self.set_flag(WANT_DRAIN, true);
            return Err(Error::WS_QUEUE_FULL);
        }
        debug_assert!(opcode != OP_TEXT || std::str::from_utf8(data).is_ok());
        self.queue_frame(opcode, data);
        self.schedule_flush();
        Ok(())
    }

    fn close(&self, code: u16, reason: &[u8]) -> Result<()> {
        if !frame::valid_close_code(code)
            || reason.len() > frame::MAX_CLOSE_REASON
            || std::str::from_utf8(reason).is_err()
        {
            return Err(Error::INVALID);
        }
        self.start_close(code, reason)
    }

    fn buffered(&self) -> usize {
        WsConn::buffered(self)
    }

    fn subprotocol(&self) -> Option<String> {
        let p = self.subprotocol.take();
        let s = p.as_deref().map(str::to_string);
        self.subprotocol.set(p);
        s
    }

    fn is_open(&self) -> bool {
        matches!(self.state.get(), State::Opening | State::Open) && !self.flag(SENT_CLOSE)
    }
}
