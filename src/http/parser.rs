//! The request parser: llhttp 9.3.0 with every lenient flag off, plus what llhttp leaves to its
//! user: limits on the request line (414), the header block and field count (431) and the body
//! (413, also mid-way through a chunked body), chunk-extension length (400), the Host rules of
//! HTTP/1.1 (400), transfer codings (chunked last, else 400; any other coding 501; none in an
//! HTTP/1.0 request, 400), HTTP/1.x only (505; a request line without a version is 400), the
//! request-target forms each method allows (400, see `target`), `Expect` (100-continue, else
//! 417). Any error ends parsing for the connection.
//!
//! A request's body is either collected into its `RequestData` (bounded by `max_body`) or,
//! when the sink asks for it at the end of the head (`BodyMode::Stream`), streamed: the
//! request leaves the parser with its head, and `execute` pauses to hand out the head, each
//! body span (a range of the bytes given, not copied) and the body's end, so the caller
//! delivers them in order and can stop between any two of them.

use std::ffi::{c_char, c_int};
use std::marker::PhantomData;

use llhttp_sys as ll;

use super::fast_head;
pub(crate) use super::method::method_code;
use super::method::push_method;
use super::request::RequestData;
use super::target;

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

/// The callback table for sink type `S`: one static table shared by every parser of that type
/// (llhttp only reads it), instead of a copy per connection.
struct Callbacks<S>(PhantomData<S>);

impl<S: Sink> Callbacks<S> {
    const SETTINGS: ll::llhttp_settings_t = ll::llhttp_settings_t {
        on_message_begin: Some(on_message_begin::<S>),
        on_protocol: None,
        on_url: Some(on_url::<S>),
        on_status: None,
        // The method is taken from llhttp's parsed value at the first piece of the target.
        on_method: None,
        on_version: None,
        on_header_field: Some(on_header_field::<S>),
        on_header_value: Some(on_header_value::<S>),
        on_chunk_extension_name: Some(on_chunk_extension::<S>),
        on_chunk_extension_value: Some(on_chunk_extension::<S>),
        on_headers_complete: Some(on_headers_complete::<S>),
        on_body: Some(on_body::<S>),
        on_message_complete: Some(on_message_complete::<S>),
        on_protocol_complete: None,
        on_url_complete: Some(on_url_complete::<S>),
        on_status_complete: None,
        on_method_complete: None,
        // The version is checked at the first header field or at the head's end (whichever
        // comes first), from llhttp's parsed value.
        on_version_complete: None,
        on_header_field_complete: Some(on_header_field_complete::<S>),
        on_header_value_complete: Some(on_header_value_complete::<S>),
        on_chunk_extension_name_complete: None,
        on_chunk_extension_value_complete: None,
        on_chunk_header: Some(on_chunk_header::<S>),
        on_chunk_complete: None,
        on_reset: None,
    };
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

struct Ctx<'a, S: Sink> {
    st: &'a mut State,
    sink: &'a mut S,
}

/// # Safety
/// Only called by llhttp during `execute`, with `data` set to a live `Ctx<S>`.
unsafe fn ctx<'a, S: Sink>(p: *mut ll::llhttp_t) -> &'a mut Ctx<'a, S> {
    // SAFETY: `execute` points `data` at its stack `Ctx` for the duration of llhttp_execute.
    unsafe { &mut *((*p).data as *mut Ctx<'a, S>) }
}

fn fail(st: &mut State, e: HttpError) -> c_int {
    if st.error.is_none() {
        st.error = Some(e);
    }
    -1
}

/// Appends a span to the request's arena.
fn append(st: &mut State, at: *const c_char, len: usize) {
    // SAFETY: llhttp passes a span inside the buffer given to llhttp_execute.
    let bytes = unsafe { std::slice::from_raw_parts(at as *const u8, len) };
    if let Some(r) = st.cur.as_mut() {
        r.arena.extend_from_slice(bytes);
        r.head_ascii = false; // trailers come after the check: not known to be ASCII
    }
}

/// Ends the piece being collected: NUL-terminates it and returns its range.
fn end_piece(st: &mut State) -> std::ops::Range<usize> {
    let r = st.cur.as_mut().expect("request in progress");
    let range = st.piece_start..r.arena.len();
    r.arena.push(0);
    st.piece_start = r.arena.len();
    range
}

/// Appends a piece written by `fill` to the arena's end, NUL-terminated; returns its range.
fn add_piece(st: &mut State, fill: impl FnOnce(&mut Vec<u8>)) -> std::ops::Range<usize> {
    let r = st.cur.as_mut().expect("request in progress");
    let start = r.arena.len();
    fill(&mut r.arena);
    let range = start..r.arena.len();
    r.arena.push(0);
    st.piece_start = r.arena.len();
    range
}

/// Copies `src` (a range in the arena) to the arena's end as its own NUL-terminated piece.
fn copy_piece(st: &mut State, src: std::ops::Range<usize>) -> std::ops::Range<usize> {
    add_piece(st, |arena| arena.extend_from_within(src))
}

unsafe extern "C" fn on_message_begin<S: Sink>(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: see `ctx`.
    let c = unsafe { ctx::<S>(p) };
    let mut req = c.st.spare.take().unwrap_or_else(|| c.sink.new_request());
    req.clear();
    c.st.cur = Some(req);
    c.st.piece_start = 0;
    c.st.have_method = false;
    c.st.url_len = 0;
    c.st.header_bytes = 0;
    c.st.host_count = 0;
    c.st.body_len = 0;
    c.st.target_ok = false;
    c.st.streaming = false;
    c.st.clean = false;
    0
}

unsafe extern "C" fn on_url<S: Sink>(p: *mut ll::llhttp_t, at: *const c_char, len: usize) -> c_int {
    // SAFETY: see `ctx`.
    let st = &mut *unsafe { ctx::<S>(p) }.st;
    if !st.have_method {
        // llhttp has parsed the method by the time the target starts: it is the arena's
        // first piece.
        st.have_method = true;
        // SAFETY: p is the live parser.
        let code = unsafe { (*p).method };
        if let Some(r) = st.cur.as_mut() {
            push_method(&mut r.arena, code);
            r.method_code = Some(code);
        }
        let r = end_piece(st);
        st.cur.as_mut().unwrap().method = r;
    }
    st.url_len += len;
    if st.url_len > st.limits.max_request_line {
        return fail(st, HttpError::new(414, "request target too long"));
    }
    append(st, at, len);
    0
}

unsafe extern "C" fn on_url_complete<S: Sink>(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: see `ctx`.
    let st = &mut *unsafe { ctx::<S>(p) }.st;
    let target = end_piece(st);
    let r = st.cur.as_ref().unwrap();
    let parts = match target::check(&r.arena[r.method.clone()], &r.arena[target.clone()]) {
        Ok(parts) => parts,
        Err(e) => return fail(st, e),
    };
    let (base, len) = (target.start, target.len());
    // The query runs to the target's end, so it shares the target's NUL; so does a path that
    // ends there. Only a path followed by a query needs a NUL-terminated copy of its own.
    let path = match parts.path {
        Some(p) if p.end == len => base + p.start..target.end,
        Some(p) => copy_piece(st, base + p.start..base + p.end),
        None => add_piece(st, |arena| arena.push(b'/')), // an absolute-form target's empty path
    };
    let query = if parts.query.end == len {
        base + parts.query.start..target.end
    } else {
        copy_piece(st, base + parts.query.start..base + parts.query.end)
    };
    let r = st.cur.as_mut().unwrap();
    r.target = target;
    r.path = path;
    r.query = query;
    st.target_ok = true;
    0
}

/// Checks the request line's version once llhttp has parsed it (at the first header field, or
/// at the end of a head without any): HTTP/1.x only.
fn check_version(p: *const ll::llhttp_t) -> Result<(), HttpError> {
    // SAFETY: p is the live parser.
    match unsafe { (*p).http_major } {
        1 => Ok(()),
        // llhttp takes a request line without a version (HTTP/0.9's form, also ended by a bare
        // LF) and goes on to headers: not a request line of RFC 9112.
        0 => Err(HttpError::new(400, "request line without an HTTP version")),
        _ => Err(HttpError::new(505, "HTTP version not supported")),
    }
}

unsafe extern "C" fn on_header_field<S: Sink>(
    p: *mut ll::llhttp_t,
    at: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: see `ctx`.
    let st = &mut *unsafe { ctx::<S>(p) }.st;
    if st.header_bytes == 0 {
        if let Err(e) = check_version(p) {
            return fail(st, e);
        }
    }
    add_header_bytes(st, at, len)
}

/// Counts `len` bytes of the header block against its limit and appends them.
fn add_header_bytes(st: &mut State, at: *const c_char, len: usize) -> c_int {
    st.header_bytes += len;
    if st.header_bytes > st.limits.max_header_bytes {
        return fail(st, HttpError::new(431, "request header fields too large"));
    }
    append(st, at, len);
    0
}

unsafe extern "C" fn on_header_field_complete<S: Sink>(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: see `ctx`.
    let st = &mut *unsafe { ctx::<S>(p) }.st;
    st.name = end_piece(st);
    st.header_bytes += 4; // ": " and CRLF
    0
}

unsafe extern "C" fn on_header_value<S: Sink>(
    p: *mut ll::llhttp_t,
    at: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: see `ctx`.
    add_header_bytes(unsafe { ctx::<S>(p) }.st, at, len)
}

fn eq_ic(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// The header names the parser acts on.
#[derive(PartialEq, Eq)]
enum Known {
    Host,
    TransferEncoding,
    Expect,
    Other,
}

/// Which of the names the parser acts on `n` is (any case). `n` is a token (llhttp checked
/// it): no token byte but a letter's upper case becomes a letter or `-` with 0x20 set, so
/// or-ing 0x20 into each byte compares case-insensitively.
fn known_name(n: &[u8]) -> Known {
    fn lower_is(n: &[u8], lower: &[u8]) -> bool {
        n.iter().zip(lower).all(|(&b, &l)| b | 0x20 == l)
    }
    match n.len() {
        4 if u32::from_le_bytes([n[0], n[1], n[2], n[3]]) | 0x2020_2020
            == u32::from_le_bytes(*b"host") =>
        {
            Known::Host
        }
        17 if lower_is(n, b"transfer-encoding") => Known::TransferEncoding,
        6 if lower_is(n, b"expect") => Known::Expect,
        _ => Known::Other,
    }
}

/// Transfer-Encoding: chunked must come last (else 400); other codings are not implemented (501).
fn check_transfer_encoding(value: &[u8]) -> Result<(), HttpError> {
    let codings: Vec<&[u8]> = value
        .split(|&b| b == b',')
        .map(|c| {
            let c = c.split(|&b| b == b';').next().unwrap_or(c);
            c.trim_ascii()
        })
        .filter(|c| !c.is_empty())
        .collect();
    match codings.last() {
        Some(last) if eq_ic(last, "chunked") => {}
        _ => {
            return Err(HttpError::new(
                400,
                "chunked must be the final transfer coding",
            ))
        }
    }
    if codings.len() > 1 {
        return Err(HttpError::new(501, "transfer coding not implemented"));
    }
    Ok(())
}

unsafe extern "C" fn on_header_value_complete<S: Sink>(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: see `ctx`.
    let st = &mut *unsafe { ctx::<S>(p) }.st;
    {
        let r = st.cur.as_mut().unwrap();
        while r.arena.len() > st.piece_start && matches!(r.arena.last(), Some(b' ' | b'\t')) {
            r.arena.pop();
        }
    }
    let value = end_piece(st);
    let name = st.name.clone();
    let limits = st.limits;
    let r = st.cur.as_mut().unwrap();
    r.headers.push((name.clone(), value.clone()));
    if r.headers.len() > limits.max_headers {
        return fail(st, HttpError::new(431, "too many header fields"));
    }
    let (n, v) = (&r.arena[name], &r.arena[value]);
    let known = known_name(n);
    if known == Known::Host {
        st.host_count += 1;
    } else if known == Known::TransferEncoding {
        // RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        // SAFETY: p is the live parser.
        if unsafe { (*p).http_minor } == 0 {
            return fail(
                st,
                HttpError::new(400, "Transfer-Encoding in an HTTP/1.0 request"),
            );
        }
        if let Err(e) = check_transfer_encoding(v) {
            return fail(st, e);
        }
    } else if known == Known::Expect {
        if eq_ic(v, "100-continue") {
            r.expect_continue = true;
        } else {
            return fail(st, HttpError::new(417, "expectation failed"));
        }
    }
    0
}

unsafe extern "C" fn on_headers_complete<S: Sink>(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: p is the live parser.
    let (flags, content_length, minor) =
        unsafe { ((*p).flags, (*p).content_length, (*p).http_minor) };
    // SAFETY: see `ctx`.
    let c = unsafe { ctx::<S>(p) };
    let st = &mut *c.st;
    if let Err(e) = check_version(p) {
        return fail(st, e);
    }
    if !st.target_ok {
        return fail(st, HttpError::new(400, "missing request target"));
    }
    if st.host_count > 1 || (minor >= 1 && st.host_count == 0) {
        return fail(
            st,
            HttpError::new(400, "exactly one Host header is required"),
        );
    }
    // The route (body_mode) reads the method and path: check the head's bytes first.
    let r = st.cur.as_mut().unwrap();
    r.version_minor = minor;
    r.check_ascii();
    if flags & (ll::F_CONTENT_LENGTH | ll::F_CHUNKED) == 0 {
        // No body (the common case): collected, complete, nothing to wait for.
        r.expect_continue = false;
        return match c.sink.head_complete(r) {
            Ok(()) => 0,
            Err(e) => fail(st, e),
        };
    }
    let has_body = flags & ll::F_CHUNKED != 0 || content_length > 0;
    let mode = if has_body {
        c.sink.body_mode(r)
    } else {
        BodyMode::Buffer
    };
    st.body_limit = match mode {
        BodyMode::Buffer => st.limits.max_body as u64,
        BodyMode::Stream { limit } => limit,
    };
    if flags & ll::F_CONTENT_LENGTH != 0 && content_length > st.body_limit {
        return fail(st, HttpError::new(413, "request body too large"));
    }
    if let BodyMode::Stream { .. } = mode {
        // SAFETY: p is the live parser; its flags are final once the head is complete.
        let (keep_alive, upgrade) =
            unsafe { (ll::llhttp_should_keep_alive(p) != 0, (*p).upgrade != 0) };
        let mut req = st.cur.take().unwrap();
        req.keep_alive = keep_alive && !upgrade;
        st.streaming = true;
        st.paused = Some(Streamed::Head);
        c.sink.stream_start(req);
        return ll::HPE_PAUSED as c_int;
    }
    match c.sink.head_complete(st.cur.as_mut().unwrap()) {
        Ok(()) => 0,
        Err(e) => fail(st, e),
    }
}

unsafe extern "C" fn on_body<S: Sink>(
    p: *mut ll::llhttp_t,
    at: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: see `ctx`.
    let st = &mut *unsafe { ctx::<S>(p) }.st;
    if len == 0 {
        return 0; // llhttp closes an open span at the end of each input, possibly empty
    }
    st.body_len += len;
    if st.body_len as u64 > st.body_limit {
        return fail(st, HttpError::new(413, "request body too large"));
    }
    if st.streaming {
        let start = at as usize - st.base;
        st.paused = Some(Streamed::Body(start..start + len));
        return ll::HPE_PAUSED as c_int;
    }
    // SAFETY: span inside the buffer being parsed.
    let bytes = unsafe { std::slice::from_raw_parts(at as *const u8, len) };
    st.cur.as_mut().unwrap().body.extend_from_slice(bytes);
    0
}

unsafe extern "C" fn on_chunk_header<S: Sink>(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: see `ctx`.
    unsafe { ctx::<S>(p) }.st.chunk_ext = 0;
    0
}

unsafe extern "C" fn on_chunk_extension<S: Sink>(
    p: *mut ll::llhttp_t,
    _at: *const c_char,
    len: usize,
) -> c_int {
    // SAFETY: see `ctx`.
    let st = &mut *unsafe { ctx::<S>(p) }.st;
    st.chunk_ext += len;
    if st.chunk_ext > st.limits.max_chunk_ext {
        return fail(st, HttpError::new(400, "chunk extension too long"));
    }
    0
}

unsafe extern "C" fn on_message_complete<S: Sink>(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: p is the live parser.
    let (major, minor, flags, upgrade) = unsafe {
        (
            (*p).http_major,
            (*p).http_minor,
            (*p).flags,
            (*p).upgrade != 0,
        )
    };
    // llhttp_should_keep_alive for a request (which never needs EOF to end), without the call.
    let keep_alive = if major > 0 && minor > 0 {
        flags & ll::F_CONNECTION_CLOSE == 0
    } else {
        flags & ll::F_CONNECTION_KEEP_ALIVE != 0
    };
    // SAFETY: see `ctx`.
    let c = unsafe { ctx::<S>(p) };
    if c.st.streaming {
        c.st.streaming = false;
        c.st.paused = Some(Streamed::End);
        return ll::HPE_PAUSED as c_int;
    }
    if let Some(mut req) = c.st.cur.take() {
        // An upgrade request is answered, then the connection closes (what follows it is
        // another protocol's), unless its handler switches protocols (a WebSocket accept).
        req.keep_alive = keep_alive && !upgrade;
        req.upgrade = upgrade;
        c.sink.request_complete(req);
        if !upgrade && !c.sink.wants_more() {
            return ll::HPE_PAUSED;
        }
        // Not paused: llhttp runs its after-message step now and, kept alive, waits for the
        // next request's first byte.
        c.st.clean = keep_alive && !upgrade;
    }
    0
}

/// Status for an llhttp error that no check of ours caught first. `reason` is llhttp's text:
/// a version it does not know ("Invalid HTTP version") is unsupported (505); a broken one is 400.
fn status_for(errno: ll::llhttp_errno_t, reason: &[u8]) -> HttpError {
    match errno {
        ll::HPE_INVALID_VERSION if reason == b"Invalid HTTP version" => {
            HttpError::new(505, "HTTP version not supported")
        }
        ll::HPE_INVALID_VERSION => HttpError::new(400, "malformed HTTP version"),
        ll::HPE_INVALID_CONTENT_LENGTH | ll::HPE_UNEXPECTED_CONTENT_LENGTH => {
            HttpError::new(400, "invalid or conflicting Content-Length")
        }
        ll::HPE_INVALID_TRANSFER_ENCODING => HttpError::new(400, "invalid Transfer-Encoding"),
        ll::HPE_INVALID_CHUNK_SIZE => HttpError::new(400, "invalid chunk size"),
        ll::HPE_INVALID_METHOD => HttpError::new(400, "invalid method"),
        ll::HPE_INVALID_URL => HttpError::new(400, "invalid request target"),
        ll::HPE_INVALID_HEADER_TOKEN => HttpError::new(400, "invalid header field"),
        _ => HttpError::new(400, "malformed request"),
    }
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
