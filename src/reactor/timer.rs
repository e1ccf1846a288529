//! Timers: a binary heap of deadlines (the loop's `now_ns`) over a slab of timer slots. Stopping or restarting a timer
//! leaves its old heap entry behind, recognised as stale by its sequence number; the heap is
//! rebuilt when stale entries outnumber live ones, so large numbers of timers stay cheap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::token::{Slab, Token};
use super::Loop;

type TimerCb = Box<dyn FnMut()>;

struct TimerSlot {
    /// Sequence number of the live heap entry; 0 when not armed.
    armed_seq: u64,
    /// Whether, while armed, it keeps `Loop::run` going (the default).
    keeps_alive: bool,
    /// In the loop's nanoseconds (`Loop::now_ns`).
    deadline: u64,
    /// Nanoseconds.
    repeat: Option<u64>,
    cb: Option<TimerCb>,
}

/// All timers of one loop.
#[derive(Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(u64, u64, Token)>>,
    slots: Slab<TimerSlot>,
    seq: u64,
    armed: usize,
    /// Armed timers that do not keep the loop alive.
    armed_unref: usize,
    /// No live deadline is earlier than this (None: the heap is empty), so a turn with no
    /// timer due returns without looking at the heap.
    earliest: Option<u64>,
}

/// A duration in nanoseconds (saturating: about 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl TimerQueue {
    fn arm(&mut self, t: Token, deadline: u64) {
        self.seq += 1;
        let seq = self.seq;
        let s = self.slots.get_mut(t).expect("live timer");
        if s.armed_seq == 0 {
            self.armed += 1;
            self.armed_unref += usize::from(!s.keeps_alive);
        }
        s.armed_seq = seq;
        s.deadline = deadline;
        self.earliest = Some(self.earliest.map_or(deadline, |e| e.min(deadline)));
        self.heap.push(Reverse((deadline, seq, t)));
        if self.heap.len() > 64 && self.heap.len() > 2 * self.armed {
            self.compact();
        }
    }

    fn disarm(&mut self, t: Token) {
        if let Some(s) = self.slots.get_mut(t) {
            if s.armed_seq != 0 {
                s.armed_seq = 0;
                self.armed -= 1;
                self.armed_unref -= usize::from(!s.keeps_alive);
            }
        }
    }

    fn compact(&mut self) {
        let slots = &self.slots;
        self.heap
            .retain(|Reverse((_, seq, t))| slots.get(*t).is_some_and(|s| s.armed_seq == *seq));
    }

    fn is_live(&self, seq: u64, t: Token) -> bool {
        self.slots.get(t).is_some_and(|s| s.armed_seq == seq)
    }

    /// The earliest live deadline (`Loop::now_ns`).
    pub fn next_deadline(&mut self) -> Option<u64> {
        while let Some(Reverse((d, seq, t))) = self.heap.peek().copied() {
            if self.is_live(seq, t) {
                return Some(d);
            }
            self.heap.pop();
        }
        None
    }

    /// Number of armed timers that keep the loop alive.
    pub fn armed_keeping_alive(&self) -> usize {
        self.armed - self.armed_unref
    }

    /// Pops one expired timer: re-arms a repeating one (never in the past, so a slow callback
    /// cannot make the loop spin), disarms a one-shot one, and hands out its callback.
    fn pop_expired(&mut self, now: u64) -> Option<(Token, TimerCb)> {
        loop {
            let Some(&Reverse((d, seq, t))) = self.heap.peek() else {
                self.earliest = None;
                return None;
            };
            if !self.is_live(seq, t) {
                self.heap.pop();
                continue;
            }
            if d > now {
                self.earliest = Some(d);
                return None;
            }
            self.heap.pop();
            let s = self.slots.get_mut(t).expect("live timer");
            match s.repeat {
                Some(r) => {
                    let mut next = s.deadline.saturating_add(r);
                    if next <= now {
                        next = now.saturating_add(r);
                    }
                    self.arm(t, next);
                }
                None => self.disarm(t),
            }
            let cb = self.slots.get_mut(t).and_then(|s| s.cb.take());
            match cb {
                Some(cb) => return Some((t, cb)),
                None => continue,
            }
        }
    }
}

/// Whether a timer may be due at `now` (false in the common turn: nothing to run).
#[inline(always)]
pub(super) fn any_due(lp: &Loop, now: u64) -> bool {
    lp.inner.timers.borrow().earliest.is_some_and(|e| e <= now)
}

/// Runs expired timers. Called by the loop between waits, when `any_due`.
#[inline(never)]
pub(super) fn run_expired(lp: &Loop, now: u64) {
    loop {
        let popped = lp.inner.timers.borrow_mut().pop_expired(now);
        let Some((t, mut cb)) = popped else { break };
        cb();
        let mut tq = lp.inner.timers.borrow_mut();
        // Put the callback back only if the timer still repeats with it: not freed, not
        // stopped, not restarted with a new callback. Otherwise it is dropped here, once.
        if let Some(s) = tq.slots.get_mut(t) {
            if s.armed_seq != 0 && s.cb.is_none() {
                s.cb = Some(cb);
                continue;
            }
        }
        drop(tq);
        drop(cb);
    }
}

/// A one-shot or repeating timer on a loop. Dropping it stops it.
pub struct Timer {
    lp: Loop,
    token: Token,
}

impl Timer {
    /// A stopped timer.
    pub fn new(lp: &Loop) -> Timer {
        let token = lp.inner.timers.borrow_mut().slots.insert(TimerSlot {
            armed_seq: 0,
            keeps_alive: true,
            deadline: 0,
            repeat: None,
            cb: None,
        });
        lp.handle_opened();
        Timer {
            lp: lp.clone(),
            token,
        }
    }

    /// Starts (or restarts) the timer: `cb` runs after `after`, then every `repeat` if given.
    /// A previous callback is dropped. A zero `repeat` counts as none.
    pub fn start(&self, after: Duration, repeat: Option<Duration>, cb: impl FnMut() + 'static) {
        let old = {
            let mut tq = self.lp.inner.timers.borrow_mut();
            let deadline = self.lp.now_ns().saturating_add(nanos(after));
            let s = tq.slots.get_mut(self.token).expect("live timer");
            s.repeat = repeat.filter(|r| !r.is_zero()).map(nanos);
            let old = s.cb.replace(Box::new(cb));
            tq.arm(self.token, deadline);
            old
        };
        drop(old);
    }

    /// Stops the timer and drops its callback. Stopping a stopped timer does nothing.
    pub fn stop(&self) {
        let old = {
            let mut tq = self.lp.inner.timers.borrow_mut();
            tq.disarm(self.token);
            tq.slots.get_mut(self.token).and_then(|s| s.cb.take())
        };
        drop(old);
    }

    /// Whether the timer, while armed, keeps `Loop::run` going (the default) or not (libuv's
    /// `uv_unref`: an idle connection's expiry, say, should not hold a finished program).
    pub fn set_keeps_loop_alive(&self, keeps: bool) {
        let mut tq = self.lp.inner.timers.borrow_mut();
        let Some(s) = tq.slots.get_mut(self.token) else {
            return;
        };
        if s.keeps_alive == keeps {
            return;
        }
        s.keeps_alive = keeps;
        if s.armed_seq != 0 {
            if keeps {
                tq.armed_unref -= 1;
            } else {
                tq.armed_unref += 1;
            }
        }
    }

    /// Whether the timer is armed.
    pub fn is_active(&self) -> bool {
        self.lp
            .inner
            .timers
            .borrow()
            .slots
            .get(self.token)
            .is_some_and(|s| s.armed_seq != 0)
    }

    /// Time until it fires, if armed.
    pub fn remaining(&self) -> Option<Duration> {
        let tq = self.lp.inner.timers.borrow();
        let s = tq.slots.get(self.token)?;
        (s.armed_seq != 0)
            .then(|| Duration::from_nanos(s.deadline.saturating_sub(self.lp.now_ns())))
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let old = {
            let mut tq = self.lp.inner.timers.borrow_mut();
            tq.disarm(self.token);
            tq.slots.remove(self.token).and_then(|s| s.cb)
        };
        drop(old);
        self.lp.handle_closed();
    }
}
