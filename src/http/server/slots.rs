//! The request-slot table: a request lives in a slot from its completion until it is answered
//! (even after its client has gone). Slots are addressed by (index, generation); freeing one
//! advances its generation, so a stale handle is refused, never a use-after-free.

use std::rc::Weak;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;

use super::connection::{Conn, ConnRef};
use super::ServerInner;
use crate::error::{Error, Result};
use crate::http::request::RequestData;
use crate::net::WeakStream;
use crate::reactor::Remote;

/// The part of a slot that outlives its requests and can be read from any thread: C handles
/// point here (with the generation in their top bits).
pub struct SlotHeader {
    /// Bumped each time the slot is freed; a handle with another generation is stale.
    pub gen: AtomicU32,
    pub index: u32,
    pub remote: Arc<Remote>,
    pub loop_thread: ThreadId,
    /// Owning server (loop thread only).
    pub(crate) server: Weak<ServerInner>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SlotState {
    Free,
    Waiting,
    Streaming,
}

pub(super) struct SlotEntry {
    pub(super) header: Box<SlotHeader>,
    pub(super) state: SlotState,
    pub(super) data: Option<Box<RequestData>>,
    pub(super) conn: WeakStream<Conn>,
    pub(super) seq: u64,
    pub(super) abort: Option<Box<dyn FnOnce()>>,
}

impl ServerInner {
    pub(super) fn alloc_slot(
        &self,
        data: Box<RequestData>,
        conn: &ConnRef,
        seq: u64,
    ) -> (u32, u32) {
        let mut slots = self.slots.borrow_mut();
        let index = match self.free_slots.borrow_mut().pop() {
            Some(i) => i,
            None => {
                let i = slots.len() as u32;
                slots.push(SlotEntry {
                    header: Box::new(SlotHeader {
                        gen: AtomicU32::new(1),
                        index: i,
                        remote: self.lp.remote(),
                        loop_thread: std::thread::current().id(),
                        server: self.me.clone(),
                    }),
                    state: SlotState::Free,
                    data: None,
                    conn: WeakStream::default(),
                    seq: 0,
                    abort: None,
                });
                i
            }
        };
        let e = &mut slots[index as usize];
        e.state = SlotState::Waiting;
        e.data = Some(data);
        e.conn = conn.downgrade();
        e.seq = seq;
        self.active_slots.set(self.active_slots.get() + 1);
        (index, e.header.gen.load(Ordering::Relaxed))
    }

    /// Frees a slot: its generation advances (stale handles are refused) and its data returns
    /// to the pool.
    pub(super) fn free_slot(&self, index: u32) {
        let (data, abort) = {
            let mut slots = self.slots.borrow_mut();
            let e = &mut slots[index as usize];
            if e.state == SlotState::Free {
                return;
            }
            e.state = SlotState::Free;
            let g = e.header.gen.load(Ordering::Relaxed);
            e.header
                .gen
                .store(g.wrapping_add(1).max(1), Ordering::Release);
            e.conn = WeakStream::default();
            (e.data.take(), e.abort.take())
        };
        drop(abort);
        if let Some(d) = data {
            self.recycle_data(d);
        }
        self.free_slots.borrow_mut().push(index);
        self.active_slots.set(self.active_slots.get() - 1);
    }

    /// The request data of a live slot.
    pub(crate) fn slot_data(&self, index: u32, gen: u32) -> Option<*const RequestData> {
        let slots = self.slots.borrow();
        let e = slots.get(index as usize)?;
        if e.state == SlotState::Free || e.header.gen.load(Ordering::Relaxed) != gen {
            return None;
        }
        e.data.as_deref().map(|d| d as *const RequestData)
    }

    /// The stable header of slot `index` (for C handles).
    pub(crate) fn slot_header(&self, index: u32) -> *const SlotHeader {
        &*self.slots.borrow()[index as usize].header
    }

    /// Checks a handle; `Ok(conn)` when the client is still there, `Err(CANCELLED)` (slot freed)
    /// when it is gone, `Err(ALREADY)` for a stale handle.
    pub(super) fn live(&self, index: u32, gen: u32, want: SlotState) -> Result<(ConnRef, u64)> {
        let (conn, seq) = {
            let slots = self.slots.borrow();
            let e = slots.get(index as usize).ok_or(Error::ALREADY)?;
            if e.state != want || e.header.gen.load(Ordering::Relaxed) != gen {
                return Err(Error::ALREADY);
            }
            (e.conn.upgrade(), e.seq)
        };
        match conn {
            Some(c) if !c.closing.get() => Ok((c, seq)),
            _ => {
                self.free_slot(index);
                Err(Error::CANCELLED)
            }
        }
    }

    /// Registers `cb` to run once if the client goes away before the request is answered.
    pub(crate) fn on_abort(&self, index: u32, gen: u32, cb: Box<dyn FnOnce()>) -> Result<()> {
        let mut slots = self.slots.borrow_mut();
        let e = slots.get_mut(index as usize).ok_or(Error::ALREADY)?;
        if e.state == SlotState::Free || e.header.gen.load(Ordering::Relaxed) != gen {
            return Err(Error::ALREADY);
        }
        if e.conn.upgrade().is_none_or(|c| c.closing.get()) {
            return Err(Error::CANCELLED);
        }
        e.abort = Some(cb);
        Ok(())
    }
}
