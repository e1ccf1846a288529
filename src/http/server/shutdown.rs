//! Graceful shutdown: stop accepting, close idle connections, let in-flight requests finish
//! for the grace period, then close the rest and report once everything is closed.

use std::rc::Rc;
use std::time::Duration;

use super::connection::ConnRef;
use super::ServerInner;
use crate::error::{Error, Result};
use crate::reactor::Timer;

impl ServerInner {
    /// `ALREADY` (and `done` is dropped unrun) when a shutdown was asked for before.
    pub(super) fn shutdown(self: Rc<Self>, grace: Duration, done: Box<dyn FnOnce()>) -> Result<()> {
        if self.stopping.replace(true) {
            return Err(Error::ALREADY);
        }
        *self.on_stopped.borrow_mut() = Some(done);
        for l in self.listeners.borrow_mut().drain(..) {
            let weak = self.me.clone();
            l.close(move || {
                if let Some(srv) = weak.upgrade() {
                    srv.listeners_open.set(srv.listeners_open.get() - 1);
                    srv.check_stopped();
                }
            });
        }
        // A connection with nothing pending closes now; any other finishes what it has (the
        // requests it was given and the responses already made, written or not) and closes.
        let conns: Vec<ConnRef> = self.conns.borrow().iter().map(|(_, c)| c.clone()).collect();
        for conn in conns {
            if self.upgraded_shutdown(&conn) {
                continue; // its handler closes it (the grace period bounds that)
            }
            if self.nothing_pending(&conn) && !conn.in_request() {
                self.close_now(&conn);
            } else {
                conn.close_after.set(true);
                self.maybe_finish(&conn);
            }
        }
        let t = Timer::new(&self.lp);
        let weak = self.me.clone();
        t.start(grace, None, move || {
            if let Some(srv) = weak.upgrade() {
                let conns: Vec<ConnRef> =
                    srv.conns.borrow().iter().map(|(_, c)| c.clone()).collect();
                for c in conns {
                    srv.close_now(&c);
                }
            }
        });
        *self.grace.borrow_mut() = Some(t);
        self.check_stopped();
        Ok(())
    }

    pub(super) fn check_stopped(&self) {
        if self.stopping.get() && self.listeners_open.get() == 0 && self.conns.borrow().is_empty() {
            let grace = self.grace.borrow_mut().take();
            drop(grace);
            let sweeper = self.sweeper.borrow_mut().take();
            drop(sweeper);
            if let Some(cb) = self.on_stopped.borrow_mut().take() {
                self.lp.defer(cb);
            }
        }
    }

    /// Whether a shutdown has completed and no request is outstanding (the server may be freed).
    pub(crate) fn can_free(&self) -> bool {
        self.listeners_open.get() == 0 && self.conns.borrow().is_empty() && self.active_slots() == 0
    }
}
