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

mod connect;
mod exchange;
mod request;

pub use request::{ClientRequest, Url};

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
