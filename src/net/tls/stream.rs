//! The TLS part of `Stream`: ciphertext from the receive buffers goes into the session, the
//! plaintext it yields goes to the owner's `on_read` in one piece per receive, and the
//! owner's writes are sealed into the stream's write queue (one buffer per write, sent with
//! the others in one `sendmsg`). The session's buffers go back to the loop's pool whenever
//! they empty, so an idle TLS connection holds no I/O buffer.
//!
//! The session is taken out of its cell while it is driven and put back before any callback
//! runs, so callbacks may write, read, stop or close. A TLS stream whose session is missing
//! fails every write: nothing is ever sent unsealed.

use super::config::{TlsClientConfig, TlsServerConfig};
use super::session::TlsSession;
use super::TlsError;
use crate::error::{Error, Result};
use crate::net::stream::{DoneCb, ReadEnd, Stream, StreamEvents, READING, TLS};
use crate::net::ReadEvent;

/// What a TLS connection agreed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// "TLSv1_3", "TLSv1_2".
    pub version: String,
    /// Such as "TLS13_AES_128_GCM_SHA256".
    pub cipher_suite: String,
    pub alpn: Option<Vec<u8>>,
    /// The session resumed an earlier one (no full handshake).
    pub resumed: bool,
    /// The peer presented a certificate (always for a server; under mTLS for a client).
    pub peer_certificate: bool,
}

impl<H: StreamEvents> Stream<H> {
    /// Runs `f` on the session, if the stream has one and it is not being driven.
    pub(in crate::net) fn with_tls<R>(&self, f: impl FnOnce(&mut TlsSession) -> R) -> Option<R> {
        let mut s = self.inner.tls.take()?;
        let r = f(&mut s);
        self.inner.tls.set(Some(s));
        Some(r)
    }

    fn install_tls(&self, session: TlsSession) -> Result<()> {
        if self.is_closing() {
            return Err(Error::CLOSED);
        }
        if self.flag(TLS) {
            return Err(Error::ALREADY);
        }
        if self.connect_token().is_some() {
            return Err(Error::from_errno(libc::ENOTCONN));
        }
        self.inner.tls.set(Some(Box::new(session)));
        self.set_flag(TLS, true);
        Ok(())
    }

    /// Makes this (accepted) stream the server side of a TLS connection with `config`. The
    /// handshake runs on the bytes that arrive while reading, and `on_read` gets only the
    /// plaintext after it; a failed handshake ends reading with its `TLS_*` error (see
    /// `tls_failure` for the reason). Call before reading starts. `ALREADY` if the stream is
    /// TLS already, `CLOSED` if closing.
    pub fn start_tls_server(&self, config: &TlsServerConfig) -> Result<()> {
        self.install_tls(TlsSession::server(config)?)
    }

    /// Starts the client side of TLS on a connected stream, for `server_name` (sent as SNI and
    /// checked against the certificate). The handshake reads by itself; `done` runs once from
    /// the loop: `Ok` when it completed, or its `TLS_*` error (`tls_failure` tells why),
    /// `CANCELLED` if the stream is closed first. Writes made before then are sealed and sent
    /// when it completes; `read_start` is for the plaintext after.
    pub fn start_tls_client(
        &self,
        config: &TlsClientConfig,
        server_name: &str,
        done: impl FnOnce(Result<()>) + 'static,
    ) -> Result<()> {
        let mut session = TlsSession::client(config, server_name)?;
        session.on_handshake = Some(Box::new(done));
        self.install_tls(session)?;
        if self.inner.recv.get().is_none() {
            if let Err(e) = self.arm_recv() {
                self.inner.tls.take();
                self.set_flag(TLS, false);
                return Err(e);
            }
        }
        // The client hello leaves from the loop, so `done` never runs inside this call.
        let s = self.clone();
        self.inner.lp.defer(move || s.tls_pump());
        Ok(())
    }

    /// Whether the stream carries TLS.
    pub fn is_tls(&self) -> bool {
        self.flag(TLS)
    }

    /// Why the TLS session failed (its code and reason), if it did.
    pub fn tls_failure(&self) -> Option<TlsError> {
        self.with_tls(|s| s.failure().cloned()).flatten()
    }

    /// What the TLS connection agreed on, once its handshake is done.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        self.with_tls(|s| {
            if s.is_handshaking() || s.failure().is_some() {
                return None;
            }
            Some(TlsInfo {
                version: s
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default(),
                cipher_suite: s
                    .cipher_suite()
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_default(),
                alpn: s.alpn_protocol().map(<[u8]>::to_vec),
                resumed: s.resumed(),
                peer_certificate: s.peer_certificates().is_some_and(|c| !c.is_empty()),
            })
        })
        .flatten()
    }

    /// On a TLS stream whose peer spoke plaintext first (`on_read` got `TLS_PLAINTEXT`; unlike
    /// other errors it does not end reading: what follows is discarded and the end of the
    /// stream comes as usual), writes `data` unencrypted: an error reply such as HTTP's 400
    /// "plain HTTP request was sent to HTTPS port". `INVALID` on any other stream.
    pub fn write_plaintext_reply(&self, data: Vec<u8>) -> Result<()> {
        let refused = self
            .with_tls(|s| s.failure().map(|f| f.code) == Some(Error::TLS_PLAINTEXT))
            .unwrap_or(false);
        if !refused {
            return Err(Error::INVALID);
        }
        if self.is_closing() {
            return Err(Error::CLOSED);
        }
        self.queue_raw(data, None);
        Ok(())
    }

    /// Whether a TLS handshake is under way (it keeps a receive armed by itself).
    pub(in crate::net) fn tls_handshaking(&self) -> bool {
        self.flag(TLS)
            && self
                .with_tls(|s| s.is_handshaking() && s.on_handshake.is_some())
                .unwrap_or(false)
    }

    /// Ciphertext arrived (borrowed from the receive buffer; copied into the session).
    pub(in crate::net) fn tls_on_data(&self, data: &[u8]) {
        let lp = self.event_loop().clone();
        let go = self.with_tls(|s| {
            if s.failure_reported {
                return false; // what follows a reported failure is discarded
            }
            if s.incoming.capacity() == 0 {
                s.incoming = lp.take_buffer();
            }
            s.receive(data);
            s.is_handshaking() || s.failure().is_some()
        });
        if go == Some(true) || (go.is_some() && self.is_reading()) {
            self.tls_pump();
        }
    }

    /// The connection's read side ended: a handshake in progress fails.
    pub(in crate::net) fn tls_on_end(&self, end: ReadEnd) {
        let cb = self
            .with_tls(|s| {
                if !s.is_handshaking() {
                    return None;
                }
                let why = match end {
                    ReadEnd::Eof => {
                        "the peer closed the connection during the TLS handshake".to_string()
                    }
                    ReadEnd::Error(e) => format!("connection failed during the TLS handshake: {e}"),
                };
                let code = s.fail(Error::TLS_HANDSHAKE, why);
                let early = std::mem::take(&mut s.early_writes);
                Some((s.on_handshake.take(), early, code))
            })
            .flatten();
        if let Some((cb, early, code)) = cb {
            for (_, wcb) in early {
                if let Some(wcb) = wcb {
                    wcb(Err(code));
                }
            }
            if let Some(cb) = cb {
                cb(Err(code));
            }
        }
        self.end_reading(end);
    }

    /// Processes what the session received: sends its records, finishes the handshake, hands
    /// the plaintext to the owner (or stashes it while nobody reads), reports failure.
    pub(in crate::net) fn tls_pump(&self) {
        if self.is_closing() {
            return;
        }
        let lp = self.event_loop().clone();
        let Some(mut s) = self.inner.tls.take() else {
            return;
        };
        let mut plain = lp.take_buffer();
        let mut out = lp.take_buffer();
        let r = s.process(&mut plain, &mut out);
        if s.incoming.is_empty() {
            lp.recycle_buffer(std::mem::take(&mut s.incoming));
        }
        let reading = self.is_reading();
        if !reading && !plain.is_empty() {
            s.stash.extend_from_slice(&plain);
            plain.clear();
        }
        if r.is_err() && std::mem::replace(&mut s.failure_reported, true) {
            self.inner.tls.set(Some(s));
            lp.recycle_buffer(plain);
            lp.recycle_buffer(out);
            return;
        }
        let finished = matches!(r, Ok(p) if p.handshake_done) || r.is_err();
        let (hs_cb, early) = if finished {
            (s.on_handshake.take(), std::mem::take(&mut s.early_writes))
        } else {
            (None, Vec::new())
        };
        let eof = reading && std::mem::take(&mut s.eof_pending);
        self.inner.tls.set(Some(s));
        match r {
            Ok(_) => {
                if out.is_empty() {
                    lp.recycle_buffer(out);
                } else {
                    self.queue_raw(out, None);
                }
                for (data, wcb) in early {
                    if let Err((e, Some(wcb))) = self.seal(data, wcb) {
                        wcb(Err(e));
                    }
                }
                if let Some(cb) = hs_cb {
                    cb(Ok(()));
                }
                if !plain.is_empty() && self.is_reading() && !self.is_closing() {
                    H::on_read(self, ReadEvent::Data(&mut plain));
                }
                lp.recycle_buffer(plain);
                if eof {
                    self.end_reading(ReadEnd::Eof);
                }
            }
            Err(code) => {
                lp.recycle_buffer(plain);
                self.send_alert(out);
                for (_, wcb) in early {
                    if let Some(wcb) = wcb {
                        wcb(Err(code));
                    }
                }
                if let Some(cb) = hs_cb {
                    cb(Err(code));
                }
                if code == Error::TLS_PLAINTEXT && self.is_reading() {
                    // Reading goes on, discarding: the owner may answer in plaintext and
                    // linger until the peer's end of stream, which is reported as usual.
                    H::on_read(self, ReadEvent::Error(code));
                } else {
                    self.end_reading(ReadEnd::Error(code));
                }
            }
        }
    }

    /// Sends a last alert: directly when nothing else is on its way (the stream is about to
    /// be closed, which would cancel a queued send), else behind the queue.
    fn send_alert(&self, out: Vec<u8>) {
        if out.is_empty() || self.is_closing() {
            self.event_loop().recycle_buffer(out);
            return;
        }
        if self.sending() {
            self.queue_raw(out, None);
            return;
        }
        // SAFETY: a plain non-blocking send of an owned buffer on the stream's open fd.
        unsafe {
            libc::send(
                self.fd(),
                out.as_ptr().cast(),
                out.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        self.event_loop().recycle_buffer(out);
    }

    /// `start_reading` of a TLS stream: what is waiting in the session is delivered from the
    /// loop first.
    pub(in crate::net) fn tls_start_reading(&self) -> Result<()> {
        let pending = self.with_tls(|s| s.has_pending_input()).unwrap_or(false);
        if pending || self.inner.read_end.get().is_some() {
            let s = self.clone();
            self.event_loop().defer(move || s.tls_deliver_pending());
        } else if self.inner.recv.get().is_none() {
            if let Err(e) = self.arm_recv() {
                self.set_flag(READING, false);
                self.read_stopped_event();
                return Err(e);
            }
        }
        Ok(())
    }

    fn tls_deliver_pending(&self) {
        if !self.is_reading() || self.is_closing() {
            return;
        }
        let mut stash = self
            .with_tls(|s| std::mem::take(&mut s.stash))
            .unwrap_or_default();
        if !stash.is_empty() {
            H::on_read(self, ReadEvent::Data(&mut stash));
        }
        if !self.is_reading() || self.is_closing() {
            return;
        }
        let more = self.with_tls(|s| !s.incoming.is_empty()).unwrap_or(false);
        if more {
            self.tls_pump();
            if !self.is_reading() || self.is_closing() {
                return;
            }
        }
        if self
            .with_tls(|s| std::mem::take(&mut s.eof_pending))
            .unwrap_or(false)
        {
            self.end_reading(ReadEnd::Eof);
        } else if let Some(end) = self.inner.read_end.get() {
            self.end_reading(end);
        } else if self.inner.recv.get().is_none() {
            if let Err(e) = self.arm_recv() {
                self.end_reading(ReadEnd::Error(e));
            }
        }
    }

    /// `write` on a TLS stream: sealed into one buffer of the write queue, or kept until the
    /// handshake is done.
    pub(in crate::net) fn tls_write(&self, data: Vec<u8>, cb: Option<DoneCb>) -> Result<()> {
        let Some(mut s) = self.inner.tls.take() else {
            return Err(Error::TLS_PROTOCOL); // being driven or gone: never write unsealed
        };
        if let Some(f) = s.failure() {
            let code = f.code;
            self.inner.tls.set(Some(s));
            return Err(code);
        }
        if s.is_handshaking() {
            s.early_writes.push((data, cb));
            self.inner.tls.set(Some(s));
            return Ok(());
        }
        self.inner.tls.set(Some(s));
        self.seal(data, cb).map_err(|(e, _)| e)
    }

    /// Seals `data` into the write queue; `cb` runs when its records reach the kernel. On
    /// failure `cb` comes back with the error, not run.
    fn seal(
        &self,
        data: Vec<u8>,
        cb: Option<DoneCb>,
    ) -> std::result::Result<(), (Error, Option<DoneCb>)> {
        let lp = self.event_loop().clone();
        let Some(mut s) = self.inner.tls.take() else {
            return Err((Error::TLS_PROTOCOL, cb));
        };
        let mut out = lp.take_buffer();
        let r = s.encrypt(&data, &mut out);
        let deliver = !s.stash.is_empty() || s.eof_pending;
        self.inner.tls.set(Some(s));
        lp.recycle_buffer(data);
        match r {
            Ok(_) => {
                self.queue_raw(out, cb);
                if deliver && self.is_reading() {
                    let st = self.clone();
                    lp.defer(move || st.tls_deliver_pending());
                }
                Ok(())
            }
            Err(e) => {
                lp.recycle_buffer(out);
                Err((e, cb))
            }
        }
    }

    /// `shutdown` on a TLS stream: close_notify goes first.
    pub(in crate::net) fn tls_close_notify(&self) {
        let lp = self.event_loop().clone();
        let mut out = lp.take_buffer();
        let _ = self.with_tls(|s| s.close_notify(&mut out));
        if out.is_empty() {
            lp.recycle_buffer(out);
        } else {
            self.queue_raw(out, None);
        }
    }

    /// Closing: the session goes (its memory with it); a handshake or early writes waiting
    /// get `CANCELLED`, from the loop.
    pub(in crate::net) fn tls_on_close(&self) {
        let Some(mut s) = self.inner.tls.take() else {
            return;
        };
        let lp = self.event_loop().clone();
        lp.recycle_buffer(std::mem::take(&mut s.incoming));
        let cb = s.on_handshake.take();
        let early = std::mem::take(&mut s.early_writes);
        drop(s);
        if cb.is_some() || !early.is_empty() {
            lp.defer(move || {
                for (_, wcb) in early {
                    if let Some(wcb) = wcb {
                        wcb(Err(Error::CANCELLED));
                    }
                }
                if let Some(cb) = cb {
                    cb(Err(Error::CANCELLED));
                }
            });
        }
    }
}
