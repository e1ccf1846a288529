//! TCP on both backends: echo, close semantics, late completions, connect errors and
//! timeouts, 10,000 concurrent echo connections.

#[path = "common_backends.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncloop::error::Error;
use asyncloop::net::{ListenOptions, ReadEvent, Stream, StreamEvents, TcpListener, TcpStream};
use asyncloop::reactor::{Backend, Loop, RunMode, Timer};
use common::new_loop;

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Connections an echo server has open now, and the most it had open at once.
#[derive(Default)]
struct Live {
    now: Cell<usize>,
    peak: Cell<usize>,
}

/// An echo server on `lp`: every accepted stream echoes until EOF, then closes.
fn echo_server(lp: &Loop, opts: ListenOptions, live: Rc<Live>) -> TcpListener {
    let l = TcpListener::bind(lp, localhost(), opts).unwrap();
    l.start(move |r| {
        let s = r.expect("accept");
        live.now.set(live.now.get() + 1);
        live.peak.set(live.peak.get().max(live.now.get()));
        let (s2, live2) = (s.clone(), live.clone());
        s.read_start(move |ev| match ev {
            ReadEvent::Data(d) => s2.write(d.to_vec(), None).unwrap(),
            ReadEvent::Eof | ReadEvent::Error(_) => {
                let live3 = live2.clone();
                s2.close(move || live3.now.set(live3.now.get() - 1));
            }
        })
        .unwrap();
    })
    .unwrap();
    l
}

fn echo_round_trip(b: Backend) {
    let lp = new_loop(b);
    let l = echo_server(&lp, ListenOptions::default(), Rc::default());
    let addr = l.local_addr();
    assert_ne!(addr.port(), 0);
    let got = Rc::new(RefCell::new(Vec::new()));
    let events = Rc::new(RefCell::new(Vec::<&'static str>::new()));
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (g, ev, l2, want) = (got.clone(), events.clone(), l.clone(), payload.len());
    let client = Rc::new(RefCell::new(None::<TcpStream>));
    let c2 = client.clone();
    let p2 = payload.clone();
    let s = TcpStream::connect(&lp, addr, Some(Duration::from_secs(5)), move |r| {
        r.expect("connect");
        ev.borrow_mut().push("connected");
        let s = c2.borrow().clone().unwrap();
        let ev2 = ev.clone();
        s.write(
            p2,
            Some(Box::new(move |r| {
                r.unwrap();
                ev2.borrow_mut().push("written");
            })),
        )
        .unwrap();
        let (s2, ev3) = (s.clone(), ev.clone());
        s.read_start(move |e| match e {
            ReadEvent::Data(d) => {
                g.borrow_mut().extend_from_slice(d);
                if g.borrow().len() == want {
                    let (ev4, l3) = (ev3.clone(), l2.clone());
                    s2.close(move || {
                        ev4.borrow_mut().push("closed");
                        l3.close(|| {});
                    });
                }
            }
            other => panic!("unexpected {other:?}"),
        })
        .unwrap();
    })
    .unwrap();
    assert!(s.local_addr().is_ok());
    *client.borrow_mut() = Some(s);
    lp.run(RunMode::Default).unwrap();
    assert_eq!(*got.borrow(), payload);
    assert_eq!(*events.borrow(), vec!["connected", "written", "closed"]);
    client.borrow_mut().take();
    assert_eq!(lp.open_handles(), 0);
    assert_eq!(lp.pending_ops(), 0);
    lp.close().unwrap();
}

fn close_cancels_in_flight_and_calls_back_last(b: Backend) {
    let lp = new_loop(b);
    // A peer that accepts and never reads: writes pile up in the queue.
    let l = TcpListener::bind(&lp, localhost(), ListenOptions::default()).unwrap();
    let held = Rc::new(RefCell::new(Vec::new()));
    let h = held.clone();
    l.start(move |r| h.borrow_mut().push(r.unwrap())).unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let cell = Rc::new(RefCell::new(None::<TcpStream>));
    let (o, c2) = (order.clone(), cell.clone());
    let s = TcpStream::connect(&lp, l.local_addr(), None, move |r| {
        r.unwrap();
        let s = c2.borrow().clone().unwrap();
        for i in 0..64 {
            let o = o.clone();
            s.write(
                vec![7u8; 256 * 1024],
                Some(Box::new(move |r| {
                    o.borrow_mut().push(format!("w{i}:{}", r.is_ok()))
                })),
            )
            .unwrap();
        }
        let o2 = o.clone();
        s.read_start(move |_| o2.borrow_mut().push("read".into()))
            .unwrap();
        assert!(s.write_queue_size() > 0);
        let o3 = o.clone();
        s.close(move || o3.borrow_mut().push("close".into()));
        // A second close is ignored; calls on a closing stream fail with CLOSED.
        s.close(|| panic!("second close callback"));
        assert_eq!(s.write(vec![1], None).unwrap_err(), Error::CLOSED);
        assert_eq!(s.read_start(|_| {}).unwrap_err(), Error::CLOSED);
    })
    .unwrap();
    *cell.borrow_mut() = Some(s);
    // Run until the client closed, then close the rest.
    let t = Timer::new(&lp);
    let (lp2, h2, l2) = (lp.clone(), held.clone(), l.clone());
    t.start(Duration::from_millis(300), None, move || {
        for s in h2.borrow().iter() {
            s.close(|| {});
        }
        l2.close(|| {});
        let _ = &lp2;
    });
    lp.run(RunMode::Default).unwrap();
    let order = order.borrow();
    assert_eq!(order.len(), 65, "{order:?}");
    assert_eq!(order.last().unwrap(), "close");
    assert!(!order.iter().any(|e| e == "read"));
    // At least the writes that never reached the kernel were cancelled.
    assert!(order.iter().any(|e| e.ends_with(":false")), "{order:?}");
    drop(order);
    cell.borrow_mut().take();
    held.borrow_mut().clear();
    drop(t);
    assert_eq!(lp.open_handles(), 0);
}

fn no_callbacks_after_close_under_incoming_data(b: Backend) {
    let lp = new_loop(b);
    let l = TcpListener::bind(&lp, localhost(), ListenOptions::default()).unwrap();
    let addr = l.local_addr();
    // A blocking peer floods the connection from another thread.
    let flooder = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let buf = vec![1u8; 64 * 1024];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if s.write_all(&buf).is_err() {
                return;
            }
        }
        panic!("the server never closed the connection");
    });
    let closed = Rc::new(Cell::new(false));
    let after_close = Rc::new(Cell::new(0));
    let reads = Rc::new(Cell::new(0));
    let (cl, ac, rd, l2) = (
        closed.clone(),
        after_close.clone(),
        reads.clone(),
        l.clone(),
    );
    l.start(move |r| {
        let s = r.unwrap();
        let (s2, cl2, ac2, rd2) = (s.clone(), cl.clone(), ac.clone(), rd.clone());
        s.read_start(move |_| {
            if cl2.get() {
                ac2.set(ac2.get() + 1);
            }
            rd2.set(rd2.get() + 1);
            if rd2.get() == 20 {
                let cl3 = cl2.clone();
                s2.close(move || cl3.set(true));
            }
        })
        .unwrap();
        l2.close(|| {});
    })
    .unwrap();
    lp.run(RunMode::Default).unwrap();
    flooder.join().unwrap();
    assert!(closed.get());
    assert_eq!(reads.get(), 20);
    assert_eq!(after_close.get(), 0);
    assert_eq!(lp.open_handles(), 0);
}

fn read_stop_keeps_data_for_the_next_start(b: Backend) {
    let lp = new_loop(b);
    let l = TcpListener::bind(&lp, localhost(), ListenOptions::default()).unwrap();
    let addr = l.local_addr();
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        for i in 0..50u8 {
            s.write_all(&[i; 1000]).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
    });
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, l2, lp2) = (got.clone(), l.clone(), lp.clone());
    l.start(move |r| {
        let s = r.unwrap();
        l2.close(|| {});
        fn start(s: TcpStream, g: Rc<RefCell<Vec<u8>>>, lp: Loop) {
            let (s2, g2, lp2) = (s.clone(), g.clone(), lp.clone());
            s.read_start(move |ev| match ev {
                ReadEvent::Data(d) => {
                    g2.borrow_mut().extend_from_slice(d);
                    // Pause after every chunk and resume 2 ms later.
                    s2.read_stop();
                    let t = Rc::new(Timer::new(&lp2));
                    let (s3, g3, lp3, t2) = (s2.clone(), g2.clone(), lp2.clone(), t.clone());
                    t.start(Duration::from_millis(2), None, move || {
                        let _keep = &t2;
                        start(s3.clone(), g3.clone(), lp3.clone());
                    });
                }
                ReadEvent::Eof => s2.close(|| {}),
                ReadEvent::Error(e) => panic!("{e:?}"),
            })
            .unwrap();
        }
        start(s, g.clone(), lp2.clone());
    })
    .unwrap();
    lp.run(RunMode::Default).unwrap();
    peer.join().unwrap();
    let want: Vec<u8> = (0..50u8).flat_map(|i| [i; 1000]).collect();
    assert_eq!(*got.borrow(), want);
}

fn connect_refused_and_timeout(b: Backend) {
    let lp = new_loop(b);
    // Refused: a port nobody listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let results = Rc::new(RefCell::new(Vec::new()));
    let r1 = results.clone();
    let s1 = TcpStream::connect(
        &lp,
        format!("127.0.0.1:{port}").parse().unwrap(),
        None,
        move |r| r1.borrow_mut().push(("refused", r)),
    )
    .unwrap();
    // Timeout: a listener whose accept queue is full drops further SYNs.
    let full = TcpListener::bind(
        &lp,
        localhost(),
        ListenOptions {
            backlog: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let fill: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&full.local_addr(), Duration::from_millis(200))
                .ok()
        })
        .collect();
    let r2 = results.clone();
    let start = Instant::now();
    let s2 = TcpStream::connect(
        &lp,
        full.local_addr(),
        Some(Duration::from_millis(300)),
        move |r| r2.borrow_mut().push(("timeout", r)),
    )
    .unwrap();
    // Cancelled: closed before it completes.
    let r3 = results.clone();
    let s3 = TcpStream::connect(&lp, full.local_addr(), None, move |r| {
        r3.borrow_mut().push(("closed", r))
    })
    .unwrap();
    s3.close(|| {});
    lp.run(RunMode::Once).unwrap();
    let t = Timer::new(&lp);
    let (s1c, s2c, fc) = (s1.clone(), s2.clone(), full.clone());
    t.start(Duration::from_millis(600), None, move || {
        s1c.close(|| {});
        s2c.close(|| {});
        fc.close(|| {});
    });
    lp.run(RunMode::Default).unwrap();
    drop(fill);
    let mut res = results.borrow().clone();
    res.sort_by_key(|r| r.0);
    assert_eq!(
        res,
        vec![
            ("closed", Err(Error::CANCELLED)),
            ("refused", Err(Error::from_errno(libc::ECONNREFUSED))),
            ("timeout", Err(Error::TIMEOUT)),
        ]
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    drop(t);
    assert_eq!(lp.open_handles(), 0);
}

fn listen_errors(b: Backend) {
    let lp = new_loop(b);
    let l = TcpListener::bind(&lp, localhost(), ListenOptions::default()).unwrap();
    let err = TcpListener::bind(&lp, l.local_addr(), ListenOptions::default())
        .err()
        .unwrap();
    assert_eq!(err, Error::from_errno(libc::EADDRINUSE));
    // With SO_REUSEPORT on both, two listeners share a port.
    let a = TcpListener::bind(
        &lp,
        localhost(),
        ListenOptions {
            reuse_port: true,
            ..Default::default()
        },
    )
    .unwrap();
    let b2 = TcpListener::bind(
        &lp,
        a.local_addr(),
        ListenOptions {
            reuse_port: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(a.local_addr(), b2.local_addr());
    // IPv6 loopback.
    let v6 = TcpListener::bind(&lp, "[::1]:0".parse().unwrap(), ListenOptions::default()).unwrap();
    assert!(v6.local_addr().is_ipv6());
    assert_eq!(l.start(|_| {}), Ok(()));
    assert_eq!(l.start(|_| {}).unwrap_err(), Error::ALREADY);
    for x in [l, a, b2, v6] {
        x.close(|| {});
    }
    lp.run(RunMode::Default).unwrap();
    assert_eq!(lp.open_handles(), 0);
    assert_eq!(lp.pending_ops(), 0);
}

/// The heavy tests hold ~10,000 fds each; the fd limit is per process, so they take turns.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ten_thousand_concurrent_echo_connections(b: Backend) {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let n = 10_000usize;
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid in/out parameters; raising the soft limit up to the hard one is allowed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
    }
    assert!(
        rl.rlim_cur >= n as u64 + 500,
        "fd limit {} too low for {n} connections",
        rl.rlim_cur
    );
    let lp = new_loop(b);
    let live = Rc::new(Live::default());
    let server = echo_server(
        &lp,
        ListenOptions {
            backlog: 4096,
            ..Default::default()
        },
        live.clone(),
    );
    let port = server.local_addr().port();
    // The clients: a real asyncio program in its own process (its own fd limit).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/echo_clients.py");
    let child = std::process::Command::new("python3")
        .args([script, "127.0.0.1", &port.to_string(), &n.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    // Stop when the clients are done.
    let t = Timer::new(&lp);
    let (lp2, srv) = (lp.clone(), server.clone());
    let child_done = Rc::new(RefCell::new(None));
    let cd = child_done.clone();
    let deadline = Instant::now() + Duration::from_secs(150);
    let child = Rc::new(RefCell::new(Some(child)));
    let ch = child.clone();
    t.start(
        Duration::from_millis(20),
        Some(Duration::from_millis(20)),
        move || {
            let status = ch.borrow_mut().as_mut().unwrap().try_wait().unwrap();
            if status.is_some() || Instant::now() > deadline {
                *cd.borrow_mut() = status;
                srv.close(|| {});
                lp2.stop();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
    t.stop();
    let out = child
        .borrow_mut()
        .take()
        .unwrap()
        .wait_with_output()
        .unwrap();
    let status = child_done.borrow().expect("clients did not finish in time");
    assert!(
        status.success(),
        "clients failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("echoed {n}/{n}")
    );
    // Server-side streams close themselves on EOF.
    lp.run(RunMode::Default).unwrap();
    drop(t);
    assert_eq!(live.peak.get(), n, "all connections were open at once");
    assert_eq!(live.now.get(), 0);
    assert_eq!(lp.open_handles(), 0);
    assert_eq!(lp.pending_ops(), 0);
}

fn shutdown_after_writes(b: Backend) {
    let lp = new_loop(b);
    let l = TcpListener::bind(&lp, localhost(), ListenOptions::default()).unwrap();
    let addr = l.local_addr();
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    let done = Rc::new(RefCell::new(Vec::new()));
    let (d, l2) = (done.clone(), l.clone());
    l.start(move |r| {
        let s = r.unwrap();
        l2.close(|| {});
        s.write(b"hello ".to_vec(), None).unwrap();
        s.write(b"world".to_vec(), None).unwrap();
        let (d2, s2) = (d.clone(), s.clone());
        s.shutdown(move |r| {
            d2.borrow_mut().push(r);
            s2.close(|| {});
        })
        .unwrap();
        assert_eq!(
            s.write(b"late".to_vec(), None).unwrap_err(),
            Error::from_errno(libc::EPIPE)
        );
        assert_eq!(s.shutdown(|_| {}).unwrap_err(), Error::ALREADY);
    })
    .unwrap();
    lp.run(RunMode::Default).unwrap();
    assert_eq!(peer.join().unwrap(), b"hello world");
    assert_eq!(*done.borrow(), vec![Ok(())]);
}

/// The drain callback reports an emptied queue, and then a peer that went away: writes queued
/// after a reset fail, and the owner hears of it without a callback per write.
fn drain_callback_reports_ok_then_the_failed_write(b: Backend) {
    let lp = new_loop(b);
    let l = TcpListener::bind(&lp, localhost(), ListenOptions::default()).unwrap();
    let addr = l.local_addr();
    let peer = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).unwrap();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid linger struct for the call's duration, on our open socket.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        drop(s); // RST
        hello
    });
    let events = Rc::new(RefCell::new(Vec::new()));
    let (ev, l2, lp2) = (events.clone(), l.clone(), lp.clone());
    l.start(move |r| {
        let s = r.unwrap();
        l2.close(|| {});
        let pump = Rc::new(Timer::new(&lp2));
        let (ev2, s2, pump2) = (ev.clone(), s.clone(), pump.clone());
        s.set_on_drain(move |r| {
            ev2.borrow_mut().push(r);
            if r.is_ok() {
                // After the reset, keep writing until a write fails.
                let s3 = s2.clone();
                pump2.start(
                    Duration::from_millis(5),
                    Some(Duration::from_millis(5)),
                    move || {
                        let _ = s3.write(vec![b'x'; 65536], None);
                    },
                );
            } else {
                pump2.stop();
                s2.close(|| {});
            }
        });
        s.write(b"hello".to_vec(), None).unwrap();
    })
    .unwrap();
    lp.run(RunMode::Default).unwrap();
    assert_eq!(&peer.join().unwrap(), b"hello");
    let ev = events.borrow();
    assert_eq!(ev[0], Ok(()));
    assert!(ev[..ev.len() - 1].iter().all(|r| r.is_ok()), "{ev:?}");
    let last = *ev.last().unwrap();
    assert!(
        last == Err(Error::from_errno(libc::ECONNRESET))
            || last == Err(Error::from_errno(libc::EPIPE)),
        "{ev:?}"
    );
}

/// A stream's own state receiving its events (what the HTTP server's connections do), instead
/// of closures: an echo that counts what it saw.
#[derive(Default)]
struct EchoState {
    log: RefCell<Vec<String>>,
    echoed: Cell<usize>,
}

impl StreamEvents for EchoState {
    fn on_read(s: &Stream<Self>, ev: ReadEvent<'_>) {
        match ev {
            ReadEvent::Data(d) => {
                s.echoed.set(s.echoed.get() + d.len());
                s.write(d.to_vec(), None).unwrap();
            }
            ReadEvent::Eof => {
                s.log.borrow_mut().push("eof".into());
                s.shutdown(|_| {}).unwrap();
            }
            ReadEvent::Error(e) => s.log.borrow_mut().push(format!("error {e:?}")),
        }
    }
    fn on_drain(s: &Stream<Self>, r: asyncloop::error::Result<()>) {
        s.log.borrow_mut().push(format!("drain {}", r.is_ok()));
    }
    fn on_closing(&self) {
        self.log.borrow_mut().push("closing".into());
    }
    fn on_closed(s: &Stream<Self>) {
        s.log.borrow_mut().push("closed".into());
        s.event_loop().stop();
    }
}

fn stream_state_receives_the_events(b: Backend) {
    let lp = new_loop(b);
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let s = Stream::adopt(&lp, mine.into(), EchoState::default()).unwrap();
    s.start_reading().unwrap();
    assert_eq!(s.start_reading(), Err(Error::ALREADY));
    let peer = std::thread::spawn(move || {
        let mut theirs = theirs;
        theirs.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        theirs.read_exact(&mut got).unwrap();
        theirs.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        theirs.read_to_end(&mut rest).unwrap(); // ends at our shutdown
        (got, rest)
    });
    let weak = s.downgrade();
    let t = Timer::new(&lp);
    let s2 = s.clone();
    t.start(
        Duration::from_millis(20),
        Some(Duration::from_millis(20)),
        move || {
            if s2.log.borrow().iter().any(|e| e == "eof") {
                s2.begin_close();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
    drop(t);
    assert_eq!(peer.join().unwrap(), (*b"ping", Vec::new()));
    assert_eq!(s.echoed.get(), 4);
    assert_eq!(*s.log.borrow(), ["drain true", "eof", "closing", "closed"]);
    assert_eq!(s.write(b"late".to_vec(), None), Err(Error::CLOSED));
    drop(s);
    assert!(
        weak.upgrade().is_none(),
        "the loop keeps no reference after close"
    );
}

both_backends!(
    stream_state_receives_the_events,
    drain_callback_reports_ok_then_the_failed_write,
    echo_round_trip,
    close_cancels_in_flight_and_calls_back_last,
    no_callbacks_after_close_under_incoming_data,
    read_stop_keeps_data_for_the_next_start,
    connect_refused_and_timeout,
    listen_errors,
    ten_thousand_concurrent_echo_connections,
    shutdown_after_writes,
);
