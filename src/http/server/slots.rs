//! The request-slot table: a request lives in a slot from its completion until it is answered
//! (even after its client has gone). Slots are a `reactor::token` slab: a `Token` names one
//! occupant, and freeing a slot advances its generation, so a stale token is refused, never a
//! use-after-free.

use super::body::SlotExtra;
use super::connection::{Conn, ConnRef};
use super::ServerInner;
use crate::error::{Error, Result};
use crate::http::request::RequestData;
use crate::net::{Address, WeakStream};
use crate::reactor::Token;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SlotState {
    Waiting,
    Streaming,
}

pub(super) struct SlotEntry {
    pub(super) state: SlotState,
    pub(super) data: Box<RequestData>,
    pub(super) conn: WeakStream<Conn>,
    pub(super) seq: u64,
    /// The abort callback, a streamed body's reader, a chunked response's drain callback: only
    /// for the requests that use them (a request's slot stays small).
    pub(super) extra: Option<Box<SlotExtra>>,
}

impl ServerInner {
    #[inline(always)] // once per request: keep it inlined at its two callers
    pub(super) fn alloc_slot(&self, data: Box<RequestData>, conn: &ConnRef, seq: u64) -> Token {
        self.slots.borrow_mut().insert(SlotEntry {
            state: SlotState::Waiting,
            data,
            conn: conn.downgrade(),
            seq,
            extra: None,
        })
    }

    /// Frees a slot: its generation advances (stale tokens are refused) and its data returns
    /// to the pool.
    pub(super) fn free_slot(&self, t: Token) {
        let entry = self.slots.borrow_mut().remove(t);
        if let Some(e) = entry {
            drop(e.extra);
            self.recycle_data(e.data);
        }
    }

    /// Requests not yet answered.
    pub(super) fn active_slots(&self) -> usize {
        self.slots.borrow().len()
    }

    /// The request data of a live slot (stays put until the request is answered).
    pub(crate) fn slot_data(&self, t: Token) -> Option<*const RequestData> {
        self.slots
            .borrow()
            .get(t)
            .map(|e| &*e.data as *const RequestData)
    }

    /// Checks a token; `Ok(conn)` when the client is still there, `Err(CANCELLED)` (slot freed)
    /// when it is gone, `Err(ALREADY)` for a stale token or another state.
    pub(super) fn live(&self, t: Token, want: SlotState) -> Result<(ConnRef, u64)> {
        let (conn, seq) = {
            let slots = self.slots.borrow();
            let e = slots.get(t).ok_or(Error::ALREADY)?;
            if e.state != want {
                return Err(Error::ALREADY);
            }
            (e.conn.upgrade(), e.seq)
        };
        match conn {
            Some(c) if !c.closing.get() => Ok((c, seq)),
            _ => {
                self.free_slot(t);
                Err(Error::CANCELLED)
            }
        }
    }

    /// `live` and `slot_data` in one lookup.
    pub(super) fn live_data(
        &self,
        t: Token,
        want: SlotState,
    ) -> Result<(ConnRef, u64, *const RequestData)> {
        let (conn, seq, data) = {
            let slots = self.slots.borrow();
            let e = slots.get(t).ok_or(Error::ALREADY)?;
            if e.state != want {
                return Err(Error::ALREADY);
            }
            (e.conn.upgrade(), e.seq, &*e.data as *const RequestData)
        };
        match conn {
            Some(c) if !c.closing.get() => Ok((c, seq, data)),
            _ => {
                self.free_slot(t);
                Err(Error::CANCELLED)
            }
        }
    }

    /// Registers `cb` to run once if the client goes away before the request is answered.
    /// The peer (`peer`) or local address of the connection request `t` came on: `ALREADY`
    /// once it is answered, `CANCELLED` when its client has gone.
    pub(crate) fn request_address(&self, t: Token, peer: bool) -> Result<Address> {
        let conn = self
            .slots
            .borrow()
            .get(t)
            .ok_or(Error::ALREADY)?
            .conn
            .upgrade();
        let conn = conn.filter(|c| !c.closing.get()).ok_or(Error::CANCELLED)?;
        if peer {
            conn.peer_address()
        } else {
            conn.local_address()
        }
    }

    pub(crate) fn on_abort(&self, t: Token, cb: Box<dyn FnOnce()>) -> Result<()> {
        let mut slots = self.slots.borrow_mut();
        let e = slots.get_mut(t).ok_or(Error::ALREADY)?;
        if e.conn.upgrade().is_none_or(|c| c.closing.get()) {
            return Err(Error::CANCELLED);
        }
        let old = e
            .extra
            .get_or_insert_with(Default::default)
            .abort
            .replace(cb);
        drop(slots);
        drop(old);
        Ok(())
    }
}
