//! Timeouts: one periodic sweeper per server checks every connection's phase age (head, body,
//! idle, linger) and stalled writes.

use std::time::Duration;

use super::connection::{ConnRef, Phase};
use super::ServerInner;
use crate::reactor::Timer;

/// How long a closing connection keeps reading (and discarding) after its last response, so
/// the client's unread bytes do not turn the close into a reset that loses that response.
const LINGER: Duration = Duration::from_secs(2);

impl ServerInner {
    pub(super) fn start_sweeper(&self) {
        if self.sweeper.borrow().is_some() {
            return;
        }
        let o = &self.opts;
        let shortest = o
            .header_timeout
            .min(o.body_timeout)
            .min(o.idle_timeout)
            .min(o.write_timeout);
        let period = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let t = Timer::new(&self.lp);
        let weak = self.me.clone();
        t.start(period, Some(period), move || {
            if let Some(srv) = weak.upgrade() {
                srv.sweep();
            }
        });
        *self.sweeper.borrow_mut() = Some(t);
    }

    fn sweep(&self) {
        let now = self.lp.now();
        let now_ms = self.now_ms();
        let mut list = std::mem::take(&mut *self.sweep_buf.borrow_mut());
        list.extend(self.conns.borrow().iter().map(|(_, c)| c.clone()));
        let o = &self.opts;
        for conn in list.drain(..) {
            if conn.closing.get() {
                continue;
            }
            if conn
                .write_stalled_since()
                .is_some_and(|t| now.duration_since(t) >= o.write_timeout)
            {
                self.close_now(&conn);
                continue;
            }
            let age = Duration::from_millis(now_ms.saturating_sub(conn.since.get()));
            match conn.phase.get() {
                Phase::Head if conn.pipeline_is_empty() && age >= o.header_timeout => {
                    if conn.in_request() {
                        self.timeout_408(&conn);
                    } else {
                        self.close_now(&conn);
                    }
                }
                Phase::Body if age >= o.body_timeout => self.timeout_408(&conn),
                Phase::Idle if age >= o.idle_timeout => self.close_now(&conn),
                Phase::Linger if age >= LINGER => self.close_now(&conn),
                _ => {}
            }
        }
        *self.sweep_buf.borrow_mut() = list;
    }

    fn timeout_408(&self, conn: &ConnRef) {
        if self.streaming_slot(conn).is_some() {
            // A streamed body stalled: its reader gets TIMEOUT; an answered one was being
            // discarded, and the connection closes.
            let answered = self
                .streaming_slot(conn)
                .is_some_and(|t| self.slot_data(t).is_none());
            if answered {
                self.close_now(conn);
            } else {
                self.body_failed(conn, crate::error::Error::TIMEOUT);
                self.flush(conn);
            }
            return;
        }
        self.drop_parser(conn);
        if conn.pipeline_is_empty() && conn.write_queue_size() == 0 {
            self.queue_error(conn, 408, "request not received in time");
            self.flush(conn);
        } else {
            self.close_now(conn);
        }
    }
}
