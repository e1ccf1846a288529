//! Readiness watches on a foreign file descriptor (for example libpq's socket): readable and
//! writable interest switched on and off at will. The watch never owns or closes the fd.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;

use super::{Completion, Loop, Op, OpOwner, Token};
use crate::error::Result;

/// What became ready.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
}

type WatchCb = Box<dyn FnMut(Readiness)>;

struct WatchInner {
    fd: RawFd,
    read: Cell<Option<Token>>,
    write: Cell<Option<Token>>,
    want: Cell<Readiness>,
    cb: RefCell<Option<WatchCb>>,
}

/// A readiness watch. Dropping it stops it; late completions are then ignored.
pub struct FdWatch {
    lp: Loop,
    inner: Rc<WatchInner>,
}

impl OpOwner for WatchInner {
    fn complete(self: Rc<Self>, lp: &Loop, op: Op, c: &Completion, _data: &mut [u8]) {
        let is_read = matches!(op, Op::PollRead { .. });
        let slot = if is_read { &self.read } else { &self.write };
        if slot.get() != Some(c.token) {
            return; // cancelled or replaced: stale
        }
        if !c.more {
            slot.set(None);
            if c.res >= 0 {
                // One-shot (io_uring) or ended by the kernel: re-arm while still wanted.
                if let Ok(t) = lp.submit(op, self.clone()) {
                    slot.set(Some(t));
                }
            } else {
                // An error (say EBADF) ends the watch on that side; the callback still runs so
                // that the application's own I/O call meets the error.
                let mut w = self.want.get();
                if is_read {
                    w.readable = false
                } else {
                    w.writable = false
                }
                self.want.set(w);
            }
        }
        let ev = Readiness {
            readable: is_read,
            writable: !is_read,
        };
        let cb = self.cb.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb(ev);
            let mut slot = self.cb.borrow_mut();
            if slot.is_none() {
                *slot = Some(cb);
            }
        }
    }
}

impl FdWatch {
    /// A watch on `fd` calling `cb` whenever a wanted readiness is reported.
    pub fn new(lp: &Loop, fd: RawFd, cb: impl FnMut(Readiness) + 'static) -> FdWatch {
        FdWatch {
            lp: lp.clone(),
            inner: Rc::new(WatchInner {
                fd,
                read: Cell::new(None),
                write: Cell::new(None),
                want: Cell::new(Readiness::default()),
                cb: RefCell::new(Some(Box::new(cb))),
            }),
        }
    }

    /// The watched fd.
    pub fn fd(&self) -> RawFd {
        self.inner.fd
    }

    /// Sets the interest. Readiness is level-like: while wanted and ready, it is reported again
    /// on later loop turns.
    pub fn set_interest(&self, want: Readiness) -> Result<()> {
        let fd = self.inner.fd;
        self.inner.want.set(want);
        for (wanted, slot, op) in [
            (want.readable, &self.inner.read, Op::PollRead { fd }),
            (want.writable, &self.inner.write, Op::PollWrite { fd }),
        ] {
            match (wanted, slot.get()) {
                (true, None) => slot.set(Some(self.lp.submit(op, self.inner.clone())?)),
                (false, Some(t)) => {
                    slot.set(None);
                    self.lp.cancel(t);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Current interest.
    pub fn interest(&self) -> Readiness {
        self.inner.want.get()
    }
}

impl Drop for FdWatch {
    fn drop(&mut self) {
        let _ = self.set_interest(Readiness::default());
        let cb = self.inner.cb.borrow_mut().take();
        drop(cb);
    }
}
