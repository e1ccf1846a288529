//! A connection lent to one user, a transaction or a COPY: while leased, the pool sends it
//! nothing else. The lease goes back to the pool when it is dropped, exactly once; work the
//! holder queued before (a `ROLLBACK`, say) still runs first, since a connection runs its
//! pipeline in order.

use std::rc::{Rc, Weak};

use super::conn::Conn;
use super::pool::PoolInner;
use super::result::PgError;
use crate::reactor::Loop;

/// Called once with a granted lease or why none could be had.
pub(crate) type LeaseCb = Box<dyn FnOnce(Result<Lease, PgError>)>;

pub(crate) struct Lease {
    conn: Rc<Conn>,
    pool: Weak<PoolInner>,
    lp: Loop,
}

impl Lease {
    /// Wraps `conn`, already marked leased by the pool.
    pub(crate) fn new(conn: Rc<Conn>, pool: Weak<PoolInner>, lp: Loop) -> Lease {
        Lease { conn, pool, lp }
    }

    pub(crate) fn conn(&self) -> &Rc<Conn> {
        &self.conn
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let hook = self.conn.idle_hook.borrow_mut().take();
        drop(hook);
        self.conn.leased.set(false);
        // Queued work may use the connection now; from the loop, not from inside whatever
        // dropped the lease.
        let pool = self.pool.clone();
        self.lp.defer(move || {
            if let Some(p) = pool.upgrade() {
                p.drain();
            }
        });
    }
}
