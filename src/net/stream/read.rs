//! A stream's input: the pending receive (armed, stopped, unref'd), bytes put back with
//! `unread` or stashed while nobody reads, and how reading ends.

use super::*;

impl<H: StreamEvents> Stream<H> {
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

    /// Tells the owner reading stopped.
    pub(in crate::net) fn read_stopped_event(&self) {
        self.inner.events.on_read_stopped();
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
    pub(super) fn set_recv(&self, t: Option<Token>) {
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

    pub(super) fn deliver_stash(&self) {
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

    pub(super) fn on_recv(&self, c: &Completion, data: &mut [u8]) {
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
    pub(super) fn read_ended(&self, end: ReadEnd) {
        if self.flag(TLS) {
            self.tls_on_end(end);
        } else {
            self.end_reading(end);
        }
    }

    /// Whether a receive should stay armed: while reading, or while a TLS handshake runs.
    pub(super) fn wants_recv(&self) -> bool {
        self.is_reading() || self.tls_handshaking()
    }
}
