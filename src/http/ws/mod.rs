//! WebSocket (RFC 6455) on the HTTP server and client: a server route accepts an upgrade
//! request (`accept`), a client connects to a `ws://` URL (`connect`); either way the
//! application gets a `WebSocket` handle to send with and gives a `WsHandler` that receives
//! messages, pongs, drains and, last of all, the close.
//!
//! The files: `frame` (the frame codec: heads, masking, close payloads and codes), `reader`
//! (frames parsed in place from the receive buffers, fragments reassembled, every rule
//! checked), `handshake` (the opening handshake of both sides), `conn` (a connection's state
//! machine: messages, automatic pongs, keep-alive pings, the closing handshake both ways with
//! its timeout, sends with backpressure), `server` (the accept: the HTTP server's protocol-switch
//! hook hands over the stream) and `client`.
//!
//! Memory: an idle connection holds no read or write buffer (what a frame or message in
//! progress needs is made for it and dropped after), and no timer unless keep-alive pings are on.

mod client;
mod conn;
pub mod frame;
mod handshake;
mod reader;
mod server;

use std::rc::Rc;
use std::time::Duration;

use crate::error::Result;

pub use client::connect;
pub use frame::close_code;
pub use handshake::{accept_key, Refusal};
pub use server::accept;

/// Settings of a WebSocket (`Default` gives the documented defaults). The server's are given
/// per accept (a route keeps its own); the client's per connect.
#[derive(Clone, Debug)]
pub struct WsOptions {
    /// Largest message taken, reassembled from its fragments (1009 beyond). Default 1 MiB.
    pub max_message: usize,
    /// Output bytes waiting to be sent beyond which `send` is refused (`WS_QUEUE_FULL`) and
    /// reading from the peer pauses until the queue has drained. Default 1 MiB.
    pub max_queue: usize,
    /// Keep-alive: a ping after this much silence from the peer; `None` (the default) for none.
    pub ping_interval: Option<Duration>,
    /// Time a pinged peer has to send anything before the connection is dropped. Default 10 s.
    pub ping_timeout: Duration,
    /// Time the closing handshake may take (the peer's close frame, then the end of the TCP
    /// connection) before the connection is dropped. Default 5 s.
    pub close_timeout: Duration,
    /// Server: the subprotocols it speaks, preferred first (the first the client offered is
    /// chosen). Client: the ones it offers.
    pub subprotocols: Vec<String>,
    /// Client: time to connect and complete the handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// Client: extra headers of the handshake request (`Origin`, `Authorization`, ...).
    pub headers: Vec<(String, String)>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            max_message: 1 << 20,
            max_queue: 1 << 20,
            ping_interval: None,
            ping_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            subprotocols: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            headers: Vec::new(),
        }
    }
}

/// A received message, borrowed until the callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// How a WebSocket ended (given to `WsHandler::on_close`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseInfo<'a> {
    /// `Ok` after a closing handshake (started by either side). Otherwise why not:
    /// `WS_PROTOCOL` (this end failed the connection for a protocol violation, see `code`),
    /// `TIMEOUT` (a ping or the closing handshake went unanswered, or a client's connect and
    /// handshake took too long), `EOF` or a `-errno` (the connection ended without a closing
    /// handshake), `DNS`, a connect error or `WS_HANDSHAKE` (a client that never opened),
    /// `CANCELLED` (the server stopped before the connection switched).
    pub status: Result<()>,
    /// The close code: the peer's (`NO_STATUS` when its close frame had none) after a
    /// handshake, the one this end sent when it failed the connection, `ABNORMAL` (1006) when
    /// no close frame was exchanged.
    pub code: u16,
    /// The reason that came with `code` (UTF-8; empty when none).
    pub reason: &'a [u8],
}

/// The application's side of a WebSocket. Every method runs on the loop's thread, never from
/// inside the call that started the connection; each may call any method of the `WebSocket`.
pub trait WsHandler: 'static {
    /// The connection is open (the handshake is done). Sends made before are queued until then.
    fn on_open(&self, _ws: &WebSocket) {}
    /// A whole message (text is UTF-8).
    fn on_message(&self, ws: &WebSocket, msg: Message<'_>);
    /// A pong arrived (the answer to `ping`, or unsolicited).
    fn on_pong(&self, _ws: &WebSocket, _data: &[u8]) {}
    /// The output queue has emptied after a `send` was refused with `WS_QUEUE_FULL`.
    fn on_drain(&self, _ws: &WebSocket) {}
    /// The connection is over: the last call; the handler is dropped after it.
    fn on_close(&self, ws: &WebSocket, info: &CloseInfo<'_>);
}

/// What a `WebSocket` reaches: a connection of either side.
trait Endpoint {
    fn send(&self, opcode: u8, data: &[u8]) -> Result<()>;
    fn close(&self, code: u16, reason: &[u8]) -> Result<()>;
    fn buffered(&self) -> usize;
    fn subprotocol(&self) -> Option<String>;
    fn is_open(&self) -> bool;
}

/// A WebSocket connection, server or client side. Clones share it; it does not end when the
/// last clone is dropped (close it, or the peer does).
#[derive(Clone)]
pub struct WebSocket {
    inner: Rc<dyn Endpoint>,
}

impl WebSocket {
    /// Queues a text message. `CLOSED` once closing; `WS_QUEUE_FULL` while more than
    /// `max_queue` bytes wait (nothing is queued: retry after `on_drain`).
    pub fn send_text(&self, text: &str) -> Result<()> {
        self.inner.send(frame::OP_TEXT, text.as_bytes())
    }

    /// Queues a binary message, as `send_text`.
    pub fn send_binary(&self, data: &[u8]) -> Result<()> {
        self.inner.send(frame::OP_BINARY, data)
    }

    /// Queues `msg`.
    pub fn send(&self, msg: Message<'_>) -> Result<()> {
        match msg {
            Message::Text(t) => self.send_text(t),
            Message::Binary(b) => self.send_binary(b),
        }
    }

    /// Sends a ping with `data` (at most 125 bytes, else `INVALID`); the pong goes to
    /// `on_pong`.
    pub fn ping(&self, data: &[u8]) -> Result<()> {
        self.inner.send(frame::OP_PING, data)
    }

    /// Starts the closing handshake with `code` (one that may be sent: 1000..1003,
    /// 1007..1014, 3000..4999; else `INVALID`) and `reason` (UTF-8, at most 123 bytes): queued
    /// messages go first, then the close frame; `on_close` follows the peer's answer (or the
    /// close timeout). `ALREADY` once closing.
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        self.inner.close(code, reason.as_bytes())
    }

    /// Output bytes waiting to be sent.
    pub fn buffered_amount(&self) -> usize {
        self.inner.buffered()
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn subprotocol(&self) -> Option<String> {
        self.inner.subprotocol()
    }

    /// Whether messages can still be sent (open, or opening).
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    /// Whether two handles name the same connection.
    pub fn ptr_eq(&self, other: &WebSocket) -> bool {
        std::ptr::addr_eq(Rc::as_ptr(&self.inner), Rc::as_ptr(&other.inner))
    }
}

/// Fuzz entry point for the frame reader (the `ws_frame` target).
#[cfg(feature = "fuzzing")]
pub fn fuzz_reader(data: &[u8]) {
    reader::fuzz(data)
}
