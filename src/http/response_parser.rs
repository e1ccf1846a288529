//! The client's response parser: llhttp in response mode, every lenient flag off. Handles
//! Content-Length, chunked and close-delimited bodies, skips 1xx interim responses, knows that
//! a response to HEAD has no body, and bounds the body. In streaming mode the body is not
//! collected: `feed_stream` pauses to hand out the head, each body span (a range of the bytes
//! given, not copied) and the end, one step at a time.

use std::ffi::{c_char, c_int};

use llhttp_sys as ll;

/// A parsed response.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The reason phrase as sent ("OK").
    pub reason: String,
    /// HTTP/1.x minor version of the response.
    pub version_minor: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// Not valid HTTP/1.x.
    Malformed,
    /// The body is larger than allowed.
    TooLarge,
    /// The connection ended before the response did.
    Truncated,
}

#[derive(Default)]
struct State {
    cur: Response,
    field: Vec<u8>,
    value: Vec<u8>,
    /// Reason phrase bytes, decoded once complete (a character may span two reads).
    reason: Vec<u8>,
    in_value: bool,
    head_request: bool,
    max_body: usize,
    done: Option<Response>,
    too_large: bool,
    /// Streaming: body bytes are handed out as spans (unbounded) instead of collected.
    streaming: bool,
    /// Streaming: the head of the (final) response is complete and not handed out yet.
    head_ready: bool,
    /// Streaming: the body span of the pause in progress.
    span: Option<std::ops::Range<usize>>,
    /// Start of the input being parsed.
    base: usize,
}

/// One step of `ResponseParser::feed_stream`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamStep {
    /// Bytes of the input used.
    pub consumed: usize,
    /// The head is complete: see `ResponseParser::current`.
    pub head: bool,
    /// These bytes of the input are body bytes (never empty).
    pub body: Option<std::ops::Range<usize>>,
    /// The response is complete: take it with `take_done` (its body is empty).
    pub done: bool,
}

/// Parses one response at a time on a client connection.
pub struct ResponseParser {
    parser: Box<ll::llhttp_t>,
    settings: Box<ll::llhttp_settings_t>,
    st: Box<State>,
}

/// # Safety
/// Only called by llhttp during `feed`/`finish`, with `data` pointing at the parser's `State`.
unsafe fn st<'a>(p: *mut ll::llhttp_t) -> &'a mut State {
    // SAFETY: per the function contract.
    unsafe { &mut *((*p).data as *mut State) }
}

fn span<'a>(at: *const c_char, len: usize) -> &'a [u8] {
    // SAFETY: llhttp passes spans of the buffer being parsed.
    unsafe { std::slice::from_raw_parts(at as *const u8, len) }
}

fn end_header(s: &mut State) {
    if s.in_value || !s.field.is_empty() {
        let v = String::from_utf8_lossy(s.value.trim_ascii()).into_owned();
        let f = String::from_utf8_lossy(&s.field).into_owned();
        s.cur.headers.push((f, v));
        s.field.clear();
        s.value.clear();
        s.in_value = false;
    }
}

unsafe extern "C" fn on_message_begin(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: see `st`.
    let s = unsafe { st(p) };
    s.cur = Response::default();
    s.reason.clear();
    s.field.clear();
    s.value.clear();
    s.in_value = false;
    0
}

unsafe extern "C" fn on_status(p: *mut ll::llhttp_t, at: *const c_char, len: usize) -> c_int {
    // SAFETY: see `st`.
    let s = unsafe { st(p) };
    if s.reason.len() + len > 1024 {
        return -1;
    }
    s.reason.extend_from_slice(span(at, len));
    0
}

unsafe extern "C" fn on_header_field(p: *mut ll::llhttp_t, at: *const c_char, len: usize) -> c_int {
    // SAFETY: see `st`.
    let s = unsafe { st(p) };
    if s.in_value {
        end_header(s);
    }
    s.field.extend_from_slice(span(at, len));
    if s.field.len() > 16 * 1024 {
        return -1;
    }
    0
}

unsafe extern "C" fn on_header_value(p: *mut ll::llhttp_t, at: *const c_char, len: usize) -> c_int {
    // SAFETY: see `st`.
    let s = unsafe { st(p) };
    s.in_value = true;
    s.value.extend_from_slice(span(at, len));
    if s.value.len() > 64 * 1024 || s.cur.headers.len() > 256 {
        return -1;
    }
    0
}

unsafe extern "C" fn on_headers_complete(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: see `st`; p is live.
    let (s, status, flags, length, minor) = unsafe {
        (
            st(p),
            (*p).status_code,
            (*p).flags,
            (*p).content_length,
            (*p).http_minor,
        )
    };
    end_header(s);
    s.cur.status = status;
    s.cur.version_minor = minor;
    s.cur.reason = String::from_utf8_lossy(&s.reason).into_owned();
    if !s.head_request
        && !s.streaming
        && flags & ll::F_CONTENT_LENGTH != 0
        && length > s.max_body as u64
    {
        s.too_large = true;
        return -1;
    }
    // 1 = "no body": the answer to HEAD, and interim (1xx) responses.
    let interim = (100..200).contains(&status);
    if s.streaming && !interim {
        s.head_ready = true;
    }
    if s.head_request || interim {
        1
    } else {
        0
    }
}

unsafe extern "C" fn on_body(p: *mut ll::llhttp_t, at: *const c_char, len: usize) -> c_int {
    // SAFETY: see `st`.
    let s = unsafe { st(p) };
    if s.streaming {
        if len == 0 {
            return 0; // llhttp closes an open span at the end of each input, possibly empty
        }
        let start = at as usize - s.base;
        s.span = Some(start..start + len);
        return ll::HPE_PAUSED as c_int;
    }
    if s.cur.body.len() + len > s.max_body {
        s.too_large = true;
        return -1;
    }
    s.cur.body.extend_from_slice(span(at, len));
    0
}

unsafe extern "C" fn on_message_complete(p: *mut ll::llhttp_t) -> c_int {
    // SAFETY: p is live; see `st`.
    let keep_alive = unsafe { ll::llhttp_should_keep_alive(p) } != 0;
    let s = unsafe { st(p) };
    if (100..200).contains(&s.cur.status) {
        return 0; // interim response: the real one follows
    }
    let mut r = std::mem::take(&mut s.cur);
    r.keep_alive = keep_alive;
    s.done = Some(r);
    // Pause: one response per request; bytes after it belong to no request of ours.
    ll::HPE_PAUSED
}

impl ResponseParser {
    /// A parser for responses of at most `max_body` body bytes.
    pub fn new(max_body: usize) -> ResponseParser {
        let mut settings: Box<ll::llhttp_settings_t> = Box::default();
        // SAFETY: valid, writable struct.
        unsafe { ll::llhttp_settings_init(&mut *settings) };
        settings.on_message_begin = Some(on_message_begin);
        settings.on_status = Some(on_status);
        settings.on_header_field = Some(on_header_field);
        settings.on_header_value = Some(on_header_value);
        settings.on_headers_complete = Some(on_headers_complete);
        settings.on_body = Some(on_body);
        settings.on_message_complete = Some(on_message_complete);
        // SAFETY: zeroed is a valid pre-init state that llhttp_init fills in.
        let mut parser: Box<ll::llhttp_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: both live for the parser's lifetime (owned together here).
        unsafe { ll::llhttp_init(&mut *parser, ll::HTTP_RESPONSE, &*settings) };
        let mut st = Box::new(State {
            max_body,
            ..Default::default()
        });
        parser.data = (&mut *st as *mut State).cast();
        ResponseParser {
            parser,
            settings,
            st,
        }
    }

    /// Prepares for the response to a new request (`head`: the request was HEAD; `streaming`:
    /// the response is read with `feed_stream`, its body handed out, not collected).
    pub fn expect(&mut self, head: bool, streaming: bool) {
        self.st.streaming = streaming;
        self.st.head_ready = false;
        self.st.span = None;
        let _ = &self.settings;
        // SAFETY: live parser; reset keeps settings and data.
        unsafe { ll::llhttp_reset(&mut *self.parser) };
        self.parser.data = (&mut *self.st as *mut State).cast();
        self.st.head_request = head;
        self.st.done = None;
        self.st.too_large = false;
    }

    /// Streaming mode: parses `data` up to the next thing to hand out. Call again with the
    /// rest of the input (even when nothing is left: the end may follow a last body span)
    /// until a step hands out nothing and `consumed` is the whole input, or `done`.
    pub fn feed_stream(&mut self, data: &[u8]) -> Result<StreamStep, ResponseError> {
        if self.st.done.is_some() {
            return Ok(StreamStep {
                done: true,
                ..Default::default()
            });
        }
        self.st.base = data.as_ptr() as usize;
        // SAFETY: live parser whose data points at self.st; data is a valid buffer.
        let e = unsafe { ll::llhttp_execute(&mut *self.parser, data.as_ptr().cast(), data.len()) };
        let consumed = match e {
            ll::HPE_OK => data.len(),
            ll::HPE_PAUSED => {
                // SAFETY: live parser; after a pause its error position is inside `data`.
                let at = unsafe { ll::llhttp_get_error_pos(&*self.parser) } as usize;
                if self.st.done.is_none() {
                    // SAFETY: paused by on_body: go on from there at the next call.
                    unsafe { ll::llhttp_resume(&mut *self.parser) };
                }
                at.saturating_sub(self.st.base).min(data.len())
            }
            _ if self.st.too_large => return Err(ResponseError::TooLarge),
            _ => return Err(ResponseError::Malformed),
        };
        Ok(StreamStep {
            consumed,
            head: std::mem::take(&mut self.st.head_ready),
            body: self.st.span.take(),
            done: self.st.done.is_some(),
        })
    }

    /// The response being read: status and headers once its head is complete.
    pub fn current(&self) -> &Response {
        self.st.done.as_ref().unwrap_or(&self.st.cur)
    }

    /// The response `feed_stream` or `finish` completed.
    pub fn take_done(&mut self) -> Option<Response> {
        self.st.done.take()
    }

    /// Feeds bytes; returns the response once complete.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Response>, ResponseError> {
        if self.st.done.is_some() {
            return Ok(self.st.done.take());
        }
        // SAFETY: live parser whose data points at self.st; data is a valid buffer.
        let e = unsafe { ll::llhttp_execute(&mut *self.parser, data.as_ptr().cast(), data.len()) };
        match e {
            ll::HPE_OK => Ok(None),
            ll::HPE_PAUSED => Ok(self.st.done.take()),
            _ if self.st.too_large => Err(ResponseError::TooLarge),
            _ => Err(ResponseError::Malformed),
        }
    }

    /// The connection ended: completes a close-delimited body, or reports truncation.
    pub fn finish(&mut self) -> Result<Option<Response>, ResponseError> {
        if self.st.done.is_some() {
            return Ok(self.st.done.take());
        }
        self.st.span = None;
        // SAFETY: live parser.
        let e = unsafe { ll::llhttp_finish(&mut *self.parser) };
        match (e, self.st.done.take()) {
            (ll::HPE_OK | ll::HPE_PAUSED, Some(r)) => Ok(Some(r)),
            _ => Err(ResponseError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: bool, input: &[u8], eof: bool) -> Result<Option<Response>, ResponseError> {
        let mut p = ResponseParser::new(1024);
        p.expect(head, false);
        match p.feed(input)? {
            Some(r) => Ok(Some(r)),
            None if eof => p.finish(),
            None => Ok(None),
        }
    }

    #[test]
    fn content_length_chunked_close_delimited_head_and_1xx() {
        let r = parse(
            false,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.status, &r.body[..], r.keep_alive),
            (200, &b"hello"[..], true)
        );
        assert_eq!(r.header("content-type"), Some("text/plain"));
        let r = parse(false, b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(r.body, b"abcde");
        assert_eq!(
            parse(false, b"HTTP/1.0 200 OK\r\n\r\nuntil close", false).unwrap(),
            None
        );
        let r = parse(false, b"HTTP/1.0 200 OK\r\n\r\nuntil close", true)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.body.as_slice(), r.keep_alive),
            (&b"until close"[..], false)
        );
        let r = parse(
            true,
            b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.status, r.body.len()), (200, 0));
        let r = parse(
            false,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status, 204);
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(
                false,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n",
                false
            ),
            Err(ResponseError::TooLarge)
        );
        assert_eq!(
            parse(false, b"NOT HTTP\r\n\r\n", false),
            Err(ResponseError::Malformed)
        );
        assert_eq!(
            parse(
                false,
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                true
            ),
            Err(ResponseError::Truncated)
        );
        assert_eq!(
            parse(
                false,
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err(ResponseError::Malformed)
        );
    }

    #[test]
    fn reason_phrase_and_version_whole_or_split() {
        let input = "HTTP/1.0 404 Nicht gefunden — weg\r\nContent-Length: 0\r\n\r\n".as_bytes();
        for step in [input.len(), 1] {
            let mut p = ResponseParser::new(64);
            p.expect(false, false);
            let mut got = None;
            for piece in input.chunks(step) {
                if let Some(r) = p.feed(piece).unwrap() {
                    got = Some(r);
                }
            }
            let r = got.unwrap();
            assert_eq!(
                (r.status, r.reason.as_str(), r.version_minor),
                (404, "Nicht gefunden — weg", 0)
            );
        }
        let mut p = ResponseParser::new(64);
        p.expect(false, false);
        let r = p
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((r.reason.as_str(), r.version_minor), ("OK", 1));
    }

    /// Streams `input` cut in pieces of `step`: the events in order ("head 200", "body:..",
    /// "done").
    fn stream(input: &[u8], step: usize, head: bool) -> Vec<String> {
        let mut p = ResponseParser::new(4);
        p.expect(head, true);
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            let mut off = 0;
            loop {
                let s = p.feed_stream(&piece[off..]).unwrap();
                let at = off;
                off += s.consumed;
                if s.head {
                    out.push(format!("head {}", p.current().status));
                }
                if let Some(r) = &s.body {
                    let text = String::from_utf8_lossy(&piece[at + r.start..at + r.end]);
                    match out.last_mut() {
                        Some(last) if last.starts_with("body:") => last.push_str(&text),
                        _ => out.push(format!("body:{text}")),
                    }
                }
                if s.done {
                    let r = p.take_done().unwrap();
                    assert!(r.body.is_empty());
                    out.push("done".into());
                    return out;
                }
                if !s.head && s.body.is_none() {
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn streaming_hands_out_head_then_body_then_end() {
        let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n3\r\nghi\r\n0\r\n\r\n";
        let sized = b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\n0123456789";
        for step in [1000, 5, 1] {
            // No size limit (max_body is 4 here) and no 1xx head.
            assert_eq!(
                stream(chunked, step, false),
                ["head 200", "body:abcdefghi", "done"]
            );
            assert_eq!(
                stream(sized, step, false),
                ["head 201", "body:0123456789", "done"]
            );
            let bodiless = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
            assert_eq!(stream(bodiless, step, true), ["head 200", "done"]);
        }
        let mut p = ResponseParser::new(4);
        p.expect(false, true);
        let s = p
            .feed_stream(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
            .unwrap();
        assert!(s.head && !s.done);
        assert_eq!(p.finish().unwrap().map(|r| r.keep_alive), Some(false));
    }

    #[test]
    fn byte_by_byte() {
        let input = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n0\r\n\r\n";
        let mut p = ResponseParser::new(1024);
        p.expect(false, false);
        let mut got = None;
        for b in input.iter() {
            if let Some(r) = p.feed(std::slice::from_ref(b)).unwrap() {
                got = Some(r);
            }
        }
        let r = got.unwrap();
        assert_eq!(
            (r.body.as_slice(), r.header("x-a")),
            (&b"wiki"[..], Some("1"))
        );
    }
}
