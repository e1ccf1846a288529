//! The client side: `connect` to a `ws://` or `wss://` URL. The host name is resolved off the
//! loop and its addresses tried in turn; over `wss://` the TLS handshake runs first (the host
//! name as SNI, checked against the certificate); the handshake request goes out, the answer
//! is checked (section 4.1:
//! 101, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, no extension, a subprotocol that was
//! offered); then the connection runs like the server's, with masked frames. The whole opening
//! is bounded by `connect_timeout`.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::{Rc, Weak};

use super::conn::{Transport, WsConn};
use super::handshake::{self, BadAnswer};
use super::reader::Role;
use super::{WebSocket, WsHandler, WsOptions};
use crate::error::{Error, Result};
use crate::http::client::Url;
use crate::http::response::{valid_name, valid_value};
use crate::net::connect::connect_first;
use crate::net::resolve::resolve_off_loop;
use crate::net::tls::TlsClientConfig;
use crate::net::{ReadEvent, TcpStream};
use crate::reactor::{run_blocking, Blocking, Loop};

type ClientWs = WsConn<ClientLink>;

/// The handshake in progress.
struct Opening {
    key: String,
    protocols: Vec<String>,
    /// The answer so far.
    answer: Vec<u8>,
}

/// A client's transport: the TCP stream once connected, and the handshake until it is done.
pub(crate) struct ClientLink {
    ws: Weak<ClientWs>,
    stream: RefCell<Option<TcpStream>>,
    opening: RefCell<Option<Box<Opening>>>,
    /// `close` was called: a connect still under way adopts nothing more.
    closed: Cell<bool>,
}

impl ClientLink {
    fn stream(&self) -> Option<TcpStream> {
        self.stream.borrow().clone()
    }
}

impl Transport for ClientLink {
    fn write(&self, data: Vec<u8>) -> Result<()> {
        match self.stream() {
            Some(s) => s.write(data, None),
            None => Err(Error::CLOSED),
        }
    }
    fn queued(&self) -> usize {
        self.stream().map_or(0, |s| s.write_queue_size())
    }
    fn shutdown(&self) {
        if let Some(s) = self.stream() {
            let _ = s.shutdown(|_| {});
        }
    }
    fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let ws = self.ws.upgrade();
        match self.stream() {
            Some(s) if !s.is_closing() => s.close(move || {
                if let Some(ws) = ws {
                    ws.on_closed();
                }
            }),
            // Not connected (yet), or the failed attempt was closed by the connect: the end
            // is now, from the loop.
            _ => {
                if let Some(ws) = ws {
                    let lp = ws.event_loop().clone();
                    lp.defer(move || ws.on_closed());
                }
            }
        }
    }
    fn pause_reading(&self, rest: &[u8]) {
        if let Some(s) = self.stream() {
            s.unread(rest);
            s.read_stop();
        }
    }
    fn resume_reading(&self) {
        if let Some(ws) = self.ws.upgrade() {
            start_reading(&ws);
        }
    }
}

/// Reads the stream into the connection (the handshake's answer first).
fn start_reading(ws: &Rc<ClientWs>) {
    let Some(stream) = ws.with_transport(|l| l.stream()).flatten() else {
        return;
    };
    let me = ws.clone(); // the stream keeps the connection alive while it reads
    let r = stream.read_start(move |ev| match ev {
        ReadEvent::Data(d) if me.is_opening() => on_answer(&me, d),
        ReadEvent::Data(d) => me.on_data(d),
        ReadEvent::Eof => me.on_eof(),
        ReadEvent::Error(e) => me.on_error(e),
    });
    if let Err(e) = r {
        if e != Error::ALREADY {
            ws.abort(Err(e), b"");
        }
    }
}

/// Bytes of the server's answer to the handshake.
fn on_answer(ws: &Rc<ClientWs>, data: &[u8]) {
    let checked = ws
        .with_transport(|l| {
            let mut o = l.opening.borrow_mut();
            let o = o.as_mut()?;
            o.answer.extend_from_slice(data);
            Some(
                match handshake::check_answer(&o.answer, &o.key, &o.protocols) {
                    Ok(a) => Ok((a.subprotocol, o.answer[a.consumed..].to_vec())),
                    Err(e) => Err(e),
                },
            )
        })
        .flatten();
    match checked {
        None | Some(Err(BadAnswer::Incomplete)) => {}
        Some(Err(BadAnswer::Refused(why))) => ws.abort(Err(Error::WS_HANDSHAKE), why.as_bytes()),
        Some(Ok((subprotocol, mut rest))) => {
            ws.with_transport(|l| l.opening.borrow_mut().take());
            ws.open(subprotocol, false);
            if !rest.is_empty() {
                ws.on_data(&mut rest);
            }
        }
    }
}

/// Parses a `ws://` or `wss://host[:port]/path?query` URL (as `http://` and `https://`: the
/// default ports are 80 and 443).
fn parse_url(url: &str) -> Result<Url> {
    if let Some(rest) = url.strip_prefix("ws://") {
        Url::parse(&format!("http://{rest}"))
    } else if let Some(rest) = url.strip_prefix("wss://") {
        Url::parse(&format!("https://{rest}"))
    } else {
        Err(Error::BAD_URL)
    }
}

/// Sends the opening handshake and reads the answer: at once on `ws://`, after the TLS
/// handshake on `wss://` (its failure ends the connection with its `TLS_*` code and reason).
/// `tls`: the configuration (None: the system's roots, read off the loop before the connect
/// began) and the host name for SNI.
fn begin_handshake(
    ws: &Rc<ClientWs>,
    tls: Option<(Option<TlsClientConfig>, String)>,
    request: Vec<u8>,
) {
    let send = move |ws: &Rc<ClientWs>, request: Vec<u8>| {
        start_reading(ws);
        let sent = ws
            .with_transport(|l| l.write(request))
            .unwrap_or(Err(Error::CLOSED));
        if let Err(e) = sent {
            ws.abort(Err(e), b"");
        }
    };
    let Some((cfg, host)) = tls else {
        return send(ws, request);
    };
    let cfg = match cfg.map_or_else(TlsClientConfig::system, Ok) {
        Ok(c) => c,
        Err(e) => return ws.abort(Err(e.code), e.reason.as_bytes()),
    };
    let Some(stream) = ws.with_transport(|l| l.stream()).flatten() else {
        return;
    };
    let (me, s2) = (Rc::downgrade(ws), stream.clone());
    let r = stream.start_tls_client(&cfg, &host, move |r| {
        let Some(ws) = me.upgrade() else { return };
        match r {
            Ok(()) => send(&ws, request),
            Err(e) => {
                let why = s2.tls_failure().map(|f| f.reason).unwrap_or_default();
                ws.abort(Err(e), why.as_bytes());
            }
        }
    });
    if let Err(e) = r {
        ws.abort(Err(e), b"cannot start TLS");
    }
}

fn random_key() -> String {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most 16 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 16, 0) };
    if n != 16 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = t.to_le_bytes();
    }
    handshake::base64(&b)
}

/// Connects to `url` (`ws://` or `wss://`); returns the connection's handle at once, `handler`
/// gets `on_open` when the handshake is done, or `on_close` with why it failed (`DNS`, a
/// connect error, `TIMEOUT` past `opts.connect_timeout` (the TLS handshake included), a
/// `TLS_*` code with the verifier's reason (`TLS_CONFIG` when the system has no usable roots;
/// the system's store is read on a worker the first time), `WS_HANDSHAKE` with the server's
/// answer as the reason). Sends made before `on_open` are queued. `BAD_URL` for another URL; `INVALID`
/// for a subprotocol that is not a token or a header with CR, LF or NUL. A failed call never
/// calls `handler`.
pub fn connect(
    lp: &Loop,
    url: &str,
    opts: &WsOptions,
    handler: Rc<dyn WsHandler>,
) -> Result<WebSocket> {
    let url = parse_url(url)?;
    let mut tls = url.tls.then(|| (opts.tls.clone(), url.host.clone()));
    // The system's CA store, when it is needed and not read yet, is read on a worker before
    // the connect starts (it is read from disk once per process).
    let read_roots = url.tls && opts.tls.is_none() && !TlsClientConfig::system_ready();
    if !opts
        .subprotocols
        .iter()
        .all(|p| handshake::valid_subprotocol(p))
        || !opts
            .headers
            .iter()
            .all(|(n, v)| valid_name(n.as_bytes()) && valid_value(v.as_bytes()))
    {
        return Err(Error::INVALID);
    }
    let ws: Rc<ClientWs> = WsConn::new(lp, Role::Client, opts, handler, None);
    let key = random_key();
    let mut request = Vec::new();
    handshake::write_request(
        &mut request,
        &url.target,
        &url.host_header(),
        &key,
        &opts.subprotocols,
        &opts.headers,
    );
    ws.set_transport(ClientLink {
        ws: Rc::downgrade(&ws),
        stream: RefCell::new(None),
        opening: RefCell::new(Some(Box::new(Opening {
            key,
            protocols: opts.subprotocols.clone(),
            answer: Vec::new(),
        }))),
        closed: Cell::new(false),
    });
    ws.set_open_deadline(opts.connect_timeout);
    let timeout = opts.connect_timeout;
    let go = {
        let ws = ws.clone();
        move |addrs: Vec<std::net::SocketAddr>| {
            if ws.with_transport(|l| l.closed.get()).unwrap_or(true) {
                return;
            }
            if addrs.is_empty() {
                return ws.abort(Err(Error::DNS), b"");
            }
            let weak = Rc::downgrade(&ws);
            let adopt = move |s: &TcpStream| match weak.upgrade() {
                Some(ws) => ws
                    .with_transport(|l| {
                        if l.closed.get() {
                            return false;
                        }
                        *l.stream.borrow_mut() = Some(s.clone());
                        true
                    })
                    .unwrap_or(false),
                None => false,
            };
            let lp = ws.event_loop().clone();
            connect_first(&lp, addrs, timeout, adopt, move |r| match r {
                Ok(()) => begin_handshake(&ws, tls.take(), std::mem::take(&mut request)),
                Err(e) => ws.abort(Err(e), b""),
            });
        }
    };
    let (host, port, lp2) = (url.host.clone(), url.port, lp.clone());
    let start = move || match host.parse::<IpAddr>() {
        // Started from the loop, never inside this call.
        Ok(ip) => lp2.defer(move || go(vec![std::net::SocketAddr::new(ip, port)])),
        Err(_) => resolve_off_loop(&lp2, host, port, go),
    };
    if read_roots {
        run_blocking(
            lp,
            Blocking::Slow,
            || drop(TlsClientConfig::system()),
            move |()| start(),
        );
    } else {
        start();
    }
    Ok(ws.handle())
}
