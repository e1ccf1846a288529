//! The client's streaming mode on both backends, against the library's own server on the same
//! loop: the head comes before any body byte, the body arrives whole and in order, a paused
//! download stops the server's producer (backpressure end to end), a cancel from inside a
//! data callback ends the request once, a failure before the head is a lone `Done`, and the
//! older `request_streaming` keeps its order (body pieces, then the head).

#[path = "common_backends.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncloop::error::Error;
use asyncloop::http::client::{ClientEvent, ClientOptions, ClientRequest, HttpClient};
use asyncloop::http::{ChunkedWriter, HttpServer, ServerOptions};
use asyncloop::reactor::{Backend, Loop, RunMode, Timer};

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A server with `/download?n=BYTES`: a chunked body of `pattern` bytes written a 64 KiB piece
/// at a time from the drain callback; `produced` counts the bytes written so far.
fn server(lp: &Loop, produced: Rc<Cell<usize>>) -> (HttpServer, u16) {
    let srv = HttpServer::new(lp, ServerOptions::default());
    srv.route(Some("GET"), "/download", move |r| {
        let total: usize = String::from_utf8(r.data().query_param("n").unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let w: Rc<RefCell<Option<ChunkedWriter>>> = Rc::new(RefCell::new(Some(
            r.respond_chunked(200, &[(b"X-Total", total.to_string().as_bytes())])
                .unwrap(),
        )));
        let (w2, made, produced) = (w.clone(), Rc::new(Cell::new(0usize)), produced.clone());
        w.borrow()
            .as_ref()
            .unwrap()
            .on_drain(move || {
                let start = made.get();
                if start >= total {
                    if let Some(w) = w2.borrow_mut().take() {
                        let _ = w.end();
                    }
                    return;
                }
                let end = (start + 65536).min(total);
                let piece: Vec<u8> = (start..end).map(pattern).collect();
                let ok = w2
                    .borrow()
                    .as_ref()
                    .is_some_and(|w| w.write(&piece).is_ok());
                if ok {
                    made.set(end);
                    produced.set(end);
                } else {
                    w2.borrow_mut().take();
                }
            })
            .unwrap();
    });
    srv.route(Some("GET"), "/sized", |r| {
        let body: Vec<u8> = (0..300_000).map(pattern).collect();
        let _ = r.respond(200, &[], &body);
    });
    let port = srv.listen("127.0.0.1:0".parse().unwrap()).unwrap().port();
    (srv, port)
}

fn run_until(lp: &Loop, done: impl Fn() -> bool, limit: Duration) {
    let end = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < end, "timed out");
        lp.run(RunMode::Once).unwrap();
    }
}

#[derive(Default)]
struct Seen {
    head: Option<(u16, Option<String>)>,
    data_before_head: bool,
    bytes: usize,
    wrong: usize,
    done: Option<Result<(), Error>>,
    dones: usize,
}

fn record(seen: &Rc<RefCell<Seen>>) -> impl FnMut(ClientEvent<'_>) + 'static {
    let seen = seen.clone();
    move |ev| {
        let mut s = seen.borrow_mut();
        match ev {
            ClientEvent::Head(r) => {
                s.head = Some((r.status, r.header("x-total").map(str::to_string)))
            }
            ClientEvent::Data(d) => {
                s.data_before_head |= s.head.is_none();
                let base = s.bytes;
                s.wrong += d
                    .iter()
                    .enumerate()
                    .filter(|&(i, &b)| b != pattern(base + i))
                    .count();
                s.bytes += d.len();
            }
            ClientEvent::Done(r) => {
                s.done = Some(r);
                s.dones += 1;
            }
        }
    }
}

/// Head first, then every byte in order, then one Done; chunked and Content-Length bodies,
/// both far above `max_body` (which does not apply to a streamed response).
fn head_then_body_then_end(b: Backend) {
    let lp = common::new_loop(b);
    let (_srv, port) = server(&lp, Rc::default());
    let client = HttpClient::new(
        &lp,
        ClientOptions {
            max_body: 1000,
            ..Default::default()
        },
    );
    for (path, want) in [("/download?n=5000000", 5_000_000), ("/sized", 300_000)] {
        let seen: Rc<RefCell<Seen>> = Rc::default();
        let url = format!("http://127.0.0.1:{port}{path}");
        client.request_stream(ClientRequest::new("GET", &url).unwrap(), record(&seen));
        let s2 = seen.clone();
        run_until(
            &lp,
            move || s2.borrow().done.is_some(),
            Duration::from_secs(30),
        );
        let s = seen.borrow();
        assert_eq!(s.done, Some(Ok(())), "{path}");
        assert_eq!(s.dones, 1);
        assert_eq!(s.head.as_ref().map(|h| h.0), Some(200));
        assert!(!s.data_before_head, "{path}: body before head");
        assert_eq!((s.bytes, s.wrong), (want, 0), "{path}");
    }
    // The connection went back to the pool: one connection served both.
    assert_eq!(client.open_connections(), 1);
}

/// Paused after the head: the server stops producing (its output waits in socket buffers);
/// resumed, all of a 64 MiB body arrives.
fn pause_holds_the_server_back(b: Backend) {
    let lp = common::new_loop(b);
    let produced: Rc<Cell<usize>> = Rc::default();
    let (_srv, port) = server(&lp, produced.clone());
    let client = HttpClient::new(&lp, ClientOptions::default());
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let handle: Rc<RefCell<Option<asyncloop::http::client::RequestHandle>>> = Rc::default();
    let mut rec = record(&seen);
    let h2 = handle.clone();
    let paused_once = Rc::new(Cell::new(false));
    let p2 = paused_once.clone();
    let url = format!("http://127.0.0.1:{port}/download?n={}", 64 << 20);
    let h = client.request_stream(ClientRequest::new("GET", &url).unwrap(), move |ev| {
        let is_data = matches!(ev, ClientEvent::Data(_));
        rec(ev);
        if is_data && !p2.replace(true) {
            h2.borrow().as_ref().unwrap().pause().unwrap();
        }
    });
    *handle.borrow_mut() = Some(h);
    let p3 = paused_once.clone();
    run_until(&lp, move || p3.get(), Duration::from_secs(10));
    // Let the server go as far as it can while nothing is read.
    let t = Timer::new(&lp);
    let waited = Rc::new(Cell::new(false));
    let w2 = waited.clone();
    t.start(Duration::from_millis(500), None, move || w2.set(true));
    let w3 = waited.clone();
    run_until(&lp, move || w3.get(), Duration::from_secs(10));
    let while_paused = produced.get();
    let got_while_paused = seen.borrow().bytes;
    assert!(
        while_paused < 24 << 20,
        "the server produced {while_paused} bytes for a paused client"
    );
    assert!(
        got_while_paused <= 1 << 20,
        "{got_while_paused} bytes arrived while paused"
    );
    handle.borrow().as_ref().unwrap().resume().unwrap();
    let s2 = seen.clone();
    run_until(
        &lp,
        move || s2.borrow().done.is_some(),
        Duration::from_secs(60),
    );
    let s = seen.borrow();
    assert_eq!((s.done, s.bytes, s.wrong), (Some(Ok(())), 64 << 20, 0));
}

/// A cancel from inside a data callback: no more data, one Done with CANCELLED. A refused
/// connection: Done alone. The older form: pieces first, then the response with its head.
fn cancels_failures_and_the_older_form(b: Backend) {
    let lp = common::new_loop(b);
    let (_srv, port) = server(&lp, Rc::default());
    let client = HttpClient::new(&lp, ClientOptions::default());
    let seen: Rc<RefCell<Seen>> = Rc::default();
    let handle: Rc<RefCell<Option<asyncloop::http::client::RequestHandle>>> = Rc::default();
    let (h2, mut rec) = (handle.clone(), record(&seen));
    let url = format!("http://127.0.0.1:{port}/download?n={}", 8 << 20);
    let h = client.request_stream(ClientRequest::new("GET", &url).unwrap(), move |ev| {
        let is_data = matches!(ev, ClientEvent::Data(_));
        rec(ev);
        if is_data {
            h2.borrow().as_ref().unwrap().cancel();
        }
    });
    *handle.borrow_mut() = Some(h);
    let s2 = seen.clone();
    run_until(
        &lp,
        move || s2.borrow().done.is_some(),
        Duration::from_secs(10),
    );
    {
        let s = seen.borrow();
        assert_eq!((s.done, s.dones), (Some(Err(Error::CANCELLED)), 1));
        assert!(s.bytes > 0 && s.bytes < 8 << 20);
    }
    assert_eq!(
        handle.borrow().as_ref().unwrap().pause(),
        Err(Error::ALREADY)
    );

    // Nothing listens on port 1 of 127.0.0.1.
    let refused: Rc<RefCell<Seen>> = Rc::default();
    client.request_stream(
        ClientRequest::new("GET", "http://127.0.0.1:1/").unwrap(),
        record(&refused),
    );
    let r2 = refused.clone();
    run_until(
        &lp,
        move || r2.borrow().done.is_some(),
        Duration::from_secs(10),
    );
    let r = refused.borrow();
    assert_eq!(r.done, Some(Err(Error::from_errno(libc::ECONNREFUSED))));
    assert!(r.head.is_none() && r.bytes == 0);

    let order: Rc<RefCell<Vec<String>>> = Rc::default();
    let (o1, o2) = (order.clone(), order.clone());
    let url = format!("http://127.0.0.1:{port}/sized");
    client.request_streaming(
        ClientRequest::new("GET", &url).unwrap(),
        move |d| {
            let mut o = o1.borrow_mut();
            if o.last().is_none_or(|l| l != "data") {
                o.push("data".into());
            }
            let _ = d;
        },
        move |r| {
            o2.borrow_mut()
                .push(format!("response {}", r.unwrap().status))
        },
    );
    let o3 = order.clone();
    run_until(&lp, move || o3.borrow().len() == 2, Duration::from_secs(10));
    assert_eq!(*order.borrow(), ["data", "response 200"]);
}

/// Paused by its last body bytes and resumed after: the connection goes back to the pool
/// reading again, and the next request on it is answered. (The pause stopped the connection's
/// reading, and a request that ended while paused, or as it resumed, handed it to the pool
/// still stopped: the next request on it got nothing until its read timeout.)
fn paused_at_the_end_keeps_the_connection(b: Backend) {
    let lp = common::new_loop(b);
    let (_srv, port) = server(&lp, Rc::default());
    let client = HttpClient::new(
        &lp,
        ClientOptions {
            read_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    );
    for (path, total) in [("/sized", 300_000), ("/download?n=1048576", 1 << 20)] {
        let seen: Rc<RefCell<Seen>> = Rc::default();
        let handle: Rc<RefCell<Option<asyncloop::http::client::RequestHandle>>> = Rc::default();
        let (h2, s2, mut rec) = (handle.clone(), seen.clone(), record(&seen));
        let url = format!("http://127.0.0.1:{port}{path}");
        let h = client.request_stream(ClientRequest::new("GET", &url).unwrap(), move |ev| {
            let is_data = matches!(ev, ClientEvent::Data(_));
            rec(ev);
            if is_data && s2.borrow().bytes == total {
                h2.borrow().as_ref().unwrap().pause().unwrap();
            }
        });
        *handle.borrow_mut() = Some(h);
        let s3 = seen.clone();
        run_until(
            &lp,
            move || s3.borrow().bytes == total,
            Duration::from_secs(10),
        );
        let _ = handle.borrow().as_ref().unwrap().resume(); // ALREADY if it ended paused
        let s4 = seen.clone();
        run_until(
            &lp,
            move || s4.borrow().done.is_some(),
            Duration::from_secs(10),
        );
        assert_eq!(seen.borrow().done, Some(Ok(())), "{path}");
        // The next request goes on the pooled connection.
        let next: Rc<RefCell<Seen>> = Rc::default();
        let url = format!("http://127.0.0.1:{port}/sized");
        client.request_stream(ClientRequest::new("GET", &url).unwrap(), record(&next));
        let n2 = next.clone();
        run_until(
            &lp,
            move || n2.borrow().done.is_some(),
            Duration::from_secs(10),
        );
        let n = next.borrow();
        assert_eq!((n.done, n.bytes), (Some(Ok(())), 300_000), "after {path}");
        assert_eq!(client.open_connections(), 1);
    }
}

both_backends!(
    head_then_body_then_end,
    pause_holds_the_server_back,
    cancels_failures_and_the_older_form,
    paused_at_the_end_keeps_the_connection
);
