//! Harnesses shared by the fuzz targets (`fuzz/`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes and panics if an invariant breaks.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use super::parser::{HttpError, Limits, RequestParser, Sink};
use super::request::RequestData;
use super::server::{HttpServer, ServerOptions};
use crate::reactor::{Backend, Loop, LoopOptions, RunMode, Timer};

/// Small limits, so fuzzing reaches them.
fn fuzz_limits() -> Limits {
    Limits {
        max_request_line: 256,
        max_header_bytes: 1024,
        max_headers: 16,
        max_body: 4096,
        max_chunk_ext: 64,
    }
}

/// A parsed request as compared between runs: method, target, headers, body, keep-alive.
type Seen = (String, String, Vec<(String, String)>, Vec<u8>, bool);

#[derive(Default)]
struct Record {
    done: Vec<Seen>,
}

impl Sink for Record {
    fn new_request(&mut self) -> Box<RequestData> {
        Box::default()
    }
    fn head_complete(&mut self, _req: &mut RequestData) -> Result<(), HttpError> {
        Ok(())
    }
    fn request_complete(&mut self, r: Box<RequestData>) {
        let headers = (0..r.header_count())
            .map(|i| {
                let (n, v) = r.header_at(i).unwrap();
                (n.to_string(), v.to_string())
            })
            .collect();
        self.done.push((
            r.method().into(),
            r.target().into(),
            headers,
            r.body().to_vec(),
            r.keep_alive,
        ));
    }
}

type Parsed = (
    Vec<(String, String, Vec<(String, String)>, Vec<u8>, bool)>,
    Option<u16>,
);

fn parse_in_pieces(data: &[u8], cuts: &[usize]) -> Parsed {
    let mut p = RequestParser::new(fuzz_limits());
    let mut sink = Record::default();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let end = end.clamp(start, data.len());
        if let Err(e) = p.execute(&data[start..end], &mut sink) {
            return (sink.done, Some(e.status));
        }
        start = end;
    }
    (sink.done, None)
}

/// The parser wrapper: the same requests, and the same decision to refuse, whether the input
/// arrives whole, in two pieces, or byte by byte; statuses are ones the server is meant to
/// send. (Which refusal wins may depend on the pieces: a too-long target that also holds a
/// bad byte is 414 when the limit is seen first and 400 when the byte is.)
pub fn parser(data: &[u8]) {
    let whole = parse_in_pieces(data, &[]);
    if let Some(s) = whole.1 {
        assert!(
            [400, 413, 414, 417, 431, 501, 505].contains(&s),
            "unexpected status {s}"
        );
    }
    for (m, t, _, body, _) in &whole.0 {
        assert!(!m.is_empty() && !t.is_empty());
        assert!(body.len() <= fuzz_limits().max_body);
    }
    let same = |a: &Parsed, b: &Parsed| a.0 == b.0 && a.1.is_some() == b.1.is_some();
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let split = parse_in_pieces(data, &[cut]);
    assert!(
        same(&whole, &split),
        "split at {cut}: {whole:?} vs {split:?}"
    );
    if data.len() <= 4096 {
        let every: Vec<usize> = (1..data.len()).collect();
        let bytes = parse_in_pieces(data, &every);
        assert!(same(&whole, &bytes), "byte by byte: {whole:?} vs {bytes:?}");
    }
}

/// The server's connection state machine, fed `data` over a real loopback connection (in
/// pieces chosen by the input), then half-closed: the server must answer with well-formed
/// responses only, close the connection, and end with no connection and no request left.
pub fn server(data: &[u8]) {
    check_responses(&server_output(data));
}

/// What the server sent back for `data` (see `server`).
pub fn server_output(data: &[u8]) -> Vec<u8> {
    let lp = Loop::new(LoopOptions {
        backend: Backend::Epoll,
        queue_depth: 64,
    })
    .expect("loop");
    let opts = ServerOptions {
        limits: fuzz_limits(),
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        max_pipeline: 8,
        ..Default::default()
    };
    let srv = HttpServer::new(&lp, opts);
    srv.route(Some("GET"), "/", |r| {
        let _ = r.respond(200, &[(b"Content-Type", b"text/plain")], b"ok");
    });
    srv.route(Some("POST"), "/echo", |r| {
        let body = r.data().body().to_vec();
        let _ = r.respond(200, &[], &body);
    });
    srv.route(None, "/later", |r| {
        let t = std::rc::Rc::new(Timer::new(r.event_loop()));
        let keep = t.clone();
        let mut r = Some(r);
        t.start(Duration::from_millis(1), None, move || {
            let _ = &keep;
            if let Some(r) = r.take() {
                let _ = r.respond(202, &[], b"later");
            }
        });
    });
    srv.route_prefix(None, "/chunk", |r| {
        if let Ok(w) = r.respond_chunked(200, &[]) {
            let _ = w.write(b"a");
            let _ = w.write(b"bc");
            let _ = w.end();
        }
    });
    let addr: SocketAddr = srv.listen("127.0.0.1:0".parse().unwrap()).expect("listen");
    let input = data.to_vec();
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let step = input.first().map_or(1, |&b| 1 + b as usize % 64);
        for piece in input.chunks(step) {
            if s.write_all(piece).is_err() {
                break;
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    });
    // Run until the client has its answers and the server has closed the connection.
    let remote = lp.remote();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let watcher = std::thread::spawn(move || {
        let out = client.join().unwrap();
        d2.store(true, std::sync::atomic::Ordering::SeqCst);
        remote.stop();
        out
    });
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        lp.run(RunMode::Once).unwrap();
    }
    let out = watcher.join().unwrap();
    let stopped = std::rc::Rc::new(std::cell::Cell::new(false));
    let s2 = stopped.clone();
    srv.shutdown(Duration::from_secs(1), move || s2.set(true));
    while !stopped.get() {
        lp.run(RunMode::Once).unwrap();
    }
    assert_eq!(srv.connections(), 0);
    assert_eq!(srv.active_requests(), 0);
    out
}

/// Every byte the server sent belongs to a well-formed HTTP/1.1 response.
fn check_responses(mut out: &[u8]) {
    while !out.is_empty() {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("complete response head");
        let head = std::str::from_utf8(&out[..end]).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status: u16 = status_line[9..12].parse().expect("status code");
        let mut len = None;
        let mut chunked = false;
        for l in lines {
            let (n, v) = l.split_once(": ").expect("header line");
            assert!(!v.contains('\r') && !v.contains('\n'));
            if n.eq_ignore_ascii_case("content-length") {
                len = Some(v.parse::<usize>().expect("length"));
            }
            if n.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v == "chunked";
            }
        }
        out = &out[end + 4..];
        if status == 100 {
            continue;
        }
        if chunked {
            loop {
                let e = out
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("chunk size line");
                let size = usize::from_str_radix(std::str::from_utf8(&out[..e]).unwrap(), 16)
                    .expect("chunk size");
                out = &out[e + 2 + size + 2..];
                if size == 0 {
                    break;
                }
            }
        } else {
            let n = len.expect("Content-Length or chunked");
            // A HEAD response has a length but no body: accept either.
            if out.len() >= n && !out[..n].starts_with(b"HTTP/1.1 ") || n == 0 {
                out = &out[n..];
            }
        }
    }
}

/// The client's response parser: the same outcome whole or byte by byte, and a streamed body
/// equal to the collected one.
pub fn response_parser(data: &[u8]) {
    use super::response_parser::ResponseParser;
    let head = data.first().is_some_and(|b| b & 1 == 1);
    let run = |pieces: &[&[u8]], streaming: bool| {
        let mut p = ResponseParser::new(4096);
        p.expect(head, streaming);
        let mut streamed = Vec::new();
        for piece in pieces {
            match p.feed(piece) {
                Ok(Some(r)) => {
                    streamed.extend(p.take_chunk());
                    return (Ok(Some(r)), streamed);
                }
                Ok(None) => streamed.extend(p.take_chunk()),
                Err(e) => return (Err(e), streamed),
            }
        }
        (p.finish(), streamed)
    };
    let whole = run(&[data], false);
    if data.len() <= 4096 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(whole, run(&bytes, false), "byte by byte");
    }
    if let (Ok(Some(r)), _) = &whole {
        assert!(r.body.len() <= 4096);
        let (s, chunks) = run(&[data], true);
        let s = s
            .expect("streaming accepts what collecting accepts")
            .expect("complete");
        assert_eq!(
            (s.status, &s.headers, s.body.len()),
            (r.status, &r.headers, 0)
        );
        assert_eq!(chunks, r.body, "streamed body equals collected body");
    }
}
