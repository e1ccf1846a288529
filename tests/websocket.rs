//! WebSocket on both backends, the library's own server and client in one loop (and raw TCP
//! peers where a misbehaving one is needed): echo of every size class, the closing handshake
//! from either side, the handshake refusals, frames sent right behind the upgrade request,
//! keep-alive pings that go unanswered, backpressure with its drain, shutdown with 1001.
//! Interoperability with another implementation is tested end to end (tests/e2e, Python's
//! `websockets` against the example server and a `websockets` server against the client).

#[path = "common_backends.rs"]
mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use asyncloop::error::Error;
use asyncloop::http::ws::{self, CloseInfo, Message, WebSocket, WsHandler, WsOptions};
use asyncloop::http::{HttpServer, ServerOptions};
use asyncloop::reactor::{Backend, Loop, RunMode};

/// Everything a handler saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Open(Option<String>),
    Text(String),
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    Drain,
    Close(Result<(), Error>, u16, String),
}

#[derive(Default)]
struct Log(RefCell<Vec<Seen>>);

impl Log {
    fn push(&self, s: Seen) {
        self.0.borrow_mut().push(s);
    }
    fn get(&self) -> Vec<Seen> {
        self.0.borrow().clone()
    }
    fn closed(&self) -> Option<Seen> {
        self.0
            .borrow()
            .iter()
            .find(|s| matches!(s, Seen::Close(..)))
            .cloned()
    }
}

/// A handler that logs, and echoes when `echo`.
struct Recorder {
    log: Rc<Log>,
    echo: bool,
}

impl WsHandler for Recorder {
    fn on_open(&self, ws: &WebSocket) {
        self.log.push(Seen::Open(ws.subprotocol()));
    }
    fn on_message(&self, ws: &WebSocket, msg: Message<'_>) {
        match msg {
            Message::Text(t) => self.log.push(Seen::Text(t.to_string())),
            Message::Binary(b) => self.log.push(Seen::Binary(b.to_vec())),
        }
        if self.echo {
            ws.send(msg).expect("echo");
        }
    }
    fn on_pong(&self, _ws: &WebSocket, data: &[u8]) {
        self.log.push(Seen::Pong(data.to_vec()));
    }
    fn on_drain(&self, _ws: &WebSocket) {
        self.log.push(Seen::Drain);
    }
    fn on_close(&self, _ws: &WebSocket, info: &CloseInfo<'_>) {
        self.log.push(Seen::Close(
            info.status,
            info.code,
            String::from_utf8_lossy(info.reason).into_owned(),
        ));
    }
}

struct Fixture {
    lp: Loop,
    srv: HttpServer,
    addr: SocketAddr,
    /// What the server's handlers saw (one log for all connections).
    server_log: Rc<Log>,
    /// The server-side handles, as accepted.
    accepted: Rc<RefCell<Vec<WebSocket>>>,
}

fn fixture(b: Backend, opts: WsOptions) -> Fixture {
    let lp = common::new_loop(b);
    let srv = HttpServer::new(&lp, ServerOptions::default());
    let server_log = Rc::new(Log::default());
    let accepted = Rc::new(RefCell::new(Vec::new()));
    let (log, acc) = (server_log.clone(), accepted.clone());
    srv.route(Some("GET"), "/echo", move |req| {
        let h = Rc::new(Recorder {
            log: log.clone(),
            echo: true,
        });
        if let Ok(ws) = ws::accept(req, &opts, h) {
            acc.borrow_mut().push(ws);
        }
    });
    let addr = srv.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    Fixture {
        lp,
        srv,
        addr,
        server_log,
        accepted,
    }
}

impl Fixture {
    fn url(&self) -> String {
        format!("ws://{}/echo", self.addr)
    }

    fn client(&self, opts: &WsOptions) -> (WebSocket, Rc<Log>) {
        let log = Rc::new(Log::default());
        let h = Rc::new(Recorder {
            log: log.clone(),
            echo: false,
        });
        let ws = ws::connect(&self.lp, &self.url(), opts, h).expect("connect");
        (ws, log)
    }

    /// Runs the loop until `done` holds (bounded: 20 s).
    fn run_until(&self, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            self.lp.run(RunMode::NoWait).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn stop(self) {
        let stopped = Rc::new(std::cell::Cell::new(false));
        let s2 = stopped.clone();
        self.srv
            .shutdown(Duration::from_secs(2), move || s2.set(true))
            .unwrap();
        self.run_until(|| stopped.get());
        assert_eq!(self.srv.connections(), 0);
    }
}

fn echo_of_every_size_and_a_client_close(b: Backend) {
    let opts = WsOptions {
        max_message: 4 << 20,
        ..Default::default()
    };
    let f = fixture(b, opts.clone());
    let (ws, log) = f.client(&opts);
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    let sizes = [0usize, 1, 125, 126, 65535, 65536, 100_000];
    ws.send_text("héllo").unwrap();
    for &n in &sizes {
        ws.send_binary(&big[..n]).unwrap();
    }
    ws.send_binary(&big).unwrap();
    ws.ping(b"p1").unwrap();
    let want = 2 + sizes.len() + 1;
    f.run_until(|| log.get().len() > want);
    let got = log.get();
    assert_eq!(got[0], Seen::Open(None));
    assert_eq!(got[1], Seen::Text("héllo".into()));
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(got[2 + i], Seen::Binary(big[..n].to_vec()), "size {n}");
    }
    assert_eq!(got[2 + sizes.len()], Seen::Binary(big.clone()));
    assert_eq!(got[3 + sizes.len()], Seen::Pong(b"p1".to_vec()));
    ws.close(1000, "done").unwrap();
    assert_eq!(ws.close(1000, "again"), Err(Error::ALREADY));
    assert_eq!(ws.send_text("late"), Err(Error::CLOSED));
    f.run_until(|| log.closed().is_some() && f.server_log.closed().is_some());
    assert_eq!(log.closed(), Some(Seen::Close(Ok(()), 1000, String::new())));
    assert_eq!(
        f.server_log.closed(),
        Some(Seen::Close(Ok(()), 1000, "done".into()))
    );
    f.run_until(|| f.srv.connections() == 0);
    f.stop();
}

fn server_closes_and_shutdown_sends_1001(b: Backend) {
    let f = fixture(b, WsOptions::default());
    let (_c1, log1) = f.client(&WsOptions::default());
    let (_c2, log2) = f.client(&WsOptions::default());
    f.run_until(|| {
        f.accepted.borrow().len() == 2 && log1.get().len() == 1 && log2.get().len() == 1
    });
    let first = f.accepted.borrow()[0].clone();
    first.close(4000, "bye").unwrap();
    f.run_until(|| log1.closed().is_some() || log2.closed().is_some());
    let closed = log1.closed().or(log2.closed()).unwrap();
    assert_eq!(closed, Seen::Close(Ok(()), 4000, "bye".into()));
    // The server stopping says 1001 to the other one, which answers; then the server is done.
    let stopped = Rc::new(std::cell::Cell::new(false));
    let s2 = stopped.clone();
    f.srv
        .shutdown(Duration::from_secs(5), move || s2.set(true))
        .unwrap();
    f.run_until(|| stopped.get());
    f.run_until(|| log1.closed().is_some() && log2.closed().is_some());
    let other = if log1.get().contains(&closed) {
        &log2
    } else {
        &log1
    };
    assert_eq!(
        other.closed(),
        Some(Seen::Close(Ok(()), 1001, "server shutting down".into()))
    );
    assert_eq!(f.srv.connections(), 0);
}

/// Sends `request` on a raw TCP connection and returns what came back until the server closed.
fn raw_exchange(addr: SocketAddr, request: Vec<u8>) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn in_thread<T: Send + 'static>(f: &Fixture, job: impl FnOnce() -> T + Send + 'static) -> T {
    let th = std::thread::spawn(job);
    f.run_until(|| th.is_finished());
    th.join().unwrap()
}

const UPGRADE: &str = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn handshakes_are_checked(b: Backend) {
    let f = fixture(b, WsOptions::default());
    let addr = f.addr;
    let answers = in_thread(&f, move || {
        [
            format!("{UPGRADE}Sec-WebSocket-Version: 8\r\n\r\n"),
            format!("{UPGRADE}\r\n"),
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n".to_string(),
            "GET /echo HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: close\r\n\r\n".to_string(),
        ]
        .map(|r| String::from_utf8_lossy(&raw_exchange(addr, r.into_bytes())).into_owned())
    });
    assert!(answers[0].starts_with("HTTP/1.1 426 "), "{}", answers[0]);
    assert!(
        answers[0].contains("\r\nSec-WebSocket-Version: 13\r\n"),
        "{}",
        answers[0]
    );
    for a in &answers[1..] {
        assert!(a.starts_with("HTTP/1.1 400 "), "{a}");
        assert!(a.contains("\r\nConnection: close\r\n"), "{a}");
    }
    assert!(f.accepted.borrow().is_empty());
    f.stop();
}

/// A masked frame from a client.
fn client_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80 | op];
    let key = [9u8, 8, 7, 6];
    if payload.len() < 126 {
        v.push(0x80 | payload.len() as u8);
    } else {
        v.push(0x80 | 126);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

fn frames_right_behind_the_request_are_read(b: Backend) {
    let f = fixture(b, WsOptions::default());
    let addr = f.addr;
    let mut req = format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n\r\n").into_bytes();
    req.extend(client_frame(0x1, b"eager"));
    req.extend(client_frame(0x8, &[0x03, 0xe8]));
    let out = in_thread(&f, move || raw_exchange(addr, req));
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{text}"
    );
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    // The echo, then the close answer, unmasked; then the server ended the connection.
    assert_eq!(&out[head_end..], b"\x81\x05eager\x88\x02\x03\xe8");
    f.run_until(|| f.server_log.closed().is_some());
    assert_eq!(
        f.server_log.get(),
        [
            Seen::Open(None),
            Seen::Text("eager".into()),
            Seen::Close(Ok(()), 1000, String::new())
        ]
    );
    f.stop();
}

fn protocol_errors_close_with_their_code(b: Backend) {
    let opts = WsOptions {
        max_message: 100,
        ..Default::default()
    };
    let f = fixture(b, opts);
    let addr = f.addr;
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"\x81\x02hi".to_vec(), 1002),           // unmasked
        (client_frame(0x1, &[0xc3, 0x28]), 1007), // invalid UTF-8
        (client_frame(0x2, &[0; 101]), 1009),     // over the limit
        (client_frame(0x3, b""), 1002),           // reserved opcode
    ];
    let outs = in_thread(&f, move || {
        cases
            .into_iter()
            .map(|(frame, code)| {
                let mut req = format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n\r\n").into_bytes();
                req.extend(frame);
                (raw_exchange(addr, req), code)
            })
            .collect::<Vec<_>>()
    });
    for (out, code) in outs {
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let close = &out[head_end..];
        assert_eq!(close[0], 0x88, "{close:?}");
        assert_eq!(u16::from_be_bytes([close[2], close[3]]), code, "{close:?}");
    }
    f.run_until(|| {
        f.server_log
            .get()
            .iter()
            .filter(|s| matches!(s, Seen::Close(..)))
            .count()
            == 4
    });
    for s in f.server_log.get() {
        if let Seen::Close(status, _, _) = s {
            assert_eq!(status, Err(Error::WS_PROTOCOL));
        }
    }
    f.stop();
}

fn unanswered_pings_time_out(b: Backend) {
    let opts = WsOptions {
        ping_interval: Some(Duration::from_millis(100)),
        ping_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let f = fixture(b, opts);
    let addr = f.addr;
    // A peer that completes the handshake, then only reads (never answers the pings).
    let th = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n\r\n").as_bytes())
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    });
    f.run_until(|| f.server_log.closed().is_some());
    assert_eq!(
        f.server_log.closed(),
        Some(Seen::Close(Err(Error::TIMEOUT), 1006, String::new()))
    );
    f.run_until(|| th.is_finished());
    let out = th.join().unwrap();
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&out[head_end..head_end + 2], b"\x89\x00", "a ping was sent");
    f.stop();
}

fn backpressure_refuses_then_drains(b: Backend) {
    let opts = WsOptions {
        max_queue: 64 * 1024,
        ..Default::default()
    };
    let f = fixture(b, opts.clone());
    let addr = f.addr;
    // A peer that handshakes, then reads nothing until told how much to expect.
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n\r\n").as_bytes())
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let expected = rx.recv().unwrap();
        let mut got = vec![0u8; expected];
        s.read_exact(&mut got).unwrap();
        s.write_all(&client_frame(0x8, &[0x03, 0xe8])).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        got
    });
    f.run_until(|| !f.accepted.borrow().is_empty());
    let srv_ws = f.accepted.borrow()[0].clone();
    // Push until refused: the kernel's buffers fill, then the queue.
    let chunk = vec![7u8; 16 * 1024];
    let mut sent = 0;
    loop {
        match srv_ws.send_binary(&chunk) {
            Ok(()) => sent += 1,
            Err(e) => {
                assert_eq!(e, Error::WS_QUEUE_FULL);
                break;
            }
        }
        f.lp.run(RunMode::NoWait).unwrap();
        assert!(sent < 100_000, "never refused");
    }
    assert!(srv_ws.buffered_amount() > 64 * 1024);
    assert!(!f.server_log.get().contains(&Seen::Drain));
    // The peer reads all of it: the server hears the drain, then the close.
    tx.send(sent * (chunk.len() + 4)).unwrap();
    f.run_until(|| f.server_log.get().contains(&Seen::Drain));
    f.run_until(|| f.server_log.closed().is_some());
    let got = peer.join().unwrap();
    assert_eq!(
        &got[..4],
        &[0x82, 126, 0x40, 0][..],
        "unmasked, a 16-bit length"
    );
    assert_eq!(
        f.server_log.closed(),
        Some(Seen::Close(Ok(()), 1000, String::new()))
    );
    f.stop();
}

fn connect_failures_reach_on_close(b: Backend) {
    let f = fixture(b, WsOptions::default());
    // Nothing listens on the port of a closed listener.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let log = Rc::new(Log::default());
    let h = Rc::new(Recorder {
        log: log.clone(),
        echo: false,
    });
    ws::connect(
        &f.lp,
        &format!("ws://{dead}/"),
        &WsOptions::default(),
        h.clone(),
    )
    .unwrap();
    f.run_until(|| log.closed().is_some());
    assert_eq!(
        log.closed(),
        Some(Seen::Close(
            Err(Error::from_errno(libc::ECONNREFUSED)),
            1006,
            String::new()
        ))
    );
    // A server that answers 404.
    let log = Rc::new(Log::default());
    let h = Rc::new(Recorder {
        log: log.clone(),
        echo: false,
    });
    ws::connect(
        &f.lp,
        &format!("ws://{}/nowhere", f.addr),
        &WsOptions::default(),
        h,
    )
    .unwrap();
    f.run_until(|| log.closed().is_some());
    assert_eq!(
        log.closed(),
        Some(Seen::Close(
            Err(Error::WS_HANDSHAKE),
            1006,
            "answer status 404, not 101".into()
        ))
    );
    let h = Rc::new(Recorder {
        log: Rc::new(Log::default()),
        echo: false,
    });
    assert_eq!(
        ws::connect(&f.lp, "http://x/", &WsOptions::default(), h).map(|_| ()),
        Err(Error::BAD_URL)
    );
    f.stop();
}

fn subprotocols_are_negotiated(b: Backend) {
    let opts = WsOptions {
        subprotocols: vec!["v2".into(), "v1".into()],
        ..Default::default()
    };
    let f = fixture(b, opts);
    let (ws, log) = f.client(&WsOptions {
        subprotocols: vec!["v1".into(), "v2".into()],
        ..Default::default()
    });
    f.run_until(|| !log.get().is_empty());
    assert_eq!(log.get()[0], Seen::Open(Some("v2".into())));
    assert_eq!(ws.subprotocol().as_deref(), Some("v2"));
    ws.close(1000, "").unwrap();
    f.run_until(|| log.closed().is_some());
    f.stop();
}

both_backends!(
    echo_of_every_size_and_a_client_close,
    server_closes_and_shutdown_sends_1001,
    handshakes_are_checked,
    frames_right_behind_the_request_are_read,
    protocol_errors_close_with_their_code,
    unanswered_pings_time_out,
    backpressure_refuses_then_drains,
    connect_failures_reach_on_close,
    subprotocols_are_negotiated,
);
