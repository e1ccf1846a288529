//! Connecting to a host that has several addresses: each is tried in turn until one accepts,
//! the way libcurl and libpq go through a host name's addresses.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::stream::TcpStream;
use crate::error::{Error, Result};
use crate::reactor::Loop;

/// Runs once with the outcome of all attempts.
type Done = Box<dyn FnOnce(Result<()>)>;

/// The attempts of one `connect_first`. Kept alive by the connect callback of the attempt in
/// progress; dropped when the last attempt has reported.
struct Attempts {
    lp: Loop,
    addrs: Vec<SocketAddr>,
    next: Cell<usize>,
    deadline: Instant,
    /// The attempt in progress (closed here when it fails).
    current: RefCell<Option<TcpStream>>,
    /// The owner declined an attempt: it was closed, and no other starts.
    declined: Cell<bool>,
    adopt: Box<dyn Fn(&TcpStream) -> bool>,
    done: RefCell<Option<Done>>,
}

/// Connects to the first of `addrs` that accepts, trying them in order. Each attempt gets an
/// equal share of what is left of `timeout`, so an address that never answers leaves time for
/// the ones after it.
///
/// `adopt` receives each attempt's stream as it starts, so that its owner can close it (which
/// cancels the attempts); returning false closes that attempt and stops them (`CANCELLED`).
/// `done` runs once, possibly before this returns: `Ok` when the stream last adopted is
/// connected, else the last attempt's error (`TIMEOUT` when the time ran out, `INVALID` when
/// `addrs` is empty). A failed attempt's stream is closed here.
pub(crate) fn connect_first(
    lp: &Loop,
    addrs: Vec<SocketAddr>,
    timeout: Duration,
    adopt: impl Fn(&TcpStream) -> bool + 'static,
    done: impl FnOnce(Result<()>) + 'static,
) {
    let attempts = Rc::new(Attempts {
        lp: lp.clone(),
        addrs,
        next: Cell::new(0),
        deadline: lp.now() + timeout,
        current: RefCell::new(None),
        declined: Cell::new(false),
        adopt: Box::new(adopt),
        done: RefCell::new(Some(Box::new(done))),
    });
    attempts.try_next(Error::INVALID);
}

impl Attempts {
    /// Starts the next attempt; reports `last` when none is left.
    fn try_next(self: &Rc<Self>, mut last: Error) {
        while let Some(&addr) = self.addrs.get(self.next.get()) {
            let left = (self.addrs.len() - self.next.get()) as u32;
            self.next.set(self.next.get() + 1);
            let remaining = self.deadline.saturating_duration_since(self.lp.now());
            if remaining.is_zero() {
                last = Error::TIMEOUT;
                break;
            }
            let me = self.clone();
            match TcpStream::connect(&self.lp, addr, Some(remaining / left), move |r| {
                me.attempt_ended(r)
            }) {
                Ok(s) => {
                    let wanted = (self.adopt)(&s);
                    *self.current.borrow_mut() = Some(s.clone());
                    if !wanted {
                        self.declined.set(true);
                        s.close(|| ());
                    }
                    return;
                }
                Err(e) => last = e,
            }
        }
        self.finish(Err(last));
    }

    fn attempt_ended(self: &Rc<Self>, r: Result<()>) {
        match r {
            Ok(()) => {
                self.current.borrow_mut().take();
                self.finish(Ok(()));
            }
            Err(e) => {
                let failed = self.current.borrow_mut().take();
                if let Some(s) = failed {
                    s.close(|| ());
                }
                if self.declined.get() {
                    self.finish(Err(Error::CANCELLED));
                } else if e == Error::CANCELLED || e == Error::CLOSED {
                    self.finish(Err(e)); // the owner closed the attempt: no more of them
                } else {
                    self.try_next(e);
                }
            }
        }
    }

    fn finish(&self, r: Result<()>) {
        let done = self.done.borrow_mut().take();
        if let Some(done) = done {
            done(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ListenOptions, TcpListener};
    use crate::reactor::{Backend, LoopOptions, RunMode};

    /// A loop and a listener on 127.0.0.1 that counts and closes what it accepts.
    fn listening(backend: Backend) -> (Loop, TcpListener, Rc<Cell<usize>>) {
        let lp = Loop::new(LoopOptions {
            backend,
            queue_depth: 64,
        })
        .expect("loop");
        let l = TcpListener::bind(
            &lp,
            "127.0.0.1:0".parse().unwrap(),
            ListenOptions::default(),
        )
        .expect("bind");
        let accepted = Rc::new(Cell::new(0));
        let a = accepted.clone();
        l.start(move |s| {
            a.set(a.get() + 1);
            s.expect("accepted").close(|| ());
        })
        .expect("listen");
        (lp, l, accepted)
    }

    /// 127.0.0.N at the listener's port, where nothing listens: a connect there is refused.
    fn refused(l: &TcpListener, n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], l.local_addr().port()))
    }

    /// Runs `connect_first` until it reports (and, on success, the listener has accepted);
    /// returns the outcome and how many attempts were adopted.
    fn attempt(
        lp: &Loop,
        accepted: &Cell<usize>,
        addrs: Vec<SocketAddr>,
        keep_going: bool,
    ) -> (Result<()>, usize) {
        let adopted = Rc::new(RefCell::new(Vec::new()));
        let outcome = Rc::new(RefCell::new(None));
        let (ad, out) = (adopted.clone(), outcome.clone());
        connect_first(
            lp,
            addrs,
            Duration::from_secs(5),
            move |s| {
                ad.borrow_mut().push(s.clone());
                keep_going
            },
            move |r| *out.borrow_mut() = Some(r),
        );
        let end = Instant::now() + Duration::from_secs(5);
        let waiting = || match *outcome.borrow() {
            None => true,
            Some(r) => r.is_ok() && accepted.get() == 0,
        };
        while waiting() && Instant::now() < end {
            lp.run(RunMode::Once).expect("run");
        }
        for s in adopted.borrow().iter() {
            s.close(|| ());
        }
        lp.run(RunMode::NoWait).expect("run");
        let r = outcome.borrow_mut().take().expect("connect_first reported");
        let n = adopted.borrow().len();
        (r, n)
    }

    fn each_backend(test: impl Fn(Backend)) {
        test(Backend::Epoll);
        if Loop::new(LoopOptions::default()).map(|l| l.backend()) == Ok(Backend::Uring) {
            test(Backend::Uring);
        }
    }

    #[test]
    fn moves_on_to_the_address_that_accepts() {
        each_backend(|b| {
            let (lp, l, accepted) = listening(b);
            let addrs = vec![refused(&l, 2), l.local_addr()];
            assert_eq!(attempt(&lp, &accepted, addrs, true), (Ok(()), 2), "{b:?}");
            assert_eq!(accepted.get(), 1, "{b:?}");
        });
    }

    #[test]
    fn reports_the_last_error_when_every_address_fails() {
        each_backend(|b| {
            let (lp, l, accepted) = listening(b);
            let addrs = vec![refused(&l, 2), refused(&l, 3)];
            let refused_err = Err(Error::from_errno(libc::ECONNREFUSED));
            assert_eq!(
                attempt(&lp, &accepted, addrs, true),
                (refused_err, 2),
                "{b:?}"
            );
            let none = attempt(&lp, &accepted, Vec::new(), true);
            assert_eq!(none, (Err(Error::INVALID), 0), "{b:?}");
            assert_eq!(accepted.get(), 0, "{b:?}");
        });
    }

    #[test]
    fn an_owner_that_declines_stops_the_attempts() {
        each_backend(|b| {
            let (lp, l, accepted) = listening(b);
            let addrs = vec![refused(&l, 2), l.local_addr()];
            let r = attempt(&lp, &accepted, addrs, false);
            assert_eq!(r, (Err(Error::CANCELLED), 1), "{b:?}");
            assert_eq!(accepted.get(), 0, "{b:?}");
        });
    }
}
