//! Writing responses: heads and bodies, chunked bodies, moving finished responses from the
//! front of the pipeline to the output in request order, and flushing it with one send.

use super::connection::{Conn, ConnRef, Phase};
use super::slots::SlotState;
use super::ServerInner;
use crate::error::{Error, Result};
use crate::http::head_cache::{Hit, Template};
use crate::http::request::RequestData;
use crate::http::response::{self, Framing};
use crate::http::PreparedResponse;
use crate::net::WeakStream;
use crate::reactor::Token;

/// Where an answer's head comes from.
enum Head<'a> {
    /// The application's headers (checked), and the cached head they matched, if any.
    Given {
        headers: &'a [(&'a [u8], &'a [u8])],
        hit: Option<Hit>,
    },
    /// A prepared response's.
    Prepared(&'a Template),
}

impl ServerInner {
    /// Checks a handler's headers, and reads what its framing headers ask for (they are
    /// honoured, or refused with `INVALID`: never silently dropped).
    fn check_headers(headers: &[(&[u8], &[u8])]) -> Result<response::Asked> {
        response::check_headers(headers).ok_or(Error::INVALID)
    }

    /// Writes into the buffer of the pipeline entry at `pos`: the connection's output when it
    /// is at the front, its own buffer otherwise.
    pub(super) fn with_buf<R>(
        &self,
        conn: &Conn,
        pos: usize,
        f: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> R {
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

    /// Appends `bytes` to the output of the pipeline entry at `pos` (an interim response).
    pub(super) fn write_at(&self, conn: &Conn, pos: usize, bytes: &[u8]) {
        self.with_buf(conn, pos, |buf| buf.extend_from_slice(bytes));
    }

    /// Whether the response at `pos` in the pipeline ends the connection (`Connection: close`;
    /// later pipelined requests go unanswered): the client asked for it, or the server is
    /// stopping and this is the connection's last request (none is read once it stops, and the
    /// responses before this one, given already or not, must all still go out). A client's
    /// half-close does not: its requests are all answered, then the server closes.
    fn ends_connection(&self, conn: &Conn, data: &RequestData, pos: usize) -> bool {
        !data.keep_alive || (self.stopping.get() && pos + 1 == conn.pipeline_len())
    }

    /// Writes the head of the response to `data` into `buf` (`close`: `Connection: close`; an
    /// HTTP/1.0 client kept alive is told so).
    fn write_head(
        &self,
        buf: &mut Vec<u8>,
        data: &RequestData,
        status: u16,
        headers: &[(&[u8], &[u8])],
        framing: Framing,
        close: bool,
    ) {
        let date = self.http_date();
        response::write_head(
            buf,
            status,
            &date,
            headers.iter().copied(),
            framing,
            close,
            data.version_minor == 0 && !close,
        );
    }

    /// Answers a request with a complete response.
    pub(crate) fn respond(
        &self,
        slot: Token,
        status: u16,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
    ) -> Result<()> {
        if !(100..=999).contains(&status) || (100..200).contains(&status) {
            return Err(Error::INVALID);
        }
        // Headers the same as a cached head's were checked when it was cached, and what their
        // framing headers ask was noted then.
        let hit = self.heads.borrow().find(status, headers);
        let asked = match hit {
            None => Self::check_headers(headers)?,
            Some(hit) => hit.asked,
        };
        self.answer(slot, status, asked, Head::Given { headers, hit }, body)
    }

    /// Answers a request with a prepared status and headers (checked when prepared) and `body`.
    pub(crate) fn respond_prepared(
        &self,
        slot: Token,
        prepared: &PreparedResponse,
        body: &[u8],
    ) -> Result<()> {
        let (status, asked) = (prepared.status(), prepared.asked());
        self.answer(slot, status, asked, Head::Prepared(prepared.head()), body)
    }

    /// Answers a request with a complete response whose headers were checked (`asked` is what
    /// their framing headers ask).
    fn answer(
        &self,
        slot: Token,
        status: u16,
        asked: response::Asked,
        head: Head,
        body: &[u8],
    ) -> Result<()> {
        if asked.chunked {
            return Err(Error::INVALID); // a whole response: `respond_chunked` streams one
        }
        let (conn, seq, data) = self.live_data(slot, SlotState::Waiting)?;
        // SAFETY: the slot is live; its data stays until free_slot below.
        let data = unsafe { &*data };
        let no_body = matches!(status, 204 | 304);
        let len = match asked.length {
            None if no_body => 0,
            None => body.len(),
            // A 204 has no body; a 304 or a HEAD answer may give the length of the body a
            // GET would get (none is sent); anything else must describe its body.
            Some(n) if status == 204 && n != 0 => return Err(Error::INVALID),
            Some(n) if status == 304 || data.is_head() => n as usize,
            Some(n) if n != body.len() as u64 => return Err(Error::INVALID),
            Some(n) => n as usize,
        };
        let pos = conn.position(seq).ok_or(Error::ALREADY)?;
        let early = self.body_unfinished(&conn, slot);
        let early_close = early && self.early_answer_closes(&conn, slot);
        let close = self.ends_connection(&conn, data, pos) || early_close || asked.close;
        {
            // The output when this response is at the front, its own buffer otherwise (as
            // `with_buf`), and its pipeline entry, under one borrow.
            let mut w = self.work(&conn);
            let w = &mut *w;
            let buf = if pos == 0 {
                &mut w.out
            } else {
                &mut w.pipeline[pos].buf
            };
            if buf.capacity() == 0 {
                *buf = self.lp.take_buffer();
            }
            let date = self.http_date();
            let http10_keep_alive = data.version_minor == 0 && !close;
            match head {
                Head::Prepared(t) => t.write(buf, &date, len, close, http10_keep_alive),
                Head::Given { headers, hit } => {
                    let reused = hit.is_some_and(|hit| {
                        self.heads
                            .borrow()
                            .write(hit, buf, &date, len, close, http10_keep_alive)
                    });
                    if !reused {
                        self.heads.borrow_mut().write_and_fill(
                            buf,
                            status,
                            &date,
                            headers,
                            asked,
                            len,
                            close,
                            http10_keep_alive,
                        );
                    }
                }
            }
            if !no_body && !data.is_head() {
                buf.extend_from_slice(body);
            }
            let entry = &mut w.pipeline[pos];
            entry.done = true;
            entry.close = close;
        }
        self.free_slot(slot);
        if early {
            self.after_early_answer(&conn, early_close);
        }
        self.advance(&conn);
        self.schedule_flush(&conn);
        Ok(())
    }

    /// Starts a chunked response; the body follows with `chunk` and ends with `chunk_end`.
    pub(crate) fn respond_chunked(
        &self,
        slot: Token,
        status: u16,
        headers: &[(&[u8], &[u8])],
    ) -> Result<()> {
        if !(200..=999).contains(&status) || matches!(status, 204 | 304) {
            return Err(Error::INVALID);
        }
        let asked = Self::check_headers(headers)?;
        if asked.length.is_some() {
            return Err(Error::INVALID); // a chunked body has no length
        }
        let (conn, seq) = self.live(slot, SlotState::Waiting)?;
        // SAFETY: live slot.
        let data = unsafe { &*self.slot_data(slot).ok_or(Error::ALREADY)? };
        let pos = conn.position(seq).ok_or(Error::ALREADY)?;
        let close = self.ends_connection(&conn, data, pos) || asked.close;
        self.with_buf(&conn, pos, |buf| {
            self.write_head(buf, data, status, headers, Framing::Chunked, close)
        });
        self.work(&conn).pipeline[pos].close = close;
        if let Some(e) = self.slots.borrow_mut().get_mut(slot) {
            e.state = SlotState::Streaming;
        }
        self.schedule_flush(&conn);
        Ok(())
    }

    /// Sends one chunk of a chunked response (or, with `last`, ends it).
    pub(crate) fn chunk(&self, slot: Token, data: &[u8], last: bool) -> Result<()> {
        let (conn, seq) = self.live(slot, SlotState::Streaming)?;
        // SAFETY: live slot.
        let is_head = unsafe { &*self.slot_data(slot).ok_or(Error::ALREADY)? }.method() == "HEAD";
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
            // A request body still streaming in: discarded, or the connection closes after
            // this response (its head is out already: no Connection header can say so).
            let early = self.body_unfinished(&conn, slot);
            let early_close = early && self.early_answer_closes(&conn, slot);
            {
                let mut w = self.work(&conn);
                w.pipeline[pos].done = true;
                w.pipeline[pos].close |= early_close;
            }
            self.unpace(&conn, slot);
            self.free_slot(slot);
            if early {
                self.after_early_answer(&conn, early_close);
            }
            self.advance(&conn);
        } else {
            self.arm_drain(slot);
        }
        self.schedule_flush(&conn);
        Ok(())
    }

    /// Moves finished responses from the front of the pipeline to the output, in order.
    pub(super) fn advance(&self, conn: &ConnRef) {
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
            if front.upgrade {
                // The switch answer is out of the pipeline: the connection is no longer HTTP.
                self.take_over(conn);
                return;
            }
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
        self.maybe_resume_reading(conn);
    }

    /// Cancels every request still in the pipeline: their slots report `CANCELLED` when
    /// answered, and their abort callbacks run now.
    pub(super) fn abort_pipeline(&self, conn: &Conn) {
        let entries = conn
            .work
            .borrow_mut()
            .as_mut()
            .map(|w| std::mem::take(&mut w.pipeline))
            .unwrap_or_default();
        for e in entries {
            self.lp.recycle_buffer(e.buf);
            if let Some(t) = e.slot {
                let abort = self.slots.borrow_mut().get_mut(t).and_then(|s| {
                    s.conn = WeakStream::default();
                    s.extra.as_mut().and_then(|x| x.abort.take())
                });
                if let Some(cb) = abort {
                    cb();
                }
                self.body_aborted(t);
            }
        }
    }

    /// Flushes the connection's output after the current callback, unless a flush is coming
    /// anyway (the read path flushes when it is done, or one is scheduled): that test, the
    /// common case, inline.
    #[inline]
    pub(super) fn schedule_flush(&self, conn: &ConnRef) {
        if conn.in_read.get() || conn.flush_scheduled.get() {
            return;
        }
        self.defer_flush(conn);
    }

    #[inline(never)]
    fn defer_flush(&self, conn: &ConnRef) {
        conn.flush_scheduled.set(true);
        let (weak_srv, c) = (self.me.clone(), conn.clone());
        self.lp.defer(move || {
            c.flush_scheduled.set(false);
            if let Some(srv) = weak_srv.upgrade() {
                srv.flush(&c);
            }
        });
    }

    pub(super) fn flush(&self, conn: &ConnRef) {
        if conn.closing.get() {
            return;
        }
        let out = conn.take_out();
        if !out.is_empty() {
            if conn.write(out, None).is_err() {
                self.close_now(conn);
                return;
            }
            if conn.write_queue_size() > self.opts.max_output && !conn.discarding.get() {
                self.pause_reading(conn);
            }
        } else {
            self.lp.recycle_buffer(out);
            self.check_drain(conn); // a chunked response that wrote nothing to send
        }
        self.release_work(conn);
        self.maybe_finish(conn);
    }
}
