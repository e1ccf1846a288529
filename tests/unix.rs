//! Unix stream sockets on both backends: echo and the addresses of both ends, a stale socket
//! file replaced and a live one refused, paths too long and abstract names, the file removed
//! at close (unless replaced meanwhile), listeners of several loops sharing one path with
//! `reuse_port` (a blocked loop leaves its connections to the others), and the HTTP client
//! sending each request to the socket it names.

#[path = "common_backends.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use asyncloop::error::Error;
use asyncloop::http::client::{ClientOptions, ClientRequest, HttpClient};
use asyncloop::http::{HttpServer, ServerOptions};
use asyncloop::net::{Address, ListenOptions, ReadEvent, TcpListener, TcpStream};
use asyncloop::reactor::{Backend, Loop, RunMode, Timer};
use common::new_loop;

/// A socket path of this test and backend, nothing there yet.
fn sock_path(test: &str, b: Backend) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "aloop-unix-{}-{test}-{b:?}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

fn run_until(lp: &Loop, done: impl Fn() -> bool + 'static) {
    let t = Timer::new(lp);
    let lp2 = lp.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    t.start(
        Duration::from_millis(1),
        Some(Duration::from_millis(1)),
        move || {
            if done() {
                lp2.stop();
            }
            assert!(Instant::now() < deadline, "timed out");
        },
    );
    lp.run(RunMode::Default).unwrap();
}

/// Closes `l` and runs the loop until its close callback ran.
fn close_listener(lp: &Loop, l: &TcpListener) {
    let closed = Rc::new(Cell::new(false));
    let c = closed.clone();
    l.close(move || c.set(true));
    run_until(lp, move || closed.get());
}

/// Accepted streams echo until EOF; each one's (local, peer) address is recorded.
fn echo_listener(
    lp: &Loop,
    path: &Path,
    seen: Rc<RefCell<Vec<(Address, Address)>>>,
) -> TcpListener {
    let l = TcpListener::bind_unix(lp, path, ListenOptions::default()).expect("bind_unix");
    l.start(move |r| {
        let s = r.expect("accept");
        seen.borrow_mut()
            .push((s.local_address().unwrap(), s.peer_address().unwrap()));
        let s2 = s.clone();
        s.read_start(move |ev| match ev {
            ReadEvent::Data(d) => s2.write(d.to_vec(), None).unwrap(),
            ReadEvent::Eof | ReadEvent::Error(_) => s2.close(|| {}),
        })
        .unwrap();
    })
    .unwrap();
    l
}

/// Connects to `path`, sends `payload`, and returns what comes back once it is all there,
/// with the client's (local, peer) addresses.
fn echo_through(lp: &Loop, path: &Path, payload: Vec<u8>) -> (Vec<u8>, Address, Address) {
    let got = Rc::new(RefCell::new(Vec::new()));
    let addrs = Rc::new(RefCell::new(None));
    let cell = Rc::new(RefCell::new(None::<TcpStream>));
    let (g, a, c2, want) = (got.clone(), addrs.clone(), cell.clone(), payload.len());
    let s = TcpStream::connect_unix(lp, path, Some(Duration::from_secs(5)), move |r| {
        r.expect("connect");
        let s = c2.borrow().clone().unwrap();
        *a.borrow_mut() = Some((s.local_address().unwrap(), s.peer_address().unwrap()));
        s.write(payload, None).unwrap();
        let s2 = s.clone();
        s.read_start(move |ev| match ev {
            ReadEvent::Data(d) => {
                g.borrow_mut().extend_from_slice(d);
                if g.borrow().len() == want {
                    s2.close(|| {});
                }
            }
            ReadEvent::Eof | ReadEvent::Error(_) => s2.close(|| {}),
        })
        .unwrap();
    })
    .expect("connect_unix");
    *cell.borrow_mut() = Some(s);
    let g = got.clone();
    run_until(lp, move || g.borrow().len() == want);
    let (local, peer) = addrs.borrow_mut().take().unwrap();
    let v = got.borrow().clone();
    (v, local, peer)
}

fn echo_and_addresses(b: Backend) {
    let lp = new_loop(b);
    let path = sock_path("echo", b);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let l = echo_listener(&lp, &path, seen.clone());
    assert_eq!(l.local_address(), &Address::Unix(path.clone()));
    assert_eq!(l.local_addr().port(), 0);
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (back, local, peer) = echo_through(&lp, &path, payload.clone());
    assert!(back == payload, "the echo differs");
    // The client's end is unnamed; its peer is the listener's path. The server's end is the
    // path; its peer unnamed.
    assert_eq!(local, Address::Unix(PathBuf::new()));
    assert_eq!(peer, Address::Unix(path.clone()));
    assert_eq!(local.port(), 0);
    let s = seen.borrow().clone();
    assert_eq!(
        s,
        vec![(Address::Unix(path.clone()), Address::Unix(PathBuf::new()))]
    );
    close_listener(&lp, &l);
    assert!(!path.exists(), "the socket file outlived its listener");
}

fn stale_replaced_live_refused(b: Backend) {
    let lp = new_loop(b);
    let path = sock_path("stale", b);
    // A socket file nobody listens on any more: a server that died.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let seen = Rc::new(RefCell::new(Vec::new()));
    let l = echo_listener(&lp, &path, seen.clone());
    assert_eq!(
        echo_through(&lp, &path, b"after a stale file".to_vec()).0,
        b"after a stale file"
    );
    // Live: refused, with or without reuse_port (no listener of this process shared it).
    for reuse_port in [false, true] {
        let opts = ListenOptions {
            reuse_port,
            ..ListenOptions::default()
        };
        let e = TcpListener::bind_unix(&lp, &path, opts).map(|_| ());
        assert_eq!(
            e,
            Err(Error::from_errno(libc::EADDRINUSE)),
            "reuse_port {reuse_port}"
        );
    }
    // The refused binds left the live socket alone.
    assert_eq!(
        echo_through(&lp, &path, b"still here".to_vec()).0,
        b"still here"
    );
    close_listener(&lp, &l);
    // A live socket of someone else (another program): refused as well, the file kept.
    let other = UnixListener::bind(&path).unwrap();
    let opts = ListenOptions {
        reuse_port: true,
        ..ListenOptions::default()
    };
    let e = TcpListener::bind_unix(&lp, &path, opts).map(|_| ());
    assert_eq!(e, Err(Error::from_errno(libc::EADDRINUSE)));
    assert!(path.exists());
    drop(other);
    std::fs::remove_file(&path).unwrap();
    // Not a socket: EEXIST, the file untouched.
    std::fs::write(&path, b"data").unwrap();
    let e = TcpListener::bind_unix(&lp, &path, ListenOptions::default()).map(|_| ());
    assert_eq!(e, Err(Error::from_errno(libc::EEXIST)));
    assert_eq!(std::fs::read(&path).unwrap(), b"data");
    std::fs::remove_file(&path).unwrap();
}

fn long_paths_and_abstract_names(b: Backend) {
    let lp = new_loop(b);
    // sun_path holds 108 bytes with the NUL: 107 is the longest path.
    let dir = std::env::temp_dir().join(format!("aloop-unix-long-{}-{b:?}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.as_os_str().len() + 1;
    let longest = dir.join("s".repeat(107 - base));
    assert_eq!(longest.as_os_str().len(), 107);
    let l = echo_listener(&lp, &longest, Rc::default());
    assert_eq!(echo_through(&lp, &longest, b"107".to_vec()).0, b"107");
    close_listener(&lp, &l);
    let too_long = dir.join("s".repeat(108 - base));
    let e = TcpListener::bind_unix(&lp, &too_long, ListenOptions::default()).map(|_| ());
    assert_eq!(e, Err(Error::INVALID));
    let e = TcpStream::connect_unix(&lp, &too_long, None, |_| panic!("no callback")).map(|_| ());
    assert_eq!(e, Err(Error::INVALID));
    assert!(!too_long.exists());
    for bad in ["", "@", "a\0b"] {
        let e = TcpListener::bind_unix(&lp, Path::new(bad), ListenOptions::default()).map(|_| ());
        assert_eq!(e, Err(Error::INVALID), "{bad:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // An abstract name: no file anywhere, addresses as `@name`.
    let name = PathBuf::from(format!("@aloop-unix-{}-{b:?}", std::process::id()));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let l = echo_listener(&lp, &name, seen.clone());
    assert!(!name.exists());
    let (back, _, peer) = echo_through(&lp, &name, b"abstract".to_vec());
    assert_eq!(back, b"abstract");
    assert_eq!(peer, Address::Unix(name.clone()));
    assert_eq!(seen.borrow()[0].0, Address::Unix(name.clone()));
    let e = TcpListener::bind_unix(&lp, &name, ListenOptions::default()).map(|_| ());
    assert_eq!(e, Err(Error::from_errno(libc::EADDRINUSE)));
    close_listener(&lp, &l);
    // The name is free again once the listener closed.
    let l = echo_listener(&lp, &name, Rc::default());
    close_listener(&lp, &l);
}

fn file_removed_at_close_unless_replaced(b: Backend) {
    let lp = new_loop(b);
    let path = sock_path("removed", b);
    let l = TcpListener::bind_unix(&lp, &path, ListenOptions::default()).unwrap();
    assert!(path.exists());
    close_listener(&lp, &l);
    assert!(!path.exists());
    // Replaced meanwhile (by another program's file): the listener leaves it.
    let l = TcpListener::bind_unix(&lp, &path, ListenOptions::default()).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"someone else's").unwrap();
    close_listener(&lp, &l);
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
    std::fs::remove_file(&path).unwrap();
}

/// A loop on its own thread accepting from `path` with `reuse_port`: it answers each
/// connection with its `id` and closes it, except that the first connection of all the loops
/// blocks its loop for `block` first. Sends back its remote once listening, and `id` once
/// its listener has closed.
fn sharing_loop(
    b: Backend,
    path: PathBuf,
    id: u8,
    first: Arc<AtomicBool>,
    block: Duration,
    ready: mpsc::Sender<Arc<asyncloop::reactor::Remote>>,
    closed: mpsc::Sender<u8>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let lp = new_loop(b);
        let opts = ListenOptions {
            reuse_port: true,
            ..ListenOptions::default()
        };
        let l = TcpListener::bind_unix(&lp, &path, opts).expect("bind_unix with reuse_port");
        l.start(move |r| {
            let s = r.expect("accept");
            if !first.swap(true, Ordering::SeqCst) {
                std::thread::sleep(block); // a handler that blocks its loop
            }
            let s2 = s.clone();
            s.write(vec![id], Some(Box::new(move |_| s2.close(|| {}))))
                .unwrap();
        })
        .unwrap();
        ready.send(lp.remote()).unwrap();
        lp.run(RunMode::Default).unwrap();
        close_listener(&lp, &l);
        closed.send(id).unwrap();
    })
}

fn read_id(s: &mut UnixStream) -> u8 {
    let mut b = [0u8; 2];
    let n = s.read(&mut b).expect("an answer");
    assert_eq!(n, 1);
    b[0]
}

fn loops_share_a_path(b: Backend) {
    let path = sock_path("shared", b);
    let first = Arc::new(AtomicBool::new(false));
    let block = Duration::from_millis(1500);
    let (ready_tx, ready) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    let threads: Vec<_> = (1..=2u8)
        .map(|id| {
            let t = sharing_loop(
                b,
                path.clone(),
                id,
                first.clone(),
                block,
                ready_tx.clone(),
                closed_tx.clone(),
            );
            // One after the other: the second joins the socket the first bound.
            let remote = ready.recv().unwrap();
            (t, remote)
        })
        .collect();
    // The first connection blocks the loop that takes it; the next ones are answered by the
    // other loop meanwhile.
    let mut blocked = UnixStream::connect(&path).unwrap();
    std::thread::sleep(Duration::from_millis(100)); // taken by one loop, which now sleeps
    let t0 = Instant::now();
    let mut others = Vec::new();
    for _ in 0..5 {
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        others.push(read_id(&mut s));
    }
    let waited = t0.elapsed();
    assert!(
        waited < block / 2,
        "the other loop did not answer while one was blocked: {waited:?}"
    );
    blocked
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let slow = read_id(&mut blocked);
    assert!(
        others.iter().all(|&id| id != slow),
        "answers {others:?} while loop {slow} was blocked"
    );

    // Many connections at once: both loops answer some.
    let mut count = [0usize; 3];
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let p = path.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| {
                        let mut s = UnixStream::connect(&p).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        read_id(&mut s)
                    })
                    .collect::<Vec<u8>>()
            })
        })
        .collect();
    for c in clients {
        for id in c.join().unwrap() {
            count[id as usize] += 1;
        }
    }
    assert!(
        count[1] > 0 && count[2] > 0,
        "connections per loop: {count:?}"
    );

    // A listener without reuse_port is refused (its probe of the path is one more
    // connection, answered by a loop and closed).
    let lp = new_loop(b);
    let e = TcpListener::bind_unix(&lp, &path, ListenOptions::default()).map(|_| ());
    assert_eq!(e, Err(Error::from_errno(libc::EADDRINUSE)));

    // The file stays while one sharer still listens, and goes with the last.
    let mut threads = threads.into_iter();
    let (t1, r1) = threads.next().unwrap();
    r1.stop();
    t1.join().unwrap();
    assert_eq!(closed.recv().unwrap(), 1);
    assert!(path.exists(), "removed while loop 2 still listens");
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_id(&mut s), 2);
    let (t2, r2) = threads.next().unwrap();
    r2.stop();
    t2.join().unwrap();
    assert_eq!(closed.recv().unwrap(), 2);
    assert!(!path.exists(), "the file outlived the last sharer");
    assert!(UnixStream::connect(&path).is_err());
}

fn http_client_per_request_socket(b: Backend) {
    let lp = new_loop(b);
    let paths = [sock_path("http-a", b), sock_path("http-b", b)];
    let servers: Vec<HttpServer> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let srv = HttpServer::new(&lp, ServerOptions::default());
            let name = ["a", "b"][i];
            srv.route(Some("GET"), "/who", move |r| {
                let host = r.data().header("host").unwrap_or_default().to_string();
                let local = match r.local_address().unwrap() {
                    Address::Unix(p) => p.display().to_string(),
                    Address::Ip(a) => a.to_string(),
                };
                let _ = r.respond(200, &[], format!("{name} {host} {local}").as_bytes());
            });
            srv.route(Some("POST"), "/echo", |r| {
                let body = r.data().body().to_vec();
                let _ = r.respond(200, &[], &body);
            });
            srv.listen_unix(p).unwrap();
            srv
        })
        .collect();
    let client = HttpClient::new(&lp, ClientOptions::default());
    let got = Rc::new(RefCell::new(Vec::new()));
    // One client; each request names its socket; the URL's host only names the Host header.
    for (i, p) in [0usize, 1, 0, 1].iter().map(|&i| (i, &paths[i])) {
        let mut req = ClientRequest::new("GET", "http://example.test/who").unwrap();
        req.unix_socket = Some(p.clone());
        let g = got.clone();
        client.request(req, move |r| {
            let r = r.expect("response");
            assert_eq!(r.status, 200);
            g.borrow_mut().push((i, String::from_utf8(r.body).unwrap()));
        });
    }
    let g = got.clone();
    run_until(&lp, move || g.borrow().len() == 4);
    let mut answers = got.borrow().clone();
    answers.sort();
    for (i, text) in answers {
        let name = ["a", "b"][i];
        assert_eq!(text, format!("{name} example.test {}", paths[i].display()));
    }
    // A body both ways, over the socket.
    let body: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let mut req = ClientRequest::new("POST", "http://localhost/echo").unwrap();
    req.unix_socket = Some(paths[1].clone());
    req.body = body.clone();
    let back = Rc::new(RefCell::new(None));
    let bk = back.clone();
    client.request(req, move |r| *bk.borrow_mut() = Some(r.map(|r| r.body)));
    let bk = back.clone();
    run_until(&lp, move || bk.borrow().is_some());
    assert!(back.borrow_mut().take().unwrap().unwrap() == body);
    // Nothing listens on a socket: the request fails, as curl's would.
    let missing = sock_path("http-missing", b);
    let mut req = ClientRequest::new("GET", "http://localhost/who").unwrap();
    req.unix_socket = Some(missing);
    let err = Rc::new(RefCell::new(None));
    let e2 = err.clone();
    client.request(req, move |r| *e2.borrow_mut() = Some(r.map(|_| ())));
    let e3 = err.clone();
    run_until(&lp, move || e3.borrow().is_some());
    assert_eq!(
        err.borrow_mut().take().unwrap(),
        Err(Error::from_errno(libc::ENOENT))
    );
    client.close();
    let stopped = Rc::new(Cell::new(0));
    for srv in &servers {
        let s = stopped.clone();
        srv.shutdown(Duration::from_secs(1), move || s.set(s.get() + 1))
            .unwrap();
    }
    let s = stopped.clone();
    run_until(&lp, move || s.get() == 2);
    assert!(
        paths.iter().all(|p| !p.exists()),
        "socket files outlived their servers"
    );
}

both_backends!(
    echo_and_addresses,
    stale_replaced_live_refused,
    long_paths_and_abstract_names,
    file_removed_at_close_unless_replaced,
    loops_share_a_path,
    http_client_per_request_socket,
);
