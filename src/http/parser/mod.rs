//! The request parser: llhttp 9.3.0 with every lenient flag off, plus what llhttp leaves to its
//! user: limits on the request line (414), the header block and field count (431) and the body
//! (413, also mid-way through a chunked body), chunk-extension length (400), the Host rules of
//! HTTP/1.1 (400), transfer codings (chunked last, else 400; any other coding 501; none in an
//! HTTP/1.0 request, 400), HTTP/1.x only (505; a request line without a version is 400), the
//! request-target forms each method allows (400, see `target`), `Expect` (100-continue, else
//! 417). Any error ends parsing for the connection. `callbacks` holds llhttp's side; a whole
//! head of the common shape skips llhttp (`fast_head`), which never accepts what llhttp would
//! not and leaves every refusal to it.
//!
//! A request's body is either collected into its `RequestData` (bounded by `max_body`) or,
//! when the sink asks for it at the end of the head (`BodyMode::Stream`), streamed: the
//! request leaves the parser with its head, and `execute` pauses to hand out the head, each
//! body span (a range of the bytes given, not copied) and the body's end, so the caller
//! delivers them in order and can stop between any two of them.

use std::marker::PhantomData;

use llhttp_sys as ll;

mod callbacks;
mod fast_head;

pub(crate) use super::method::method_code;
use super::request::RequestData;
use callbacks::{status_for, Callbacks, Ctx};

/// Size limits; the defaults are listed in docs/http-server.md.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest request target (414 beyond).
    pub max_request_line: usize,
    /// Largest header block, names and values with 4 bytes of framing each (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
    /// Largest body (413 beyond).
    pub max_body: usize,
    /// Longest chunk extension per chunk (400 beyond).
    pub max_chunk_ext: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_header_bytes: 16384,
            max_headers: 100,
            max_body: 1 << 20,
            max_chunk_ext: 1024,
        }
    }
}

/// Why a request was refused: the status to answer with (then close) and a short reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
}

impl HttpError {
    pub(crate) const fn new(status: u16, reason: &'static str) -> HttpError {
        HttpError { status, reason }
    }
}

/// How a request's body is received, chosen by the sink when its head is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// Collected into the request, up to `Limits::max_body` (413 beyond).
    Buffer,
    /// Handed out as it arrives (see `Streamed`), up to `limit` bytes (413 beyond; `u64::MAX`:
    /// no limit).
    Stream { limit: u64 },
}

/// What the parser hands over as it goes.
pub trait Sink {
    /// A request starts: the storage to fill (from the pool).
    fn new_request(&mut self) -> Box<RequestData>;
    /// Its head is complete (method, target and headers are there) and a body follows
    /// (`Content-Length` above 0, or chunked): how to take it. Called before the body limits
    /// and `head_complete`; a request without a body is always collected (it is complete).
    fn body_mode(&mut self, _req: &RequestData) -> BodyMode {
        BodyMode::Buffer
    }
    /// Its head is complete and checked (not called for refused heads, nor for streamed ones).
    fn head_complete(&mut self, req: &mut RequestData) -> Result<(), HttpError>;
    /// The head of a request whose body streams is complete and checked: the request leaves
    /// the parser now (`execute` then pauses with `Streamed::Head`).
    #[allow(clippy::boxed_local)] // the storage moves on to whoever streams the body
    fn stream_start(&mut self, _req: Box<RequestData>) {}
    /// It is complete, body included (buffered requests only).
    fn request_complete(&mut self, req: Box<RequestData>);
    /// Asked after each complete request: `false` stops parsing there, and `execute` returns
    /// `Outcome::Paused` with the bytes not parsed yet (a connection at its pipeline limit).
    fn wants_more(&mut self) -> bool {
        true
    }
}

/// What a pause of `execute` hands out, for a request whose body streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Streamed {
    /// Its head is complete (given to `Sink::stream_start`); the body follows.
    Head,
    /// These bytes of the input given to `execute` are body bytes (never empty).
    Body(std::ops::Range<usize>),
    /// The body is complete.
    End,
}

/// How a call to `execute` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// All bytes consumed; more may follow.
    Continue,
    /// The request asked for a protocol upgrade (`Connection: upgrade` with `Upgrade`): it was
    /// handed over (marked `upgrade`), and parsing stopped after its head. The first `consumed`
    /// bytes of the input were HTTP; what follows belongs to the protocol asked for (if the
    /// handler switches to it) and is never parsed as a request.
    Upgrade { consumed: usize },
    /// The sink asked to stop after a request (`Sink::wants_more`): the first `consumed` bytes
    /// were parsed, the rest were not. The parser is ready to go on with them.
    Paused { consumed: usize },
    /// Stopped after `consumed` bytes to hand out `event` of a streamed request; call again
    /// with the rest (even when nothing is left: the parser may have more to say).
    Streamed { consumed: usize, event: Streamed },
}

#[derive(Default)]
struct State {
    limits: Limits,
    cur: Option<Box<RequestData>>,
    piece_start: usize,
    /// The method is in the arena (see `on_url`).
    have_method: bool,
    url_len: usize,
    header_bytes: usize,
    name: std::ops::Range<usize>,
    host_count: u32,
    body_len: usize,
    chunk_ext: usize,
    /// The request-target was seen and passed `target::check`.
    target_ok: bool,
    /// The body limit of the request in progress (`max_body`, or its stream's limit).
    body_limit: u64,
    /// The request in progress streams its body (it left `cur` with its head).
    streaming: bool,
    /// llhttp waits for the first byte of a request, in a new parser's state but for what only
    /// its `on_reset` callback (not set) reads: a new parser, or the last request completed
    /// with the connection kept alive and llhttp went on. Cleared at the start of each request
    /// llhttp parses; the fast path (`fast_head`) runs only then.
    clean: bool,
    /// Whether heads of the common shape skip llhttp (`fast_head`); on unless a test compares.
    fast_heads: bool,
    /// Storage the fast path took from the sink and then left to llhttp: the next request's.
    spare: Option<Box<RequestData>>,
    /// What the pause in progress hands out.
    paused: Option<Streamed>,
    /// Start of the input being parsed (body spans are handed out as offsets from it).
    base: usize,
    error: Option<HttpError>,
}

/// An llhttp request parser for one connection.
pub struct RequestParser<S: Sink> {
    /// One allocation: llhttp's state and ours.
    inner: Box<ParserInner>,
    _sink: PhantomData<fn(&mut S)>,
}

struct ParserInner {
    ll: ll::llhttp_t,
    st: State,
}

impl<S: Sink> RequestParser<S> {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> RequestParser<S> {
        let mut p = RequestParser {
            inner: Box::new(ParserInner {
                // SAFETY: zeroed is a valid pre-init state; `reset` runs llhttp_init on it.
                ll: unsafe { std::mem::zeroed() },
                st: State {
                    limits,
                    fast_heads: true,
                    ..Default::default()
                },
            }),
            _sink: PhantomData,
        };
        p.reset();
        p
    }

    /// Back to the state of a new parser (same limits), for reuse on another connection. A
    /// request in progress is dropped: take it first with `take_partial`.
    pub fn reset(&mut self) {
        let settings: &'static ll::llhttp_settings_t = &Callbacks::<S>::SETTINGS;
        let inner = &mut *self.inner;
        // SAFETY: both pointers are valid; the settings are static; every lenient flag stays
        // off (llhttp_init's default).
        unsafe { ll::llhttp_init(&mut inner.ll, ll::HTTP_REQUEST, settings) };
        debug_assert_eq!(inner.ll.lenient_flags, 0);
        inner.st = State {
            limits: inner.st.limits,
            clean: true,
            fast_heads: inner.st.fast_heads,
            spare: inner.st.spare.take(),
            ..Default::default()
        };
    }

    /// Turns the fast path off (on by default), so that every head goes through llhttp: the
    /// fuzz harness compares the two.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn set_fast_heads(&mut self, on: bool) {
        self.inner.st.fast_heads = on;
    }

    /// `reset`, unless the parser is in effect a new one already: between two requests of a
    /// connection kept alive (the common case when a connection's working state is returned
    /// to the pool), with no error.
    pub fn reset_unless_clean(&mut self) {
        let inner = &mut *self.inner;
        // SAFETY: the parser is initialised.
        let ok = unsafe { ll::llhttp_get_errno(&inner.ll) } == ll::HPE_OK;
        if inner.st.clean && ok && inner.st.cur.is_none() && !inner.st.streaming {
            inner.st.paused = None;
            return;
        }
        self.reset();
    }

    /// Parses `data`, calling `sink` for each request. After an error, do not call again.
    pub fn execute(&mut self, data: &[u8], sink: &mut S) -> Result<Outcome, HttpError> {
        let mut off = 0;
        if self.inner.st.clean && self.inner.st.fast_heads {
            // Whole heads of the common shape, while they come; llhttp takes the rest from
            // the first byte the fast path leaves, in the state of a new parser.
            let st = &mut self.inner.st;
            while off < data.len() {
                let mut req = st.spare.take().unwrap_or_else(|| sink.new_request());
                req.clear();
                let Some(len) = fast_head::parse(&data[off..], &st.limits, &mut req) else {
                    st.spare = Some(req);
                    break;
                };
                off += len;
                if let Err(e) = sink.head_complete(&mut req) {
                    st.cur = Some(req);
                    st.clean = false;
                    return Err(e);
                }
                sink.request_complete(req);
                if !sink.wants_more() {
                    return Ok(Outcome::Paused { consumed: off });
                }
            }
            if off == data.len() {
                return Ok(Outcome::Continue);
            }
        }
        let ParserInner { ll: parser, st } = &mut *self.inner;
        st.base = data.as_ptr() as usize;
        let mut c = Ctx { st, sink };
        parser.data = (&mut c as *mut Ctx<'_, S>).cast();
        let rest = &data[off..];
        // SAFETY: the parser is initialised; rest is a valid buffer; callbacks find `c` through
        // parser.data, which is cleared again before `c` goes out of scope.
        let errno = unsafe { ll::llhttp_execute(parser, rest.as_ptr().cast(), rest.len()) };
        parser.data = std::ptr::null_mut();
        match errno {
            ll::HPE_OK => Ok(Outcome::Continue),
            ll::HPE_PAUSED_UPGRADE => {
                // SAFETY: after a pause llhttp's error position points into `data`.
                let pos = unsafe { ll::llhttp_get_error_pos(parser) } as usize;
                let consumed = pos.saturating_sub(c.st.base).min(data.len());
                Ok(Outcome::Upgrade { consumed })
            }
            ll::HPE_PAUSED => {
                // SAFETY: after a pause llhttp's error position points into `data` (or at its
                // end).
                let pos = unsafe { ll::llhttp_get_error_pos(parser) } as usize;
                // SAFETY: the parser is initialised, paused by one of our callbacks: resuming
                // clears the pause, and the next call goes on from the state llhttp kept.
                unsafe { ll::llhttp_resume(parser) };
                let consumed = pos.saturating_sub(c.st.base).min(data.len());
                Ok(match c.st.paused.take() {
                    Some(event) => Outcome::Streamed { consumed, event },
                    None => Outcome::Paused { consumed },
                })
            }
            e => {
                // SAFETY: llhttp's reason is a static C string (or NULL).
                let reason = unsafe {
                    let r = ll::llhttp_get_error_reason(parser);
                    if r.is_null() {
                        &b""[..]
                    } else {
                        std::ffi::CStr::from_ptr(r).to_bytes()
                    }
                };
                Err(c.st.error.take().unwrap_or_else(|| status_for(e, reason)))
            }
        }
    }

    /// True between the first byte of a request and its completion (streamed bodies included).
    pub fn in_request(&self) -> bool {
        self.inner.st.cur.is_some() || self.inner.st.streaming
    }

    /// True while the body of a streamed request is being parsed.
    pub fn streaming(&self) -> bool {
        self.inner.st.streaming
    }

    /// Bytes of the body in progress still to come when its length is known
    /// (`Content-Length`); `None` for a chunked body.
    pub fn body_remaining(&self) -> Option<u64> {
        let ll = &self.inner.ll;
        if ll.flags & ll::F_CHUNKED != 0 {
            None
        } else {
            Some(ll.content_length)
        }
    }

    /// Takes back the storage of an unfinished request (to return it to the pool).
    pub fn take_partial(&mut self) -> Option<Box<RequestData>> {
        self.inner.st.cur.take()
    }
}
