//! The HTTP server core on both backends, for what the example binaries cannot set from their
//! command line: the body timeout, the write timeout with a client that never reads, and
//! backpressure (bounded output while a client does not read), and an unsupported upgrade.

#[path = "common_backends.rs"]
mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asyncloop::http::{HttpServer, ServerOptions};
use asyncloop::reactor::{Backend, Loop, RunMode};

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
    let stopped = std::rc::Rc::new(std::cell::Cell::new(false));
    let s2 = stopped.clone();
    srv.shutdown(Duration::from_secs(1), move || s2.set(true))
        .expect("first shutdown");
    while !stopped.get() {
        lp.run(RunMode::Once).unwrap();
    }
    r
}

fn server(b: Backend, opts: ServerOptions) -> (Loop, HttpServer, SocketAddr) {
    let lp = common::new_loop(b);
    let srv = HttpServer::new(&lp, opts);
    srv.route(Some("POST"), "/echo", |r| {
        let body = r.data().body().to_vec();
        let _ = r.respond(200, &[], &body);
    });
    srv.route(Some("GET"), "/hello", |r| {
        let _ = r.respond(200, &[], b"hello");
    });
    srv.route(Some("GET"), "/big", |r| {
        let _ = r.respond(200, &[], &vec![b'x'; 256 * 1024]);
    });
    srv.route(Some("GET"), "/huge", |r| {
        let _ = r.respond(200, &[], &vec![b'y'; 32 << 20]);
    });
    let addr = srv.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    (lp, srv, addr)
}

fn body_timeout_sends_408(b: Backend) {
    let opts = ServerOptions {
        body_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (lp, srv, addr) = server(b, opts);
    let (resp, elapsed) = run_with_client(&lp, &srv, move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            .unwrap();
        let t0 = Instant::now();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        (String::from_utf8(out).unwrap(), t0.elapsed())
    });
    assert!(resp.starts_with("HTTP/1.1 408 "), "{resp}");
    assert!(resp.contains("Connection: close"));
    assert!(
        elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

fn write_timeout_drops_a_client_that_never_reads(b: Backend) {
    let opts = ServerOptions {
        write_timeout: Duration::from_millis(300),
        max_output: 64 * 1024,
        ..Default::default()
    };
    let (lp, srv, addr) = server(b, opts);
    let closed_after = run_with_client(&lp, &srv, move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        // Small receive buffer, many large responses asked for, nothing read for a while.
        let reqs = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(64);
        s.write_all(&reqs).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        // By now the server has given up: reading drains what was sent, then ends.
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t0 = Instant::now();
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        (total, t0.elapsed())
    });
    let (total, drain) = closed_after;
    // Far less than the 16 MiB asked for: output stayed bounded, then the connection ended.
    assert!(
        total < 8 << 20,
        "{total} bytes were queued for a client that did not read"
    );
    assert!(
        drain < Duration::from_secs(3),
        "connection still open after the write timeout"
    );
    assert_eq!(srv.connections(), 0);
}

/// The write timeout measures a stall, not the length of a download: a client that keeps
/// reading, slowly, gets a response that takes ten write timeouts to send.
fn write_timeout_spares_a_slow_reader_that_keeps_reading(b: Backend) {
    // The transfer takes three seconds or more, three times the write timeout: the timeout is
    // a stall limit, not a limit on the whole response. The reader reads every 100 ms, ten
    // times more often than the timeout needs, so a loaded machine's scheduling delays do not
    // look like a stall.
    let opts = ServerOptions {
        write_timeout: Duration::from_millis(1000),
        ..Default::default()
    };
    let (lp, srv, addr) = server(b, opts);
    let (body, took) = run_with_client(&lp, &srv, move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET /huge HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            // At most 10 MiB/s: the 32 MiB body takes at least three seconds.
            std::thread::sleep(Duration::from_millis(100));
        }
        (out, t0.elapsed())
    });
    let head_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(body.len() - head_end, 32 << 20, "the whole body arrived");
    assert!(
        took > Duration::from_millis(1500),
        "the read was slow: {took:?}"
    );
}

fn backpressure_pauses_reading(b: Backend) {
    let opts = ServerOptions {
        max_output: 64 * 1024,
        max_pipeline: 16,
        ..Default::default()
    };
    let (lp, srv, addr) = server(b, opts);
    let got = run_with_client(&lp, &srv, move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // 200 pipelined requests for 256 KiB each, written from a second thread while this
        // one reads slowly: all arrive, in order, complete.
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            for _ in 0..200 {
                if w.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                    .is_err()
                {
                    break;
                }
            }
        });
        let want = 200 * (256 * 1024);
        let mut body_bytes = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let mut pending = Vec::new();
        while body_bytes < want {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            pending.extend_from_slice(&buf[..n]);
            // Strip heads; count body bytes.
            loop {
                if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    if pending.starts_with(b"HTTP/1.1 200") {
                        pending.drain(..i + 4);
                        continue;
                    }
                }
                let xs = pending.iter().take_while(|&&c| c == b'x').count();
                body_bytes += xs;
                pending.drain(..xs);
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        writer.join().unwrap();
        body_bytes
    });
    assert_eq!(got, 200 * 256 * 1024);
}

/// An upgrade (not supported) is answered with `Connection: close`, then the connection
/// closes: the bytes after it are another protocol's, never a request.
fn upgrade_is_answered_then_closed(b: Backend) {
    let (lp, srv, addr) = server(b, ServerOptions::default());
    let resp = run_with_client(&lp, &srv, move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    });
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("\r\nConnection: close\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nhello"), "{resp}");
    assert_eq!(resp.matches("HTTP/1.1").count(), 1, "{resp}");
}

/// Answers with the same status and headers reuse the head of an earlier one: the bytes stay
/// those of a fresh head (length, Date, `Connection` for HTTP/1.0 and close, HEAD without a
/// body), other statuses and headers get their own heads, and a header with CR or LF is still
/// refused after its neighbours were cached.
fn repeated_heads_keep_their_bytes(b: Backend) {
    let lp = common::new_loop(b);
    let srv = HttpServer::new(&lp, ServerOptions::default());
    let refused = std::rc::Rc::new(std::cell::Cell::new(0));
    srv.route(Some("GET"), "/t", |r| {
        let body = r.data().query().as_bytes().to_vec();
        let _ = r.respond(200, &[(b"Content-Type", b"text/plain")], &body);
    });
    let seen = refused.clone();
    srv.route(Some("GET"), "/bad", move |r| {
        let bad: &[(&[u8], &[u8])] = &[(b"Content-Type", b"text/plain\r\nX: 1")];
        if r.respond(200, bad, b"") == Err(asyncloop::error::Error::INVALID) {
            seen.set(seen.get() + 1);
        }
        // (dropped unanswered: 500)
    });
    srv.route(Some("GET"), "/other", |r| {
        let _ = r.respond(
            201,
            &[(b"Content-Type", b"text/plain"), (b"X-B", b"2")],
            b"o",
        );
    });
    let addr = srv.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let resp = run_with_client(&lp, &srv, move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"GET /t?a HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /t?bb HTTP/1.1\r\nHost: x\r\n\r\n\
              HEAD /t?ccc HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /other HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /bad HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /t?0123456789 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
              GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    });
    assert_eq!(refused.get(), 1);
    // Every Date is an IMF-fixdate of now (29 bytes); blank them to compare the rest.
    let mut blanked = String::new();
    let mut rest = resp.as_str();
    while let Some(i) = rest.find("\r\nDate: ") {
        blanked.push_str(&rest[..i + 8]);
        let date = &rest[i + 8..i + 8 + 29];
        assert!(
            date.ends_with(" GMT") && date.as_bytes()[3] == b',',
            "{date:?}"
        );
        blanked.push_str("DATE");
        rest = &rest[i + 8 + 29..];
    }
    blanked.push_str(rest);
    let head = |status: &str, extra: &str, len: usize, conn: &str| {
        format!(
            "HTTP/1.1 {status}\r\nServer: asyncloop\r\nDate: DATE\r\nContent-Type: text/plain\r\n{extra}Content-Length: {len}\r\n{conn}\r\n"
        )
    };
    let expected = [
        head("200 OK", "", 1, "") + "a",
        head("200 OK", "", 2, "") + "bb",
        head("200 OK", "", 3, ""),
        head("201 Created", "X-B: 2\r\n", 1, "") + "o",
        "HTTP/1.1 500 Internal Server Error\r\nServer: asyncloop\r\nDate: DATE\r\nContent-Type: text/plain\r\nContent-Length: 59\r\n\r\n500 Internal Server Error: the handler dropped the request\n".to_string(),
        head("200 OK", "", 10, "Connection: keep-alive\r\n") + "0123456789",
        head("200 OK", "", 0, "Connection: close\r\n"),
    ]
    .concat();
    assert_eq!(blanked, expected);
}

/// `max_pipeline` bounds the requests a connection has in flight even when far more arrive in
/// one read: the parser stops at the limit and keeps the rest for later, instead of handing
/// every request of the read to its handler at once (the output of a client that sends
/// without reading would grow with each read, unbounded by `max_output`).
fn pipeline_limit_holds_within_one_read(b: Backend) {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    let opts = ServerOptions {
        max_pipeline: 8,
        ..Default::default()
    };
    let (lp, srv, addr) = server(b, opts);
    let held: Rc<RefCell<Vec<asyncloop::http::Request>>> = Rc::default();
    let most = Rc::new(Cell::new(0usize));
    let (h2, m2) = (held.clone(), most.clone());
    srv.route(Some("GET"), "/later", move |r| {
        h2.borrow_mut().push(r);
        m2.set(m2.get().max(h2.borrow().len()));
    });
    // Held requests are answered every 10 ms, in arrival order.
    let t = asyncloop::reactor::Timer::new(&lp);
    let h3 = held.clone();
    t.start(
        Duration::from_millis(10),
        Some(Duration::from_millis(10)),
        move || {
            for r in h3.borrow_mut().drain(..) {
                let q = r.data().query().to_owned();
                let _ = r.respond(200, &[], q.as_bytes());
            }
        },
    );
    const N: usize = 1000;
    let got = run_with_client(&lp, &srv, move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = Vec::new();
        for i in 0..N {
            all.extend_from_slice(
                format!("GET /later?{i:04} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            );
        }
        s.write_all(&all).unwrap(); // about 34 KB: one or two reads on the server
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while out.windows(4).filter(|w| w == b"HTTP").count() < N
            || !out.ends_with(format!("{:04}", N - 1).as_bytes())
        {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).unwrap()
    });
    t.stop();
    let bodies: Vec<&str> = got
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|r| &r[r.find("\r\n\r\n").unwrap() + 4..])
        .collect();
    let want: Vec<String> = (0..N).map(|i| format!("{i:04}")).collect();
    assert_eq!(bodies, want, "every request answered, in order");
    assert!(
        most.get() <= 8,
        "{} requests were in flight at once; max_pipeline is 8",
        most.get()
    );
}

/// `listen_fd`: a socket bound and listening elsewhere (here a std listener, as a parent or
/// socket activation would hand one over) is served, its address comes back, and it stays its
/// owner's: after the server shuts down, the kernel still queues connections on it. A UDP
/// socket is refused.
fn listens_on_a_socket_made_elsewhere(b: Backend) {
    use std::os::fd::AsFd;
    let (lp, srv, _) = server(b, ServerOptions::default());
    let theirs = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = theirs.local_addr().unwrap();
    assert_eq!(
        srv.listen_fd(theirs.as_fd()).unwrap(),
        asyncloop::net::Address::Ip(at)
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        srv.listen_fd(udp.as_fd()),
        Err(asyncloop::error::Error::INVALID)
    );
    let got = run_with_client(&lp, &srv, move || {
        let mut s = std::net::TcpStream::connect(at).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    });
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{got:?}");
    assert!(got.ends_with(b"\r\n\r\nhello"), "{got:?}");
    std::net::TcpStream::connect(at).expect("the owner's socket still listens");
}

both_backends!(
    listens_on_a_socket_made_elsewhere,
    repeated_heads_keep_their_bytes,
    pipeline_limit_holds_within_one_read,
    upgrade_is_answered_then_closed,
    body_timeout_sends_408,
    write_timeout_drops_a_client_that_never_reads,
    write_timeout_spares_a_slow_reader_that_keeps_reading,
    backpressure_pauses_reading
);
