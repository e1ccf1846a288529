//! The HTTP client over TLS on both backends, against real servers: a Python HTTPS upstream
//! (tests/helpers/upstream.py --tls) and nginx serving TLS; keep-alive reuse, chunked and
//! close-delimited bodies; each bad certificate with its own code and a reason readable in
//! the callback; verification by default against the system's roots; the explicit insecure
//! option; a server that never answers the handshake.

#[path = "common_backends.rs"]
mod common;
#[path = "common_tls.rs"]
mod common_tls;

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncloop::error::{error_detail, Error, Result};
use asyncloop::http::client::{ClientOptions, ClientRequest, HttpClient};
use asyncloop::http::response_parser::Response;
use asyncloop::net::tls::{TlsClientConfig, TlsClientOptions};
use asyncloop::reactor::{Backend, Loop, RunMode, Timer};
use common_tls::certs;

struct Peer {
    child: Child,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python upstream over TLS with certificate `name` (.pem/.key).
fn upstream(name: &str) -> Peer {
    let c = certs();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/upstream.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--tls")
        .arg(c.path(&format!("{name}.pem")))
        .arg(c.path(&format!("{name}.key")))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("port line");
    Peer { child, port }
}

fn ca_config() -> TlsClientConfig {
    TlsClientConfig::new(
        &TlsClientOptions::default()
            .ca_file(&certs().path("ca.pem"))
            .unwrap(),
    )
    .unwrap()
}

fn client(lp: &Loop, tls: Option<TlsClientConfig>) -> HttpClient {
    let c = HttpClient::new(lp, ClientOptions::default());
    if let Some(t) = tls {
        c.set_tls(t);
    }
    c
}

/// What a request's callback saw: the result, and the error's reason text read in the callback.
type Got = (Result<Response>, Option<String>);

fn fetch(lp: &Loop, c: &HttpClient, req: ClientRequest) -> Got {
    let got: Rc<RefCell<Option<Got>>> = Rc::default();
    let g = got.clone();
    c.request(req, move |r| *g.borrow_mut() = Some((r, error_detail())));
    let t = Timer::new(lp);
    let (lp2, g2, t0) = (lp.clone(), got.clone(), Instant::now());
    t.start(
        Duration::from_millis(2),
        Some(Duration::from_millis(2)),
        move || {
            if g2.borrow().is_some() || t0.elapsed() > Duration::from_secs(60) {
                lp2.stop();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
    let r = got.borrow_mut().take().expect("answered");
    r
}

fn get(url: &str) -> ClientRequest {
    ClientRequest::new("GET", url).unwrap()
}

fn python_https_upstream(b: Backend) {
    let up = upstream("server");
    let lp = common::new_loop(b);
    let c = client(&lp, Some(ca_config()));
    let url = |p: &str| format!("https://localhost:{}{p}", up.port);
    let (r, _) = fetch(&lp, &c, get(&url("/hello")));
    let r = r.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    // Keep-alive: the same connection (the upstream reports the client's port).
    let ports: Vec<Vec<u8>> = (0..3)
        .map(|_| fetch(&lp, &c, get(&url("/port"))).0.unwrap().body)
        .collect();
    assert!(ports.windows(2).all(|w| w[0] == w[1]), "{ports:?}");
    assert_eq!(c.open_connections(), 1);
    let r = fetch(&lp, &c, get(&url("/chunked"))).0.unwrap();
    assert_eq!(r.body, b"abcdefg");
    // Ended by closing the connection, without close_notify (Python's way).
    let r = fetch(&lp, &c, get(&url("/close"))).0.unwrap();
    assert_eq!(r.status, 200);
    assert!(!r.body.is_empty());
    let r = fetch(&lp, &c, get(&url("/big?n=300000"))).0.unwrap();
    assert_eq!(r.body.len(), 300_000);
    let mut post = ClientRequest::new("POST", &url("/echo")).unwrap();
    post.body = vec![b'z'; 70_000];
    let r = fetch(&lp, &c, post).0.unwrap();
    assert_eq!(r.body, vec![b'z'; 70_000]);
    // An IP address is verified against the certificate's IP names.
    let r = fetch(
        &lp,
        &c,
        get(&format!("https://127.0.0.1:{}/hello", up.port)),
    )
    .0;
    assert_eq!(r.unwrap().status, 200);
    c.close();
    lp.run(RunMode::Default).unwrap();
}

/// nginx serving `www/index.html` over TLS from a prefix directory of its own.
fn nginx() -> (Peer, PathBuf) {
    let c = certs();
    let prefix = c.dir.join(format!("nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    std::fs::create_dir_all(prefix.join("www")).unwrap();
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    std::fs::write(prefix.join("www/index.html"), "served by nginx over TLS\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "daemon off; master_process off; pid {p}/nginx.pid; error_log {p}/logs/error.log;
         events {{ worker_connections 64; }}
         http {{ access_log off;
           client_body_temp_path {p}/tmp; proxy_temp_path {p}/tmp; fastcgi_temp_path {p}/tmp;
           uwsgi_temp_path {p}/tmp; scgi_temp_path {p}/tmp;
           server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert};
             ssl_certificate_key {key}; ssl_protocols TLSv1.2 TLSv1.3;
             location / {{ root {p}/www; }} }} }}",
        p = prefix.display(),
        cert = c.path("server.pem").display(),
        key = c.path("server.key").display(),
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/deps.sh installs nginx-light)");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "nginx did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Peer { child, port }, prefix)
}

fn nginx_over_tls(b: Backend) {
    let (peer, _prefix) = nginx();
    let lp = common::new_loop(b);
    let c = client(&lp, Some(ca_config()));
    for _ in 0..3 {
        let url = format!("https://localhost:{}/index.html", peer.port);
        let (r, detail) = fetch(&lp, &c, get(&url));
        let r = r.unwrap_or_else(|e| panic!("{e:?}: {detail:?}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"served by nginx over TLS\n");
    }
    assert_eq!(c.open_connections(), 1, "one kept-alive connection");
    c.close();
    lp.run(RunMode::Default).unwrap();
}

fn bad_certificates_and_reasons(b: Backend) {
    for (name, code, words) in [
        ("expired", Error::TLS_EXPIRED, "expired"),
        ("selfsigned", Error::TLS_SELF_SIGNED, "self-signed"),
        ("wronghost", Error::TLS_NAME_MISMATCH, "other.example"),
        ("untrusted", Error::TLS_UNTRUSTED, "unknownissuer"),
    ] {
        let up = upstream(name);
        let lp = common::new_loop(b);
        let c = client(&lp, Some(ca_config()));
        let (r, detail) = fetch(
            &lp,
            &c,
            get(&format!("https://localhost:{}/hello", up.port)),
        );
        assert_eq!(r.unwrap_err(), code, "{name}");
        let detail = detail.expect("a reason in the callback");
        assert!(detail.to_lowercase().contains(words), "{name}: {detail}");
        assert_eq!(c.open_connections(), 0);
    }
    assert_eq!(
        error_detail(),
        None,
        "the reason lives only as long as the callback"
    );
}

fn verification_by_default_and_insecure_by_name(b: Backend) {
    let up = upstream("selfsigned");
    let lp = common::new_loop(b);
    // The system's roots do not know the test CA: refused.
    let c = client(&lp, None);
    let url = format!("https://localhost:{}/hello", up.port);
    let (r, why) = fetch(&lp, &c, get(&url));
    assert_eq!(r.unwrap_err(), Error::TLS_SELF_SIGNED, "{why:?}");
    let insecure = TlsClientConfig::new(&TlsClientOptions {
        dangerous_skip_verification: true,
        ..Default::default()
    })
    .unwrap();
    c.set_tls(insecure);
    assert_eq!(fetch(&lp, &c, get(&url)).0.unwrap().body, b"hello");
    c.close();
    lp.run(RunMode::Default).unwrap();
}

fn handshake_counts_against_the_connect_timeout(b: Backend) {
    // Accepts, reads the client hello, never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let lp = common::new_loop(b);
    let c = HttpClient::new(
        &lp,
        ClientOptions {
            connect_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    );
    c.set_tls(ca_config());
    let t0 = Instant::now();
    let (r, detail) = fetch(&lp, &c, get(&format!("https://localhost:{port}/")));
    assert_eq!(r.unwrap_err(), Error::CONNECT_TIMEOUT);
    assert!(detail.unwrap().contains("handshake"));
    assert!(t0.elapsed() < Duration::from_secs(20));
}

both_backends!(
    python_https_upstream,
    nginx_over_tls,
    bad_certificates_and_reasons,
    verification_by_default_and_insecure_by_name,
    handshake_counts_against_the_connect_timeout,
);
