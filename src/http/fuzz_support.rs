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

/// What else of a request the fast path and llhttp must agree on: path, query, llhttp's method
/// code, minor version, upgrade, 100-continue, and whether the head was found to be ASCII.
type SeenMore = (String, String, Option<u8>, u8, bool, bool, bool);

#[derive(Default)]
struct Record {
    done: Vec<Seen>,
    more: Vec<SeenMore>,
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
        self.more.push((
            r.path().into(),
            r.query().into(),
            r.method_code,
            r.version_minor,
            r.upgrade,
            r.expect_continue,
            r.head_ascii,
        ));
    }
}

type Parsed = (Vec<Seen>, Option<u16>);

fn parse_in_pieces(data: &[u8], cuts: &[usize]) -> Parsed {
    let (done, _, status) = parse_with(data, cuts, true);
    (done, status)
}

/// Parses `data` cut at `cuts`, with the fast path on or off.
fn parse_with(data: &[u8], cuts: &[usize], fast: bool) -> (Vec<Seen>, Vec<SeenMore>, Option<u16>) {
    let mut p = RequestParser::new(fuzz_limits());
    p.set_fast_heads(fast);
    let mut sink = Record::default();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let end = end.clamp(start, data.len());
        if let Err(e) = p.execute(&data[start..end], &mut sink) {
            return (sink.done, sink.more, Some(e.status));
        }
        start = end;
    }
    (sink.done, sink.more, None)
}

/// The parser wrapper: the same requests, and the same decision to refuse, whether the input
/// arrives whole, in two pieces, or byte by byte; statuses are ones the server is meant to
/// send. (Which refusal wins may depend on the pieces: a too-long target that also holds a
/// bad byte is 414 when the limit is seen first and 400 when the byte is.) With the fast path
/// off, every head goes through llhttp: the requests, what is known of each and the refusal
/// are exactly those of the fast path's run.
pub fn parser(data: &[u8]) {
    let fast = parse_with(data, &[], true);
    let llhttp = parse_with(data, &[], false);
    assert_eq!(fast, llhttp, "the fast path and llhttp differ");
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

/// The server both connection harnesses drive: small limits; answers at once (`/`, `/echo`),
/// from a timer (`/later`), on the next loop turn (`/next`), chunked (`/chunk`), and large
/// enough to meet backpressure (`/big`).
fn fuzz_server(lp: &Loop, opts: ServerOptions) -> HttpServer {
    let srv = HttpServer::new(lp, opts);
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
    srv.route(None, "/next", |r| {
        let lp = r.event_loop().clone();
        lp.defer(move || {
            let _ = r.respond(200, &[], b"next");
        });
    });
    srv.route(Some("GET"), "/big", |r| {
        let _ = r.respond(200, &[], &[b'b'; 20000]);
    });
    srv
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
    let srv = fuzz_server(&lp, opts);
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
    srv.shutdown(Duration::from_secs(1), move || s2.set(true))
        .expect("first shutdown");
    while !stopped.get() {
        lp.run(RunMode::Once).unwrap();
    }
    assert_eq!(srv.connections(), 0);
    assert_eq!(srv.active_requests(), 0);
    out
}

/// The harness's end of an in-process connection: a non-blocking Unix stream socket.
struct PeerEnd {
    fd: std::os::fd::OwnedFd,
    /// Everything the server sent, in order.
    received: Vec<u8>,
    eof: bool,
}

impl PeerEnd {
    /// Sends what the socket takes now; `None` once the server has gone away.
    fn send(&self, data: &[u8]) -> Option<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: data is valid for data.len() bytes; the fd is ours and open.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Some(n as usize);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => Some(0),
            _ => None,
        }
    }

    /// Reads up to `max` bytes of what the server sent.
    fn read(&mut self, max: usize) {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4096];
        let mut left = max;
        while left > 0 && !self.eof {
            let want = left.min(buf.len());
            // SAFETY: buf is valid for `want` bytes; the fd is ours and open.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    want,
                    libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => self.eof = true,
                n if n > 0 => {
                    self.received.extend_from_slice(&buf[..n as usize]);
                    left -= n as usize;
                }
                _ => match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    _ => self.eof = true, // reset: the server aborted the connection
                },
            }
        }
    }

    fn half_close(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on our open fd.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_WR) };
    }
}

/// A connected pair of non-blocking Unix stream sockets with small buffers: (ours, theirs).
fn socket_pair() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    for fd in fds {
        // Small buffers, so backpressure is reached within a few requests.
        let _ = crate::net::socket::set_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4096);
    }
    // SAFETY: both descriptors are new and owned only here.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// The server's connection state machine over an in-process transport, driven step by step
/// on one thread: the server serves one end of a Unix socketpair, the harness holds the other
/// and interleaves its own moves with single turns of the loop, as the input says. The first
/// byte is the length of a schedule, the schedule follows, the rest is what the client sends.
/// Each schedule byte is one move: send the next 1..=32 bytes; run one loop turn; read some of
/// the output (or not: the server meets backpressure); half-close; or reset (close with
/// unread data) and stop. Afterwards the rest is sent, the client half-closes, and reads.
///
/// Invariants: without a reset, the output is whole, well-formed HTTP/1.1 responses and the
/// server closes the connection after the half-close; in every case the server ends with no
/// connection and no request.
pub fn connection(data: &[u8]) {
    if let Some(out) = connection_output(data) {
        check_responses(&out);
    }
}

/// What the server sent back in `connection`; `None` when the schedule reset the connection.
pub fn connection_output(data: &[u8]) -> Option<Vec<u8>> {
    let lp = Loop::new(LoopOptions {
        backend: Backend::Epoll,
        queue_depth: 64,
    })
    .expect("loop");
    let opts = ServerOptions {
        limits: fuzz_limits(),
        max_pipeline: 4,
        max_output: 8192,
        ..Default::default()
    };
    let srv = fuzz_server(&lp, opts);
    let (ours, theirs) = socket_pair();
    srv.serve_fd(theirs).expect("serve_fd");
    let mut peer = Some(PeerEnd {
        fd: ours,
        received: Vec::new(),
        eof: false,
    });
    let (schedule, mut payload): (&[u8], &[u8]) = match data.split_first() {
        Some((&k, rest)) => rest.split_at((k as usize % 64).min(rest.len())),
        None => (&[], &[]),
    };
    let mut half_closed = false;
    let turn = || {
        lp.run(RunMode::NoWait).expect("loop turn");
    };
    for &step in schedule {
        let Some(p) = peer.as_mut() else { break };
        let arg = (step >> 3) as usize;
        match step & 7 {
            0 | 1 if !half_closed => {
                let n = (1 + arg).min(payload.len());
                match p.send(&payload[..n]) {
                    Some(sent) => payload = &payload[sent..],
                    None => payload = &[],
                }
            }
            2 | 3 => turn(),
            4 => p.read(64 << (arg & 7)),
            5 if !half_closed => {
                p.half_close();
                half_closed = true;
            }
            6 if arg & 3 == 0 => {
                // Reset: close our end, possibly with unread output.
                peer = None;
            }
            _ => turn(),
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    if let Some(p) = peer.as_mut() {
        // The rest of the request bytes, then a half-close; read until the server closes.
        while !payload.is_empty() && !half_closed {
            match p.send(payload) {
                Some(sent) => payload = &payload[sent..],
                None => break,
            }
            turn();
            p.read(usize::MAX);
            if p.eof {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server stopped taking requests"
            );
        }
        p.half_close();
        while !p.eof {
            turn();
            p.read(usize::MAX);
            if !p.eof {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the server did not close a half-closed connection: {:?}",
                    String::from_utf8_lossy(&p.received)
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    let out = peer.take().map(|p| p.received);
    while srv.connections() > 0 {
        turn();
        assert!(
            std::time::Instant::now() < deadline,
            "the server kept a connection the client closed"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    let stopped = std::rc::Rc::new(std::cell::Cell::new(false));
    let s2 = stopped.clone();
    srv.shutdown(Duration::from_secs(1), move || s2.set(true))
        .expect("first shutdown");
    while !stopped.get() {
        lp.run(RunMode::Once).unwrap();
    }
    assert_eq!(srv.active_requests(), 0);
    out
}

/// Every byte the server sent belongs to a well-formed HTTP/1.1 response. A HEAD response
/// has a length but no body, and the output alone does not say which requests were HEAD: a
/// response with a length is read with its body, or else without one, whichever lets the rest
/// parse (positions known to fail are not tried twice).
fn check_responses(out: &[u8]) {
    let mut failed = std::collections::HashSet::new();
    if let Err(e) = check_from(out, 0, &mut failed) {
        panic!("{e}: {:?}", String::from_utf8_lossy(out));
    }
}

/// Where a chunked body starting at `at` ends (after its last chunk's CRLF).
fn chunked_end(out: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let e = out[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line")?;
        let size = std::str::from_utf8(&out[at..at + e])
            .ok()
            .and_then(|t| usize::from_str_radix(t, 16).ok())
            .ok_or("bad chunk size")?;
        at += e + 2 + size + 2;
        if at > out.len() {
            return Err("truncated chunk".into());
        }
        if size == 0 {
            return Ok(at);
        }
    }
}

fn check_from(
    out: &[u8],
    pos: usize,
    failed: &mut std::collections::HashSet<usize>,
) -> Result<(), String> {
    if pos == out.len() {
        return Ok(());
    }
    let rest = &out[pos..];
    let end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete response head")?;
    let head = std::str::from_utf8(&rest[..end]).map_err(|_| "head not ASCII")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.1 ") || status_line.len() < 12 {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = status_line[9..12]
        .parse()
        .map_err(|_| format!("bad status code in {status_line:?}"))?;
    let mut len = None;
    let mut chunked = false;
    for l in lines {
        let (n, v) = l.split_once(": ").ok_or(format!("bad header line {l:?}"))?;
        if v.contains('\r') || v.contains('\n') {
            return Err(format!("CR or LF in {l:?}"));
        }
        if n.eq_ignore_ascii_case("content-length") {
            len = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("bad length {v:?}"))?,
            );
        }
        if n.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v == "chunked";
        }
    }
    let body = pos + end + 4;
    let mut next = Vec::new();
    let mut err_chunked = None;
    if status == 100 {
        next.push(body);
    } else if chunked {
        match chunked_end(out, body) {
            Ok(at) => next.push(at),
            Err(e) => err_chunked = Some(e),
        }
        next.push(body); // a HEAD response: the framing a GET would have, no body
    } else {
        let n = len.ok_or("neither Content-Length nor chunked")?;
        if body + n <= out.len() {
            next.push(body + n);
        }
        if n > 0 {
            next.push(body); // a HEAD response
        }
    }
    let mut err = err_chunked.unwrap_or(format!("no way to read on after the response at {pos}"));
    for at in next {
        if failed.contains(&at) {
            continue;
        }
        match check_from(out, at, failed) {
            Ok(()) => return Ok(()),
            Err(e) => {
                failed.insert(at);
                err = e;
            }
        }
    }
    Err(err)
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
            if !streaming {
                match p.feed(piece) {
                    Ok(Some(r)) => return (Ok(Some(r)), streamed),
                    Ok(None) => {}
                    Err(e) => return (Err(e), streamed),
                }
                continue;
            }
            let mut off = 0;
            loop {
                let step = match p.feed_stream(&piece[off..]) {
                    Ok(s) => s,
                    Err(e) => return (Err(e), streamed),
                };
                if let Some(r) = &step.body {
                    assert!(!r.is_empty(), "empty body span");
                    streamed.extend_from_slice(&piece[off + r.start..off + r.end]);
                }
                off += step.consumed;
                if step.done {
                    return (Ok(p.take_done()), streamed);
                }
                if !step.head && step.body.is_none() {
                    break;
                }
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
