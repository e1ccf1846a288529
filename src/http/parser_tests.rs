//! The parser wrapper against well-formed, malformed and ambiguous requests (RFC 9112).

use super::parser::{BodyMode, HttpError, Limits, Outcome, RequestParser, Sink, Streamed};
use super::request::RequestData;

#[derive(Default)]
#[allow(clippy::vec_box)]
struct Collect {
    done: Vec<Box<RequestData>>,
}

impl Sink for Collect {
    fn new_request(&mut self) -> Box<RequestData> {
        Box::default()
    }
    fn head_complete(&mut self, _req: &mut RequestData) -> Result<(), HttpError> {
        Ok(())
    }
    fn request_complete(&mut self, req: Box<RequestData>) {
        self.done.push(req);
    }
}

fn parse_with(limits: Limits, input: &[u8]) -> (Result<Outcome, HttpError>, Collect) {
    let mut p = RequestParser::new(limits);
    let mut sink = Collect::default();
    let r = p.execute(input, &mut sink);
    (r, sink)
}

fn parse(input: &[u8]) -> (Result<Outcome, HttpError>, Collect) {
    parse_with(Limits::default(), input)
}

fn status(input: &[u8]) -> u16 {
    match parse(input).0 {
        Ok(_) => 200,
        Err(e) => e.status,
    }
}

#[test]
fn parses_head_query_and_body() {
    let (r, s) = parse(b"POST /a/b?x=1&name=J%C3%B6rg+M HTTP/1.1\r\nHost: h\r\nX-Thing:  v1 \r\ncontent-length: 5\r\n\r\nhelloGET / HTTP/1.0\r\n\r\n");
    assert_eq!(r, Ok(Outcome::Continue));
    assert_eq!(s.done.len(), 2);
    let q = &s.done[0];
    assert_eq!(q.method(), "POST");
    assert_eq!(q.target(), "/a/b?x=1&name=J%C3%B6rg+M");
    assert_eq!(q.path(), "/a/b");
    assert_eq!(q.query(), "x=1&name=J%C3%B6rg+M");
    assert_eq!(q.query_param("name").unwrap(), "Jörg M".as_bytes());
    assert_eq!(q.query_param("nope"), None);
    assert_eq!(q.header("x-thing"), Some("v1"));
    assert_eq!(q.header("HOST"), Some("h"));
    assert_eq!(q.body(), b"hello");
    assert!(q.keep_alive);
    assert_eq!(s.done[1].version_minor(), 0);
    assert!(!s.done[1].keep_alive);
}

#[test]
fn byte_by_byte_equals_whole() {
    let req = b"POST /p?q HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
    let mut p = RequestParser::new(Limits::default());
    let mut sink = Collect::default();
    for b in req.iter() {
        assert_eq!(
            p.execute(std::slice::from_ref(b), &mut sink),
            Ok(Outcome::Continue)
        );
    }
    assert_eq!(sink.done.len(), 1);
    assert_eq!(sink.done[0].body(), b"abcde");
    assert_eq!(sink.done[0].path(), "/p");
    assert_eq!(sink.done[0].header("transfer-encoding"), Some("chunked"));
}

#[test]
fn absolute_form_target() {
    let (_, s) =
        parse(b"GET http://example.com:8080/x/y?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(s.done[0].path(), "/x/y");
    assert_eq!(s.done[0].query(), "z=1");
}

#[test]
fn content_length_malformed_or_ambiguous() {
    let h = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (cl, want) in [
        ("Content-Length: +3\r\n", 400),
        ("Content-Length: -3\r\n", 400),
        ("Content-Length: 0x3\r\n", 400),
        ("Content-Length: 3 3\r\n", 400),
        ("Content-Length: 99999999999999999999999\r\n", 400),
        ("Content-Length: 3\r\nContent-Length: 3\r\n", 400),
        ("Content-Length: 3\r\nContent-Length: 4\r\n", 400),
        ("Content-Length: 3,3\r\n", 400),
        ("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", 400),
        ("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", 400),
    ] {
        assert_eq!(status(format!("{h}{cl}\r\nabc").as_bytes()), want, "{cl:?}");
    }
}

#[test]
fn transfer_encoding_rules() {
    let h = "POST / HTTP/1.1\r\nHost: h\r\n";
    assert_eq!(
        status(format!("{h}Transfer-Encoding: gzip\r\n\r\n").as_bytes()),
        400
    );
    assert_eq!(
        status(format!("{h}Transfer-Encoding: chunked, gzip\r\n\r\n").as_bytes()),
        400
    );
    assert_eq!(
        status(format!("{h}Transfer-Encoding: gzip, chunked\r\n\r\n").as_bytes()),
        501
    );
    assert_eq!(
        status(format!("{h}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").as_bytes()),
        200
    );
}

#[test]
fn chunk_framing_errors() {
    let h = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (body, want) in [
        ("zz\r\nab\r\n0\r\n\r\n", 400),
        ("-1\r\nab\r\n0\r\n\r\n", 400),
        ("3\r\nabcX\r\n0\r\n\r\n", 400),   // chunk data without CRLF
        ("ffffffffffffffffffff\r\n", 400), // size overflow
        ("3\nabc\r\n0\r\n\r\n", 400),      // bare LF after size
    ] {
        assert_eq!(status(format!("{h}{body}").as_bytes()), want, "{body:?}");
    }
    let long_ext = format!("{h}1;{}=x\r\na\r\n0\r\n\r\n", "e".repeat(2000));
    assert_eq!(
        parse(long_ext.as_bytes()).0.unwrap_err(),
        HttpError {
            status: 400,
            reason: "chunk extension too long"
        }
    );
}

#[test]
fn header_syntax_errors() {
    for (req, want) in [
        (
            &b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n"[..],
            400,
        ), // obs-fold
        (b"GET / HTTP/1.1\r\nHost: h\rX: a\r\n\r\n", 400), // bare CR
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),             // bare LF
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 400), // NUL in value
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400), // control in value
        (b"GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n", 400), // empty name
        (b"GET / HTTP/1.1\r\nHost: h\r\nX Y: v\r\n\r\n", 400), // space in name
        (b"GET / HTTP/1.1\r\nHost: h\r\nX : v\r\n\r\n", 400), // space before colon
        (b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400),    // space in target
        (b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ] {
        assert_eq!(status(req), want, "{:?}", String::from_utf8_lossy(req));
    }
}

#[test]
fn host_rules_and_versions() {
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 200);
    assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    assert_eq!(status(b"GET / HTTP/3.1\r\nHost: a\r\n\r\n"), 505);
    assert_eq!(status(b"GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET / FOO/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn expect_header() {
    let (_, s) =
        parse(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx");
    assert!(s.done[0].expect_continue);
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx"),
        417
    );
}

#[test]
fn limits() {
    let small = Limits {
        max_request_line: 64,
        max_header_bytes: 200,
        max_headers: 5,
        max_body: 10,
        max_chunk_ext: 16,
    };
    let st = |req: &[u8]| {
        parse_with(small, req)
            .0
            .map(|_| 200)
            .unwrap_or_else(|e| e.status)
    };
    assert_eq!(
        st(format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(64)).as_bytes()),
        414
    );
    assert_eq!(
        st(format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "v".repeat(200)
        )
        .as_bytes()),
        431
    );
    let many: String = (0..6).map(|i| format!("X{i}: v\r\n")).collect();
    assert_eq!(
        st(format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n").as_bytes()),
        431
    );
    assert_eq!(
        st(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"),
        413
    );
    assert_eq!(
        st(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"),
        200
    );
    // A chunked body crossing the limit mid-stream.
    assert_eq!(st(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n"), 413);
}

#[test]
fn upgrade_is_reported() {
    let head: &[u8] =
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let mut input = head.to_vec();
    input.extend_from_slice(b"\x81\x85frames, not HTTP");
    let (r, s) = parse(&input);
    // Parsing stops after the head: the rest is the new protocol's.
    assert_eq!(
        r,
        Ok(Outcome::Upgrade {
            consumed: head.len()
        })
    );
    assert_eq!(s.done.len(), 1);
    assert!(s.done[0].upgrade);
    // Answered, then closed unless the handler switches protocols.
    assert!(!s.done[0].keep_alive);
    let (r, s) = parse(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r, Ok(Outcome::Continue));
    assert!(s.done[0].keep_alive);
}

/// Each input is refused with a 400 and hands over no request.
fn refused_400(inputs: &[&[u8]]) {
    for req in inputs {
        let (r, s) = parse(req);
        let what = String::from_utf8_lossy(req);
        assert_eq!(r.map_err(|e| e.status), Err(400), "{what:?}");
        assert!(s.done.is_empty(), "{what:?}");
    }
}

/// The fuzz finding: a CONNECT line without a version, ended by a bare LF (or CRLF), with an
/// empty target, was taken as a request with an empty target (then answered 404).
#[test]
fn request_line_without_version_is_400() {
    refused_400(&[
        b"CONNECT \nHost: exaqlc:1\r\n\r\n",
        b"CONNECT \r\nHost: exaqlc:1\r\n\r\n",
        b"CONNECT h:1\r\nHost: h:1\r\n\r\n",
        b"GET /\r\nHost: h\r\n\r\n",
        b"GET /\nHost: h\r\n\r\n",
        b"GET /\r\n\r\n",
    ]);
}

/// RFC 9112 section 3.2: each method's request-target forms (see `target` for the details).
#[test]
fn request_target_forms() {
    let line = |m: &str, t: &str| status(format!("{m} {t} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    for (m, t, want) in [
        ("CONNECT", "h:443", 200),
        ("CONNECT", "[::1]:443", 200),
        ("CONNECT", "h", 400),
        ("CONNECT", "h:", 400),
        ("CONNECT", ":443", 400),
        ("CONNECT", "h:70000", 400),
        ("CONNECT", "/", 400),
        ("CONNECT", "*", 400),
        ("CONNECT", "http://h:1/", 400),
        ("CONNECT", "u@h:1", 400),
        ("GET", "h:443", 400),
        ("GET", "*", 400),
        ("OPTIONS", "*", 200),
        ("OPTIONS", "*x", 400),
        ("GET", "/a?b#c", 400),
        ("GET", "http://h/x", 200),
        ("GET", "http://", 400),
        ("GET", "http://u@h/x", 400),
    ] {
        assert_eq!(line(m, t), want, "{m} {t}");
    }
    // An absolute-form target with an empty path stands for "/".
    let (_, s) = parse(b"GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((s.done[0].path(), s.done[0].query()), ("/", "q=1"));
    let (_, s) = parse(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((s.done[0].path(), s.done[0].target()), ("*", "*"));
}

/// RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing: 400
/// (llhttp refuses it beside a Content-Length by itself).
#[test]
fn transfer_encoding_in_http10_is_400() {
    refused_400(&[
        b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
    ]);
    assert_eq!(
        parse(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").0,
        Err(HttpError {
            status: 400,
            reason: "Transfer-Encoding in an HTTP/1.0 request"
        })
    );
    assert_eq!(
        status(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"),
        200
    );
}

/// Streams the body of requests to paths under /s (limit 10 bytes), collects the others.
#[derive(Default)]
#[allow(clippy::vec_box)]
struct Streams {
    buffered: Vec<Box<RequestData>>,
    heads: Vec<Box<RequestData>>,
}

impl Sink for Streams {
    fn new_request(&mut self) -> Box<RequestData> {
        Box::default()
    }
    fn body_mode(&mut self, req: &RequestData) -> BodyMode {
        if req.path().starts_with("/s") {
            BodyMode::Stream { limit: 10 }
        } else {
            BodyMode::Buffer
        }
    }
    fn head_complete(&mut self, _req: &mut RequestData) -> Result<(), HttpError> {
        Ok(())
    }
    fn stream_start(&mut self, req: Box<RequestData>) {
        self.heads.push(req);
    }
    fn request_complete(&mut self, req: Box<RequestData>) {
        self.buffered.push(req);
    }
}

/// Feeds `input` in pieces of `step` bytes, resuming after each pause; returns what was handed
/// out, in order ("head", "body:<bytes>", "end", "done:<path>" for a buffered request).
fn stream_events(input: &[u8], step: usize) -> (Vec<String>, Result<(), HttpError>, Streams) {
    let mut p = RequestParser::new(Limits::default());
    let mut sink = Streams::default();
    let mut events = Vec::new();
    for piece in input.chunks(step) {
        let mut off = 0;
        loop {
            let before = sink.buffered.len();
            let r = p.execute(&piece[off..], &mut sink);
            for d in &sink.buffered[before..] {
                events.push(format!("done:{}", d.path()));
            }
            match r {
                Ok(Outcome::Continue) => break,
                Ok(Outcome::Streamed { consumed, event }) => {
                    let at = off;
                    off += consumed;
                    events.push(match event {
                        Streamed::Head => "head".to_string(),
                        Streamed::Body(r) => format!(
                            "body:{}",
                            String::from_utf8_lossy(&piece[at + r.start..at + r.end])
                        ),
                        Streamed::End => "end".to_string(),
                    });
                }
                Ok(o) => panic!("{o:?}"),
                Err(e) => return (events, Err(e), sink),
            }
        }
    }
    (events, Ok(()), sink)
}

/// Joins consecutive body events, which depend on how the input was cut.
fn joined(events: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        match (out.last_mut(), e.strip_prefix("body:")) {
            (Some(last), Some(b)) if last.starts_with("body:") => last.push_str(b),
            _ => out.push(e.clone()),
        }
    }
    out
}

#[test]
fn streamed_bodies_are_handed_out_in_order_whole_or_byte_by_byte() {
    let input: &[u8] = b"POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiPOST /s2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET /s3 HTTP/1.1\r\nHost: h\r\n\r\n";
    let want = [
        "head",
        "body:hello",
        "end",
        "done:/b",
        "head",
        "body:abcde",
        "end",
        "done:/s3", // no body: collected, whatever the route
    ];
    for step in [input.len(), 7, 1] {
        let (events, r, sink) = stream_events(input, step);
        assert_eq!(r, Ok(()), "step {step}");
        assert_eq!(joined(&events), want, "step {step}");
        assert_eq!(sink.heads.len(), 2);
        assert_eq!(sink.heads[1].path(), "/s2");
        assert!(sink.heads[0].body().is_empty());
        assert!(sink.heads.iter().all(|h| h.keep_alive));
        assert_eq!(sink.buffered[0].body(), b"hi");
    }
}

/// The C string at `r` in the request's arena (what the C API hands out).
fn c_piece(q: &RequestData, r: &std::ops::Range<usize>) -> Vec<u8> {
    // SAFETY: c_ptr points into the arena at a NUL-terminated piece.
    unsafe { std::ffi::CStr::from_ptr(q.c_ptr(r).cast()) }
        .to_bytes()
        .to_vec()
}

#[test]
fn path_and_query_are_nul_terminated_pieces_in_every_target_form() {
    for (target, path, query) in [
        ("/plain", "/plain", ""),
        ("/p?a=1&b", "/p", "a=1&b"),
        ("/p?", "/p", ""),
        ("http://h:1/x/y", "/x/y", ""),
        ("http://h:1/x?z=1", "/x", "z=1"),
        ("http://h:1", "/", ""),
        ("http://h:1?q", "/", "q"),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let (r, s) = parse(req.as_bytes());
        assert_eq!(r, Ok(Outcome::Continue), "{target}");
        let q = &s.done[0];
        assert_eq!((q.target(), q.path(), q.query()), (target, path, query));
        let [m, t, p, qr] = q.ranges();
        assert_eq!(c_piece(q, &m), b"GET");
        assert_eq!(c_piece(q, &t), target.as_bytes());
        assert_eq!(c_piece(q, &p), path.as_bytes(), "{target}");
        assert_eq!(c_piece(q, &qr), query.as_bytes(), "{target}");
    }
}

#[test]
fn a_streamed_body_has_its_own_limit() {
    // Content-Length above the stream's limit: refused with the head, before any event.
    let (events, r, _) = stream_events(
        b"POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n",
        64,
    );
    assert_eq!(r.map_err(|e| e.status), Err(413));
    assert!(events.is_empty());
    // A chunked body that grows past it: refused mid-way, after what fit.
    let (events, r, _) = stream_events(
        b"POST /s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
        1000,
    );
    assert_eq!(r.map_err(|e| e.status), Err(413));
    assert_eq!(joined(&events), ["head", "body:12345678"]);
    // A buffered route keeps max_body (1 MiB here): 11 bytes are fine.
    let (events, r, _) = stream_events(
        b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
        64,
    );
    assert_eq!((r, events), (Ok(()), vec!["done:/b".to_string()]));
}

#[test]
fn body_remaining_counts_down_a_content_length() {
    let mut p = RequestParser::new(Limits::default());
    let mut sink = Streams::default();
    let input = b"POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabcd";
    let r = p.execute(input, &mut sink).unwrap();
    let Outcome::Streamed { consumed, event } = r else {
        panic!("{r:?}")
    };
    assert_eq!((event, consumed), (Streamed::Head, input.len() - 4));
    assert_eq!(p.body_remaining(), Some(9));
    assert!(p.streaming() && p.in_request());
    let r = p.execute(&input[consumed..], &mut sink).unwrap();
    assert_eq!(
        r,
        Outcome::Streamed {
            consumed: 4,
            event: Streamed::Body(0..4)
        }
    );
    assert_eq!(p.body_remaining(), Some(5));
    assert_eq!(p.execute(b"", &mut sink), Ok(Outcome::Continue));
    let mut p = RequestParser::new(Limits::default());
    let _ = p.execute(
        b"POST /s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        &mut sink,
    );
    assert_eq!(p.body_remaining(), None);
}

#[test]
fn text_accessors_refuse_bytes_that_are_not_utf8() {
    // obs-text in a header value: the head is not ASCII, so each accessor validates its piece.
    let (r, s) =
        parse(b"GET /ok HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n\r\n");
    assert_eq!(r, Ok(Outcome::Continue));
    let q = &s.done[0];
    assert_eq!(q.path(), "/ok");
    assert_eq!(q.header("x-latin"), Some(""));
    assert_eq!(q.header("x-utf8"), Some("café"));
    // A trailer after an ASCII head is appended after the check, and is checked by itself.
    let (r, s) = parse(
        b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: \xff\r\n\r\n",
    );
    assert_eq!(r, Ok(Outcome::Continue));
    let q = &s.done[0];
    assert_eq!(q.path(), "/t");
    assert_eq!(q.header("x-t"), Some(""));
}

#[test]
fn methods_come_from_llhttp_whole_or_split() {
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND",
    ] {
        let req = format!("{m} /x HTTP/1.1\r\nHost: h\r\n\r\n{m} /y HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut p = RequestParser::new(Limits::default());
        let mut sink = Collect::default();
        // The first request whole, the second byte by byte.
        let split = req.len() / 2;
        assert_eq!(
            p.execute(&req.as_bytes()[..split], &mut sink),
            Ok(Outcome::Continue)
        );
        for b in req.as_bytes()[split..].iter() {
            assert_eq!(
                p.execute(std::slice::from_ref(b), &mut sink),
                Ok(Outcome::Continue)
            );
        }
        assert_eq!(sink.done.len(), 2, "{m}");
        for (q, path) in sink.done.iter().zip(["/x", "/y"]) {
            assert_eq!((q.method(), q.path()), (m, path));
            assert_eq!(c_piece(q, &q.ranges()[0]), m.as_bytes());
        }
    }
}

/// What a run of the parser gave, as compared between the fast path and llhttp.
fn seen(input: &[u8], fast: bool) -> (Vec<String>, Option<u16>) {
    let mut p = RequestParser::new(Limits::default());
    p.set_fast_heads(fast);
    let mut sink = Collect::default();
    let status = p.execute(input, &mut sink).err().map(|e| e.status);
    let done = sink
        .done
        .iter()
        .map(|r| {
            let headers: Vec<_> = (0..r.header_count()).map(|i| r.header_at(i)).collect();
            format!(
                "{} {} {} {} {:?} {:?} {} {} {}",
                r.method(),
                r.target(),
                r.path(),
                r.query(),
                headers,
                r.method_code,
                r.version_minor,
                r.keep_alive,
                r.head_ascii
            )
        })
        .collect();
    (done, status)
}

#[test]
fn the_fast_path_takes_no_byte_llhttp_refuses() {
    // Every byte value in the target, a header name and a header value: the fast path either
    // leaves the head to llhttp or gives exactly what llhttp gives.
    let mut taken = 0;
    for b in 0..=255u8 {
        let mut heads: Vec<Vec<u8>> = Vec::new();
        for (pre, post) in [
            (&b"GET /a"[..], &b"b?c HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
            (b"GET /a?", b" HTTP/1.1\r\nHost: x\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX", b"y: z\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX: a", b"b\r\n\r\n"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX: ", b"\r\n\r\n"),
        ] {
            heads.push([pre, &[b][..], post].concat());
        }
        for head in heads {
            let (fast, slow) = (seen(&head, true), seen(&head, false));
            assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(&head));
            taken += fast.0.len();
        }
    }
    assert!(taken > 200, "the fast path was hardly exercised: {taken}");
}
