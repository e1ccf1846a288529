//! The process-wide side of signal handles: one `sigaction` handler per watched signal, shared
//! by every loop, and the table it reads. The handler only does async-signal-safe work (atomic
//! loads and stores, `write()` to a loop's wake-up eventfd); the loops run the callbacks on
//! their own threads.
//!
//! Who owns what: each loop watching any signal holds one `Slot` (its eventfd, the signals it
//! watches, the signals caught and not yet dispatched). Slots are leaked and never freed, so
//! the handler can walk them without a lock; a released slot is reused by the next loop. The
//! dispositions (how many handles watch each signal, and the action that was there before)
//! live under `REGISTRY`, which only normal code takes, never the handler.
//!
//! Teardown: a loop releasing its slot stores -1 as the fd, then waits until no handler is
//! running (`IN_HANDLER`). A handler counts itself in before it reads a slot's fd, so one that
//! read the old fd is seen by that wait (sequentially consistent atomics on both sides), and
//! the eventfd is closed only after it: a handler never writes to a descriptor a freed loop
//! closed and the process reused.

use std::ffi::c_int;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering::SeqCst};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// Signal numbers run from 1 to `MAX_SIGNAL` (Linux: 64, NSIG - 1); bit `n - 1` of a mask.
pub(crate) const MAX_SIGNAL: c_int = 64;
const NSIG: usize = MAX_SIGNAL as usize + 1;

/// One loop's entry in the handler's table.
pub(super) struct Slot {
    /// The loop's wake-up eventfd, -1 while the slot is free.
    fd: AtomicI32,
    /// Signals the loop watches.
    mask: AtomicU64,
    /// Signals caught since the loop last looked.
    pending: AtomicU64,
    /// The next slot; set once, before the slot is published.
    next: AtomicPtr<Slot>,
}

/// Every slot ever made, newest first.
static SLOTS: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
/// Handlers running now, on any thread.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

struct Registry {
    /// Started handles per signal, over every loop.
    watchers: [u32; NSIG],
    /// The action in place before the first handle of each signal started.
    saved: [Option<libc::sigaction>; NSIG],
    /// Released slots, for reuse.
    free: Vec<&'static Slot>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    watchers: [0; NSIG],
    saved: [None; NSIG],
    free: Vec::new(),
});

fn bit(signum: c_int) -> u64 {
    1u64 << (signum - 1)
}

/// The signal handler. Async-signal-safe: atomics, `write()` and errno only.
extern "C" fn on_signal(signum: c_int) {
    if !(1..=MAX_SIGNAL).contains(&signum) {
        return;
    }
    // SAFETY: __errno_location gives this thread's errno, valid for the thread's life; it is
    // saved and restored so the interrupted code never sees the handler's write change it.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved_errno = unsafe { *errno };
    IN_HANDLER.fetch_add(1, SeqCst);
    let b = bit(signum);
    let mut p = SLOTS.load(SeqCst);
    while !p.is_null() {
        // SAFETY: slots are leaked boxes, never freed, linked before they are published.
        let slot = unsafe { &*p };
        if slot.mask.load(SeqCst) & b != 0 {
            let fd = slot.fd.load(SeqCst);
            if fd >= 0 {
                // The bit first, then the wake-up: the loop reads the eventfd before the bits.
                slot.pending.fetch_or(b, SeqCst);
                let one: u64 = 1;
                // SAFETY: fd is the eventfd of a loop whose slot is claimed; it stays open
                // until that loop has released the slot and seen IN_HANDLER at 0 (see the
                // module comment). EAGAIN (counter full) still leaves it readable.
                unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
            }
        }
        p = slot.next.load(SeqCst);
    }
    IN_HANDLER.fetch_sub(1, SeqCst);
    // SAFETY: as above.
    unsafe { *errno = saved_errno };
}

/// Why `signum` cannot be watched, if it cannot.
pub fn refusal(signum: c_int) -> Option<&'static str> {
    match signum {
        s if !(1..=MAX_SIGNAL).contains(&s) => Some("not a signal number (signals are 1 to 64)"),
        libc::SIGKILL | libc::SIGSTOP => Some("SIGKILL and SIGSTOP cannot be caught"),
        libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL => Some(
            "a fault signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL) cannot be handled on a loop: \
             the faulting instruction would run again",
        ),
        _ => None,
    }
}

impl Slot {
    /// Claims a slot for a loop whose wake-up eventfd is `fd`, watching nothing yet.
    pub(super) fn claim(fd: RawFd) -> &'static Slot {
        let mut reg = REGISTRY.lock();
        let slot = match reg.free.pop() {
            Some(s) => s,
            None => {
                let s: &'static Slot = Box::leak(Box::new(Slot {
                    fd: AtomicI32::new(-1),
                    mask: AtomicU64::new(0),
                    pending: AtomicU64::new(0),
                    next: AtomicPtr::new(SLOTS.load(SeqCst)),
                }));
                // Only this function pushes, under the registry lock: a plain store will do.
                SLOTS.store(s as *const Slot as *mut Slot, SeqCst);
                s
            }
        };
        slot.pending.store(0, SeqCst);
        slot.mask.store(0, SeqCst);
        slot.fd.store(fd, SeqCst);
        slot
    }

    /// Gives the slot back. When this returns no handler holds the loop's fd any more.
    pub(super) fn release(&'static self) {
        let mut reg = REGISTRY.lock();
        self.mask.store(0, SeqCst);
        self.fd.store(-1, SeqCst);
        while IN_HANDLER.load(SeqCst) != 0 {
            std::thread::yield_now();
        }
        self.pending.store(0, SeqCst);
        reg.free.push(self);
    }

    /// The signals caught since the last call (a set of `bit`s).
    pub(super) fn take_pending(&self) -> u64 {
        if self.pending.load(SeqCst) == 0 {
            return 0;
        }
        self.pending.swap(0, SeqCst)
    }

    /// Starts delivering `signum` to this slot's loop. The first handle of a signal in the
    /// process installs the handler (saving the action it replaces); `sigaction`'s error is
    /// returned (the C library refuses the signals it reserves with EINVAL).
    pub(super) fn watch(&self, signum: c_int, first_on_loop: bool) -> Result<()> {
        let mut reg = REGISTRY.lock();
        let i = signum as usize;
        if first_on_loop {
            self.mask.fetch_or(bit(signum), SeqCst);
        }
        if reg.watchers[i] == 0 {
            if let Err(e) = install(signum).map(|old| reg.saved[i] = Some(old)) {
                if first_on_loop {
                    self.mask.fetch_and(!bit(signum), SeqCst);
                }
                return Err(e);
            }
        }
        reg.watchers[i] += 1;
        Ok(())
    }

    /// The counterpart of `watch`. The last handle of a signal in the process puts back the
    /// action saved when the first started, unless the program replaced the library's handler
    /// meanwhile (then its own action stays).
    pub(super) fn unwatch(&self, signum: c_int, last_on_loop: bool) {
        let mut reg = REGISTRY.lock();
        let i = signum as usize;
        reg.watchers[i] -= 1;
        if reg.watchers[i] == 0 {
            if let Some(old) = reg.saved[i].take() {
                restore(signum, &old);
            }
        }
        if last_on_loop {
            self.mask.fetch_and(!bit(signum), SeqCst);
            self.pending.fetch_and(!bit(signum), SeqCst);
        }
    }
}

/// Installs `on_signal` for `signum`, returning the action it replaced.
fn install(signum: c_int) -> Result<libc::sigaction> {
    // SAFETY: zeroed is a valid sigaction (no handler, no flags, empty mask), filled below.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
    // SA_RESTART: the program's blocking calls on other threads go on rather than fail with
    // EINTR; SA_ONSTACK: runs on an alternate signal stack where the thread has one.
    sa.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: sa and old are valid sigaction structs owned here.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above; sigfillset writes the mask in place.
    let r = unsafe {
        libc::sigfillset(&mut sa.sa_mask);
        libc::sigaction(signum, &sa, &mut old)
    };
    if r != 0 {
        let e = Error::last_os_error();
        return Err(if e.errno() == Some(libc::EINVAL) {
            Error::INVALID
        } else {
            e
        });
    }
    Ok(old)
}

/// Puts `old` back for `signum` if the library's handler is still the one installed.
fn restore(signum: c_int, old: &libc::sigaction) {
    // SAFETY: zeroed is a valid sigaction to be written by the query.
    let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a query (NULL new action) into a struct owned here, then a set from one.
    unsafe {
        if libc::sigaction(signum, std::ptr::null(), &mut cur) == 0
            && cur.sa_sigaction == on_signal as extern "C" fn(c_int) as libc::sighandler_t
        {
            libc::sigaction(signum, old, std::ptr::null_mut());
        }
    }
}
