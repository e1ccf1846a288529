//! Signal handles (libuv's `uv_signal_t`): a callback on the loop's thread when the process
//! receives a signal. A process-wide `sigaction` handler (`process`) marks the signal caught
//! in the slot of every loop watching it and writes to that loop's wake-up eventfd; the loop
//! dispatches to its handles when it wakes. No thread's signal mask is changed, so this works
//! whichever thread the kernel picks, with any number of loops and threads.
//!
//! Who owns what: each loop owns its `LoopSignals` (its handles and, while any is started,
//! one process slot); a `Signal` owns one entry there and frees it when dropped.

mod process;

use std::ffi::c_int;

use super::token::{Slab, Token};
use super::Loop;
use crate::error::{Error, Result};
pub use process::refusal;
use process::Slot;
use process::MAX_SIGNAL;

type SignalCb = Box<dyn FnMut(c_int)>;

struct Entry {
    /// The watched signal, 0 while stopped.
    signum: c_int,
    cb: Option<SignalCb>,
}

/// One loop's signal handles.
#[derive(Default)]
pub(crate) struct LoopSignals {
    handles: Slab<Entry>,
    /// Started handles per signal on this loop.
    per_signal: Vec<u32>,
    started: usize,
    /// Held while any handle is started.
    slot: Option<&'static Slot>,
}

impl LoopSignals {
    /// Started handles keep `Loop::run` going, like armed timers.
    pub(crate) fn keeps_alive(&self) -> bool {
        self.started > 0
    }
}

impl Drop for LoopSignals {
    fn drop(&mut self) {
        // Every `Signal` holds its loop, so none is started here; a slot is given back anyway
        // before the loop's eventfd can close.
        if let Some(slot) = self.slot.take() {
            slot.release();
        }
    }
}

/// Runs the callbacks of the signals caught since the last call. Called by the loop when its
/// eventfd wakes it. Deliveries of one signal that arrive before the loop gets to them are one
/// callback per handle.
pub(super) fn dispatch(lp: &Loop) {
    let caught = match lp.inner.signals.borrow().slot {
        Some(slot) => slot.take_pending(),
        None => return,
    };
    if caught == 0 {
        return;
    }
    for signum in 1..=MAX_SIGNAL {
        if caught & (1u64 << (signum - 1)) == 0 {
            continue;
        }
        let tokens: Vec<Token> = lp
            .inner
            .signals
            .borrow()
            .handles
            .iter()
            .filter(|(_, e)| e.signum == signum)
            .map(|(t, _)| t)
            .collect();
        for t in tokens {
            // A callback may have stopped, restarted or freed a handle listed here.
            let cb = match lp.inner.signals.borrow_mut().handles.get_mut(t) {
                Some(e) if e.signum == signum => e.cb.take(),
                _ => None,
            };
            let Some(mut cb) = cb else { continue };
            cb(signum);
            let mut sigs = lp.inner.signals.borrow_mut();
            // Put the callback back only if the registration it belongs to goes on: not
            // freed, not stopped, not restarted with a new callback.
            if let Some(e) = sigs.handles.get_mut(t) {
                if e.signum != 0 && e.cb.is_none() {
                    e.cb = Some(cb);
                    continue;
                }
            }
            drop(sigs);
            drop(cb);
        }
    }
}

/// A signal handle on a loop. Dropping it stops it.
pub struct Signal {
    lp: Loop,
    token: Token,
}

impl Signal {
    /// A stopped signal handle.
    pub fn new(lp: &Loop) -> Signal {
        let token = lp.inner.signals.borrow_mut().handles.insert(Entry {
            signum: 0,
            cb: None,
        });
        lp.handle_opened();
        Signal {
            lp: lp.clone(),
            token,
        }
    }

    /// Starts (or restarts) watching `signum`: `cb(signum)` runs on the loop's thread after
    /// each delivery (several deliveries before the loop turns may be one call). A previous
    /// callback is dropped. The first handle of a signal in the process installs the library's
    /// handler for it. `INVALID` for a signal that cannot be watched (see `refusal`), or one
    /// the C library reserves; the handle is then left as it was.
    pub fn start(&self, signum: c_int, cb: impl FnMut(c_int) + 'static) -> Result<()> {
        if refusal(signum).is_some() {
            return Err(Error::INVALID);
        }
        let old_signum = self.signum().unwrap_or(0);
        if old_signum != signum {
            self.watch(signum)?;
        }
        let old_cb = {
            let mut sigs = self.lp.inner.signals.borrow_mut();
            let e = sigs
                .handles
                .get_mut(self.token)
                .expect("live signal handle");
            e.signum = signum;
            e.cb.replace(Box::new(cb))
        };
        if old_signum != 0 && old_signum != signum {
            self.unwatch(old_signum);
        }
        drop(old_cb);
        Ok(())
    }

    /// Stops watching and drops the callback; the last handle of a signal in the process puts
    /// back the action that was there before the first started. Stopping a stopped handle does
    /// nothing.
    pub fn stop(&self) {
        let (signum, cb) = {
            let mut sigs = self.lp.inner.signals.borrow_mut();
            match sigs.handles.get_mut(self.token) {
                Some(e) => (std::mem::take(&mut e.signum), e.cb.take()),
                None => return,
            }
        };
        if signum != 0 {
            self.unwatch(signum);
        }
        drop(cb);
    }

    /// The watched signal, None while stopped.
    pub fn signum(&self) -> Option<c_int> {
        let sigs = self.lp.inner.signals.borrow();
        let s = sigs.handles.get(self.token).map_or(0, |e| e.signum);
        (s != 0).then_some(s)
    }

    /// Counts one more started handle of `signum` on this loop (a slot is claimed with the
    /// first of any signal, the mask bit set with the first of this one).
    fn watch(&self, signum: c_int) -> Result<()> {
        let mut sigs = self.lp.inner.signals.borrow_mut();
        let slot = match sigs.slot {
            Some(s) => s,
            None => *sigs
                .slot
                .insert(Slot::claim(self.lp.inner.remote.eventfd())),
        };
        if sigs.per_signal.is_empty() {
            sigs.per_signal = vec![0; MAX_SIGNAL as usize + 1];
        }
        let first = sigs.per_signal[signum as usize] == 0;
        if let Err(e) = slot.watch(signum, first) {
            if sigs.started == 0 {
                sigs.slot = None;
                slot.release();
            }
            return Err(e);
        }
        sigs.per_signal[signum as usize] += 1;
        sigs.started += 1;
        Ok(())
    }

    /// The counterpart of `watch`; the slot is given back with the last started handle.
    fn unwatch(&self, signum: c_int) {
        let mut sigs = self.lp.inner.signals.borrow_mut();
        let Some(slot) = sigs.slot else { return };
        sigs.per_signal[signum as usize] -= 1;
        slot.unwatch(signum, sigs.per_signal[signum as usize] == 0);
        sigs.started -= 1;
        if sigs.started == 0 {
            sigs.slot = None;
            slot.release();
        }
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        self.stop();
        let old = self
            .lp
            .inner
            .signals
            .borrow_mut()
            .handles
            .remove(self.token);
        drop(old);
        self.lp.handle_closed();
    }
}
