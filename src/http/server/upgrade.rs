//! Protocol switches (a WebSocket accept): a request that asked to upgrade is answered with a
//! switch (101) head, and when that answer reaches the front of the connection's pipeline the
//! connection stops being HTTP: its output so far (the 101 last) is queued on the stream, its
//! HTTP working state goes back to the pool, and its stream's events go to the new owner, an
//! `UpgradeHandler`, from then on. Reading resumes with the bytes that followed the request
//! head (the parser stopped there and put them back on the stream), so nothing read is lost and
//! nothing is copied twice.
//!
//! Connections that never upgrade pay nothing for this: the handlers live in a side table of
//! the server, not in every connection record.

use std::rc::Rc;

use super::connection::{ConnRef, Phase};
use super::slots::SlotState;
use super::ServerInner;
use crate::error::{Error, Result};
use crate::net::{ReadEvent, WeakStream};
use crate::reactor::Token;

/// The new owner of a connection that switched protocols. Every method runs on the loop, one
/// at a time; any may call any method of the `UpgradedStream`.
pub trait UpgradeHandler: 'static {
    /// The switch answer is queued on `stream` and the connection is this handler's: called
    /// once, then reading starts. Not called if the connection closes first.
    fn on_takeover(&self, stream: UpgradedStream);
    /// Bytes received (the handler may modify them in place).
    fn on_data(&self, data: &mut [u8]);
    /// The peer finished sending.
    fn on_eof(&self);
    /// Reading failed (the connection was reset).
    fn on_error(&self, e: Error);
    /// The stream's write queue emptied.
    fn on_drain(&self);
    /// The server is shutting down: finish soon (its grace period ends with a close).
    fn on_shutdown(&self);
    /// The connection is closed, taken over or not: the last call.
    fn on_closed(&self);
}

/// The stream of a connection that switched protocols, for its new owner. It does not keep the
/// connection alive; once the connection is closed every call is `CLOSED` or does nothing.
#[derive(Clone)]
pub struct UpgradedStream {
    conn: WeakStream<super::connection::Conn>,
}

impl UpgradedStream {
    fn conn(&self) -> Result<ConnRef> {
        match self.conn.upgrade() {
            Some(c) if !c.closing.get() => Ok(c),
            _ => Err(Error::CLOSED),
        }
    }

    fn server(c: &ConnRef) -> Option<Rc<ServerInner>> {
        c.srv.upgrade()
    }

    /// Queues `data` after what is queued already (the switch answer first of all).
    pub fn write(&self, data: Vec<u8>) -> Result<()> {
        self.conn()?.write(data, None)
    }

    /// Bytes queued and not yet handed to the kernel.
    pub fn write_queue_size(&self) -> usize {
        self.conn().map_or(0, |c| c.write_queue_size())
    }

    /// Shuts down the sending side once the queue is sent.
    pub fn shutdown(&self) -> Result<()> {
        self.conn()?.shutdown(|_| {})
    }

    /// Stops reading; `rest` (bytes given to `on_data` but not used yet) comes first when
    /// reading resumes.
    pub fn pause_reading(&self, rest: &[u8]) {
        if let Ok(c) = self.conn() {
            if let Some(srv) = Self::server(&c) {
                c.unread(rest);
                srv.pause_reading(&c);
            }
        }
    }

    /// Resumes reading after `pause_reading`.
    pub fn resume_reading(&self) -> Result<()> {
        let c = self.conn()?;
        let srv = Self::server(&c).ok_or(Error::CLOSED)?;
        if c.read_paused.get() {
            srv.start_reading(&c)?;
        }
        Ok(())
    }

    /// Closes the connection at once (queued output is dropped); `on_closed` follows.
    pub fn close(&self) {
        if let Some(c) = self.conn.upgrade() {
            if let Some(srv) = Self::server(&c) {
                srv.close_now(&c);
            }
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<std::net::SocketAddr> {
        self.conn()?.peer_addr()
    }
}

impl ServerInner {
    /// Answers the upgrade request in `slot` with `head` (a complete 101 head) and hands the
    /// connection to `handler` once that answer is at the front of the pipeline. `INVALID` for
    /// a request that did not ask to upgrade (the request stays unanswered); `CLOSED` while
    /// shutting down; `CANCELLED` when the client has gone (the slot is freed), `ALREADY` for
    /// an answered request.
    pub(crate) fn respond_upgrade(
        &self,
        slot: Token,
        head: &[u8],
        handler: Rc<dyn UpgradeHandler>,
    ) -> Result<()> {
        let (conn, seq) = self.live(slot, SlotState::Waiting)?;
        // SAFETY: the slot is live; its data stays until free_slot below.
        let upgrade = unsafe { &*self.slot_data(slot).ok_or(Error::ALREADY)? }.upgrade;
        if !upgrade {
            return Err(Error::INVALID);
        }
        if self.stopping.get() {
            return Err(Error::CLOSED);
        }
        let pos = conn.position(seq).ok_or(Error::ALREADY)?;
        let key = conn.key().ok_or(Error::CLOSED)?;
        self.with_buf(&conn, pos, |buf| buf.extend_from_slice(head));
        {
            let mut w = self.work(&conn);
            let p = &mut w.pipeline[pos];
            p.done = true;
            p.close = false;
            p.upgrade = true;
        }
        self.upgraded.borrow_mut().insert(key, handler);
        self.free_slot(slot);
        self.advance(&conn);
        self.schedule_flush(&conn);
        Ok(())
    }

    /// The handler of an upgraded (or upgrading) connection.
    fn upgrade_handler(&self, conn: &ConnRef) -> Option<Rc<dyn UpgradeHandler>> {
        let key = conn.key()?;
        self.upgraded.borrow().get(&key).cloned()
    }

    /// The switch answer left the pipeline: the connection becomes its handler's.
    pub(super) fn take_over(&self, conn: &ConnRef) {
        conn.set_phase(Phase::Upgraded, self.now_ms());
        conn.close_after.set(false);
        self.abort_pipeline(conn); // none: parsing stopped at the upgrade request
        let out = conn.take_out();
        if !out.is_empty() && conn.write(out, None).is_err() {
            self.close_now(conn);
            return;
        }
        self.release_work(conn);
        let Some(h) = self.upgrade_handler(conn) else {
            self.close_now(conn);
            return;
        };
        h.on_takeover(UpgradedStream {
            conn: conn.downgrade(),
        });
        if self.stopping.get() {
            h.on_shutdown();
        }
        if !conn.closing.get() && conn.read_paused.get() && self.start_reading(conn).is_err() {
            self.close_now(conn);
        }
    }

    /// A read event of an upgraded connection, for its handler.
    pub(super) fn upgraded_read(&self, conn: &ConnRef, ev: ReadEvent<'_>) {
        let Some(h) = self.upgrade_handler(conn) else {
            return;
        };
        match ev {
            ReadEvent::Data(d) => h.on_data(d),
            ReadEvent::Eof => h.on_eof(),
            ReadEvent::Error(e) => h.on_error(e),
        }
    }

    /// The write queue of an upgraded connection emptied.
    pub(super) fn upgraded_drain(&self, conn: &ConnRef) {
        if let Some(h) = self.upgrade_handler(conn) {
            h.on_drain();
        }
    }

    /// An upgraded connection is closed: its handler hears it last, and is dropped.
    pub(super) fn upgraded_closed(&self, conn: &ConnRef) {
        let h = conn
            .key()
            .and_then(|k| self.upgraded.borrow_mut().remove(&k));
        if let Some(h) = h {
            h.on_closed();
        }
    }

    /// Tells the upgraded connections that the server is stopping; true if `conn` is one.
    pub(super) fn upgraded_shutdown(&self, conn: &ConnRef) -> bool {
        if conn.phase.get() != Phase::Upgraded {
            return false;
        }
        if let Some(h) = self.upgrade_handler(conn) {
            h.on_shutdown();
        }
        true
    }
}
