//! A connection's state machine: accepting, reading and parsing (many pipelined requests per
//! read), handing complete requests to their handlers, pausing and resuming reads, errors the
//! server answers itself, and closing (gracefully with a linger, or at once).

use std::cell::{Cell, RefCell};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};

use super::body::{body_error, SlotExtra};
use super::work::ConnWork;
use super::{Request, ServerInner};
use crate::error::{Error, Result};
use crate::http::date::http_date;
use crate::http::parser::{BodyMode, HttpError, Outcome, RequestParser, Sink, Streamed};
use crate::http::request::RequestData;
use crate::http::response::{self, Framing};
use crate::http::router::Route;
use crate::net::{ReadEvent, Stream, StreamEvents};
use crate::reactor::Token;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Phase {
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
    /// Switched protocols: the stream belongs to an `UpgradeHandler` (see `upgrade`).
    Upgraded,
}

/// One request's place in a connection's pipeline.
pub(super) struct Pending {
    seq: u64,
    /// The request's slot (None for responses the server makes itself).
    pub(super) slot: Option<Token>,
    pub(super) done: bool,
    pub(super) close: bool,
    /// A switch (101) answer: once it is out, the connection is upgraded.
    pub(super) upgrade: bool,
    /// Response bytes made while earlier responses were still outstanding.
    pub(super) buf: Vec<u8>,
}

/// A connection: the server's record of it, kept inside its stream (one allocation).
pub(super) type ConnRef = Stream<Conn>;

pub(super) struct Conn {
    pub(super) srv: Weak<ServerInner>,
    /// Its entry in the server's connection table, once registered.
    key: Cell<Option<Token>>,
    /// Only while a request is in progress or responses are pending: idle connections return
    /// theirs to the server's pool.
    pub(super) work: RefCell<Option<Box<ConnWork>>>,
    next_seq: Cell<u64>,
    pub(super) phase: Cell<Phase>,
    /// When the phase began (`ServerInner::now_ms`).
    pub(super) since: Cell<u64>,
    pub(super) close_after: Cell<bool>,
    /// A framing error or an upgrade ended parsing: later bytes are not requests.
    pub(super) stop_parsing: Cell<bool>,
    pub(super) read_paused: Cell<bool>,
    /// A streamed request's body is coming in (`ConnWork::streaming` names it).
    pub(super) body_open: Cell<bool>,
    /// Chunked responses of this connection with a drain callback (see `body`).
    pub(super) paced: Cell<u8>,
    /// Reading is held for a streamed body whose reader is paused or not started.
    pub(super) body_wait: Cell<bool>,
    /// An answer given before its body ended closes the connection: until then, everything
    /// read is discarded, and reading never pauses (the client may not read before it sent).
    pub(super) discarding: Cell<bool>,
    eof: Cell<bool>,
    pub(super) closing: Cell<bool>,
    pub(super) flush_scheduled: Cell<bool>,
    pub(super) in_read: Cell<bool>,
}

pub(super) struct ConnSink {
    srv: Rc<ServerInner>,
    conn: ConnRef,
    /// The pipeline's length after the last request completed (read by `wants_more`, which
    /// the parser asks right after `request_complete`: no handler runs in between).
    pipelined: usize,
}

impl Sink for ConnSink {
    fn new_request(&mut self) -> Box<RequestData> {
        self.srv.data_pool.borrow_mut().pop().unwrap_or_default()
    }

    fn body_mode(&mut self, req: &RequestData) -> BodyMode {
        self.srv.router.borrow().body_mode(req.method(), req.path())
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

    fn stream_start(&mut self, req: Box<RequestData>) {
        let seq = self.conn.take_seq();
        let id = self.srv.alloc_slot(req, &self.conn, seq);
        if let Some(e) = self.srv.slots.borrow_mut().get_mut(id) {
            e.extra = Some(SlotExtra::streamed());
        }
        let mut w = self.srv.work(&self.conn);
        w.pipeline.push_back(Pending {
            seq,
            slot: Some(id),
            done: false,
            close: false,
            upgrade: false,
            buf: Vec::new(),
        });
        w.streaming = Some(id);
        drop(w);
        self.conn.body_open.set(true);
        self.conn.set_phase(Phase::Body, self.srv.now_ms());
    }

    fn request_complete(&mut self, req: Box<RequestData>) {
        let seq = self.conn.take_seq();
        let id = self.srv.alloc_slot(req, &self.conn, seq);
        let mut w = self.srv.work(&self.conn);
        w.pipeline.push_back(Pending {
            seq,
            slot: Some(id),
            done: false,
            close: false,
            upgrade: false,
            buf: Vec::new(),
        });
        self.pipelined = w.pipeline.len();
        drop(w);
        self.srv.completed.borrow_mut().push(id);
        self.conn.set_phase(Phase::Busy, self.srv.now_ms());
    }

    fn wants_more(&mut self) -> bool {
        self.pipelined < self.srv.opts.max_pipeline
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
                Ok(()) if conn.phase.get() == Phase::Upgraded => srv.upgraded_drain(conn),
                Ok(()) => {
                    srv.on_drain(conn);
                    srv.check_drain(conn);
                }
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
            srv.upgraded_closed(conn);
            srv.check_stopped();
        }
    }
}

impl Conn {
    /// Its key in the server's connection table (set as it is accepted).
    pub(super) fn key(&self) -> Option<Token> {
        self.key.get()
    }

    /// True between the first byte of a request and its completion.
    pub(super) fn in_request(&self) -> bool {
        self.work
            .borrow()
            .as_ref()
            .and_then(|w| w.parser.as_ref())
            .is_some_and(|p| p.in_request())
    }

    pub(super) fn pipeline_len(&self) -> usize {
        self.work.borrow().as_ref().map_or(0, |w| w.pipeline.len())
    }

    pub(super) fn pipeline_is_empty(&self) -> bool {
        self.pipeline_len() == 0
    }

    /// The output not yet written (empty when there is no working state).
    pub(super) fn take_out(&self) -> Vec<u8> {
        self.work
            .borrow_mut()
            .as_mut()
            .map(|w| std::mem::take(&mut w.out))
            .unwrap_or_default()
    }

    pub(super) fn take_seq(&self) -> u64 {
        let s = self.next_seq.get();
        self.next_seq.set(s + 1);
        s
    }

    pub(super) fn set_phase(&self, p: Phase, now_ms: u64) {
        if self.phase.get() != p {
            self.phase.set(p);
            self.since.set(now_ms);
        }
    }

    /// Index in the pipeline of the entry with sequence `seq`.
    pub(super) fn position(&self, seq: u64) -> Option<usize> {
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

impl ServerInner {
    pub(super) fn accept(&self, fd: RawFd) {
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
                body_open: Cell::new(false),
                paced: Cell::new(0),
                body_wait: Cell::new(false),
                discarding: Cell::new(false),
                eof: Cell::new(false),
                closing: Cell::new(false),
                flush_scheduled: Cell::new(false),
                in_read: Cell::new(false),
            },
        );
        let key = self.conns.borrow_mut().insert(conn.clone());
        conn.key.set(Some(key));
        let tls = self.tls.borrow().clone();
        if let Some(cfg) = tls {
            if conn.start_tls_server(&cfg).is_err() {
                self.close_now(&conn);
                return;
            }
        }
        if let Err(_e) = self.start_reading(&conn) {
            self.close_now(&conn);
        }
    }

    /// A plain-HTTP request on a TLS connection: a plain 400 saying so (as nginx does), then
    /// the connection closes.
    fn refuse_plain_http(&self, conn: &ConnRef) {
        conn.stop_parsing.set(true);
        conn.close_after.set(true);
        let body = "400 Bad Request: plain HTTP request was sent to HTTPS port\n";
        let date = http_date(self.lp.now());
        let headers: [(&[u8], &[u8]); 1] = [(b"Content-Type", b"text/plain")];
        let mut buf = self.lp.take_buffer();
        response::write_head(
            &mut buf,
            400,
            &date,
            headers.iter().copied(),
            Framing::Length(body.len()),
            true,
            false,
        );
        buf.extend_from_slice(body.as_bytes());
        if conn.write_plaintext_reply(buf).is_err() {
            self.close_now(conn);
        }
    }

    /// Starts reading unless a streamed body holds the connection's input.
    pub(super) fn start_reading(&self, conn: &ConnRef) -> Result<()> {
        if conn.body_wait.get() {
            return Ok(());
        }
        conn.read_paused.set(false);
        conn.start_reading()
    }

    /// Reading paused for backpressure or a streamed body starts again when none of the
    /// reasons holds: too many unanswered requests, too much unsent output, a body's reader
    /// that waits. A connection discarding before it closes always reads.
    #[inline]
    pub(super) fn maybe_resume_reading(&self, conn: &ConnRef) {
        if !conn.read_paused.get() {
            return;
        }
        let wanted = conn.discarding.get()
            || (!conn.close_after.get()
                && conn.pipeline_len() < self.opts.max_pipeline
                && conn.write_queue_size() <= self.opts.max_output);
        if wanted && !conn.closing.get() {
            let _ = self.start_reading(conn);
        }
    }

    pub(super) fn pause_reading(&self, conn: &ConnRef) {
        if !conn.read_paused.replace(true) {
            conn.read_stop();
        }
    }

    fn on_read(&self, conn: &ConnRef, ev: ReadEvent<'_>) {
        if conn.closing.get() {
            return;
        }
        if conn.phase.get() == Phase::Upgraded {
            return self.upgraded_read(conn, ev);
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
                if conn.body_wait.get() {
                    // Arrived while a streamed body waits for its reader: held with the rest.
                    self.work(conn).unparsed.extend_from_slice(data);
                    return;
                }
                self.parse(conn, data);
            }
            ReadEvent::Eof => {
                conn.eof.set(true);
                if self.streaming_slot(conn).is_some() {
                    self.body_failed(conn, Error::HTTP_PROTOCOL); // the body was cut short
                }
                if conn.phase.get() == Phase::Linger || self.nothing_pending(conn) {
                    self.close_now(conn);
                } else {
                    conn.close_after.set(true);
                    self.maybe_finish(conn);
                }
            }
            ReadEvent::Error(e) if e == Error::TLS_PLAINTEXT => self.refuse_plain_http(conn),
            ReadEvent::Error(_) => self.close_now(conn),
        }
    }

    pub(super) fn nothing_pending(&self, conn: &ConnRef) -> bool {
        conn.work
            .borrow()
            .as_ref()
            .is_none_or(|w| w.pipeline.is_empty() && w.out.is_empty())
            && conn.write_queue_size() == 0
    }

    /// Parses what was read and hands complete requests to their handlers, at most
    /// `max_pipeline` in flight: at the limit, or with `max_output` bytes waiting to be sent,
    /// the rest of `data` is put back on the stream and reading pauses until the answers
    /// drain. One read may hold thousands of small pipelined requests.
    pub(super) fn parse(&self, conn: &ConnRef, data: &mut [u8]) {
        let mut sink = ConnSink {
            srv: self.me(),
            conn: conn.clone(),
            pipelined: 0,
        };
        conn.in_read.set(true);
        let mut off = 0;
        loop {
            if self.body_blocked(conn) {
                // A streamed body waits for its reader: keep the rest for later.
                self.work(conn).unparsed.extend_from_slice(&data[off..]);
                self.hold_input(conn);
                break;
            }
            let mut parser = self.work(conn).parser.take().unwrap_or_else(|| {
                debug_assert!(false, "a connection parses once at a time");
                RequestParser::new(self.opts.limits)
            });
            let r = parser.execute(&data[off..], &mut sink);
            self.work(conn).parser = Some(parser);
            let mut paused = false;
            let mut streamed = None;
            match r {
                Ok(Outcome::Continue) => {}
                Ok(Outcome::Paused { consumed }) => {
                    off += consumed;
                    paused = true;
                }
                Ok(Outcome::Streamed { consumed, event }) => {
                    streamed = Some((off, event));
                    off += consumed;
                }
                Ok(Outcome::Upgrade { consumed }) => {
                    // No more requests: the handler switches protocols (the bytes after the
                    // head are the new protocol's, put back for it), or answers (the parser
                    // made the request not keep-alive, so with Connection: close) and the
                    // connection closes.
                    conn.stop_parsing.set(true);
                    self.pause_reading(conn);
                    conn.unread(&data[off + consumed..]);
                }
                Err(e) => {
                    if self.streaming_slot(conn).is_some() {
                        self.body_failed(conn, body_error(e));
                    } else {
                        self.drop_parser(conn);
                        self.queue_error(conn, e.status, e.reason);
                    }
                }
            }
            self.dispatch_completed();
            if conn.phase.get() == Phase::Upgraded {
                conn.in_read.set(false);
                return; // the connection is no longer HTTP: taken over during dispatch
            }
            if let Some((at, event)) = streamed {
                match event {
                    Streamed::Head => {
                        if let Some(t) = self.streaming_slot(conn) {
                            self.dispatch(t);
                        }
                    }
                    Streamed::Body(r) => {
                        self.deliver_body(conn, &data[at + r.start..at + r.end]);
                    }
                    Streamed::End => self.body_ended(conn),
                }
                if conn.closing.get() || conn.stop_parsing.get() {
                    break;
                }
                continue;
            }
            if !paused || conn.closing.get() || conn.close_after.get() || conn.stop_parsing.get() {
                break;
            }
            if conn.pipeline_len() >= self.opts.max_pipeline
                || self.output_len(conn) > self.opts.max_output
            {
                // Answers drain first (on_drain or the pipeline settling resumes reading).
                self.pause_reading(conn);
                conn.unread(&data[off..]);
                break;
            }
        }
        conn.in_read.set(false);
        let now = self.now_ms();
        if self.streaming_slot(conn).is_some() {
            // A streamed body: its stall timeout runs only while its reader takes it.
            let p = if conn.body_wait.get() {
                Phase::Busy
            } else {
                Phase::Body
            };
            conn.set_phase(p, now);
        } else if conn.in_request() {
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

    /// Hands the requests completed by the last parse to their handlers, in order.
    fn dispatch_completed(&self) {
        let mut completed = std::mem::take(&mut *self.completed.borrow_mut());
        for &t in completed.iter() {
            self.dispatch(t);
        }
        completed.clear();
        *self.completed.borrow_mut() = completed;
    }

    /// Bytes answered but not yet sent: the response buffer and the stream's queue.
    fn output_len(&self, conn: &ConnRef) -> usize {
        let out = conn.work.borrow().as_ref().map_or(0, |w| w.out.len());
        out + conn.write_queue_size()
    }

    /// Queues a response the server makes itself (an error) after those already pending, and
    /// closes once it is sent.
    pub(super) fn queue_error(&self, conn: &ConnRef, status: u16, reason: &str) {
        conn.stop_parsing.set(true);
        let seq = conn.take_seq();
        let mut buf = if conn.pipeline_is_empty() {
            conn.take_out()
        } else {
            Vec::new()
        };
        let body = format!("{} {}: {}\n", status, response::reason(status), reason);
        let date = self.http_date();
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
                upgrade: false,
                buf,
            });
        }
        self.pause_reading(conn);
    }

    pub(super) fn dispatch(&self, slot: Token) {
        let data = match self.slot_data(slot) {
            Some(d) => d,
            None => return,
        };
        // SAFETY: the slot's data lives until the request is answered; the references end
        // before the handler (which may answer) runs.
        let route = unsafe { self.router.borrow().resolve_request(&*data) };
        if let Route::Found(_, BodyMode::Stream { .. }) = route {
            // A streaming route's request without a body: its reader gets the end at once.
            if let Some(e) = self.slots.borrow_mut().get_mut(slot) {
                e.extra.get_or_insert_with(SlotExtra::streamed_complete);
            }
        }
        let req = Request {
            srv: self.me(),
            slot,
            data,
            answered: false,
        };
        match route {
            Route::Found(h, _) => h(req),
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

    fn on_drain(&self, conn: &ConnRef) {
        self.maybe_resume_reading(conn);
        self.maybe_finish(conn);
    }

    /// Closes gracefully once a connection that must close has nothing left to send: shut
    /// down the write side, then linger reading until EOF (or `LINGER`).
    pub(super) fn maybe_finish(&self, conn: &ConnRef) {
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
    pub(super) fn close_now(&self, conn: &ConnRef) {
        if conn.closing.replace(true) {
            return;
        }
        self.abort_pipeline(conn);
        let work = conn.work.borrow_mut().take();
        conn.body_open.set(false);
        self.recycle_work(work); // ends a partial request too
        conn.begin_close(); // Conn::on_closed finishes
    }
}
