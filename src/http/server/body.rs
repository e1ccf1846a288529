//! Streamed request bodies and paced chunked responses.
//!
//! A request to a streaming route is handed to its handler as soon as its head is complete;
//! its body reaches the reader the handler registers (`body_read`), span by span, straight
//! from the receive buffer. While the reader is paused (or not started yet) the connection
//! holds what it has read and stops reading: backpressure reaches the client through TCP.
//! `Expect: 100-continue` is answered when the reader starts.
//!
//! An answer given before the body ended (`respond`, or the end of a chunked response): if
//! what is left is known and small (`DISCARD_MAX`) and the client was not left waiting for a
//! `100 Continue`, the rest is read and discarded and the connection stays open; otherwise the
//! answer closes the connection, and the server keeps reading and discarding until it is
//! sent, then lingers (nginx's lingering close), so the client's unsent body cannot turn the
//! close into a reset that loses the answer.
//!
//! A chunked response's drain callback runs when everything it wrote so far has reached the
//! kernel: a producer writes a piece, waits for the call, writes the next.

use super::connection::{Conn, ConnRef, Phase};
use super::slots::SlotState;
use super::ServerInner;
use crate::error::{Error, Result};
use crate::http::parser::HttpError;
use crate::reactor::Token;

/// The most body bytes still to come that an early answer reads and discards to keep the
/// connection open; with more (or an unknown amount, chunked) the answer closes it.
pub const DISCARD_MAX: u64 = 64 * 1024;

/// What a streamed body's reader receives.
#[derive(Debug)]
pub enum BodyEvent<'a> {
    /// Body bytes, borrowed until the callback returns.
    Data(&'a [u8]),
    /// The body is complete (the last event).
    End,
    /// The body cannot be read further (the last event): `HTTP_TOO_LARGE` past the route's
    /// limit, `HTTP_PROTOCOL` for a malformed or truncated body, `TIMEOUT` when no byte came
    /// for the body timeout, `CANCELLED` when the client went away. The request must still be
    /// answered (the connection closes after the answer).
    Error(Error),
}

pub(super) type BodyCb = Box<dyn FnMut(BodyEvent<'_>)>;
pub(super) type DrainCb = Box<dyn FnMut()>;

/// The rarely used part of a slot: its abort callback, its streamed body's reader, its chunked
/// response's drain callback.
#[derive(Default)]
pub(crate) struct SlotExtra {
    /// Runs once if the client goes away before the answer.
    pub(super) abort: Option<Box<dyn FnOnce()>>,
    /// The request's body streams (its route asked for it).
    pub(super) streamed: bool,
    /// The reader started (`body_read`).
    started: bool,
    /// Started and not paused.
    pub(super) reading: bool,
    cb: Option<BodyCb>,
    /// How the body ended, when the reader has not been told yet.
    outcome: Option<Result<()>>,
    /// The reader got its last event.
    finished: bool,
    /// `100 Continue` was sent.
    pub(super) continue_sent: bool,
    drain: Option<DrainCb>,
    /// The drain callback runs at the next drain.
    drain_armed: bool,
    /// A drain callback was registered: the connection counts it in `Conn::paced`.
    paced: bool,
}

impl SlotExtra {
    pub(super) fn streamed() -> Box<SlotExtra> {
        Box::new(SlotExtra {
            streamed: true,
            ..Default::default()
        })
    }

    /// A streaming route's request that came complete (it had no body): its reader gets the
    /// end at once.
    pub(super) fn streamed_complete() -> Box<SlotExtra> {
        Box::new(SlotExtra {
            streamed: true,
            outcome: Some(Ok(())),
            ..Default::default()
        })
    }
}

/// The error a streamed body's reader gets for a parse error of its body.
pub(super) fn body_error(e: HttpError) -> Error {
    if e.status == 413 {
        Error::HTTP_TOO_LARGE
    } else {
        Error::HTTP_PROTOCOL
    }
}

impl ServerInner {
    fn extra_mut<R>(&self, t: Token, f: impl FnOnce(&mut SlotExtra) -> R) -> Option<R> {
        let mut slots = self.slots.borrow_mut();
        slots.get_mut(t).and_then(|e| e.extra.as_deref_mut()).map(f)
    }

    /// The request whose body is streaming in on `conn` (a flag spares the look-up on every
    /// other connection).
    #[inline]
    pub(super) fn streaming_slot(&self, conn: &Conn) -> Option<Token> {
        if !conn.body_open.get() {
            return None;
        }
        conn.work.borrow().as_ref().and_then(|w| w.streaming)
    }

    /// Ends the streamed body in progress on `conn` (its request may go on): returns its slot.
    fn end_streaming(&self, conn: &Conn) -> Option<Token> {
        conn.body_open.set(false);
        conn.work
            .borrow_mut()
            .as_mut()
            .and_then(|w| w.streaming.take())
    }

    /// Whether `conn` must hold its input: the body streaming in waits for its reader (not
    /// started, or paused). An answered request's body is discarded, never held.
    #[inline]
    pub(super) fn body_blocked(&self, conn: &Conn) -> bool {
        conn.body_open.get() && self.body_waits(conn)
    }

    fn body_waits(&self, conn: &Conn) -> bool {
        match self.streaming_slot(conn) {
            Some(t) => self.extra_mut(t, |x| !x.reading).unwrap_or(false),
            None => false,
        }
    }

    /// Gives one event to the reader of slot `t`; the last one ends the reader. (Callbacks are
    /// taken out of the slot table while they run, and dropped outside its borrow: dropping
    /// one may run a C destructor that calls back into the server.)
    fn body_event(&self, t: Token, ev: BodyEvent<'_>) {
        let last = !matches!(ev, BodyEvent::Data(_));
        let cb = self.extra_mut(t, |x| {
            if last {
                x.finished = true;
                x.reading = false;
            }
            x.cb.take()
        });
        let Some(Some(mut cb)) = cb else { return };
        cb(ev);
        if last {
            return;
        }
        let leftover = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(t).and_then(|e| e.extra.as_deref_mut()) {
                Some(x) if x.cb.is_none() && !x.finished => {
                    x.cb = Some(cb);
                    None
                }
                _ => Some(cb),
            }
        };
        drop(leftover);
    }

    /// Body bytes of the request streaming in on `conn` (discarded when it was answered).
    pub(super) fn deliver_body(&self, conn: &ConnRef, bytes: &[u8]) {
        let Some(t) = self.streaming_slot(conn) else {
            return;
        };
        conn.since.set(self.now_ms()); // the body timeout is a stall timeout
        self.body_event(t, BodyEvent::Data(bytes));
    }

    /// The body streaming in on `conn` is complete.
    pub(super) fn body_ended(&self, conn: &ConnRef) {
        let t = self.end_streaming(conn);
        let Some(t) = t else { return };
        let reading = self.extra_mut(t, |x| {
            if !x.reading {
                x.outcome = Some(Ok(()));
            }
            x.reading
        });
        if reading == Some(true) {
            self.body_event(t, BodyEvent::End);
        }
        if conn.phase.get() == Phase::Body {
            conn.set_phase(Phase::Busy, self.now_ms());
        }
    }

    /// The body streaming in on `conn` failed with `e`: parsing ends for the connection, and
    /// it closes after the request's answer (given already, or to come).
    pub(super) fn body_failed(&self, conn: &ConnRef, e: Error) {
        let t = self.end_streaming(conn);
        self.drop_parser(conn);
        conn.stop_parsing.set(true);
        conn.close_after.set(true);
        conn.body_wait.set(false);
        let unparsed = std::mem::take(&mut self.work(conn).unparsed);
        self.lp.recycle_buffer(unparsed);
        let live = t.filter(|&t| {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(t) {
                Some(entry) => {
                    entry.data.keep_alive = false; // its answer says Connection: close
                    true
                }
                None => false,
            }
        });
        match live {
            Some(t) => {
                let reading = self.extra_mut(t, |x| {
                    if !x.reading {
                        x.outcome = Some(Err(e));
                    }
                    x.reading
                });
                if reading == Some(true) {
                    self.body_event(t, BodyEvent::Error(e));
                }
                conn.set_phase(Phase::Busy, self.now_ms());
            }
            None => self.maybe_finish(conn),
        }
    }

    /// Starts the reader of a streamed request (`INVALID` for a request whose body does not
    /// stream, `ALREADY` when started already or answered, `CANCELLED` when the client has
    /// gone: the request must still be answered).
    pub(crate) fn body_read(&self, t: Token, cb: BodyCb) -> Result<()> {
        let (conn, seq, send_continue, outcome) = {
            let mut slots = self.slots.borrow_mut();
            let e = slots.get_mut(t).ok_or(Error::ALREADY)?;
            let conn = e.conn.upgrade().filter(|c| !c.closing.get());
            let x = match e.extra.as_deref_mut() {
                Some(x) if x.streamed => x,
                _ => return Err(Error::INVALID),
            };
            if x.started {
                return Err(Error::ALREADY);
            }
            let outcome = x.outcome;
            if conn.is_none() && outcome.is_none() {
                return Err(Error::CANCELLED);
            }
            x.started = true;
            x.reading = true;
            x.cb = Some(cb);
            // An interim 100 is only for a client still waiting for it: never after a final
            // head (a chunked answer started) and never once the body has ended.
            let send_continue = e.data.expect_continue
                && !x.continue_sent
                && e.state == SlotState::Waiting
                && outcome.is_none();
            if send_continue {
                x.continue_sent = true;
            }
            (conn, e.seq, send_continue, outcome)
        };
        if let Some(outcome) = outcome {
            // The body ended before the reader started: tell it from the loop.
            self.extra_mut(t, |x| x.outcome = None);
            let me = self.me.clone();
            self.lp.defer(move || {
                if let Some(srv) = me.upgrade() {
                    srv.body_event(
                        t,
                        match outcome {
                            Ok(()) => BodyEvent::End,
                            Err(e) => BodyEvent::Error(e),
                        },
                    );
                }
            });
            return Ok(());
        }
        let conn = conn.expect("checked above");
        if send_continue {
            if let Some(pos) = conn.position(seq) {
                self.write_at(&conn, pos, b"HTTP/1.1 100 Continue\r\n\r\n");
                self.schedule_flush(&conn);
            }
        }
        self.unblock_body(&conn);
        Ok(())
    }

    /// Pauses the reader of a streamed request: no event until `body_resume`, and the
    /// connection stops reading.
    pub(crate) fn body_pause(&self, t: Token) -> Result<()> {
        let conn = self.body_conn(t)?;
        self.extra_mut(t, |x| x.reading = false);
        if let Some(c) = conn {
            if self.streaming_slot(&c) == Some(t) {
                self.hold_input(&c);
            }
        }
        Ok(())
    }

    /// Resumes a paused reader (from the loop, never inside this call).
    pub(crate) fn body_resume(&self, t: Token) -> Result<()> {
        let conn = self.body_conn(t)?;
        self.extra_mut(t, |x| x.reading = !x.finished);
        if let Some(c) = conn {
            self.unblock_body(&c);
        }
        Ok(())
    }

    /// The connection of a started reader (None when its client has gone or its body ended).
    fn body_conn(&self, t: Token) -> Result<Option<ConnRef>> {
        let slots = self.slots.borrow();
        let e = slots.get(t).ok_or(Error::ALREADY)?;
        match e.extra.as_deref() {
            Some(x) if x.streamed && x.started => {}
            Some(x) if x.streamed => return Err(Error::INVALID),
            _ => return Err(Error::INVALID),
        }
        Ok(e.conn.upgrade().filter(|c| !c.closing.get()))
    }

    /// Stops reading `conn` until its streamed body's reader wants more.
    pub(super) fn hold_input(&self, conn: &ConnRef) {
        conn.body_wait.set(true);
        if conn.phase.get() == Phase::Body {
            conn.set_phase(Phase::Busy, self.now_ms());
        }
        self.pause_reading(conn);
    }

    /// Lets `conn` go on with its input, from the loop: what it held first, then reading.
    pub(super) fn unblock_body(&self, conn: &ConnRef) {
        let (me, c) = (self.me.clone(), conn.clone());
        self.lp.defer(move || {
            if let Some(srv) = me.upgrade() {
                srv.resume_input(&c);
            }
        });
    }

    fn resume_input(&self, conn: &ConnRef) {
        if conn.closing.get() || !conn.body_wait.get() || self.body_blocked(conn) {
            return;
        }
        conn.body_wait.set(false);
        let mut held = std::mem::take(&mut self.work(conn).unparsed);
        // With nothing held, the parser may still have the body's end to hand out: it paused
        // after the last body bytes of a read, and the client, done sending, sends no more. It
        // is asked again, with no input.
        if (!held.is_empty() || self.streaming_slot(conn).is_some()) && !conn.stop_parsing.get() {
            self.parse(conn, &mut held);
        }
        self.lp.recycle_buffer(held);
        if !conn.body_wait.get() {
            if self.streaming_slot(conn).is_some() {
                conn.set_phase(Phase::Body, self.now_ms());
            }
            self.maybe_resume_reading(conn);
        }
    }

    /// Whether answering `t` now leaves its streamed body unfinished.
    pub(super) fn body_unfinished(&self, conn: &Conn, t: Token) -> bool {
        self.streaming_slot(conn) == Some(t)
    }

    /// For an answer given before the body of `t` ended: whether it must close the
    /// connection (see the module's comment).
    pub(super) fn early_answer_closes(&self, conn: &Conn, t: Token) -> bool {
        let waiting_for_continue = {
            let slots = self.slots.borrow();
            slots.get(t).is_some_and(|e| {
                e.data.expect_continue && !e.extra.as_ref().is_some_and(|x| x.continue_sent)
            })
        };
        let remaining = conn
            .work
            .borrow()
            .as_ref()
            .and_then(|w| w.parser.as_ref())
            .and_then(|p| p.body_remaining());
        waiting_for_continue || remaining.is_none_or(|n| n > DISCARD_MAX)
    }

    /// After an early answer: `close` reads and discards until the connection closes after
    /// the answer; otherwise the rest of the body is parsed and discarded, and the connection
    /// goes on with the next request.
    pub(super) fn after_early_answer(&self, conn: &ConnRef, close: bool) {
        if close {
            self.end_streaming(conn);
            self.drop_parser(conn);
            conn.stop_parsing.set(true);
            conn.discarding.set(true);
            let held = std::mem::take(&mut self.work(conn).unparsed);
            self.lp.recycle_buffer(held);
            conn.body_wait.set(false);
            if !conn.closing.get() && conn.read_paused.get() {
                let _ = self.start_reading(conn);
            }
        } else {
            self.unblock_body(conn);
        }
    }

    /// Delivers `CANCELLED` to the reader and runs the drain callback of a slot whose client
    /// went away (the producer's next chunk then learns it).
    pub(super) fn body_aborted(&self, t: Token) {
        let reading = self.extra_mut(t, |x| {
            if !x.reading && !x.finished {
                x.outcome = Some(Err(Error::CANCELLED));
            }
            x.reading
        });
        if reading == Some(true) {
            self.body_event(t, BodyEvent::Error(Error::CANCELLED));
        }
        self.run_drain(t);
    }

    // ---- paced chunked responses ----------------------------------------------------------

    /// Registers the drain callback of the chunked response of `t`: it runs once everything
    /// the response wrote so far has reached the kernel, then again after each later write
    /// has (`INVALID` before the chunked response started).
    pub(crate) fn chunk_on_drain(&self, t: Token, cb: DrainCb) -> Result<()> {
        let state = self.slots.borrow().get(t).map(|e| e.state);
        match state {
            None => return Err(Error::ALREADY),
            Some(SlotState::Waiting) => return Err(Error::INVALID),
            Some(SlotState::Streaming) => {}
        }
        let (conn, _) = self.live(t, SlotState::Streaming)?;
        let old = {
            let mut slots = self.slots.borrow_mut();
            let e = slots.get_mut(t).ok_or(Error::ALREADY)?;
            let x = e.extra.get_or_insert_with(Default::default);
            x.drain_armed = true;
            if !x.paced {
                x.paced = true;
                conn.paced.set(conn.paced.get() + 1);
            }
            x.drain.replace(cb)
        };
        drop(old);
        self.schedule_flush(&conn);
        Ok(())
    }

    /// A chunk was written: the drain callback (if any; it may be running now) runs at the
    /// next drain.
    pub(super) fn arm_drain(&self, t: Token) {
        self.extra_mut(t, |x| x.drain_armed = true);
    }

    /// A paced chunked response of `conn` ends (its slot `t` is about to be freed).
    pub(super) fn unpace(&self, conn: &Conn, t: Token) {
        if self.extra_mut(t, |x| x.paced) == Some(true) {
            conn.paced.set(conn.paced.get().saturating_sub(1));
        }
    }

    /// Runs the drain callback of the response at the front of `conn`'s pipeline if it waits
    /// for one and everything it wrote has been handed to the kernel.
    #[inline]
    pub(super) fn check_drain(&self, conn: &ConnRef) {
        if conn.paced.get() > 0 {
            self.check_paced(conn);
        }
    }

    fn check_paced(&self, conn: &ConnRef) {
        if conn.closing.get() || conn.write_queue_size() > 0 {
            return;
        }
        let front = {
            let work = conn.work.borrow();
            let Some(w) = work.as_ref() else { return };
            match w.pipeline.front() {
                Some(p) if w.out.is_empty() && p.buf.is_empty() => p.slot,
                _ => None,
            }
        };
        let Some(t) = front else { return };
        let armed = self.extra_mut(t, |x| std::mem::take(&mut x.drain_armed));
        if armed == Some(true) {
            self.run_drain(t);
        }
    }

    fn run_drain(&self, t: Token) {
        let cb = self.extra_mut(t, |x| x.drain.take()).flatten();
        let Some(mut cb) = cb else { return };
        cb();
        let leftover = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(t).and_then(|e| e.extra.as_deref_mut()) {
                Some(x) if x.drain.is_none() => {
                    x.drain = Some(cb);
                    None
                }
                _ => Some(cb),
            }
        };
        drop(leftover);
    }
}
