//! TLS streams on both backends against real peers: our server with Python's ssl module and
//! `openssl s_client`, our client with `openssl s_server` and a Python TLS server, our client
//! with our server; each bad certificate with its own error; garbage, plain HTTP and
//! truncated records on the server side; mTLS; configuration errors; session resumption.

#[path = "common_backends.rs"]
mod common;
#[path = "common_tls.rs"]
mod common_tls;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use asyncloop::error::Error;
use asyncloop::net::tls::{
    TlsClientConfig, TlsClientOptions, TlsError, TlsInfo, TlsServerConfig, TlsServerOptions,
    TlsVersion,
};
use asyncloop::net::{ListenOptions, ReadEvent, TcpListener, TcpStream};
use asyncloop::reactor::{Backend, Loop, RunMode};
use common::new_loop;
use common_tls::certs;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/tls_peer.py");

fn server_config(cert: &str, key: &str) -> TlsServerConfig {
    let c = certs();
    TlsServerConfig::from_files(&c.path(cert), &c.path(key)).unwrap()
}

fn client_config(ca: &str) -> TlsClientConfig {
    let c = certs();
    TlsClientConfig::new(&TlsClientOptions::default().ca_file(&c.path(ca)).unwrap()).unwrap()
}

/// How one server-side connection ended: what it agreed on, or its failure.
type Outcome = Result<TlsInfo, TlsError>;

/// A TLS echo server on `lp` that closes its listener after `conns` connections ended,
/// recording how each ended.
fn echo_server(
    lp: &Loop,
    cfg: TlsServerConfig,
    conns: usize,
    outcomes: Rc<RefCell<Vec<Outcome>>>,
) -> TcpListener {
    echo_server_with(lp, cfg, conns, outcomes, false)
}

/// `echo_server`; with `once`, each connection shuts down (close_notify, then FIN) after
/// its first echo.
fn echo_server_with(
    lp: &Loop,
    cfg: TlsServerConfig,
    conns: usize,
    outcomes: Rc<RefCell<Vec<Outcome>>>,
    once: bool,
) -> TcpListener {
    let l =
        TcpListener::bind(lp, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
    let l2 = l.clone();
    l.start(move |r| {
        let s = r.expect("accept");
        s.start_tls_server(&cfg).unwrap();
        let (s2, out, l3) = (s.clone(), outcomes.clone(), l2.clone());
        s.read_start(move |ev| {
            let done = match ev {
                ReadEvent::Data(d) => {
                    s2.write(d.to_vec(), None).unwrap();
                    if once {
                        s2.shutdown(|r| r.unwrap()).unwrap();
                    }
                    None
                }
                ReadEvent::Eof => Some(s2.tls_info().ok_or_else(|| {
                    s2.tls_failure()
                        .unwrap_or(TlsError::new(Error::EOF, "closed before the handshake"))
                })),
                ReadEvent::Error(e) => Some(Err(s2
                    .tls_failure()
                    .unwrap_or(TlsError::new(e, "connection error")))),
            };
            if let Some(o) = done {
                out.borrow_mut().push(o);
                if out.borrow().len() == conns {
                    l3.close(|| {});
                }
                s2.close(|| {});
            }
        })
        .unwrap();
    })
    .unwrap();
    l
}

/// Runs `f` on a thread while the loop runs, and returns its result.
fn beside_loop<T: Send + 'static>(lp: &Loop, f: impl FnOnce() -> T + Send + 'static) -> T {
    let h = std::thread::spawn(f);
    lp.run(RunMode::Default).unwrap();
    h.join().unwrap()
}

fn python_client(port: u16, extra: &[&str]) -> std::process::Output {
    let ca = certs().path("ca.pem");
    Command::new("python3")
        .arg(PEER)
        .arg("client")
        .arg(port.to_string())
        .arg(ca)
        .args(extra)
        .output()
        .unwrap()
}

fn python_client_against_our_server(b: Backend) {
    for (cert, key, extra, version) in [
        ("server.pem", "server.key", vec![], "TLSv1.3"),
        ("server.pem", "server.key", vec!["--tls12"], "TLSv1.2"),
        ("rsa.pem", "rsa.key", vec![], "TLSv1.3"),
        ("rsa.pem", "rsa.key", vec!["--tls12"], "TLSv1.2"),
    ] {
        let lp = new_loop(b);
        let outcomes = Rc::new(RefCell::new(Vec::new()));
        let l = echo_server(&lp, server_config(cert, key), 1, outcomes.clone());
        let port = l.local_addr().port();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let out = beside_loop(&lp, move || {
            let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
            args.extend(["--bytes", "300000"]);
            python_client(port, &args)
        });
        let line = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{cert}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            line.contains(&format!("\"version\": \"{version}\"")),
            "{line}"
        );
        assert!(line.contains("\"alpn\": \"http/1.1\""), "{line}");
        assert!(line.contains("\"echo_ok\": true"), "{line}");
        let o = outcomes.borrow();
        let info = o[0].as_ref().expect("handshake");
        assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(
            info.version.contains(&version[5..].replace('.', "_")),
            "{info:?}"
        );
        lp.close().unwrap();
    }
}

fn openssl_s_client_against_our_server(b: Backend) {
    let lp = new_loop(b);
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let cfg = server_config("server.pem", "server.key");
    let l = echo_server_with(&lp, cfg, 1, outcomes.clone(), true);
    let port = l.local_addr().port();
    let out = beside_loop(&lp, move || {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args([
                "-servername",
                "localhost",
                "-verify_return_error",
                "-quiet",
                "-CAfile",
            ])
            .arg(certs().path("ca.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // s_client buffers what it prints until it exits, which it does when the server
        // closes after its echo (`-quiet` ignores the end of its input).
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello over tls\n").unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        drop(stdin);
        let _ = child.wait();
        out
    });
    assert_eq!(out, "hello over tls\n");
    assert!(outcomes.borrow()[0].is_ok(), "{:?}", outcomes.borrow());
    lp.close().unwrap();
}

/// What our client got back, with what its connection agreed on; or its failure.
type ClientResult = Rc<RefCell<Option<Result<(Vec<u8>, TlsInfo), TlsError>>>>;

/// Connects our client to `addr` with TLS for `name`, writes `send`, and collects what comes
/// back until `want` bytes arrived or the peer closed; returns the bytes, or the failure.
fn our_client(
    lp: &Loop,
    addr: SocketAddr,
    cfg: &TlsClientConfig,
    name: &str,
    send: Vec<u8>,
    want: usize,
) -> ClientResult {
    let result = Rc::new(RefCell::new(None));
    let slot = Rc::new(RefCell::new(None::<TcpStream>));
    let (cfg, name, r, slot2) = (cfg.clone(), name.to_string(), result.clone(), slot.clone());
    let s = TcpStream::connect(lp, addr, Some(Duration::from_secs(10)), move |c| {
        c.expect("connect");
        let s = slot2.borrow().clone().unwrap();
        let (s2, r2) = (s.clone(), r.clone());
        s.start_tls_client(&cfg, &name, move |h| {
            if let Err(e) = h {
                let f = s2.tls_failure().unwrap_or(TlsError::new(e, "?"));
                assert_eq!(f.code, e);
                *r2.borrow_mut() = Some(Err(f));
                s2.close(|| {});
                return;
            }
            let info = s2.tls_info().expect("info after the handshake");
            let got = Rc::new(RefCell::new(Vec::new()));
            let (s3, r3) = (s2.clone(), r2.clone());
            s2.read_start(move |ev| {
                let end = match ev {
                    ReadEvent::Data(d) => {
                        got.borrow_mut().extend_from_slice(d);
                        got.borrow().len() >= want
                    }
                    _ => true,
                };
                if end && r3.borrow().is_none() {
                    *r3.borrow_mut() = Some(Ok((got.borrow().clone(), info.clone())));
                    s3.close(|| {});
                }
            })
            .unwrap();
        })
        .unwrap();
        // Written before the handshake finished: sent right after it.
        s.write(send, None).unwrap();
    })
    .unwrap();
    *slot.borrow_mut() = Some(s);
    result
}

fn our_client_with_our_server(b: Backend) {
    let lp = new_loop(b);
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let l = echo_server(
        &lp,
        server_config("server.pem", "server.key"),
        1,
        outcomes.clone(),
    );
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let r = our_client(
        &lp,
        l.local_addr(),
        &client_config("ca.pem"),
        "localhost",
        payload.clone(),
        payload.len(),
    );
    lp.run(RunMode::Default).unwrap();
    let (got, info) = r.borrow_mut().take().unwrap().unwrap();
    assert!(
        got == payload,
        "echoed {} of {} bytes",
        got.len(),
        payload.len()
    );
    assert_eq!(info.version, "TLSv1_3");
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(!info.resumed);
    lp.close().unwrap();
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Python TLS echo server with `cert`; its port.
fn python_server(cert: &str, key: &str, extra: &[&str]) -> (Peer, u16) {
    let c = certs();
    let mut child = Command::new("python3")
        .arg(PEER)
        .arg("server")
        .arg(c.path(cert))
        .arg(c.path(key))
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("python server said {line:?}"));
    (Peer(child), port)
}

fn our_client_against_python_server(b: Backend) {
    for extra in [&[][..], &["--tls12"][..]] {
        let (_peer, port) = python_server("server.pem", "server.key", extra);
        let lp = new_loop(b);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let r = our_client(
            &lp,
            addr,
            &client_config("ca.pem"),
            "localhost",
            b"ping".to_vec(),
            4,
        );
        lp.run(RunMode::Default).unwrap();
        let (got, info) = r.borrow_mut().take().unwrap().unwrap();
        assert_eq!(got, b"ping");
        let want = if extra.is_empty() {
            "TLSv1_3"
        } else {
            "TLSv1_2"
        };
        assert_eq!(info.version, want);
        lp.close().unwrap();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn our_client_against_openssl_s_server(b: Backend) {
    let c = certs();
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-accept", &port.to_string(), "-www", "-cert"])
        .arg(c.path("rsa.pem"))
        .arg("-key")
        .arg(c.path("rsa.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _peer = Peer(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lp = new_loop(b);
    let r = our_client(
        &lp,
        addr,
        &client_config("ca.pem"),
        "localhost",
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        usize::MAX,
    );
    lp.run(RunMode::Default).unwrap();
    let (got, _) = r.borrow_mut().take().unwrap().unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.0 200 ok"), "{text}");
    assert!(text.contains("TLSv1.3"), "{text}");
    lp.close().unwrap();
}

fn bad_certificates_have_their_own_errors(b: Backend) {
    for (cert, code, words) in [
        ("expired", Error::TLS_EXPIRED, "expired"),
        ("selfsigned", Error::TLS_SELF_SIGNED, "self-signed"),
        ("wronghost", Error::TLS_NAME_MISMATCH, "other.example"),
        ("untrusted", Error::TLS_UNTRUSTED, "UnknownIssuer"),
    ] {
        let (_peer, port) = python_server(&format!("{cert}.pem"), &format!("{cert}.key"), &[]);
        let lp = new_loop(b);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let r = our_client(
            &lp,
            addr,
            &client_config("ca.pem"),
            "localhost",
            b"x".to_vec(),
            1,
        );
        lp.run(RunMode::Default).unwrap();
        let f = r.borrow_mut().take().unwrap().unwrap_err();
        assert_eq!(f.code, code, "{cert}: {f}");
        assert!(
            f.reason.to_lowercase().contains(&words.to_lowercase()),
            "{cert}: {}",
            f.reason
        );
        lp.close().unwrap();
    }
}

/// Sends `bytes` to our server (then closes, or waits when `hold`) and returns how the
/// server's side ended and what it answered.
fn raw_to_our_server(b: Backend, bytes: &'static [u8]) -> (Outcome, Vec<u8>) {
    let lp = new_loop(b);
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let l = echo_server(
        &lp,
        server_config("server.pem", "server.key"),
        1,
        outcomes.clone(),
    );
    let port = l.local_addr().port();
    let answer = beside_loop(&lp, move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    let o = outcomes.borrow_mut().remove(0);
    lp.close().unwrap();
    (o, answer)
}

fn garbage_plaintext_and_truncated_records(b: Backend) {
    let (o, _) = raw_to_our_server(b, b"\x16\x03\x01\x00\x05garbage that is no client hello");
    let f = o.unwrap_err();
    assert_eq!(f.code, Error::TLS_HANDSHAKE, "{f}");
    // An empty client hello: a decode error, and a fatal alert record goes back.
    let (o, answer) = raw_to_our_server(b, b"\x16\x03\x01\x00\x04\x01\x00\x00\x00");
    let f = o.unwrap_err();
    assert_eq!(f.code, Error::TLS_HANDSHAKE, "{f}");
    assert_eq!(answer.first(), Some(&0x15), "{answer:?} after {f}");

    let (o, _) = raw_to_our_server(b, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let f = o.unwrap_err();
    assert_eq!(f.code, Error::TLS_PLAINTEXT);
    assert!(f
        .reason
        .contains("plain HTTP request was sent to HTTPS port"));

    // A record header that promises 300 bytes, then the connection ends.
    let (o, _) = raw_to_our_server(b, b"\x16\x03\x01\x01\x2c\x01\x00\x01\x28\x03\x03");
    let f = o.unwrap_err();
    assert_eq!(f.code, Error::TLS_HANDSHAKE);
    assert!(
        f.reason
            .contains("closed the connection during the TLS handshake"),
        "{f}"
    );

    let (o, _) = raw_to_our_server(b, b"\x00\x01\x02\x03 binary");
    assert_eq!(o.unwrap_err().code, Error::TLS_PLAINTEXT);
}

fn mutual_tls(b: Backend) {
    let c = certs();
    let opts = TlsServerOptions::from_files(&c.path("server.pem"), &c.path("server.key"))
        .unwrap()
        .client_ca_file(&c.path("ca.pem"))
        .unwrap();
    let cfg = TlsServerConfig::new(&opts).unwrap();
    let (cert, key) = (c.path("client.pem"), c.path("client.key"));
    let lp = new_loop(b);
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let l = echo_server(&lp, cfg.clone(), 2, outcomes.clone());
    let port = l.local_addr().port();
    let (with, without) = beside_loop(&lp, move || {
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        (
            python_client(port, &["--cert", cert, "--key", key]),
            python_client(port, &[]),
        )
    });
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(!without.status.success());
    let mut o = outcomes.borrow_mut();
    o.sort_by_key(|o| o.is_err());
    assert!(o[0].as_ref().unwrap().peer_certificate);
    assert_eq!(o[1].as_ref().unwrap_err().code, Error::TLS_HANDSHAKE);
    drop(o);
    lp.close().unwrap();

    // Our client with a certificate from a CA the server does not trust: the server says
    // untrusted, and the client hears about it from the server's alert.
    let lp = new_loop(b);
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let l = echo_server(&lp, cfg, 1, outcomes.clone());
    let other = TlsClientConfig::new(&TlsClientOptions {
        ca_pem: Some(c.read("ca.pem")),
        client_cert: Some((c.read("otherclient.pem"), c.read("otherclient.key"))),
        ..Default::default()
    })
    .unwrap();
    let r = our_client(&lp, l.local_addr(), &other, "localhost", b"x".to_vec(), 1);
    lp.run(RunMode::Default).unwrap();
    assert_eq!(
        outcomes.borrow()[0].as_ref().unwrap_err().code,
        Error::TLS_UNTRUSTED
    );
    // TLS 1.3: the client finished its handshake before the server judged its certificate;
    // it learns of the rejection from the alert, as a failed connection.
    let got = r.borrow_mut().take().unwrap();
    match got {
        Ok((data, _)) => assert!(data.is_empty()),
        Err(f) => assert!(f.reason.contains("alert"), "{f}"),
    }
    lp.close().unwrap();
}

fn session_resumption(b: Backend) {
    let lp = new_loop(b);
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let l = echo_server(
        &lp,
        server_config("server.pem", "server.key"),
        2,
        outcomes.clone(),
    );
    let cfg = client_config("ca.pem").with_own_session_cache(4);
    let first = our_client(&lp, l.local_addr(), &cfg, "localhost", b"one".to_vec(), 3);
    // The first connection ends (and its ticket arrived) before the second starts.
    while first.borrow().is_none() || lp.open_handles() > 1 {
        lp.run(RunMode::Once).unwrap();
    }
    assert!(!first.borrow_mut().take().unwrap().unwrap().1.resumed);
    let second = our_client(&lp, l.local_addr(), &cfg, "localhost", b"two".to_vec(), 3);
    lp.run(RunMode::Default).unwrap();
    let (got, info) = second.borrow_mut().take().unwrap().unwrap();
    assert_eq!(got, b"two");
    assert!(info.resumed, "{info:?}");
    assert!(outcomes.borrow()[1].as_ref().unwrap().resumed);
    lp.close().unwrap();
}

both_backends!(
    python_client_against_our_server,
    openssl_s_client_against_our_server,
    our_client_with_our_server,
    our_client_against_python_server,
    our_client_against_openssl_s_server,
    bad_certificates_have_their_own_errors,
    garbage_plaintext_and_truncated_records,
    mutual_tls,
    session_resumption,
);

#[test]
fn configuration_errors_have_reasons() {
    let c = certs();
    let mismatched = TlsServerOptions {
        cert_chain_pem: c.read("server.pem"),
        key_pem: c.read("rsa.key"),
        ..Default::default()
    };
    let e = TlsServerConfig::new(&mismatched).unwrap_err();
    assert_eq!(e.code, Error::TLS_CONFIG);
    assert!(e.reason.contains("key"), "{e}");
    let garbage = TlsServerOptions {
        cert_chain_pem: b"not pem".to_vec(),
        key_pem: c.read("server.key"),
        ..Default::default()
    };
    let e = TlsServerConfig::new(&garbage).unwrap_err();
    assert!(e.reason.contains("no PEM certificate"), "{e}");
    let e = TlsServerConfig::from_files(&c.path("missing.pem"), &c.path("server.key")).unwrap_err();
    assert!(e.reason.contains("missing.pem"), "{e}");
    let e = TlsClientConfig::new(&TlsClientOptions {
        ca_pem: Some(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".to_vec()),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.code, Error::TLS_CONFIG);
    // TLS 1.3 only refuses a TLS 1.2 client.
    let opts = TlsServerOptions {
        min_version: TlsVersion::Tls13,
        ..TlsServerOptions::from_files(&c.path("server.pem"), &c.path("server.key")).unwrap()
    };
    assert!(TlsServerConfig::new(&opts).is_ok());
    // The system's roots load (Debian's ca-certificates).
    assert!(TlsClientConfig::system().is_ok());
}
