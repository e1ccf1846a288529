//! The loop on both backends: timers, posts from other threads, stop, backend selection.

#[path = "common_backends.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asyncloop::reactor::{Backend, FdWatch, Loop, LoopOptions, Readiness, RunMode, Timer};
use common::new_loop;

fn timers_fire_in_deadline_order(b: Backend) {
    // Timers count from the loop's time of the turn (libuv's uv_now), which is no later than
    // this: the loop was made after it.
    let start = Instant::now();
    let lp = new_loop(b);
    let order = Rc::new(RefCell::new(Vec::new()));
    let mut timers = Vec::new();
    for (i, ms) in [30u64, 10, 20, 0].iter().enumerate() {
        let t = Timer::new(&lp);
        let o = order.clone();
        t.start(Duration::from_millis(*ms), None, move || {
            o.borrow_mut().push(i)
        });
        timers.push(t);
    }
    assert!(!lp.run(RunMode::Default).unwrap());
    assert_eq!(*order.borrow(), vec![3, 1, 2, 0]);
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(timers.iter().all(|t| !t.is_active()));
}

fn repeating_timer_stops_itself(b: Backend) {
    let lp = new_loop(b);
    let count = Rc::new(Cell::new(0));
    let t = Rc::new(Timer::new(&lp));
    let (c, t2) = (count.clone(), Rc::downgrade(&t));
    t.start(
        Duration::from_millis(1),
        Some(Duration::from_millis(2)),
        move || {
            c.set(c.get() + 1);
            if c.get() == 5 {
                t2.upgrade().unwrap().stop();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
    assert_eq!(count.get(), 5);
    assert!(!t.is_active());
}

fn stopped_and_dropped_timers_never_fire(b: Backend) {
    let lp = new_loop(b);
    let fired = Rc::new(Cell::new(0));
    let keep = Timer::new(&lp);
    let f = fired.clone();
    keep.start(Duration::from_millis(5), None, move || f.set(f.get() + 100));
    let stopped = Timer::new(&lp);
    let f = fired.clone();
    stopped.start(Duration::from_millis(1), None, move || f.set(f.get() + 1));
    stopped.stop();
    {
        let dropped = Timer::new(&lp);
        let f = fired.clone();
        dropped.start(Duration::from_millis(1), None, move || f.set(f.get() + 1));
    }
    lp.run(RunMode::Default).unwrap();
    assert_eq!(fired.get(), 100);
    assert_eq!(lp.open_handles(), 2);
}

fn many_timers_are_cheap(b: Backend) {
    let lp = new_loop(b);
    let fired = Rc::new(Cell::new(0usize));
    let mut timers = Vec::new();
    for i in 0..100_000u64 {
        let t = Timer::new(&lp);
        let f = fired.clone();
        t.start(Duration::from_millis(i % 50), None, move || {
            f.set(f.get() + 1)
        });
        // Restart half of them: leaves stale heap entries behind.
        if i % 2 == 0 {
            let f = fired.clone();
            t.start(Duration::from_millis(i % 7), None, move || {
                f.set(f.get() + 1)
            });
        }
        timers.push(t);
    }
    lp.run(RunMode::Default).unwrap();
    assert_eq!(fired.get(), 100_000);
}

fn timer_callback_may_free_its_timer(b: Backend) {
    let lp = new_loop(b);
    let slot: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(Some(Timer::new(&lp))));
    let s = slot.clone();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    slot.borrow().as_ref().unwrap().start(
        Duration::ZERO,
        Some(Duration::from_millis(1)),
        move || {
            r.set(true);
            s.borrow_mut().take();
        },
    );
    lp.run(RunMode::Default).unwrap();
    assert!(ran.get());
    assert_eq!(lp.open_handles(), 0);
}

fn posts_from_threads_run_on_the_loop(b: Backend) {
    let lp = new_loop(b);
    let remote = lp.remote();
    let count = Arc::new(AtomicUsize::new(0));
    let loop_thread = std::thread::current().id();
    // A timer keeps the loop alive while the threads post; the last job stops the loop.
    let keepalive = Timer::new(&lp);
    keepalive.start(Duration::from_secs(10), None, || {
        panic!("posts never arrived")
    });
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (r, c) = (remote.clone(), count.clone());
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    let (c, r2) = (c.clone(), r.clone());
                    r.post(Box::new(move || {
                        assert_eq!(std::thread::current().id(), loop_thread);
                        if c.fetch_add(1, Ordering::SeqCst) + 1 == 4000 {
                            r2.stop();
                        }
                    }))
                    .unwrap_or_else(|_| panic!("post refused"));
                }
            })
        })
        .collect();
    lp.run(RunMode::Default).unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 4000);
}

fn stop_from_another_thread(b: Backend) {
    let lp = new_loop(b);
    let t = Timer::new(&lp);
    t.start(Duration::from_secs(30), None, || {
        panic!("stop did not stop the loop")
    });
    let r = lp.remote();
    let th = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        r.stop();
    });
    let start = Instant::now();
    assert!(lp.run(RunMode::Default).unwrap(), "timer still armed");
    assert!(start.elapsed() < Duration::from_secs(5));
    th.join().unwrap();
}

fn run_modes(b: Backend) {
    let lp = new_loop(b);
    // Nothing to do: every mode returns at once, not alive.
    assert!(!lp.run(RunMode::NoWait).unwrap());
    assert!(!lp.run(RunMode::Once).unwrap());
    let t = Timer::new(&lp);
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    t.start(Duration::from_millis(20), None, move || f.set(true));
    assert!(lp.run(RunMode::NoWait).unwrap());
    assert!(!fired.get());
    // Once waits for the timer.
    lp.run(RunMode::Once).unwrap();
    assert!(fired.get());
    // A callback cannot run the loop again.
    let lp2 = lp.clone();
    let nested = Rc::new(Cell::new(None));
    let n = nested.clone();
    t.start(Duration::ZERO, None, move || {
        n.set(Some(lp2.run(RunMode::NoWait).unwrap_err()))
    });
    lp.run(RunMode::Default).unwrap();
    assert_eq!(nested.get(), Some(asyncloop::error::Error::ALREADY));
}

fn fd_watch_reports_readable_and_writable(b: Backend) {
    let lp = new_loop(b);
    let mut fds = [0; 2];
    // SAFETY: test-owned pipe.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
        0
    );
    let events = Rc::new(RefCell::new(Vec::new()));
    let e = events.clone();
    let rfd = fds[0];
    let lp2 = lp.clone();
    let reader = FdWatch::new(&lp, rfd, move |r| {
        let mut buf = [0u8; 16];
        // SAFETY: reading into a local buffer from our pipe.
        let n = unsafe { libc::read(rfd, buf.as_mut_ptr().cast(), 16) };
        e.borrow_mut().push((r, n));
        lp2.stop();
    });
    reader
        .set_interest(Readiness {
            readable: true,
            writable: false,
        })
        .unwrap();
    let wrote = Rc::new(Cell::new(0));
    let w = wrote.clone();
    let wfd = fds[1];
    let writer = Rc::new(RefCell::new(None::<FdWatch>));
    let wr = writer.clone();
    *writer.borrow_mut() = Some(FdWatch::new(&lp, wfd, move |r| {
        assert!(r.writable);
        // SAFETY: writing 3 bytes from a static buffer to our pipe.
        unsafe { libc::write(wfd, b"abc".as_ptr().cast(), 3) };
        w.set(w.get() + 1);
        // Writable once is enough: switch the interest off from inside the callback.
        wr.borrow()
            .as_ref()
            .unwrap()
            .set_interest(Readiness::default())
            .unwrap();
    }));
    writer
        .borrow()
        .as_ref()
        .unwrap()
        .set_interest(Readiness {
            readable: false,
            writable: true,
        })
        .unwrap();
    lp.run(RunMode::Default).unwrap();
    assert_eq!(wrote.get(), 1);
    assert_eq!(
        events.borrow()[0],
        (
            Readiness {
                readable: true,
                writable: false
            },
            3
        )
    );
    drop(reader);
    // SAFETY: closing our pipe.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    lp.run(RunMode::Default).unwrap();
    assert_eq!(lp.pending_ops(), 0);
}

/// A program that polls the loop with `NoWait` turns (a game loop, a host event loop) sees
/// its I/O complete: on io_uring with deferred task work, a zero-timeout turn must still run
/// the kernel's pending work.
fn no_wait_turns_complete_io(b: Backend) {
    let lp = new_loop(b);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"ping").unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let stream = Rc::new(RefCell::new(None));
    let s2 = stream.clone();
    let conn = asyncloop::net::TcpStream::connect(&lp, addr, None, move |r| {
        r.expect("connect");
        let s: asyncloop::net::TcpStream = s2.borrow().clone().unwrap();
        s.read_start(move |ev| {
            if let asyncloop::net::ReadEvent::Data(d) = ev {
                g.borrow_mut().extend_from_slice(d);
            }
        })
        .unwrap();
    })
    .unwrap();
    *stream.borrow_mut() = Some(conn.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.borrow().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "NoWait turns never completed the read"
        );
        lp.run(RunMode::NoWait).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(&got.borrow()[..], b"ping");
    conn.close(|| ());
    stream.borrow_mut().take();
    lp.run(RunMode::Default).unwrap();
    peer.join().unwrap();
}

both_backends! {
    no_wait_turns_complete_io,
    timers_fire_in_deadline_order,
    repeating_timer_stops_itself,
    stopped_and_dropped_timers_never_fire,
    many_timers_are_cheap,
    timer_callback_may_free_its_timer,
    posts_from_threads_run_on_the_loop,
    stop_from_another_thread,
    run_modes,
    fd_watch_reports_readable_and_writable,
}

#[test]
fn auto_prefers_uring_and_names_parse() {
    if std::env::var_os("ASYNCLOOP_BACKEND").is_none() {
        let uring_works = Loop::new(LoopOptions {
            backend: Backend::Uring,
            queue_depth: 64,
        })
        .is_ok();
        let lp = Loop::new(LoopOptions::default()).unwrap();
        assert_eq!(
            lp.backend(),
            if uring_works {
                Backend::Uring
            } else {
                Backend::Epoll
            }
        );
    }
    assert_eq!(Backend::parse("EPOLL"), Some(Backend::Epoll));
    assert_eq!(Backend::parse("io_uring"), Some(Backend::Uring));
    assert_eq!(Backend::parse("kqueue"), None);
}
