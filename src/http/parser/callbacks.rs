//! llhttp's side of the request parser: the callback table llhttp calls during `execute`, and
//! what each callback does to the request in progress (`State`) and for the sink: the arena's
//! pieces, the limits, the checks llhttp leaves to its user, and the pauses of streamed bodies.

use std::ffi::{c_char, c_int};
use std::marker::PhantomData;

use llhttp_sys as ll;

use super::super::method::push_method;
use super::super::target;
use super::{BodyMode, HttpError, Sink, State, Streamed};

/// The callback table for sink type `S`: one static table shared by every parser of that type
/// (llhttp only reads it), instead of a copy per connection.
pub(super) struct Callbacks<S>(PhantomData<S>);

impl<S: Sink> Callbacks<S> {
    pub(super) const SETTINGS: ll::llhttp_settings_t = ll::llhttp_settings_t {
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

/// What the callbacks reach through llhttp's `data` pointer during one `execute`.
pub(super) struct Ctx<'a, S: Sink> {
    pub(super) st: &'a mut State,
    pub(super) sink: &'a mut S,
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
pub(super) fn status_for(errno: ll::llhttp_errno_t, reason: &[u8]) -> HttpError {
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
