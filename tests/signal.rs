//! Signal handles on both backends: raise() and kill() to the process, from the loop's thread
//! and from others; a loop blocked in its wait woken at once; several handles on one loop and
//! on two loops on two threads; the disposition installed at the first start and put back at
//! the last stop; refused signal numbers; stop, restart and drop inside the callback.
//!
//! Signals are process-wide, so these tests take one lock each: none sees another's signals.

#[path = "common_backends.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use asyncloop::error::Error;
use asyncloop::reactor::{Backend, Loop, RunMode, Signal, Timer};
use common::new_loop;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `lp` one turn at a time until `done()` or `limit` passed; returns `done()`.
fn run_until(lp: &Loop, limit: Duration, done: impl Fn() -> bool) -> bool {
    let guard = Timer::new(lp);
    guard.start(limit, None, || {});
    while !done() && guard.is_active() {
        lp.run(RunMode::Once).unwrap();
    }
    done()
}

/// The handler currently installed for `signum` (`SIG_DFL`, `SIG_IGN` or a function).
fn disposition(signum: i32) -> libc::sighandler_t {
    // SAFETY: a query into a zeroed sigaction owned here.
    unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signum, std::ptr::null(), &mut cur), 0);
        cur.sa_sigaction
    }
}

fn set_disposition(signum: i32, handler: libc::sighandler_t) {
    // SAFETY: installs SIG_DFL or SIG_IGN from a zeroed sigaction owned here.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        assert_eq!(libc::sigaction(signum, &sa, std::ptr::null_mut()), 0);
    }
}

fn raise(signum: i32) {
    // SAFETY: plain syscall; the signal has a handler (or is ignored) in these tests.
    assert_eq!(unsafe { libc::raise(signum) }, 0);
}

fn kill_process(signum: i32) {
    // SAFETY: plain syscalls, to this process.
    assert_eq!(unsafe { libc::kill(libc::getpid(), signum) }, 0);
}

fn raise_on_the_loop_thread(b: Backend) {
    let _s = serial();
    let lp = new_loop(b);
    let got = Rc::new(RefCell::new(Vec::new()));
    let sig = Signal::new(&lp);
    let g = got.clone();
    sig.start(libc::SIGUSR1, move |n| g.borrow_mut().push(n))
        .unwrap();
    assert_eq!(sig.signum(), Some(libc::SIGUSR1));
    raise(libc::SIGUSR1);
    assert!(run_until(&lp, Duration::from_secs(5), || !got
        .borrow()
        .is_empty()));
    assert_eq!(*got.borrow(), vec![libc::SIGUSR1]);
    // Again: the handle goes on watching.
    raise(libc::SIGUSR1);
    assert!(run_until(&lp, Duration::from_secs(5), || got
        .borrow()
        .len()
        == 2));
    sig.stop();
    assert_eq!(sig.signum(), None);
    assert!(!lp.run(RunMode::NoWait).unwrap());
}

fn a_blocked_loop_wakes_for_a_signal_from_another_thread(b: Backend) {
    let _s = serial();
    let lp = new_loop(b);
    let sig = Rc::new(Signal::new(&lp));
    let when = Rc::new(Cell::new(None));
    let (w, s2) = (when.clone(), Rc::downgrade(&sig));
    sig.start(libc::SIGUSR2, move |_| {
        w.set(Some(Instant::now()));
        s2.upgrade().unwrap().stop();
    })
    .unwrap();
    let sent = Arc::new(Mutex::new(None));
    let sent2 = sent.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        *sent2.lock().unwrap() = Some(Instant::now());
        kill_process(libc::SIGUSR2);
    });
    // Nothing but the signal handle is active: the loop waits in io_uring_enter or epoll_wait
    // with no timeout, and only the signal can end the run.
    let start = Instant::now();
    assert!(!lp.run(RunMode::Default).unwrap());
    killer.join().unwrap();
    let sent = sent.lock().unwrap().expect("sent");
    let got = when.get().expect("callback ran");
    assert!(got >= sent);
    assert!(
        got - sent < Duration::from_millis(500),
        "woken {:?} after the kill",
        got - sent
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
}

fn a_once_run_interrupted_by_the_signal_runs_its_callback(b: Backend) {
    // The signal lands on the loop's own thread inside its wait, which fails with EINTR: the
    // one turn of `RunMode::Once` still delivers the callback rather than ending empty.
    let _s = serial();
    let lp = new_loop(b);
    let sig = Signal::new(&lp);
    let got = Rc::new(Cell::new(0));
    let g = got.clone();
    sig.start(libc::SIGUSR1, move |_| g.set(g.get() + 1))
        .unwrap();
    let guard = Timer::new(&lp);
    guard.start(Duration::from_secs(5), None, || {});
    // SAFETY: pthread_self has no preconditions; the id is used while this thread lives.
    let me = unsafe { libc::pthread_self() } as usize;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: the test thread waits in `run` below until this is delivered.
        assert_eq!(
            unsafe { libc::pthread_kill(me as libc::pthread_t, libc::SIGUSR1) },
            0
        );
    });
    let start = Instant::now();
    assert!(lp.run(RunMode::Once).unwrap());
    killer.join().unwrap();
    assert_eq!(got.get(), 1, "the turn ended after {:?}", start.elapsed());
}

fn two_loops_on_two_threads_both_get_it(b: Backend) {
    let _s = serial();
    let ready = Arc::new(Barrier::new(3));
    let calls = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (ready, calls) = (ready.clone(), calls.clone());
            std::thread::spawn(move || {
                let lp = new_loop(b);
                let sig = Rc::new(Signal::new(&lp));
                let s2 = Rc::downgrade(&sig);
                sig.start(libc::SIGUSR1, move |n| {
                    assert_eq!(n, libc::SIGUSR1);
                    calls.fetch_add(1, Ordering::SeqCst);
                    s2.upgrade().unwrap().stop();
                })
                .unwrap();
                ready.wait();
                let guard = Timer::new(&lp);
                let l2 = lp.clone();
                guard.start(Duration::from_secs(5), None, move || l2.stop());
                lp.run(RunMode::Once).unwrap();
                let stopped = sig.signum().is_none();
                guard.stop();
                stopped
            })
        })
        .collect();
    ready.wait();
    kill_process(libc::SIGUSR1);
    for t in threads {
        assert!(t.join().unwrap(), "a loop did not get the signal");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(disposition(libc::SIGUSR1), libc::SIG_DFL);
}

fn every_handle_of_a_signal_gets_it(b: Backend) {
    let _s = serial();
    let lp = new_loop(b);
    let count = Rc::new(Cell::new([0u32; 3]));
    let sigs: Vec<Signal> = (0..3).map(|_| Signal::new(&lp)).collect();
    for (i, s) in sigs.iter().enumerate() {
        let c = count.clone();
        let signum = if i == 2 { libc::SIGUSR2 } else { libc::SIGUSR1 };
        s.start(signum, move |_| {
            let mut v = c.get();
            v[i] += 1;
            c.set(v);
        })
        .unwrap();
    }
    raise(libc::SIGUSR1);
    assert!(run_until(&lp, Duration::from_secs(5), || count.get()[1] == 1));
    assert_eq!(count.get(), [1, 1, 0]);
    sigs[0].stop();
    raise(libc::SIGUSR1);
    raise(libc::SIGUSR2);
    assert!(run_until(&lp, Duration::from_secs(5), || count.get() == [1, 2, 1]));
    // Two deliveries before the loop turns are one callback.
    raise(libc::SIGUSR2);
    raise(libc::SIGUSR2);
    assert!(run_until(&lp, Duration::from_secs(5), || count.get()[2] == 2));
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!(count.get(), [1, 2, 2]);
}

fn the_disposition_is_installed_and_put_back(b: Backend) {
    let _s = serial();
    let lp = new_loop(b);
    set_disposition(libc::SIGUSR1, libc::SIG_IGN);
    let (s1, s2) = (Signal::new(&lp), Signal::new(&lp));
    // A new handle changes nothing; a started one installs the library's handler.
    assert_eq!(disposition(libc::SIGUSR1), libc::SIG_IGN);
    s1.start(libc::SIGUSR1, |_| {}).unwrap();
    let ours = disposition(libc::SIGUSR1);
    assert!(ours != libc::SIG_IGN && ours != libc::SIG_DFL);
    // Two loops' worth of handles: the last one to stop puts the old action back.
    let other = new_loop(b);
    let s3 = Signal::new(&other);
    s3.start(libc::SIGUSR1, |_| {}).unwrap();
    s2.start(libc::SIGUSR1, |_| {}).unwrap();
    s1.stop();
    drop(s3);
    assert_eq!(disposition(libc::SIGUSR1), ours);
    // A restart on another signal moves the handler with it.
    assert_eq!(disposition(libc::SIGUSR2), libc::SIG_DFL);
    s2.start(libc::SIGUSR2, |_| {}).unwrap();
    assert_eq!(disposition(libc::SIGUSR1), libc::SIG_IGN);
    assert_eq!(disposition(libc::SIGUSR2), ours);
    drop(s2);
    assert_eq!(disposition(libc::SIGUSR2), libc::SIG_DFL);
    // An action the program set meanwhile is left in place.
    s1.start(libc::SIGUSR1, |_| {}).unwrap();
    set_disposition(libc::SIGUSR1, libc::SIG_DFL);
    s1.stop();
    assert_eq!(disposition(libc::SIGUSR1), libc::SIG_DFL);
    assert!(!lp.run(RunMode::NoWait).unwrap());
}

fn refused_signals_change_nothing(b: Backend) {
    let _s = serial();
    let lp = new_loop(b);
    let sig = Signal::new(&lp);
    sig.start(libc::SIGUSR1, |_| {}).unwrap();
    for n in [
        0,
        -1,
        65,
        1000,
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
    ] {
        let before = (1..=64).contains(&n).then(|| disposition(n));
        assert_eq!(sig.start(n, |_| {}), Err(Error::INVALID), "signal {n}");
        if let Some(d) = before {
            assert_eq!(disposition(n), d, "signal {n}");
        }
        assert_eq!(sig.signum(), Some(libc::SIGUSR1));
    }
    // 32 is one the C library keeps for itself (its threads' cancellation): sigaction refuses.
    assert_eq!(sig.start(32, |_| {}), Err(Error::INVALID));
    assert_eq!(sig.signum(), Some(libc::SIGUSR1));
    drop(sig);
    assert_eq!(disposition(libc::SIGUSR1), libc::SIG_DFL);
}

fn a_started_handle_keeps_the_loop_alive(b: Backend) {
    let _s = serial();
    let lp = new_loop(b);
    let sig = Signal::new(&lp);
    assert!(!lp.run(RunMode::NoWait).unwrap());
    sig.start(libc::SIGHUP, |_| {}).unwrap();
    assert!(lp.run(RunMode::NoWait).unwrap());
    sig.stop();
    assert!(!lp.run(RunMode::NoWait).unwrap());
    assert_eq!(lp.open_handles(), 1);
    drop(sig);
    assert_eq!(lp.open_handles(), 0);
}

fn a_callback_may_drop_or_restart_its_handle(b: Backend) {
    let _s = serial();
    let lp = new_loop(b);
    // Dropped inside its own callback: the callback's captures go after it returns.
    let holder: Rc<RefCell<Option<Signal>>> = Rc::new(RefCell::new(None));
    let calls = Rc::new(Cell::new(0));
    let dropped = Rc::new(Cell::new(false));
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let sig = Signal::new(&lp);
    let (h, c, flag) = (holder.clone(), calls.clone(), Flag(dropped.clone()));
    sig.start(libc::SIGUSR1, move |_| {
        let _keep = &flag;
        c.set(c.get() + 1);
        drop(h.borrow_mut().take());
    })
    .unwrap();
    *holder.borrow_mut() = Some(sig);
    raise(libc::SIGUSR1);
    assert!(run_until(&lp, Duration::from_secs(5), || calls.get() == 1));
    assert!(dropped.get());
    assert_eq!(lp.open_handles(), 0);
    assert_eq!(disposition(libc::SIGUSR1), libc::SIG_DFL);
    // Restarted inside its callback on another signal: the new registration goes on.
    let sig = Rc::new(Signal::new(&lp));
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, s2) = (got.clone(), Rc::downgrade(&sig));
    sig.start(libc::SIGUSR1, move |n| {
        g.borrow_mut().push(n);
        let g2 = g.clone();
        s2.upgrade()
            .unwrap()
            .start(libc::SIGUSR2, move |n| g2.borrow_mut().push(n))
            .unwrap();
    })
    .unwrap();
    raise(libc::SIGUSR1);
    assert!(run_until(&lp, Duration::from_secs(5), || got
        .borrow()
        .len()
        == 1));
    raise(libc::SIGUSR2);
    assert!(run_until(&lp, Duration::from_secs(5), || got
        .borrow()
        .len()
        == 2));
    assert_eq!(*got.borrow(), vec![libc::SIGUSR1, libc::SIGUSR2]);
    assert_eq!(disposition(libc::SIGUSR1), libc::SIG_DFL);
    drop(sig);
    assert_eq!(disposition(libc::SIGUSR2), libc::SIG_DFL);
}

fn many_loops_come_and_go_while_signals_fly(b: Backend) {
    // Loops start, watch and are freed on several threads while another thread keeps sending
    // the signal: no write may reach a descriptor a freed loop closed and the process reused.
    let _s = serial();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    // SIGURG's default action is to ignore: a delivery between two loops harms nothing.
    let sender = std::thread::spawn(move || {
        let mut n = 0u32;
        while !st.load(Ordering::SeqCst) {
            kill_process(libc::SIGURG);
            n += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        n
    });
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut seen = 0;
                for _ in 0..100 {
                    let lp = new_loop(b);
                    let sig = Signal::new(&lp);
                    let got = Rc::new(Cell::new(false));
                    let g = got.clone();
                    sig.start(libc::SIGURG, move |_| g.set(true)).unwrap();
                    if run_until(&lp, Duration::from_secs(5), || got.get()) {
                        seen += 1;
                    }
                    drop(sig);
                    drop(lp);
                    // New descriptors take the lowest free numbers, the freed loop's among
                    // them: none may receive a wake-up meant for that loop.
                    // SAFETY: plain syscalls on eventfds made and closed here.
                    unsafe {
                        let fds = [0, 1].map(|_| libc::eventfd(0, libc::EFD_NONBLOCK));
                        assert!(fds.iter().all(|&fd| fd >= 0));
                        std::thread::sleep(Duration::from_millis(2));
                        for fd in fds {
                            let mut v = 0u64;
                            let r = libc::read(fd, (&mut v as *mut u64).cast(), 8);
                            assert_eq!(r, -1, "a signal's wake-up reached a reused descriptor");
                            libc::close(fd);
                        }
                    }
                }
                seen
            })
        })
        .collect();
    let seen: Vec<u32> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    let sent = sender.join().unwrap();
    assert_eq!(seen, vec![100, 100], "{sent} signals sent");
    assert_eq!(disposition(libc::SIGURG), libc::SIG_DFL);
}

both_backends!(
    raise_on_the_loop_thread,
    a_blocked_loop_wakes_for_a_signal_from_another_thread,
    a_once_run_interrupted_by_the_signal_runs_its_callback,
    two_loops_on_two_threads_both_get_it,
    every_handle_of_a_signal_gets_it,
    the_disposition_is_installed_and_put_back,
    refused_signals_change_nothing,
    a_started_handle_keeps_the_loop_alive,
    a_callback_may_drop_or_restart_its_handle,
    many_loops_come_and_go_while_signals_fly,
);
