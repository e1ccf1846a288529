//! Accept under EMFILE: the listener reports the error, pauses instead of spinning, and accepts
//! the waiting connections once descriptors are free again. Its own test binary, because the fd
//! limit it lowers is per process.

#[path = "common_backends.rs"]
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use asyncloop::error::Error;
use asyncloop::net::{ListenOptions, TcpListener};
use asyncloop::reactor::{Backend, RunMode, Timer};

fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-parameter.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn accept_pauses_under_emfile_and_recovers(b: Backend) {
    let lp = common::new_loop(b);
    let l = TcpListener::bind(
        &lp,
        "127.0.0.1:0".parse().unwrap(),
        ListenOptions::default(),
    )
    .unwrap();
    // Five clients complete their handshakes into the backlog.
    let clients: Vec<_> = (0..5)
        .map(|_| std::net::TcpStream::connect(l.local_addr()).unwrap())
        .collect();
    // Use up every descriptor the process may have.
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
    }
    assert!(!hog.is_empty());
    let accepted = Rc::new(RefCell::new(Vec::new()));
    let errors = Rc::new(RefCell::new(Vec::new()));
    let (a, e) = (accepted.clone(), errors.clone());
    l.start(move |r| match r {
        Ok(s) => a.borrow_mut().push(s),
        Err(err) => e.borrow_mut().push(err),
    })
    .unwrap();
    let cpu0 = cpu_time();
    let t = Timer::new(&lp);
    let lp2 = lp.clone();
    t.start(Duration::from_millis(500), None, move || lp2.stop());
    lp.run(RunMode::Default).unwrap();
    let cpu = cpu_time() - cpu0;
    assert!(accepted.borrow().is_empty());
    let n_err = errors.borrow().len();
    assert!(n_err >= 1, "EMFILE was reported");
    assert!(errors
        .borrow()
        .iter()
        .all(|e| *e == Error::from_errno(libc::EMFILE)));
    // One retry per 100 ms: about 5 in 500 ms, never a busy loop.
    assert!(n_err <= 10, "{n_err} accept errors in 500 ms: busy loop");
    assert!(
        cpu < Duration::from_millis(200),
        "{cpu:?} of CPU in 500 ms: busy loop"
    );
    // Free the descriptors: the waiting connections are accepted.
    drop(hog);
    let lp3 = lp.clone();
    let a2 = accepted.clone();
    t.start(
        Duration::from_millis(10),
        Some(Duration::from_millis(10)),
        move || {
            if a2.borrow().len() == 5 {
                lp3.stop();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
    assert_eq!(accepted.borrow().len(), 5);
    t.stop();
    for s in accepted.borrow().iter() {
        s.close(|| {});
    }
    l.close(|| {});
    lp.run(RunMode::Default).unwrap();
    drop(clients);
}

/// One test runs both backends in turn: they share the process's fd limit.
#[test]
fn accept_under_emfile_both_backends() {
    accept_pauses_under_emfile_and_recovers(Backend::Uring);
    accept_pauses_under_emfile_and_recovers(Backend::Epoll);
}
