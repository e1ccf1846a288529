//! Streamed request bodies and paced chunked responses in the HTTP server core, on both
//! backends, against a plain blocking client on another thread: backpressure on uploads,
//! `Expect: 100-continue` answered only when the handler reads, early answers (discard and
//! keep alive, or close), limits, a client that leaves or stalls mid-body, and a chunked
//! download produced only as fast as the client reads.

#[path = "common_backends.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use asyncloop::error::Error;
use asyncloop::http::{BodyEvent, ChunkedWriter, HttpServer, Request, ServerOptions};
use asyncloop::reactor::{Backend, Loop, RunMode, Timer};

/// Runs `srv`'s loop until `client` (on another thread) returns, then shuts the server down.
fn run_with_client<T: Send + 'static>(
    lp: &Loop,
    srv: &HttpServer,
    client: impl FnOnce() -> T + Send + 'static,
) -> T {
    let done = Arc::new(AtomicBool::new(false));
    let (d2, remote) = (done.clone(), lp.remote());
    let th = std::thread::spawn(move || {
        let r = client();
        d2.store(true, Ordering::SeqCst);
        remote.stop();
        r
    });
    while !done.load(Ordering::SeqCst) {
        lp.run(RunMode::Once).unwrap();
    }
    let r = th.join().unwrap();
    let stopped = Rc::new(Cell::new(false));
    let s2 = stopped.clone();
    srv.shutdown(Duration::from_secs(1), move || s2.set(true))
        .unwrap();
    while !stopped.get() {
        lp.run(RunMode::Once).unwrap();
    }
    r
}

/// A request shared between a handler and its callbacks.
type Shared = Rc<RefCell<Option<Request>>>;

fn answer(req: &Shared, status: u16, body: &[u8]) {
    if let Some(r) = req.borrow_mut().take() {
        let _ = r.respond(status, &[(b"Content-Type", b"text/plain")], body);
    }
}

/// FNV-1a, to compare what was sent with what the handler saw.
fn fnv(h: &mut u64, data: &[u8]) {
    for &b in data {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// The body byte at offset `i`.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A server with `/up` (streamed, no limit: counts and hashes the body, pausing 20 ms after
/// every 256 KiB, answers "bytes hash"), `/small` (streamed, limit 1000), `/early` (streamed:
/// answers at once without reading) and `/hello` (buffered).
fn server(b: Backend, opts: ServerOptions) -> (Loop, HttpServer, SocketAddr) {
    let lp = common::new_loop(b);
    let srv = HttpServer::new(&lp, opts);
    let lp2 = lp.clone();
    srv.route_streaming(Some("POST"), "/up", 0, move |r| {
        let req: Shared = Rc::new(RefCell::new(Some(r)));
        let (count, hash, since_pause) = (
            Rc::new(Cell::new(0usize)),
            Rc::new(Cell::new(FNV0)),
            Rc::new(Cell::new(0usize)),
        );
        let (paused, late) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(0usize)));
        let timer = Rc::new(Timer::new(&lp2));
        let (req2, timer2) = (req.clone(), timer.clone());
        let r = req
            .borrow()
            .as_ref()
            .unwrap()
            .read_body(move |ev| match ev {
                BodyEvent::Data(d) => {
                    if paused.get() {
                        late.set(late.get() + 1); // an event while paused
                    }
                    count.set(count.get() + d.len());
                    let mut h = hash.get();
                    fnv(&mut h, d);
                    hash.set(h);
                    since_pause.set(since_pause.get() + d.len());
                    if since_pause.get() >= 256 * 1024 {
                        since_pause.set(0);
                        let (q, p) = (req2.clone(), paused.clone());
                        q.borrow().as_ref().unwrap().pause_body().unwrap();
                        p.set(true);
                        timer2.start(Duration::from_millis(20), None, move || {
                            if let Some(r) = q.borrow().as_ref() {
                                p.set(false);
                                r.resume_body().unwrap();
                            }
                        });
                    }
                }
                BodyEvent::End => {
                    let text = format!("{} {:x} late={}", count.get(), hash.get(), late.get());
                    answer(&req2, 200, text.as_bytes());
                }
                BodyEvent::Error(e) => {
                    let status = if e == Error::HTTP_TOO_LARGE { 413 } else { 400 };
                    answer(&req2, status, format!("{e:?}").as_bytes());
                }
            });
        assert_eq!(r, Ok(()));
        // The timer lives as long as the request's callbacks.
        std::mem::forget(timer);
    });
    // Pauses after every piece (the last one included) and resumes 1 ms later.
    let lp3 = lp.clone();
    srv.route_streaming(Some("POST"), "/each", 0, move |r| {
        let req: Shared = Rc::new(RefCell::new(Some(r)));
        let (req2, n) = (req.clone(), Rc::new(Cell::new(0usize)));
        let timer = Rc::new(Timer::new(&lp3));
        let timer2 = timer.clone();
        req.borrow()
            .as_ref()
            .unwrap()
            .read_body(move |ev| match ev {
                BodyEvent::Data(d) => {
                    n.set(n.get() + d.len());
                    let q = req2.clone();
                    q.borrow().as_ref().unwrap().pause_body().unwrap();
                    timer2.start(Duration::from_millis(1), None, move || {
                        if let Some(r) = q.borrow().as_ref() {
                            r.resume_body().unwrap();
                        }
                    });
                }
                BodyEvent::End => answer(&req2, 200, n.get().to_string().as_bytes()),
                BodyEvent::Error(e) => answer(&req2, 400, format!("{e:?}").as_bytes()),
            })
            .unwrap();
        std::mem::forget(timer);
    });
    srv.route_streaming(Some("POST"), "/small", 1000, move |r| {
        let req: Shared = Rc::new(RefCell::new(Some(r)));
        let (req2, n) = (req.clone(), Rc::new(Cell::new(0usize)));
        req.borrow()
            .as_ref()
            .unwrap()
            .read_body(move |ev| match ev {
                BodyEvent::Data(d) => n.set(n.get() + d.len()),
                BodyEvent::End => answer(&req2, 200, n.get().to_string().as_bytes()),
                BodyEvent::Error(e) => {
                    let status = if e == Error::HTTP_TOO_LARGE { 413 } else { 400 };
                    answer(&req2, status, format!("{e:?} after {}", n.get()).as_bytes());
                }
            })
            .unwrap();
    });
    srv.route_streaming(Some("POST"), "/early", 0, |r| {
        assert_eq!(
            r.data().body(),
            b"",
            "a streamed request has no collected body"
        );
        let _ = r.respond(403, &[], b"no thanks");
    });
    srv.route(Some("GET"), "/hello", |r| {
        assert_eq!(r.read_body(|_| {}), Err(Error::INVALID));
        let _ = r.respond(200, &[], b"hello");
    });
    let addr = srv.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    (lp, srv, addr)
}

fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads one response with a Content-Length body: (head, body).
fn read_response(s: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end + 4].to_vec()).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            let len = if head.starts_with("HTTP/1.1 100 ") {
                0
            } else {
                len
            };
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 65536];
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "closed mid-body: {head}");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return (head, body);
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Closes with a reset (SO_LINGER 0) instead of a FIN.
fn reset(s: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and option value of the stated size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

fn closed(s: &mut std::net::TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(s.read_to_end(&mut rest), Ok(_) | Err(_)) && rest.is_empty()
}

/// 24 MiB with Content-Length, sent as fast as possible while the handler pauses every
/// 256 KiB: every byte arrives, in order, and the connection stays usable.
fn upload_with_backpressure(b: Backend) {
    let (lp, srv, addr) = server(b, ServerOptions::default());
    let total = 24 << 20;
    let (head, body, next) = run_with_client(&lp, &srv, move || {
        let mut s = connect(addr);
        let mut w = s.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            w.write_all(
                format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            let block: Vec<u8> = (0..1 << 20).map(pattern).collect();
            for _ in 0..total >> 20 {
                w.write_all(&block).unwrap();
            }
            w.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
        });
        let mut buf = Vec::new();
        let (head, body) = read_response(&mut s, &mut buf);
        let next = read_response(&mut s, &mut buf);
        sender.join().unwrap();
        (head, body, next)
    });
    let mut h = FNV0;
    for _ in 0..total >> 20 {
        let block: Vec<u8> = (0..1 << 20).map(pattern).collect();
        fnv(&mut h, &block);
    }
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("{total} {h:x} late=0")
    );
    assert!(next.0.starts_with("HTTP/1.1 200 "), "{}", next.0);
    assert_eq!(next.1, b"hello");
}

/// A reader paused by the body's last bytes still gets the end when it resumes: the client has
/// sent everything and waits, so nothing more arrives to move the parser on (it used to hang).
fn pause_at_the_last_piece(b: Backend) {
    let (lp, srv, addr) = server(b, ServerOptions::default());
    let answers = run_with_client(&lp, &srv, move || {
        let mut s = connect(addr);
        let mut buf = Vec::new();
        let mut answers = Vec::new();
        for total in [1usize, 5000, 300_000] {
            s.write_all(
                format!("POST /each HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            s.write_all(&vec![b'e'; total]).unwrap();
            let (head, body) = read_response(&mut s, &mut buf);
            answers.push((head.split("\r\n").next().unwrap().to_string(), body));
        }
        answers
    });
    for (got, total) in answers.iter().zip([1usize, 5000, 300_000]) {
        assert_eq!(got.0, "HTTP/1.1 200 OK");
        assert_eq!(got.1, total.to_string().as_bytes());
    }
}

/// A chunked upload, cut in odd places, reaches the reader whole.
fn chunked_upload(b: Backend) {
    let (lp, srv, addr) = server(b, ServerOptions::default());
    let (head, body) = run_with_client(&lp, &srv, move || {
        let mut s = connect(addr);
        let mut msg =
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut off = 0;
        for size in [1usize, 7, 4096, 100_000, 3] {
            msg.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            msg.extend((off..off + size).map(pattern));
            msg.extend_from_slice(b"\r\n");
            off += size;
        }
        msg.extend_from_slice(b"0\r\n\r\n");
        for piece in msg.chunks(777) {
            s.write_all(piece).unwrap();
        }
        read_response(&mut s, &mut Vec::new())
    });
    let sent: Vec<u8> = (0..104_107).map(pattern).collect();
    let mut h = FNV0;
    fnv(&mut h, &sent);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("104107 {h:x} late=0")
    );
}

/// `100 Continue` goes out only when the handler starts reading, which here waits for the
/// client's word (posted to the loop): before that, the client gets nothing.
fn expect_continue_waits_for_the_reader(b: Backend) {
    let lp = common::new_loop(b);
    let srv = HttpServer::new(&lp, ServerOptions::default());
    thread_local! {
        static HELD: RefCell<Option<Shared>> = const { RefCell::new(None) };
    }
    srv.route_streaming(Some("PUT"), "/later", 0, |r| {
        HELD.with(|h| *h.borrow_mut() = Some(Rc::new(RefCell::new(Some(r)))));
    });
    let addr = srv.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let remote = lp.remote();
    let (silent, continued, resp) = run_with_client(&lp, &srv, move || {
        let mut s = connect(addr);
        s.write_all(
            b"PUT /later HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut probe = [0u8; 64];
        let silent = matches!(s.read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        remote
            .post(Box::new(|| {
                HELD.with(|h| {
                    let req = h.borrow().clone().unwrap();
                    let req2 = req.clone();
                    let got = Rc::new(RefCell::new(Vec::new()));
                    req.borrow()
                        .as_ref()
                        .unwrap()
                        .read_body(move |ev| match ev {
                            BodyEvent::Data(d) => got.borrow_mut().extend_from_slice(d),
                            BodyEvent::End => {
                                let body = got.borrow().clone();
                                answer(&req2, 200, &body);
                            }
                            BodyEvent::Error(_) => answer(&req2, 400, b""),
                        })
                        .unwrap();
                });
            }))
            .map_err(|_| ())
            .unwrap();
        let mut buf = Vec::new();
        let (cont, _) = read_response(&mut s, &mut buf);
        s.write_all(b"howdy").unwrap();
        let resp = read_response(&mut s, &mut buf);
        (silent, cont, resp)
    });
    assert!(silent, "the server answered before the handler read");
    assert!(
        continued.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{continued}"
    );
    assert!(resp.0.starts_with("HTTP/1.1 200 "), "{}", resp.0);
    assert_eq!(resp.1, b"howdy");
}

/// An answer before the body: a small rest (known length) is discarded and the connection
/// stays open; a big one, or an `Expect` never answered with 100, closes it after the answer,
/// which still arrives whole while the client goes on sending.
fn early_answers(b: Backend) {
    let (lp, srv, addr) = server(b, ServerOptions::default());
    let (small, big, expect) = run_with_client(&lp, &srv, move || {
        // Small: 10 KiB announced, sent after the answer; then another request.
        let mut s = connect(addr);
        s.write_all(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10240\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let first = read_response(&mut s, &mut buf);
        s.write_all(&vec![b'z'; 10240]).unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let second = read_response(&mut s, &mut buf);
        // Big: 64 MiB announced and sent by another thread while the answer is read.
        let mut s2 = connect(addr);
        let mut w = s2.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let _ =
                w.write_all(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n");
            let block = vec![b'q'; 1 << 20];
            for _ in 0..64 {
                if w.write_all(&block).is_err() {
                    break;
                }
            }
        });
        let big = read_response(&mut s2, &mut Vec::new());
        let big_closed = closed(&mut s2);
        sender.join().unwrap();
        // Expect: 100-continue, answered without reading: the body may never come.
        let mut s3 = connect(addr);
        s3.write_all(b"POST /early HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
            .unwrap();
        let expect = read_response(&mut s3, &mut Vec::new());
        let expect_closed = closed(&mut s3);
        ((first, second), (big, big_closed), (expect, expect_closed))
    });
    let ((first, second), (big, big_closed), (expect, expect_closed)) = (small, big, expect);
    assert!(first.0.starts_with("HTTP/1.1 403 "), "{}", first.0);
    assert!(!first.0.contains("Connection: close"), "{}", first.0);
    assert_eq!(
        (second.0.starts_with("HTTP/1.1 200 "), &second.1[..]),
        (true, &b"hello"[..])
    );
    assert!(
        big.0.starts_with("HTTP/1.1 403 ") && big.0.contains("\r\nConnection: close\r\n"),
        "{}",
        big.0
    );
    assert_eq!(big.1, b"no thanks");
    assert!(big_closed);
    assert!(
        expect.0.starts_with("HTTP/1.1 403 ") && expect.0.contains("\r\nConnection: close\r\n"),
        "{}",
        expect.0
    );
    assert!(expect_closed);
}

/// Limits: a Content-Length over the route's limit is refused before the handler; a chunked
/// body that grows past it gives the reader HTTP_TOO_LARGE, and the answer closes.
fn streamed_limits(b: Backend) {
    let (lp, srv, addr) = server(b, ServerOptions::default());
    let (declared, grown) = run_with_client(&lp, &srv, move || {
        let mut s = connect(addr);
        s.write_all(b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
            .unwrap();
        let declared = read_response(&mut s, &mut Vec::new());
        let mut s = connect(addr);
        let mut msg =
            b"POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            msg.extend_from_slice(b"190\r\n");
            msg.extend_from_slice(&[b'a'; 400]);
            msg.extend_from_slice(b"\r\n");
        }
        msg.extend_from_slice(b"0\r\n\r\n");
        s.write_all(&msg).unwrap();
        let grown = read_response(&mut s, &mut Vec::new());
        (declared, (grown, closed(&mut s)))
    });
    assert!(declared.0.starts_with("HTTP/1.1 413 "), "{}", declared.0);
    let ((head, body), was_closed) = grown;
    assert!(
        head.starts_with("HTTP/1.1 413 ") && head.contains("Connection: close"),
        "{head}"
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("ALOOP_E_HTTP_TOO_LARGE"), "{text}");
    assert!(text.ends_with("after 800"), "{text}");
    assert!(was_closed);
}

/// A client that resets mid-body: the reader gets CANCELLED; one that closes (FIN) mid-body:
/// HTTP_PROTOCOL (truncated); one that stalls: TIMEOUT after the body timeout (a stall
/// timeout: the slow trickle before it does not count).
fn client_leaves_or_stalls_mid_body(b: Backend) {
    let opts = ServerOptions {
        body_timeout: Duration::from_millis(400),
        ..Default::default()
    };
    let lp = common::new_loop(b);
    let srv = HttpServer::new(&lp, opts);
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let seen2 = seen.clone();
    srv.route_streaming(Some("POST"), "/watch", 0, move |r| {
        let req: Shared = Rc::new(RefCell::new(Some(r)));
        let (req2, seen3, n) = (req.clone(), seen2.clone(), Rc::new(Cell::new(0)));
        req.borrow()
            .as_ref()
            .unwrap()
            .read_body(move |ev| match ev {
                BodyEvent::Data(d) => n.set(n.get() + d.len()),
                BodyEvent::End => answer(&req2, 200, b""),
                BodyEvent::Error(e) => {
                    seen3.borrow_mut().push(format!("{e:?} after {}", n.get()));
                    answer(&req2, 408, b"");
                }
            })
            .unwrap();
    });
    let addr = srv.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let stalled = run_with_client(&lp, &srv, move || {
        let mut s = connect(addr);
        s.write_all(b"POST /watch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(s); // FIN mid-body
        let s = connect(addr);
        (&s).write_all(b"POST /watch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n01234")
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        reset(s);
        let mut s = connect(addr);
        s.write_all(b"POST /watch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            .unwrap();
        for _ in 0..6 {
            s.write_all(b"abcde").unwrap(); // a trickle, well inside the stall timeout
            std::thread::sleep(Duration::from_millis(150));
        }
        read_response(&mut s, &mut Vec::new()).0
    });
    assert!(stalled.starts_with("HTTP/1.1 408 "), "{stalled}");
    let seen = seen.borrow();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.contains(&"ALOOP_E_HTTP_PROTOCOL(-10201) after 10".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"ALOOP_E_CANCELLED(-10003) after 5".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"ALOOP_E_TIMEOUT(-10011) after 30".to_string()),
        "{seen:?}"
    );
}

/// A 64 MiB chunked download written a piece at a time from the drain callback: while the
/// client does not read, the producer stops (the bytes made are bounded by the kernel's socket
/// buffers, not the body); once it reads, all of it arrives, in order.
fn paced_chunked_download(b: Backend) {
    let lp = common::new_loop(b);
    let srv = HttpServer::new(&lp, ServerOptions::default());
    let produced = Arc::new(AtomicUsize::new(0));
    let p2 = produced.clone();
    srv.route(Some("GET"), "/download", move |r| {
        const TOTAL: usize = 64 << 20;
        const PIECE: usize = 64 * 1024;
        let w: Rc<RefCell<Option<ChunkedWriter>>> =
            Rc::new(RefCell::new(Some(r.respond_chunked(200, &[]).unwrap())));
        let (w2, made, p3) = (w.clone(), Rc::new(Cell::new(0usize)), p2.clone());
        w.borrow()
            .as_ref()
            .unwrap()
            .on_drain(move || {
                let start = made.get();
                if start >= TOTAL {
                    if let Some(w) = w2.borrow_mut().take() {
                        w.end().unwrap();
                    }
                    return;
                }
                let piece: Vec<u8> = (start..start + PIECE).map(pattern).collect();
                if w2.borrow().as_ref().unwrap().write(&piece).is_err() {
                    w2.borrow_mut().take();
                    return;
                }
                made.set(start + PIECE);
                p3.store(start + PIECE, Ordering::SeqCst);
            })
            .unwrap();
    });
    let addr = srv.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let p4 = produced.clone();
    let (before_reading, got, ok) = run_with_client(&lp, &srv, move || {
        let mut s = connect(addr);
        s.write_all(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let before = p4.load(Ordering::SeqCst);
        // Decode the chunked body, checking every byte.
        let mut raw = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        let mut body_off = 0usize;
        let mut ok = true;
        let mut head_done = false;
        loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed early");
            raw.extend_from_slice(&chunk[..n]);
            if !head_done {
                let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                raw.drain(..end + 4);
                head_done = true;
            }
            while let Some(nl) = raw.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&raw[..nl]).unwrap(), 16).unwrap();
                if raw.len() < nl + 2 + size + 2 {
                    break;
                }
                if size == 0 {
                    return (before, body_off, ok);
                }
                for (i, &byte) in raw[nl + 2..nl + 2 + size].iter().enumerate() {
                    ok &= byte == pattern(body_off + i);
                }
                body_off += size;
                raw.drain(..nl + 2 + size + 2);
            }
        }
    });
    assert!(ok, "a byte differs");
    assert_eq!(got, 64 << 20);
    assert!(before_reading > 0, "nothing was produced");
    assert!(
        before_reading < 24 << 20,
        "produced {before_reading} bytes for a client that did not read"
    );
}

both_backends!(
    pause_at_the_last_piece,
    upload_with_backpressure,
    chunked_upload,
    expect_continue_waits_for_the_reader,
    early_answers,
    streamed_limits,
    client_leaves_or_stalls_mid_body,
    paced_chunked_download
);
