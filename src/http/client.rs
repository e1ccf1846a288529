//! The HTTP/1.1 client of one loop: requests by URL, a keep-alive pool per origin (bounded;
//! idle connections expire; one the server closed while pooled is noticed, and a request that
//! meets it before any response byte is retried once on a new connection if its method is
//! idempotent), host names resolved on a helper thread and their addresses tried in turn,
//! connect and whole-request timeouts,
//! and cancellation. The callback runs exactly once, never from inside `request`.
//!
//! A streamed request (`request_stream`) gets its response as events: the head, then the body
//! piece by piece straight from the receive buffer (never collected, no size limit), then the
//! end; `RequestHandle::pause` stops reading the connection until `resume`, so a slow consumer
//! holds at most one read's worth. Its whole-request timeout ends with the head; the body is
//! bounded by the read timeout (no byte for that long) instead.
//!
//! `https://` URLs run over TLS (`net::tls`): the certificate is verified against the system's
//! roots unless `set_tls` gave another configuration, the host name is sent as SNI and checked,
//! ALPN offers http/1.1, each origin keeps its own session cache (resumption) and its own
//! keep-alive pool, as for `http://`. The handshake counts against the connect timeout. A
//! failed request's reason text (a TLS verifier's words, the address a connect failed on) is
//! readable with `error::error_detail` inside its callback.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::response_parser::{Response, ResponseError, ResponseParser, StreamStep};
use crate::error::with_error_detail;
use crate::error::{Error, Result};
use crate::net::connect::connect_first;
use crate::net::resolve::resolve_off_loop;
use crate::net::tls::TlsClientConfig;
use crate::net::{ReadEvent, TcpStream};
use crate::reactor::{Loop, Slab, Timer, Token};

/// Client settings.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// Time to establish a connection (`CONNECT_TIMEOUT` past it), over all of a host name's
    /// addresses, which are tried in turn; for https, the TLS handshake gets as long again.
    pub connect_timeout: Duration,
    /// Time for the whole request, queueing included (`TIMEOUT` past it).
    pub request_timeout: Duration,
    /// Largest response body (`HTTP_TOO_LARGE` beyond).
    pub max_body: usize,
    /// Connections per origin (scheme, host and port); more requests wait.
    pub max_per_origin: usize,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Longest silence while waiting for a response (`READ_TIMEOUT` past it).
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_body: 8 << 20,
            max_per_origin: 8,
            idle_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(15),
        }
    }
}

/// A parsed `http://host[:port]/path?query` or `https://...` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// https: over TLS.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least "/".
    pub target: String,
}

impl Url {
    /// Parses an http:// or https:// URL (default ports 80 and 443); anything else is
    /// `BAD_URL`.
    pub fn parse(s: &str) -> Result<Url> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(Error::BAD_URL);
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or(Error::BAD_URL)?;
            let port = match &v6[end + 1..] {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or(Error::BAD_URL)?,
            };
            (v6[..end].to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| Error::BAD_URL)?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::BAD_URL);
        }
        Ok(Url {
            tls,
            host,
            port,
            target,
        })
    }

    pub(crate) fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

/// A request to send.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    pub method: String,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Connect to this Unix stream socket instead of the URL's host and port, which then only
    /// name the `Host` header (curl's `--unix-socket`). Connections are pooled per socket.
    pub unix_socket: Option<std::path::PathBuf>,
}

impl ClientRequest {
    /// A request with no headers and no body.
    pub fn new(method: &str, url: &str) -> Result<ClientRequest> {
        if !super::request::valid_method(method) {
            return Err(Error::INVALID);
        }
        Ok(ClientRequest {
            method: method.to_string(),
            url: Url::parse(url)?,
            headers: Vec::new(),
            body: Vec::new(),
            unix_socket: None,
        })
    }

    /// Where the request goes: its pool's key.
    fn origin(&self) -> Origin {
        (
            self.url.host.clone(),
            self.url.port,
            self.url.tls,
            self.unix_socket.clone(),
        )
    }

    fn idempotent(&self) -> bool {
        matches!(
            self.method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        )
    }

    fn serialize(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(
            out,
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method,
            self.url.target,
            self.url.host_header()
        );
        for (n, v) in &self.headers {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// What a streamed request's callback receives, in this order: `Head` once, `Data` any number
/// of times, `Done` once (also alone, for a request that failed before its head).
#[derive(Debug)]
pub enum ClientEvent<'a> {
    /// The status and headers (the body is empty: it follows as `Data`).
    Head(&'a Response),
    /// Body bytes, borrowed until the callback returns.
    Data(&'a [u8]),
    /// The end: `Ok` when the whole body arrived, or the error.
    Done(Result<()>),
}

type ResponseCb = Box<dyn FnOnce(Result<Response>)>;
type EventCb = Box<dyn FnMut(ClientEvent<'_>)>;
/// Host, port, TLS and Unix socket path: requests to the same origin share connections.
type Origin = (String, u16, bool, Option<std::path::PathBuf>);

/// How a request's outcome is delivered.
enum Deliver {
    /// The whole response, body collected (bounded by `max_body`).
    Whole(ResponseCb),
    /// Head, body pieces, end.
    Stream(EventCb),
}

struct Pending {
    /// Its entry in the live table, once registered.
    id: Cell<Option<Token>>,
    req: ClientRequest,
    /// None once the request finished (its final callback ran, or runs now).
    cb: RefCell<Option<Deliver>>,
    /// A streamed request whose events are running: the callback is out of `cb`.
    emitting: Cell<bool>,
    /// Finished while its callback was running (cancelled from it): `Done` follows its return.
    late_done: Cell<Option<Result<()>>>,
    streaming: bool,
    /// The consumer paused the body (streaming).
    paused: Cell<bool>,
    conn: RefCell<Option<Rc<Conn>>>,
    timer: RefCell<Option<Timer>>,
    retried: Cell<bool>,
    /// The reason of a failure about to be reported (see `error::error_detail`).
    detail: RefCell<Option<String>>,
}

struct Conn {
    origin: Origin,
    stream: RefCell<Option<TcpStream>>,
    parser: RefCell<ResponseParser>,
    current: RefCell<Option<Rc<Pending>>>,
    /// Bytes of the current response have arrived (a failure then is not retried).
    got_bytes: Cell<bool>,
    /// It has carried a request before (it came from the pool).
    reused: Cell<bool>,
    closed: Cell<bool>,
    idle_timer: RefCell<Option<Timer>>,
    /// When the last bytes arrived (or the request was sent): for the read timeout.
    last_read: Cell<std::time::Instant>,
    /// Input held while a streamed body is paused (at most one read's worth).
    held: RefCell<Vec<u8>>,
}

impl Conn {
    /// Whether the connection's pending read keeps the loop running (not while pooled idle).
    fn keep_loop_alive(&self, keeps: bool) {
        if let Some(s) = self.stream.borrow().as_ref() {
            s.set_keeps_loop_alive(keeps);
        }
    }
}

#[derive(Default)]
struct OriginState {
    idle: Vec<Rc<Conn>>,
    open: usize,
    queue: VecDeque<Rc<Pending>>,
    /// An https origin's TLS configuration, with a session cache of its own.
    tls: Option<TlsClientConfig>,
}

/// Sessions an https origin's cache keeps for resumption.
const SESSIONS_PER_ORIGIN: usize = 8;

struct ClientInner {
    lp: Loop,
    opts: ClientOptions,
    origins: RefCell<HashMap<Origin, OriginState>>,
    /// Every request not yet answered (to cancel them all at close).
    live: RefCell<Slab<Weak<Pending>>>,
    /// Checks read timeouts while requests are pending.
    sweeper: RefCell<Option<Timer>>,
    /// For https origins; the system's roots when unset.
    tls: RefCell<Option<TlsClientConfig>>,
    /// `shut_down` was called: connections close instead of returning to the pool, and new
    /// requests are cancelled.
    shut: Cell<bool>,
    me: Weak<ClientInner>,
}

/// An HTTP client on one loop. Clones share it.
#[derive(Clone)]
pub struct HttpClient {
    inner: Rc<ClientInner>,
}

/// Cancels its request when asked (`cancel`); dropping it does not.
pub struct RequestHandle {
    pending: Weak<Pending>,
    client: Weak<ClientInner>,
}

impl RequestHandle {
    /// Cancels the request: its callback gets `CANCELLED` (unless it already ran).
    pub fn cancel(&self) {
        if let (Some(p), Some(c)) = (self.pending.upgrade(), self.client.upgrade()) {
            c.finish(&p, Err(Error::CANCELLED));
        }
    }

    /// Pauses a streamed request's body: no `Data` until `resume`, and its connection stops
    /// reading (the server is held back by TCP). `INVALID` for a request that does not
    /// stream, `ALREADY` once it finished.
    pub fn pause(&self) -> Result<()> {
        let p = self.pending.upgrade().ok_or(Error::ALREADY)?;
        if !p.streaming {
            return Err(Error::INVALID);
        }
        if p.cb.borrow().is_none() && !p.emitting.get() {
            return Err(Error::ALREADY);
        }
        if !p.paused.replace(true) {
            let conn = p.conn.borrow().clone();
            if let Some(s) = conn.and_then(|c| c.stream.borrow().clone()) {
                s.read_stop();
            }
        }
        Ok(())
    }

    /// Resumes a paused streamed request (events come from the loop, never inside this call).
    pub fn resume(&self) -> Result<()> {
        let p = self.pending.upgrade().ok_or(Error::ALREADY)?;
        let client = self.client.upgrade().ok_or(Error::ALREADY)?;
        if !p.streaming {
            return Err(Error::INVALID);
        }
        if p.cb.borrow().is_none() && !p.emitting.get() {
            return Err(Error::ALREADY);
        }
        if p.paused.replace(false) {
            let lp = client.lp.clone();
            lp.defer(move || client.resume_stream(&p));
        }
        Ok(())
    }
}

impl HttpClient {
    /// A client on `lp`.
    pub fn new(lp: &Loop, opts: ClientOptions) -> HttpClient {
        HttpClient {
            inner: Rc::new_cyclic(|me| ClientInner {
                lp: lp.clone(),
                opts,
                origins: RefCell::new(HashMap::new()),
                live: RefCell::new(Slab::default()),
                sweeper: RefCell::new(None),
                tls: RefCell::new(None),
                shut: Cell::new(false),
                me: me.clone(),
            }),
        }
    }

    /// Sets the TLS configuration of https:// requests made from now on (trusted roots, a
    /// client certificate, or no verification); origins already contacted keep theirs. The
    /// default verifies against the system's roots.
    pub fn set_tls(&self, config: TlsClientConfig) {
        *self.inner.tls.borrow_mut() = Some(config);
        for o in self.inner.origins.borrow_mut().values_mut() {
            o.tls = None;
        }
    }

    /// Sends `req`; `cb` gets the response (any status) or the error, once, from the loop.
    pub fn request(
        &self,
        req: ClientRequest,
        cb: impl FnOnce(Result<Response>) + 'static,
    ) -> RequestHandle {
        self.start(req, Deliver::Whole(Box::new(cb)))
    }

    /// Sends `req` and streams the response: `on_event` gets the head, the body piece by piece
    /// as it arrives (no size limit; pause and resume with the returned handle), then the end
    /// (see `ClientEvent`), from the loop.
    pub fn request_stream(
        &self,
        req: ClientRequest,
        on_event: impl FnMut(ClientEvent<'_>) + 'static,
    ) -> RequestHandle {
        self.start(req, Deliver::Stream(Box::new(on_event)))
    }

    /// The older streaming form: `on_chunk` gets the body pieces, then `cb` the status and
    /// headers (with an empty body) or the error. Prefer `request_stream`, whose head comes
    /// first.
    pub fn request_streaming(
        &self,
        req: ClientRequest,
        mut on_chunk: impl FnMut(&[u8]) + 'static,
        cb: impl FnOnce(Result<Response>) + 'static,
    ) -> RequestHandle {
        let mut head = None;
        let mut cb = Some(cb);
        self.request_stream(req, move |ev| match ev {
            ClientEvent::Head(r) => head = Some(r.clone()),
            ClientEvent::Data(d) => on_chunk(d),
            ClientEvent::Done(r) => {
                if let Some(cb) = cb.take() {
                    cb(r.map(|()| head.take().unwrap_or_default()));
                }
            }
        })
    }

    fn start(&self, req: ClientRequest, deliver: Deliver) -> RequestHandle {
        let inner = &self.inner;
        let streaming = matches!(deliver, Deliver::Stream(_));
        let p = Rc::new(Pending {
            id: Cell::new(None),
            req,
            cb: RefCell::new(Some(deliver)),
            emitting: Cell::new(false),
            late_done: Cell::new(None),
            streaming,
            paused: Cell::new(false),
            conn: RefCell::new(None),
            timer: RefCell::new(None),
            retried: Cell::new(false),
            detail: RefCell::new(None),
        });
        let t = Timer::new(&inner.lp);
        let (weak_p, weak_c) = (Rc::downgrade(&p), inner.me.clone());
        t.start(inner.opts.request_timeout, None, move || {
            if let (Some(p), Some(c)) = (weak_p.upgrade(), weak_c.upgrade()) {
                c.finish(&p, Err(Error::TIMEOUT));
            }
        });
        *p.timer.borrow_mut() = Some(t);
        p.id.set(Some(inner.live.borrow_mut().insert(Rc::downgrade(&p))));
        inner.arm_sweeper();
        let (c, p2) = (inner.clone(), p.clone());
        // From the loop, never from inside this call.
        inner.lp.defer(move || c.dispatch(p2));
        RequestHandle {
            pending: Rc::downgrade(&p),
            client: inner.me.clone(),
        }
    }

    /// Connections open per origin, idle ones included (for tests and statistics).
    pub fn open_connections(&self) -> usize {
        self.inner.origins.borrow().values().map(|o| o.open).sum()
    }

    /// Cancels every request not yet answered (callbacks get `CANCELLED`) and closes every
    /// connection. The client stays usable.
    pub fn close(&self) {
        let live: Vec<Rc<Pending>> = self
            .inner
            .live
            .borrow()
            .iter()
            .filter_map(|(_, w)| w.upgrade())
            .collect();
        for p in live {
            self.inner.finish(&p, Err(Error::CANCELLED));
        }
        self.close_idle();
    }

    /// Ends the client for good: like `close`, and a connection finishing its response (say,
    /// in the callback that called this) is closed instead of pooled; later requests get
    /// `CANCELLED`. Nothing of the client is left on the loop.
    pub fn shut_down(&self) {
        self.inner.shut.set(true);
        self.close();
    }

    /// Requests not yet answered.
    pub fn pending(&self) -> usize {
        self.inner.live.borrow().len()
    }

    /// Closes idle connections (requests in flight go on).
    pub fn close_idle(&self) {
        let idle: Vec<Rc<Conn>> = self
            .inner
            .origins
            .borrow_mut()
            .values_mut()
            .flat_map(|o| o.idle.drain(..))
            .collect();
        for c in idle {
            self.inner.close_conn(&c);
        }
    }
}

impl ClientInner {
    fn me(&self) -> Rc<ClientInner> {
        self.me.upgrade().expect("client alive")
    }

    /// Calls the request's callback once and releases what it holds.
    fn finish(&self, p: &Rc<Pending>, r: Result<Response>) {
        let cb = p.cb.borrow_mut().take();
        if cb.is_none() && (!p.emitting.get() || p.late_done.get().is_some()) {
            return; // finished already
        }
        if let Some(id) = p.id.get() {
            self.live.borrow_mut().remove(id);
        }
        let t = p.timer.borrow_mut().take();
        drop(t);
        let key = p.req.origin();
        if let Some(o) = self.origins.borrow_mut().get_mut(&key) {
            o.queue.retain(|q| !Rc::ptr_eq(q, p));
        }
        if r.is_err() {
            // A connection in the middle of this request cannot be reused.
            let conn = p.conn.borrow_mut().take();
            if let Some(c) = conn {
                self.close_conn(&c);
            }
        }
        let detail = if r.is_err() {
            p.detail.borrow_mut().take()
        } else {
            None
        };
        match (cb, r) {
            (Some(Deliver::Whole(cb)), Err(e)) => with_error_detail(e, detail, || cb(Err(e))),
            (Some(Deliver::Whole(cb)), ok) => cb(ok),
            (Some(Deliver::Stream(mut cb)), Err(e)) => {
                with_error_detail(e, detail, || cb(ClientEvent::Done(Err(e))))
            }
            (Some(Deliver::Stream(mut cb)), Ok(_)) => cb(ClientEvent::Done(Ok(()))),
            // Its callback is running (this is a cancel from inside it): `emit` delivers the
            // end when it returns.
            (None, r) => p.late_done.set(Some(r.map(drop))),
        }
    }

    /// `finish` with an error and its reason.
    fn fail(&self, p: &Rc<Pending>, e: Error, reason: String) {
        *p.detail.borrow_mut() = Some(reason);
        self.finish(p, Err(e));
    }

    /// Gives a streamed request's callback one event (not `Done`: see `finish`). Returns
    /// whether the request goes on (it was not cancelled from the callback).
    fn emit(&self, p: &Rc<Pending>, ev: ClientEvent<'_>) -> bool {
        let cb = p.cb.borrow_mut().take();
        let Some(Deliver::Stream(mut cb)) = cb else {
            if let Some(other) = cb {
                *p.cb.borrow_mut() = Some(other);
            }
            return p.cb.borrow().is_some();
        };
        p.emitting.set(true);
        cb(ev);
        p.emitting.set(false);
        if let Some(r) = p.late_done.take() {
            cb(ClientEvent::Done(r)); // finished (cancelled) from inside the callback
            return false;
        }
        *p.cb.borrow_mut() = Some(Deliver::Stream(cb));
        true
    }

    /// Runs the read-timeout check while requests are pending (a stopped timer does not keep
    /// the loop alive when the client is idle).
    fn arm_sweeper(&self) {
        if self
            .sweeper
            .borrow()
            .as_ref()
            .is_some_and(|t| t.is_active())
        {
            return;
        }
        let period =
            (self.opts.read_timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let t = self
            .sweeper
            .borrow_mut()
            .take()
            .unwrap_or_else(|| Timer::new(&self.lp));
        let weak = self.me.clone();
        t.start(period, Some(period), move || {
            if let Some(c) = weak.upgrade() {
                c.check_reads();
            }
        });
        *self.sweeper.borrow_mut() = Some(t);
    }

    fn check_reads(&self) {
        let now = self.lp.now();
        let live: Vec<Rc<Pending>> = self
            .live
            .borrow()
            .iter()
            .filter_map(|(_, w)| w.upgrade())
            .collect();
        if live.is_empty() {
            if let Some(t) = self.sweeper.borrow().as_ref() {
                t.stop();
            }
            return;
        }
        for p in live {
            let conn = p.conn.borrow().clone();
            let silent = !p.paused.get()
                && conn.is_some_and(|c| {
                    c.current
                        .borrow()
                        .as_ref()
                        .is_some_and(|q| Rc::ptr_eq(q, &p))
                        && now.duration_since(c.last_read.get()) >= self.opts.read_timeout
                });
            if silent {
                self.finish(&p, Err(Error::READ_TIMEOUT));
            }
        }
    }

    fn dispatch(&self, p: Rc<Pending>) {
        self.dispatch_on(p, true);
    }

    /// Sends `p` on an idle pooled connection (when `reuse_idle`), a new one, or queues it
    /// for the next connection that finishes a response.
    fn dispatch_on(&self, p: Rc<Pending>, reuse_idle: bool) {
        if p.cb.borrow().is_none() {
            return; // cancelled or timed out already
        }
        if self.shut.get() {
            self.finish(&p, Err(Error::CANCELLED));
            return;
        }
        let key = p.req.origin();
        let idle = {
            let mut origins = self.origins.borrow_mut();
            let o = origins.entry(key.clone()).or_default();
            let idle = if reuse_idle { o.idle.pop() } else { None };
            if idle.is_none() && o.open >= self.opts.max_per_origin {
                o.queue.push_back(p);
                return;
            }
            if idle.is_none() {
                o.open += 1;
            }
            idle
        };
        match idle {
            Some(c) => {
                let t = c.idle_timer.borrow_mut().take();
                drop(t);
                c.keep_loop_alive(true);
                c.reused.set(true);
                self.send(&c, p);
            }
            None => self.open(key, p),
        }
    }

    fn open(&self, key: Origin, p: Rc<Pending>) {
        if key.2 {
            // Made before connecting: loading the system's roots the first time blocks a
            // little, and a server's handshake timer runs from the connect on.
            if let Err((e, why)) = self.origin_tls(&key) {
                if let Some(o) = self.origins.borrow_mut().get_mut(&key) {
                    o.open = o.open.saturating_sub(1);
                }
                self.fail(&p, e, why);
                return;
            }
        }
        let conn = Rc::new(Conn {
            origin: key.clone(),
            stream: RefCell::new(None),
            parser: RefCell::new(ResponseParser::new(self.opts.max_body)),
            current: RefCell::new(None),
            got_bytes: Cell::new(false),
            reused: Cell::new(false),
            closed: Cell::new(false),
            idle_timer: RefCell::new(None),
            last_read: Cell::new(self.lp.now()),
            held: RefCell::new(Vec::new()),
        });
        *p.conn.borrow_mut() = Some(conn.clone());
        if let Some(path) = key.3.clone() {
            self.connect_unix(conn, &path, p);
            return;
        }
        match key.0.parse::<IpAddr>() {
            Ok(ip) => self.connect(conn, vec![SocketAddr::new(ip, key.1)], p),
            Err(_) => {
                let (client, host) = (self.me.clone(), key.0.clone());
                let host2 = host.clone();
                resolve_off_loop(&self.lp, host, key.1, move |addrs| {
                    let Some(c) = client.upgrade() else { return };
                    if addrs.is_empty() {
                        c.close_conn(&conn);
                        c.fail(&p, Error::DNS, format!("no address found for {host2}"));
                    } else {
                        c.connect(conn, addrs, p);
                    }
                });
            }
        }
    }

    /// Connects to the first of the origin's addresses that accepts, within the connect
    /// timeout.
    fn connect(&self, conn: Rc<Conn>, addrs: Vec<SocketAddr>, p: Rc<Pending>) {
        if p.cb.borrow().is_none() || conn.closed.get() {
            self.close_conn(&conn);
            return;
        }
        let weak = Rc::downgrade(&conn);
        let adopt = move |s: &TcpStream| match weak.upgrade() {
            Some(c) if !c.closed.get() => {
                *c.stream.borrow_mut() = Some(s.clone());
                true
            }
            _ => false,
        };
        let me = self.me.clone();
        connect_first(
            &self.lp,
            addrs,
            self.opts.connect_timeout,
            adopt,
            move |r| {
                let Some(me) = me.upgrade() else { return };
                match r {
                    Ok(()) if conn.origin.2 => me.handshake(&conn, p),
                    Ok(()) => me.connected(&conn, p),
                    Err(e) => {
                        me.close_conn(&conn);
                        let e = if e == Error::TIMEOUT {
                            Error::CONNECT_TIMEOUT
                        } else {
                            e
                        };
                        let (h, port) = (&conn.origin.0, conn.origin.1);
                        me.fail(&p, e, format!("connect to {h} port {port}: {e}"));
                    }
                }
            },
        );
    }

    /// The origin's TLS configuration: the client's (or the system's roots), with a session
    /// cache of the origin's own.
    fn origin_tls(&self, origin: &Origin) -> std::result::Result<TlsClientConfig, (Error, String)> {
        if let Some(c) = self
            .origins
            .borrow()
            .get(origin)
            .and_then(|o| o.tls.clone())
        {
            return Ok(c);
        }
        let base = match self.tls.borrow().clone() {
            Some(c) => c,
            None => TlsClientConfig::system().map_err(|e| (e.code, e.reason))?,
        };
        let cfg = base.with_own_session_cache(SESSIONS_PER_ORIGIN);
        if let Some(o) = self.origins.borrow_mut().get_mut(origin) {
            o.tls = Some(cfg.clone());
        }
        Ok(cfg)
    }

    /// Runs the TLS handshake of a new https connection, within the connect timeout.
    fn handshake(&self, conn: &Rc<Conn>, p: Rc<Pending>) {
        let stream = conn.stream.borrow().clone();
        let Some(stream) = stream else { return };
        let cfg = match self.origin_tls(&conn.origin) {
            Ok(c) => c,
            Err((e, why)) => {
                self.close_conn(conn);
                self.fail(&p, e, why);
                return;
            }
        };
        let timer = Timer::new(&self.lp);
        let (me, weak, weak_p) = (self.me.clone(), Rc::downgrade(conn), Rc::downgrade(&p));
        let ms = self.opts.connect_timeout.as_millis();
        timer.start(self.opts.connect_timeout, None, move || {
            if let (Some(me), Some(c), Some(p)) = (me.upgrade(), weak.upgrade(), weak_p.upgrade()) {
                me.close_conn(&c);
                me.fail(
                    &p,
                    Error::CONNECT_TIMEOUT,
                    format!("TLS handshake not finished within {ms} ms"),
                );
            }
        });
        *conn.idle_timer.borrow_mut() = Some(timer);
        let (me, weak, s2, p2) = (
            self.me.clone(),
            Rc::downgrade(conn),
            stream.clone(),
            p.clone(),
        );
        let r = stream.start_tls_client(&cfg, &conn.origin.0, move |r| {
            let p = p2;
            let (Some(me), Some(c)) = (me.upgrade(), weak.upgrade()) else {
                return;
            };
            let t = c.idle_timer.borrow_mut().take();
            drop(t);
            match r {
                Ok(()) => me.connected(&c, p),
                Err(e) => {
                    let why = s2
                        .tls_failure()
                        .map(|f| f.reason)
                        .unwrap_or_else(|| e.to_string());
                    me.close_conn(&c);
                    me.fail(&p, e, why);
                }
            }
        });
        if let Err(e) = r {
            let t = conn.idle_timer.borrow_mut().take();
            drop(t);
            self.close_conn(conn);
            let host = &conn.origin.0;
            self.fail(&p, e, format!("cannot start TLS for {host:?}"));
        }
    }

    /// Connects to the Unix socket of the origin, within the connect timeout.
    fn connect_unix(&self, conn: Rc<Conn>, path: &std::path::Path, p: Rc<Pending>) {
        let me = self.me.clone();
        let (c2, p2) = (conn.clone(), p.clone());
        let r =
            TcpStream::connect_unix(&self.lp, path, Some(self.opts.connect_timeout), move |r| {
                let Some(me) = me.upgrade() else { return };
                match r {
                    Ok(()) if c2.origin.2 => me.handshake(&c2, p2),
                    Ok(()) => me.connected(&c2, p2),
                    Err(e) => {
                        me.close_conn(&c2);
                        let e = if e == Error::TIMEOUT {
                            Error::CONNECT_TIMEOUT
                        } else {
                            e
                        };
                        let path = c2.origin.3.as_deref().unwrap_or(std::path::Path::new(""));
                        me.fail(&p2, e, format!("connect to {}: {e}", path.display()));
                    }
                }
            });
        match r {
            Ok(s) if conn.closed.get() => s.close(|| {}),
            Ok(s) => *conn.stream.borrow_mut() = Some(s),
            Err(e) => {
                self.close_conn(&conn);
                self.finish(&p, Err(e));
            }
        }
    }

    fn connected(&self, conn: &Rc<Conn>, p: Rc<Pending>) {
        if let Err(e) = self.start_reading(conn) {
            self.close_conn(conn);
            self.finish(&p, Err(e));
            return;
        }
        self.send(conn, p);
    }

    fn start_reading(&self, conn: &Rc<Conn>) -> Result<()> {
        let stream = conn.stream.borrow().clone();
        let Some(stream) = stream else {
            return Err(Error::CLOSED);
        };
        let (me, weak) = (self.me.clone(), Rc::downgrade(conn));
        stream.read_start(move |ev| {
            if let (Some(me), Some(c)) = (me.upgrade(), weak.upgrade()) {
                me.on_read(&c, ev);
            }
        })
    }

    /// A paused streamed request goes on: what its connection held, then reading.
    fn resume_stream(&self, p: &Rc<Pending>) {
        if p.paused.get() || p.cb.borrow().is_none() {
            return;
        }
        let Some(conn) = p.conn.borrow().clone() else {
            return;
        };
        conn.last_read.set(self.lp.now());
        // With nothing held the parser is asked again all the same: paused by the body's last
        // bytes, it still has the end to give, and a server done sending sends nothing more.
        let held = std::mem::take(&mut *conn.held.borrow_mut());
        if !self.feed_stream(&conn, p, &held) {
            return;
        }
        let reading = conn
            .stream
            .borrow()
            .as_ref()
            .is_some_and(|s| s.is_reading());
        if !p.paused.get() && !conn.closed.get() && !reading {
            if let Err(e) = self.start_reading(&conn) {
                self.finish(p, Err(e));
            }
        }
    }

    fn send(&self, conn: &Rc<Conn>, p: Rc<Pending>) {
        if p.cb.borrow().is_none() {
            self.release(conn);
            return;
        }
        *p.conn.borrow_mut() = Some(conn.clone());
        conn.got_bytes.set(false);
        conn.last_read.set(self.lp.now());
        conn.parser
            .borrow_mut()
            .expect(p.req.method == "HEAD", p.streaming);
        let mut out = self.lp.take_buffer();
        p.req.serialize(&mut out);
        *conn.current.borrow_mut() = Some(p.clone());
        let stream = conn.stream.borrow().clone();
        let r = stream
            .map(|s| s.write(out, None))
            .unwrap_or(Err(Error::CLOSED));
        if r.is_err() {
            self.connection_failed(conn);
        }
    }

    fn on_read(&self, conn: &Rc<Conn>, ev: ReadEvent<'_>) {
        let current = conn.current.borrow().clone();
        let Some(p) = current else {
            // Data or EOF on an idle connection: the server closed it (or misbehaves).
            self.drop_idle(conn);
            return;
        };
        match ev {
            ReadEvent::Data(d) => {
                conn.got_bytes.set(true);
                conn.last_read.set(self.lp.now());
                if p.streaming {
                    self.feed_stream(conn, &p, d);
                    return;
                }
                let r = conn.parser.borrow_mut().feed(d);
                self.on_parsed(conn, &p, r);
            }
            ReadEvent::Eof => {
                let r = conn.parser.borrow_mut().finish();
                match r {
                    Ok(Some(resp)) => self.on_parsed(conn, &p, Ok(Some(resp))),
                    _ => self.connection_failed(conn),
                }
            }
            ReadEvent::Error(_) => self.connection_failed(conn),
        }
    }

    /// Parses and hands out a streamed response's events from `data`, until the data is used
    /// up, the consumer pauses (the rest is held) or the response ends. Returns whether the
    /// request is still going on.
    fn feed_stream(&self, conn: &Rc<Conn>, p: &Rc<Pending>, data: &[u8]) -> bool {
        let mut off = 0;
        loop {
            if p.paused.get() {
                conn.held.borrow_mut().extend_from_slice(&data[off..]);
                if let Some(s) = conn.stream.borrow().as_ref() {
                    s.read_stop();
                }
                return true;
            }
            let step = conn.parser.borrow_mut().feed_stream(&data[off..]);
            let step = match step {
                Ok(s) => s,
                Err(e) => {
                    self.on_parsed(conn, p, Err(e));
                    return false;
                }
            };
            let at = off;
            off += step.consumed;
            let StreamStep {
                head, body, done, ..
            } = step;
            if head {
                // The whole-request timeout ends with the head: the body may take its time,
                // bounded by the read timeout.
                let t = p.timer.borrow_mut().take();
                drop(t);
                let resp = conn.parser.borrow().current().clone();
                if !self.emit(p, ClientEvent::Head(&resp)) {
                    return false;
                }
            }
            if let Some(r) = &body {
                if !self.emit(p, ClientEvent::Data(&data[at + r.start..at + r.end])) {
                    return false;
                }
            }
            if done {
                let resp = conn.parser.borrow_mut().take_done();
                self.on_parsed(conn, p, Ok(resp));
                return false;
            }
            if !head && body.is_none() {
                return true; // all of `data` parsed: wait for more
            }
        }
    }

    fn on_parsed(
        &self,
        conn: &Rc<Conn>,
        p: &Rc<Pending>,
        r: std::result::Result<Option<Response>, ResponseError>,
    ) {
        match r {
            Ok(None) => {}
            Ok(Some(resp)) => {
                conn.current.borrow_mut().take();
                p.conn.borrow_mut().take();
                let keep = resp.keep_alive;
                self.finish(p, Ok(resp));
                if keep {
                    self.release(conn);
                } else {
                    self.close_conn(conn);
                }
            }
            Err(e) => {
                conn.current.borrow_mut().take();
                self.close_conn(conn);
                let code = if e == ResponseError::TooLarge {
                    Error::HTTP_TOO_LARGE
                } else {
                    Error::HTTP_PROTOCOL
                };
                self.finish(p, Err(code));
            }
        }
    }

    /// The connection failed under a request: a pooled connection the server had closed is
    /// retried once on a new one when nothing of the response came and the method allows it.
    fn connection_failed(&self, conn: &Rc<Conn>) {
        let p = conn.current.borrow_mut().take();
        let stale = conn.reused.get() && !conn.got_bytes.get();
        self.close_conn(conn);
        let Some(p) = p else { return };
        p.conn.borrow_mut().take();
        if stale && p.req.idempotent() && !p.retried.get() {
            p.retried.set(true);
            // Not on another idle connection: it went idle as long ago and may be as stale.
            self.dispatch_on(p, false);
        } else {
            self.finish(&p, Err(Error::HTTP_PROTOCOL));
        }
    }

    /// Puts a connection back in its origin's pool, or gives it to the next waiting request.
    fn release(&self, conn: &Rc<Conn>) {
        if conn.closed.get() {
            return;
        }
        if self.shut.get() {
            self.close_conn(conn);
            return;
        }
        // A streamed request that ended paused, or as it resumed, left its connection not
        // reading: the next request, or the server closing an idle one, must be heard.
        let reading = conn
            .stream
            .borrow()
            .as_ref()
            .is_some_and(|s| s.is_reading());
        if !reading && self.start_reading(conn).is_err() {
            self.close_conn(conn);
            return;
        }
        let next = {
            let mut origins = self.origins.borrow_mut();
            let o = origins.entry(conn.origin.clone()).or_default();
            o.queue.pop_front()
        };
        if let Some(p) = next {
            conn.reused.set(true);
            self.send(conn, p);
            return;
        }
        // Pooled and idle, it must not keep the loop running: neither its read (which only
        // notices the server closing it) nor its expiry.
        let t = Timer::new(&self.lp);
        t.set_keeps_loop_alive(false);
        let (me, weak) = (self.me.clone(), Rc::downgrade(conn));
        t.start(self.opts.idle_timeout, None, move || {
            if let (Some(me), Some(c)) = (me.upgrade(), weak.upgrade()) {
                me.drop_idle(&c);
            }
        });
        *conn.idle_timer.borrow_mut() = Some(t);
        conn.keep_loop_alive(false);
        self.origins
            .borrow_mut()
            .entry(conn.origin.clone())
            .or_default()
            .idle
            .push(conn.clone());
    }

    fn drop_idle(&self, conn: &Rc<Conn>) {
        if let Some(o) = self.origins.borrow_mut().get_mut(&conn.origin) {
            o.idle.retain(|c| !Rc::ptr_eq(c, conn));
        }
        self.close_conn(conn);
    }

    /// Closes a connection and frees its place in the origin's budget (a waiting request
    /// may then open a new one).
    fn close_conn(&self, conn: &Rc<Conn>) {
        if conn.closed.replace(true) {
            return;
        }
        let t = conn.idle_timer.borrow_mut().take();
        drop(t);
        if let Some(s) = conn.stream.borrow_mut().take() {
            s.close(|| {});
        }
        let next = {
            let mut origins = self.origins.borrow_mut();
            let Some(o) = origins.get_mut(&conn.origin) else {
                return;
            };
            o.idle.retain(|c| !Rc::ptr_eq(c, conn));
            o.open = o.open.saturating_sub(1);
            o.queue.pop_front()
        };
        if let Some(p) = next {
            let me = self.me();
            self.lp.defer(move || me.dispatch(p));
        }
    }
}

impl Drop for ClientInner {
    /// A client dropped with connections open closes them: no socket or pending read of it
    /// outlives it on the loop.
    fn drop(&mut self) {
        for o in self.origins.get_mut().values_mut() {
            for c in o.idle.drain(..) {
                if let Some(s) = c.stream.borrow_mut().take() {
                    s.close(|| {});
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://example.com:8080/a/b?c=d").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("example.com", 8080, "/a/b?c=d")
        );
        let u = Url::parse("http://127.0.0.1").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.host_header()),
            (80, "/", "127.0.0.1".to_string())
        );
        let u = Url::parse("http://[::1]:9000?x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str(), u.host_header()),
            ("::1", 9000, "/?x", "[::1]:9000".into())
        );
        let u = Url::parse("https://example.com/a").unwrap();
        assert_eq!(
            (u.tls, u.port, u.host_header()),
            (true, 443, "example.com".to_string())
        );
        let u = Url::parse("https://[::1]:8443").unwrap();
        assert_eq!(
            (u.tls, u.port, u.host_header()),
            (true, 8443, "[::1]:8443".into())
        );
        assert!(!Url::parse("http://x").unwrap().tls);
        assert_eq!(Url::parse("ftp://x/").unwrap_err(), Error::BAD_URL);
        assert_eq!(
            Url::parse("http://x:notaport/").unwrap_err(),
            Error::BAD_URL
        );
        assert_eq!(Url::parse("http:///path").unwrap_err(), Error::BAD_URL);
        assert_eq!(Url::parse("http://x/a b").unwrap_err(), Error::BAD_URL);
    }
}
