//! One TLS connection as a pure transform, no I/O: ciphertext in (`receive`), then `process`
//! decrypts whole records into a caller's plaintext buffer and puts the records to send
//! (handshake, alerts, tickets) into a caller's output buffer; `encrypt` seals plaintext into
//! an output buffer. Driven over rustls' unbuffered API, so the session holds no I/O buffer of
//! rustls: the ciphertext not yet processed is `incoming`, owned here and lent by the stream
//! (empty, capacity 0, while idle), and output goes straight into the stream's write queue.

use std::sync::Arc;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::CertificateError;

use super::config::{TlsClientConfig, TlsServerConfig};
use super::verify::SelfSigned;
use super::TlsError;
use crate::error::{Error, Result};

/// Ciphertext a peer may send before the handshake completes (client hello, or a server's
/// flight with its certificate chain, or a client certificate chain under mTLS).
pub(crate) const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

/// Largest TLS record on the wire (TLS 1.2 allows 2^14 + 2048 bytes of ciphertext).
const MAX_RECORD: usize = 5 + (1 << 14) + 2048;

/// Record header and AEAD overhead per record, for sizing output buffers.
const RECORD_OVERHEAD: usize = 5 + 16 + 1 + 8;

/// The TLS record type of a handshake; every TLS connection starts with one.
const HANDSHAKE_RECORD: u8 = 0x16;

/// The two sides, behind one processing routine.
trait Unbuffered {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn handshaking(&self) -> bool;
    /// Records (an alert, after a failure) are queued inside rustls.
    fn queued_records(&self) -> bool;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
    fn queued_records(&self) -> bool {
        self.wants_write()
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
    fn queued_records(&self) -> bool {
        self.wants_write()
    }
}

enum Side {
    Server(Box<UnbufferedServerConnection>),
    Client(Box<UnbufferedClientConnection>),
}

/// What to do once the connection may send application data.
#[derive(Clone, Copy)]
enum Action<'a> {
    None,
    Encrypt(&'a [u8]),
    CloseNotify,
}

/// What one `process` call found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The handshake finished during this call.
    pub handshake_done: bool,
    /// The peer sent close_notify during this call: no more data will come.
    pub peer_closed: bool,
}

type DoneCb = Box<dyn FnOnce(Result<()>)>;

/// A TLS connection's state, client or server side.
pub struct TlsSession {
    side: Side,
    /// Ciphertext received and not yet processed (a partial record, usually nothing).
    pub(crate) incoming: Vec<u8>,
    /// Plaintext decrypted while nobody was reading, delivered at the next read start.
    pub(crate) stash: Vec<u8>,
    /// Writes made before the handshake finished, sealed once it does.
    pub(crate) early_writes: Vec<(Vec<u8>, Option<DoneCb>)>,
    /// Told once when the handshake finishes or fails.
    pub(crate) on_handshake: Option<DoneCb>,
    handshaking: bool,
    /// Ciphertext received so far, counted while handshaking (`MAX_HANDSHAKE_BYTES`).
    received: usize,
    peer_closed: bool,
    /// close_notify arrived and its end of stream is not delivered yet.
    pub(crate) eof_pending: bool,
    sent_close_notify: bool,
    failure: Option<TlsError>,
    /// The failure was reported to the stream's owner (once).
    pub(crate) failure_reported: bool,
}

impl TlsSession {
    /// The server side of a new connection, with `config`.
    pub fn server(config: &TlsServerConfig) -> Result<TlsSession> {
        let conn = UnbufferedServerConnection::new(config.inner.clone())
            .map_err(|e| classify(&e, true).code)?;
        Ok(TlsSession::with(Side::Server(Box::new(conn))))
    }

    /// The client side, to talk to `server_name` (a DNS name, checked against the
    /// certificate and sent as SNI, or an IP address, checked against its IP SANs).
    pub fn client(config: &TlsClientConfig, server_name: &str) -> Result<TlsSession> {
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| Error::INVALID)?;
        let conn = UnbufferedClientConnection::new(Arc::clone(&config.inner), name)
            .map_err(|e| classify(&e, true).code)?;
        Ok(TlsSession::with(Side::Client(Box::new(conn))))
    }

    fn with(side: Side) -> TlsSession {
        TlsSession {
            side,
            incoming: Vec::new(),
            stash: Vec::new(),
            early_writes: Vec::new(),
            on_handshake: None,
            handshaking: true,
            received: 0,
            peer_closed: false,
            eof_pending: false,
            sent_close_notify: false,
            failure: None,
            failure_reported: false,
        }
    }

    /// Whether the handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        self.handshaking && self.failure.is_none()
    }

    /// The failure that ended the session, with its reason.
    pub fn failure(&self) -> Option<&TlsError> {
        self.failure.as_ref()
    }

    /// Whether the peer sent close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The ALPN protocol agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.side {
            Side::Server(c) => c.alpn_protocol(),
            Side::Client(c) => c.alpn_protocol(),
        }
    }

    /// The protocol version agreed on ("TLSv1_3", "TLSv1_2"), once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.side {
            Side::Server(c) => c.protocol_version(),
            Side::Client(c) => c.protocol_version(),
        }
    }

    /// The cipher suite agreed on, once known.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        let s = match &self.side {
            Side::Server(c) => c.negotiated_cipher_suite(),
            Side::Client(c) => c.negotiated_cipher_suite(),
        };
        s.map(|s| s.suite())
    }

    /// Whether this session resumed an earlier one.
    pub fn resumed(&self) -> bool {
        let k = match &self.side {
            Side::Server(c) => c.handshake_kind(),
            Side::Client(c) => c.handshake_kind(),
        };
        k == Some(rustls::HandshakeKind::Resumed)
    }

    /// The peer's certificate chain (DER), once verified.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        match &self.side {
            Side::Server(c) => c.peer_certificates(),
            Side::Client(c) => c.peer_certificates(),
        }
    }

    /// Ends the session with `code` and `reason` (nothing more is processed or sealed).
    pub fn fail(&mut self, code: Error, reason: impl Into<String>) -> Error {
        if self.failure.is_none() {
            self.failure = Some(TlsError::new(code, reason));
        }
        self.failure.as_ref().map_or(code, |f| f.code)
    }

    /// Takes in ciphertext `data` (copied; processed by `process`). A server whose peer starts
    /// with something other than a TLS handshake record fails with `TLS_PLAINTEXT`.
    pub fn receive(&mut self, data: &[u8]) {
        if self.failure.is_some() || data.is_empty() {
            return;
        }
        if matches!(self.side, Side::Server(_))
            && self.received == 0
            && self.incoming.is_empty()
            && data[0] != HANDSHAKE_RECORD
        {
            let why = if data[0].is_ascii_uppercase() {
                "plain HTTP request was sent to HTTPS port"
            } else {
                "the peer did not start with a TLS handshake record"
            };
            self.fail(Error::TLS_PLAINTEXT, why);
            return;
        }
        if self.handshaking {
            self.received += data.len();
            if self.received > MAX_HANDSHAKE_BYTES {
                self.fail(
                    Error::TLS_HANDSHAKE,
                    format!("handshake larger than {MAX_HANDSHAKE_BYTES} bytes"),
                );
                return;
            }
        }
        self.incoming.extend_from_slice(data);
    }

    /// Processes the ciphertext received: plaintext of whole records is appended to `plain`,
    /// records to send to `out` (an alert too, when this fails). `Err` when the session
    /// failed, now or before (see `failure` for the reason).
    pub fn process(&mut self, plain: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<Progress> {
        self.run(plain, out, Action::None)
    }

    /// Seals `data` into records appended to `out`. Only once the handshake is done;
    /// `CLOSED` after close_notify was sent. Plaintext that records still waiting in
    /// `incoming` carried goes to the stash.
    pub fn encrypt(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<Progress> {
        if self.sent_close_notify {
            return Err(Error::CLOSED);
        }
        let mut stash = std::mem::take(&mut self.stash);
        let r = self.run(&mut stash, out, Action::Encrypt(data));
        self.stash = stash;
        r
    }

    /// Appends a close_notify alert to `out` (once; only after the handshake).
    pub fn close_notify(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.sent_close_notify || self.is_handshaking() || self.failure.is_some() {
            return Ok(());
        }
        let mut stash = std::mem::take(&mut self.stash);
        let r = self.run(&mut stash, out, Action::CloseNotify);
        self.stash = stash;
        r.map(|_| ())
    }

    fn run(&mut self, plain: &mut Vec<u8>, out: &mut Vec<u8>, action: Action) -> Result<Progress> {
        if let Some(f) = &self.failure {
            return Err(f.code);
        }
        let was_handshaking = self.handshaking;
        let r = match &mut self.side {
            Side::Server(c) => drive(&mut **c, &mut self.incoming, plain, out, action),
            Side::Client(c) => drive(&mut **c, &mut self.incoming, plain, out, action),
        };
        self.handshaking = match &self.side {
            Side::Server(c) => c.handshaking(),
            Side::Client(c) => c.handshaking(),
        };
        match r {
            Ok(d) if !d.acted && matches!(action, Action::Encrypt(_)) => {
                // Only after close_notify both ways: nothing may be sent any more.
                Err(Error::CLOSED)
            }
            Ok(d) => {
                if d.sent_close_notify {
                    self.sent_close_notify = true;
                }
                let progress = Progress {
                    handshake_done: was_handshaking && !self.handshaking,
                    peer_closed: d.peer_closed && !self.peer_closed,
                };
                self.peer_closed |= d.peer_closed;
                self.eof_pending |= progress.peer_closed;
                if self.incoming.len() > MAX_RECORD + MAX_HANDSHAKE_BYTES {
                    // whole records are always consumed; only a runaway peer gets here
                    return Err(self.fail(Error::TLS_PROTOCOL, "oversized TLS record"));
                }
                Ok(progress)
            }
            Err(e) => {
                let f = classify(&e, was_handshaking);
                self.failure = Some(f);
                // rustls queued an alert for the peer: put it in `out` (best effort).
                match &mut self.side {
                    Side::Server(c) => drain_alert(&mut **c, &mut self.incoming, out),
                    Side::Client(c) => drain_alert(&mut **c, &mut self.incoming, out),
                }
                Err(self
                    .failure
                    .as_ref()
                    .map_or(Error::TLS_PROTOCOL, |f| f.code))
            }
        }
    }

    /// Whether there is processing or delivering left to do at the next read start.
    pub fn has_pending_input(&self) -> bool {
        !self.stash.is_empty() || !self.incoming.is_empty() || self.eof_pending
    }
}

/// What one `drive` did.
#[derive(Default)]
struct Driven {
    peer_closed: bool,
    /// The action ran (the connection could send application data).
    acted: bool,
    sent_close_notify: bool,
}

/// Grows `out` until `fill` fits, then keeps what it wrote.
fn append_with(
    out: &mut Vec<u8>,
    guess: usize,
    mut fill: impl FnMut(&mut [u8]) -> std::result::Result<usize, Option<usize>>,
) -> std::result::Result<(), ()> {
    let start = out.len();
    let mut want = guess;
    for _ in 0..3 {
        out.resize(start + want, 0);
        match fill(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(required)) if required > want => want = required,
            Err(_) => break,
        }
    }
    out.truncate(start);
    Err(())
}

fn encode_err(e: EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

fn encrypt_err(e: EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

/// Runs the connection's state machine over `incoming` until it needs more input (or has
/// done `action`); consumed bytes are removed from `incoming`.
fn drive<C: Unbuffered>(
    conn: &mut C,
    incoming: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    out: &mut Vec<u8>,
    action: Action,
) -> std::result::Result<Driven, rustls::Error> {
    let mut used = 0;
    let mut d = Driven::default();
    let r = loop {
        let UnbufferedStatus { discard, state } = conn.process(&mut incoming[used..]);
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                used += discard;
                break Err(e);
            }
        };
        let mut stop = false;
        let mut failed = None;
        match state {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    match rec {
                        Ok(rec) => {
                            used += rec.discard;
                            plain.extend_from_slice(rec.payload);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            ConnectionState::EncodeTlsData(mut e) => {
                if append_with(out, 4096, |buf| e.encode(buf).map_err(encode_err)).is_err() {
                    failed = Some(rustls::Error::General("cannot encode a TLS record".into()));
                }
            }
            ConnectionState::TransmitTlsData(t) => t.done(), // `out` is sent in order
            ConnectionState::PeerClosed => d.peer_closed = true,
            ConnectionState::Closed => {
                d.peer_closed = true;
                stop = true;
            }
            ConnectionState::WriteTraffic(mut w) => {
                match action {
                    Action::None => {}
                    Action::Encrypt(data) => {
                        let guess = data.len() + (data.len() / (1 << 14) + 1) * RECORD_OVERHEAD;
                        if append_with(out, guess, |buf| w.encrypt(data, buf).map_err(encrypt_err))
                            .is_err()
                        {
                            failed = Some(rustls::Error::EncryptError);
                        }
                    }
                    Action::CloseNotify => {
                        if append_with(out, 64, |buf| {
                            w.queue_close_notify(buf).map_err(encrypt_err)
                        })
                        .is_ok()
                        {
                            d.sent_close_notify = true;
                        }
                    }
                }
                d.acted = true;
                stop = true;
            }
            ConnectionState::BlockedHandshake => stop = true,
            _ => {
                // Early data is never accepted (max_early_data_size is 0); other states are
                // new in rustls and not expected here.
                failed = Some(rustls::Error::General("unexpected TLS state".into()));
            }
        }
        used += discard;
        if let Some(e) = failed {
            break Err(e);
        }
        if stop {
            break Ok(());
        }
    };
    incoming.drain(..used.min(incoming.len()));
    r.map(|()| d)
}

/// After a failure, moves the alert rustls queued into `out`. The connection keeps offsets
/// into `incoming` between calls, so it is always given the same buffer; and it is called only
/// while records are queued, since a call with none would parse more input (and fail again).
fn drain_alert<C: Unbuffered>(conn: &mut C, incoming: &mut Vec<u8>, out: &mut Vec<u8>) {
    while conn.queued_records() {
        let UnbufferedStatus { discard, state } = conn.process(&mut incoming[..]);
        let go_on = match state {
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                append_with(out, 64, |buf| e.encode(buf).map_err(encode_err)).is_ok()
            }
            _ => false,
        };
        incoming.drain(..discard.min(incoming.len()));
        if !go_on {
            return;
        }
    }
}

/// The library's code for a rustls error, with rustls' words as the reason.
pub(crate) fn classify(e: &rustls::Error, handshaking: bool) -> TlsError {
    use CertificateError as C;
    let (code, reason) = match e {
        rustls::Error::InvalidCertificate(ce) => {
            let code = match ce {
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => Error::TLS_EXPIRED,
                C::NotValidForName | C::NotValidForNameContext { .. } => Error::TLS_NAME_MISMATCH,
                C::Other(o) if o.0.downcast_ref::<SelfSigned>().is_some() => Error::TLS_SELF_SIGNED,
                _ => Error::TLS_UNTRUSTED,
            };
            let reason = match ce {
                C::Other(o) => format!("invalid peer certificate: {}", o.0),
                _ => e.to_string(),
            };
            (code, reason)
        }
        _ if handshaking => (Error::TLS_HANDSHAKE, e.to_string()),
        _ => (Error::TLS_PROTOCOL, e.to_string()),
    };
    TlsError::new(code, reason)
}
