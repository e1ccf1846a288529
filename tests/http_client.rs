//! The HTTP client against a real local server (Python's http.server, tests/helpers/upstream.py)
//! on both backends: connection reuse, chunked and close-delimited bodies, a server that closes
//! pooled connections, HEAD, timeouts, refused connections, unknown hosts, cancellation, and
//! 1,000 concurrent requests.

#[path = "common_backends.rs"]
mod common;

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncloop::error::{Error, Result};
use asyncloop::http::client::{ClientOptions, ClientRequest, HttpClient};
use asyncloop::http::response_parser::Response;
use asyncloop::reactor::{Backend, Loop, RunMode, Timer};

struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    fn start() -> Upstream {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/upstream.py");
        let mut child = Command::new("python3")
            .arg(script)
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
        Upstream { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(url: &str) -> ClientRequest {
    ClientRequest::new("GET", url).unwrap()
}

/// Sends the requests together and runs the loop until every one has answered; the answers
/// come back in request order.
fn fetch_all(lp: &Loop, client: &HttpClient, reqs: Vec<ClientRequest>) -> Vec<Result<Response>> {
    let n = reqs.len();
    let got: Rc<RefCell<Vec<Option<Result<Response>>>>> =
        Rc::new(RefCell::new((0..n).map(|_| None).collect()));
    for (i, r) in reqs.into_iter().enumerate() {
        let g = got.clone();
        client.request(r, move |res| {
            assert!(g.borrow()[i].is_none(), "callback ran twice");
            g.borrow_mut()[i] = Some(res);
        });
    }
    let g = got.clone();
    run_until(
        lp,
        move || g.borrow().iter().all(|x| x.is_some()),
        Duration::from_secs(60),
    );
    let v = got
        .borrow_mut()
        .drain(..)
        .map(|x| x.expect("answered"))
        .collect();
    assert_eq!(client.pending(), 0, "answered requests are forgotten");
    v
}

fn run_until(lp: &Loop, done: impl Fn() -> bool + 'static, limit: Duration) {
    let t = Timer::new(lp);
    let lp2 = lp.clone();
    let deadline = Instant::now() + limit;
    t.start(
        Duration::from_millis(2),
        Some(Duration::from_millis(2)),
        move || {
            if done() || Instant::now() > deadline {
                lp2.stop();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
}

fn sleep_loop(lp: &Loop, d: Duration) {
    let t0 = Instant::now();
    run_until(lp, move || t0.elapsed() >= d, d * 2);
}

fn reuse_chunked_close_delimited_and_head(b: Backend) {
    let up = Upstream::start();
    let lp = common::new_loop(b);
    let client = HttpClient::new(&lp, ClientOptions::default());
    // Sequential requests reuse one connection (the server reports the same client port).
    let mut ports = Vec::new();
    for _ in 0..5 {
        let r = fetch_all(&lp, &client, vec![get(&up.url("/port"))])
            .pop()
            .unwrap()
            .unwrap();
        ports.push(String::from_utf8(r.body).unwrap());
    }
    assert!(ports.windows(2).all(|w| w[0] == w[1]), "{ports:?}");
    assert_eq!(client.open_connections(), 1);
    let rs = fetch_all(
        &lp,
        &client,
        vec![
            get(&up.url("/chunked")),
            get(&up.url("/close")),
            get(&up.url("/hello")),
        ],
    );
    let rs: Vec<Response> = rs.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(rs[0].body, b"abcdefg");
    assert_eq!(
        (rs[1].body.as_slice(), rs[1].keep_alive),
        (&b"until the end"[..], false)
    );
    assert_eq!(
        (
            rs[2].status,
            rs[2].body.as_slice(),
            rs[2].header("content-type")
        ),
        (200, &b"hello"[..], Some("text/plain"))
    );
    let head = fetch_all(
        &lp,
        &client,
        vec![ClientRequest::new("HEAD", &up.url("/hello")).unwrap()],
    )
    .pop()
    .unwrap()
    .unwrap();
    assert_eq!(
        (head.status, head.body.len(), head.header("content-length")),
        (200, 0, Some("5"))
    );
    let mut post = ClientRequest::new("POST", &up.url("/echo")).unwrap();
    post.headers
        .push(("Content-Type".into(), "application/json".into()));
    post.body = br#"{"a":1}"#.to_vec();
    let echo = fetch_all(&lp, &client, vec![post]).pop().unwrap().unwrap();
    assert_eq!(
        (echo.body.as_slice(), echo.header("content-type")),
        (&br#"{"a":1}"#[..], Some("application/json"))
    );
    let st = fetch_all(&lp, &client, vec![get(&up.url("/status/418"))])
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(st.status, 418);
}

fn server_closing_pooled_connections(b: Backend) {
    let up = Upstream::start();
    let lp = common::new_loop(b);
    let client = HttpClient::new(&lp, ClientOptions::default());
    for _ in 0..4 {
        let r = fetch_all(&lp, &client, vec![get(&up.url("/hello"))])
            .pop()
            .unwrap();
        assert_eq!(r.unwrap().body, b"hello");
        // The upstream closes idle keep-alive connections after 150 ms.
        sleep_loop(&lp, Duration::from_millis(300));
    }
    assert!(client.open_connections() <= 1);
}

fn timeouts_refusals_unknown_hosts_and_limits(b: Backend) {
    let up = Upstream::start();
    let lp = common::new_loop(b);
    let opts = ClientOptions {
        request_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        max_body: 1000,
        ..Default::default()
    };
    let client = HttpClient::new(&lp, opts);
    let refused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A listener whose accept queue is full drops SYNs: connect times out.
    let full = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let full_port = full.local_addr().unwrap().port();
    let _filled: Vec<_> = (0..300)
        .map_while(|_| {
            std::net::TcpStream::connect_timeout(
                &full.local_addr().unwrap(),
                Duration::from_millis(50),
            )
            .ok()
        })
        .collect();
    let t0 = Instant::now();
    let rs = fetch_all(
        &lp,
        &client,
        vec![
            get(&up.url("/slow?ms=2000")),
            get(&format!("http://127.0.0.1:{refused_port}/")),
            get("http://no-such-host.invalid/"),
            get(&up.url("/big?n=5000")),
            get(&format!("http://127.0.0.1:{full_port}/")),
        ],
    );
    let codes: Vec<Error> = rs.into_iter().map(|r| r.unwrap_err()).collect();
    assert_eq!(codes[0], Error::TIMEOUT);
    assert_eq!(codes[1], Error::from_errno(libc::ECONNREFUSED));
    assert_eq!(codes[2], Error::DNS);
    assert_eq!(codes[3], Error::HTTP_TOO_LARGE);
    assert!(
        codes[4] == Error::CONNECT_TIMEOUT || codes[4] == Error::TIMEOUT,
        "{:?}",
        codes[4]
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(
        ClientRequest::new("GET", "ftp://x/").unwrap_err(),
        Error::BAD_URL
    );
}

fn cancel_reports_once(b: Backend) {
    let up = Upstream::start();
    let lp = common::new_loop(b);
    let client = HttpClient::new(&lp, ClientOptions::default());
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let h = client.request(get(&up.url("/slow?ms=1000")), move |r| {
        g.borrow_mut().push(r.map(|r| r.status))
    });
    sleep_loop(&lp, Duration::from_millis(50));
    h.cancel();
    h.cancel();
    sleep_loop(&lp, Duration::from_millis(100));
    assert_eq!(*got.borrow(), vec![Err(Error::CANCELLED)]);
    assert_eq!(client.pending(), 0);
}

fn thousand_concurrent_requests(b: Backend) {
    let up = Upstream::start();
    let lp = common::new_loop(b);
    let client = HttpClient::new(
        &lp,
        ClientOptions {
            max_per_origin: 16,
            ..Default::default()
        },
    );
    let reqs = (0..1000)
        .map(|i| get(&up.url(&format!("/world/{i}"))))
        .collect();
    let rs = fetch_all(&lp, &client, reqs);
    for (i, r) in rs.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        assert_eq!(r.body, format!("{{\"world\": \"{i}\"}}").into_bytes());
    }
    assert!(client.open_connections() <= 16);
}

fn read_timeout_has_its_own_code(b: Backend) {
    let up = Upstream::start();
    let lp = common::new_loop(b);
    let opts = ClientOptions {
        read_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let client = HttpClient::new(&lp, opts);
    let t0 = Instant::now();
    let r = fetch_all(&lp, &client, vec![get(&up.url("/slow?ms=2000"))])
        .pop()
        .unwrap();
    assert_eq!(r.unwrap_err(), Error::READ_TIMEOUT);
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    // A quick answer is not affected, and the client's timer stops once nothing is pending:
    // the loop runs dry by itself.
    let ok = fetch_all(&lp, &client, vec![get(&up.url("/hello"))])
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(ok.body, b"hello");
    client.close();
    let t1 = Instant::now();
    lp.run(RunMode::Default).unwrap();
    assert!(t1.elapsed() < Duration::from_secs(2));
}

fn streaming_bodies_arrive_in_chunks(b: Backend) {
    let up = Upstream::start();
    let lp = common::new_loop(b);
    // The body limit does not apply to a streamed body.
    let client = HttpClient::new(
        &lp,
        ClientOptions {
            max_body: 1000,
            ..Default::default()
        },
    );
    let received = Rc::new(RefCell::new(Vec::new()));
    let chunks = Rc::new(std::cell::Cell::new(0));
    let done = Rc::new(RefCell::new(None));
    let (r2, c2, d2) = (received.clone(), chunks.clone(), done.clone());
    client.request_streaming(
        get(&up.url("/big?n=100000")),
        move |chunk| {
            r2.borrow_mut().extend_from_slice(chunk);
            c2.set(c2.get() + 1);
        },
        move |res| *d2.borrow_mut() = Some(res.map(|r| (r.status, r.body.len()))),
    );
    let d3 = done.clone();
    run_until(&lp, move || d3.borrow().is_some(), Duration::from_secs(10));
    assert_eq!(done.borrow_mut().take().unwrap(), Ok((200, 0)));
    assert_eq!(received.borrow().len(), 100_000);
    assert!(received.borrow().iter().all(|&b| b == b'x'));
    assert!(chunks.get() >= 1);
}

/// A server that answers the first request on each connection (keep-alive) and closes the
/// connection, unanswered, when a second request arrives on it.
fn one_shot_server() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let th = std::thread::spawn(move || {
        for _ in 0..4 {
            let Ok((mut s, _)) = l.accept() else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                // First request: answer and keep the connection.
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
                // Second request: close without answering.
                let _ = s.read(&mut buf);
            });
        }
    });
    (port, th)
}

fn stale_pooled_connection_retries_safe_requests_once(b: Backend) {
    let lp = common::new_loop(b);
    let client = HttpClient::new(&lp, ClientOptions::default());
    let (port, _th) = one_shot_server();
    let url = format!("http://127.0.0.1:{port}/");
    // Two pooled connections, each answered once: both drop the next request they get.
    let first = fetch_all(&lp, &client, vec![get(&url), get(&url)]);
    assert!(first.iter().all(|r| r.as_ref().unwrap().body == b"first"));
    // A pooled connection fails; the retry goes to a new connection, not to the other pooled
    // one (as stale), and is answered.
    assert_eq!(
        fetch_all(&lp, &client, vec![get(&url)])
            .pop()
            .unwrap()
            .unwrap()
            .body,
        b"first"
    );
    // POST is not retried: it might have been acted on.
    let mut post = ClientRequest::new("POST", &url).unwrap();
    post.body = b"x".to_vec();
    assert_eq!(
        fetch_all(&lp, &client, vec![post])
            .pop()
            .unwrap()
            .unwrap_err(),
        Error::HTTP_PROTOCOL
    );
}

both_backends!(
    stale_pooled_connection_retries_safe_requests_once,
    streaming_bodies_arrive_in_chunks,
    read_timeout_has_its_own_code,
    reuse_chunked_close_delimited_and_head,
    server_closing_pooled_connections,
    timeouts_refusals_unknown_hosts_and_limits,
    cancel_reports_once,
    thousand_concurrent_requests,
);
