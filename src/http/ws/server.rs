//! The server side: a handler accepts an upgrade request (`accept`). The request is checked
//! (section 4.2.1), answered with the 101 (with the subprotocol chosen), and the HTTP server's
//! protocol-switch hook hands the connection's stream to the WebSocket once every response
//! before it is out; the bytes that came after the request head are read first.

use std::rc::Rc;

use super::conn::{Transport, WsConn};
use super::handshake::{self, Refusal};
use super::reader::Role;
use super::{WebSocket, WsHandler, WsOptions};
use crate::error::{Error, Result};
use crate::http::server::{Request, UpgradeHandler, UpgradedStream};

impl Transport for UpgradedStream {
    fn write(&self, data: Vec<u8>) -> Result<()> {
        UpgradedStream::write(self, data)
    }
    fn queued(&self) -> usize {
        self.write_queue_size()
    }
    fn shutdown(&self) {
        let _ = UpgradedStream::shutdown(self);
    }
    fn close(&self) {
        UpgradedStream::close(self)
    }
    fn pause_reading(&self, rest: &[u8]) {
        UpgradedStream::pause_reading(self, rest)
    }
    fn resume_reading(&self) {
        if UpgradedStream::resume_reading(self).is_err() {
            UpgradedStream::close(self);
        }
    }
}

type ServerWs = WsConn<UpgradedStream>;

impl UpgradeHandler for ServerWs {
    fn on_takeover(&self, stream: UpgradedStream) {
        self.set_transport(stream);
        self.open(None, true);
    }
    fn on_data(&self, data: &mut [u8]) {
        WsConn::on_data(self, data)
    }
    fn on_eof(&self) {
        WsConn::on_eof(self)
    }
    fn on_error(&self, e: Error) {
        WsConn::on_error(self, e)
    }
    fn on_drain(&self) {
        WsConn::on_drain(self)
    }
    fn on_shutdown(&self) {
        WsConn::on_shutdown(self)
    }
    fn on_closed(&self) {
        WsConn::on_closed(self)
    }
}

fn refusal_body(r: &Refusal) -> String {
    format!(
        "{} {}: {}\n",
        r.status,
        crate::http::response::reason(r.status),
        r.reason
    )
}

/// Accepts the WebSocket upgrade `req` asks for: checks the handshake (method, version,
/// `Upgrade`, `Connection`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`), picks the
/// subprotocol (the first of `opts.subprotocols` the client offered), answers 101, and returns
/// the connection's handle; `handler` gets its events from `on_open` on. The request is
/// answered in every case: a bad handshake gets a 400 (426 with `Sec-WebSocket-Version: 13`
/// for another version) and `WS_HANDSHAKE`; a server shutting down answers 503 and `CLOSED`;
/// `CANCELLED` when the client has gone. Sends made before `on_open` are queued.
pub fn accept(mut req: Request, opts: &WsOptions, handler: Rc<dyn WsHandler>) -> Result<WebSocket> {
    let (key, subprotocol) = match handshake::check_request(req.data()) {
        Ok(key) => (
            key.to_string(),
            handshake::select_subprotocol(req.data(), &opts.subprotocols).map(str::to_string),
        ),
        Err(r) => {
            let body = refusal_body(&r);
            let mut headers: Vec<(&[u8], &[u8])> = vec![(b"Content-Type", b"text/plain")];
            if r.status == 426 {
                headers.push((b"Sec-WebSocket-Version", b"13"));
                headers.push((b"Upgrade", b"websocket"));
            }
            let _ = req.respond(r.status, &headers, body.as_bytes());
            return Err(Error::WS_HANDSHAKE);
        }
    };
    let ws: Rc<ServerWs> = WsConn::new(
        req.event_loop(),
        Role::Server,
        opts,
        handler,
        subprotocol.as_deref(),
    );
    let mut head = Vec::with_capacity(160);
    handshake::write_switch(&mut head, &key, subprotocol.as_deref());
    match req.switch_protocols(&head, ws.clone() as Rc<dyn UpgradeHandler>) {
        Ok(()) => Ok(ws.handle()),
        Err(e @ (Error::INVALID | Error::CLOSED)) => {
            let (status, why): (u16, &[u8]) = if e == Error::CLOSED {
                (
                    503,
                    b"503 Service Unavailable: the server is shutting down\n",
                )
            } else {
                (400, b"400 Bad Request: not an upgrade request\n")
            };
            let _ = req.respond(status, &[(b"Content-Type", b"text/plain")], why);
            Err(if e == Error::CLOSED {
                e
            } else {
                Error::WS_HANDSHAKE
            })
        }
        Err(e) => Err(e),
    }
}
