//! The event loop: one per thread, owning every handle registered on it. Operations are
//! submitted to a driver (io_uring or epoll) under a generational token and their completions
//! are dispatched to the owner the token names; timers, loop-local deferred calls and jobs
//! posted from other threads run between waits; signal handles are dispatched when the
//! wake-up eventfd shows a signal caught (`signal`). Blocking calls run on the process's
//! bounded blocking-work pool (`blocking`).

mod blocking;
mod buffers;
mod driver;
mod epoll;
mod op;
mod remote;
mod signal;
mod sys;
mod timer;
mod token;
mod uring;
mod watch;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use blocking::{blocking_pool_stats, run_blocking, spawn_blocking, Blocking};
pub use driver::Backend;
pub use op::{Completion, Op};
pub use remote::{Job, Remote};
pub use signal::{refusal as signal_refusal, Signal};
pub use timer::Timer;
pub use token::{Slab, Token};
pub use watch::{FdWatch, Readiness};

use crate::error::{Error, Result};
use buffers::BufPool;
use driver::Driver;
use timer::TimerQueue;

/// Receive buffers per loop and their size (see `buffers`).
const RECV_BUFFERS: u16 = 256;
const RECV_BUFFER_SIZE: usize = 16 * 1024;

/// Options for `Loop::new`.
#[derive(Clone, Copy, Debug)]
pub struct LoopOptions {
    /// Backend; `ASYNCLOOP_BACKEND` in the environment overrides it.
    pub backend: Backend,
    /// io_uring submission queue entries (rounded up to a power of two; ignored by epoll).
    pub queue_depth: u32,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            backend: Backend::Auto,
            queue_depth: 1024,
        }
    }
}

/// How `Loop::run` runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunMode {
    /// Until `stop` or until nothing is left to wait for.
    Default,
    /// One turn, waiting for at least one event if there is anything to wait for.
    Once,
    /// One turn without waiting.
    NoWait,
}

/// Receives the completions of the operations it submitted. The loop holds an `Rc` to the
/// owner until the operation's final completion, so resources the operation points to live
/// that long.
pub trait OpOwner {
    /// One completion of `op`; `data` is the received bytes for a `Recv`, borrowed until return
    /// (the owner may modify them in place: a WebSocket unmasks its frames there).
    fn complete(self: Rc<Self>, lp: &Loop, op: Op, c: &Completion, data: &mut [u8]);
}

struct OpSlot {
    op: Op,
    owner: Rc<dyn OpOwner>,
}

pub(crate) struct LoopInner {
    driver: RefCell<Driver>,
    ops: RefCell<Slab<OpSlot>>,
    timers: RefCell<TimerQueue>,
    deferred: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    completions: RefCell<Vec<Completion>>,
    /// Before `remote`: its slot in the signal handler's table is given back before the
    /// eventfd it names can close.
    signals: RefCell<signal::LoopSignals>,
    remote: Arc<Remote>,
    wake_token: Cell<Option<Token>>,
    /// Pending operations that do not keep `run` going (see `unref_op`).
    unref_ops: Cell<usize>,
    open_handles: Cell<usize>,
    /// The loop's time (`now`), as an `Instant` and in nanoseconds of `CLOCK_MONOTONIC`, from
    /// one clock read.
    now: Cell<Instant>,
    now_ns: Cell<u64>,
    /// An `Instant` and the clock's nanoseconds read together, to make `now` from `now_ns`.
    clock_base: (Instant, u64),
    running: Cell<bool>,
    buffers: RefCell<Vec<Vec<u8>>>,
}

/// Buffers kept for reuse by `take_buffer`, and the largest capacity kept.
const POOLED_BUFFERS: usize = 1024;
const POOLED_BUFFER_MAX: usize = 256 * 1024;

/// An event loop. Cheap to clone (a reference); not `Send`: it runs on one thread.
#[derive(Clone)]
pub struct Loop {
    pub(crate) inner: Rc<LoopInner>,
}

/// The loop's own owner of the wake-up readiness watch on the eventfd.
struct WakeOwner;

impl OpOwner for WakeOwner {
    fn complete(self: Rc<Self>, lp: &Loop, _op: Op, c: &Completion, _data: &mut [u8]) {
        if !c.more {
            lp.inner.wake_token.set(None);
            if c.res != -libc::ECANCELED {
                lp.arm_wake();
            }
        }
        let mut jobs = Vec::new();
        lp.inner.remote.take_jobs(&mut jobs);
        for job in jobs {
            job();
        }
        signal::dispatch(lp);
    }
}

fn make_driver(backend: Backend, queue_depth: u32) -> Result<Driver> {
    let pool = || BufPool::new(RECV_BUFFERS, RECV_BUFFER_SIZE);
    let depth = queue_depth.clamp(8, 32768).next_power_of_two();
    match backend {
        Backend::Epoll => Ok(Driver::Epoll(epoll::EpollDriver::new(pool())?)),
        Backend::Uring => uring::UringDriver::new(depth, pool())
            .map(Driver::Uring)
            .map_err(|_| Error::BACKEND_UNAVAILABLE),
        Backend::Auto => match uring::UringDriver::new(depth, pool()) {
            Ok(d) => Ok(Driver::Uring(d)),
            Err(_) => Ok(Driver::Epoll(epoll::EpollDriver::new(pool())?)),
        },
    }
}

impl Loop {
    /// Creates a loop. `ASYNCLOOP_BACKEND=auto|uring|epoll` overrides `opts.backend`. With
    /// `Backend::Uring`, fails with `BACKEND_UNAVAILABLE` where io_uring cannot run.
    pub fn new(opts: LoopOptions) -> Result<Loop> {
        let backend = match std::env::var("ASYNCLOOP_BACKEND") {
            Ok(v) => Backend::parse(&v).ok_or(Error::INVALID)?,
            Err(_) => opts.backend,
        };
        let driver = make_driver(backend, opts.queue_depth)?;
        monotonic_ms(Instant::now()); // fixes the origin before any loop time exists
        let clock_base = (Instant::now(), clock_ns());
        let lp = Loop {
            inner: Rc::new(LoopInner {
                driver: RefCell::new(driver),
                ops: RefCell::new(Slab::default()),
                timers: RefCell::new(TimerQueue::default()),
                deferred: RefCell::new(VecDeque::new()),
                completions: RefCell::new(Vec::with_capacity(256)),
                signals: RefCell::default(),
                remote: Arc::new(Remote::new()?),
                wake_token: Cell::new(None),
                unref_ops: Cell::new(0),
                open_handles: Cell::new(0),
                now: Cell::new(clock_base.0),
                now_ns: Cell::new(clock_base.1),
                clock_base,
                running: Cell::new(false),
                buffers: RefCell::new(Vec::new()),
            }),
        };
        lp.arm_wake();
        if lp.inner.wake_token.get().is_none() {
            return Err(Error::from_errno(libc::EIO));
        }
        Ok(lp)
    }

    fn arm_wake(&self) {
        let fd = self.inner.remote.eventfd();
        if let Ok(t) = self.submit(Op::PollRead { fd }, Rc::new(WakeOwner)) {
            self.inner.wake_token.set(Some(t));
        }
    }

    /// The backend this loop runs on (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.inner.driver.borrow().backend()
    }

    /// The thread-safe side of the loop: post jobs and stop it from other threads.
    pub fn remote(&self) -> Arc<Remote> {
        self.inner.remote.clone()
    }

    /// The time cached at the start of the current loop turn.
    pub fn now(&self) -> Instant {
        self.inner.now.get()
    }

    /// The same time in nanoseconds of `CLOCK_MONOTONIC` (an arbitrary origin): differences
    /// without `Instant` arithmetic.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.inner.now_ns.get()
    }

    /// Submits `op`, which must carry no pointers (`INVALID` otherwise: use
    /// `submit_borrowing`); `owner` receives its completions. Never completes from inside this
    /// call.
    pub fn submit(&self, op: Op, owner: Rc<dyn OpOwner>) -> Result<Token> {
        if op.carries_pointers() {
            debug_assert!(false, "{op:?} carries pointers: use submit_borrowing");
            return Err(Error::INVALID);
        }
        // SAFETY: the operation carries no pointer.
        unsafe { self.submit_borrowing(op, owner) }
    }

    /// Submits `op`, pointers included; `owner` receives its completions. Never completes from
    /// inside this call.
    ///
    /// # Safety
    /// Whatever `op` points to (a `Send`'s msghdr and the iovecs and bytes it names, a
    /// `SendOne`'s iovec and bytes, a `Connect`'s address) must stay valid, unmoved and
    /// unchanged until the operation's final completion has been delivered to `owner`: keep it
    /// in memory `owner` owns, which the loop keeps alive until then.
    pub unsafe fn submit_borrowing(&self, op: Op, owner: Rc<dyn OpOwner>) -> Result<Token> {
        let token = self.inner.ops.borrow_mut().insert(OpSlot { op, owner });
        if let Err(e) = self.inner.driver.borrow_mut().submit(token, &op) {
            self.inner.ops.borrow_mut().remove(token);
            return Err(e.into());
        }
        Ok(token)
    }

    /// Closes `fd` through the driver (in order after operations already queued on it) with
    /// `owner` told of the completion; returns the token, or closes at once and returns None
    /// when the close cannot be queued.
    pub fn submit_close(&self, fd: std::os::fd::RawFd, owner: Rc<dyn OpOwner>) -> Option<Token> {
        match self.submit(Op::Close { fd }, owner) {
            Ok(t) => Some(t),
            Err(_) => {
                // SAFETY: the caller hands over its fd; nothing uses it after this.
                unsafe { libc::close(fd) };
                None
            }
        }
    }

    /// Cancels an operation; its final completion follows (with `-ECANCELED` unless it finished
    /// first). Cancelling a finished operation does nothing.
    pub fn cancel(&self, token: Token) {
        let op = self.inner.ops.borrow().get(token).map(|s| s.op);
        if let Some(op) = op {
            // A failure to queue the cancel leaves the op to finish by itself.
            let _ = self.inner.driver.borrow_mut().cancel(token, &op);
        }
    }

    /// An empty byte buffer, reused from the loop's pool when one is there (no allocation in
    /// steady state). Give it back with `recycle_buffer`.
    pub fn take_buffer(&self) -> Vec<u8> {
        self.inner.buffers.borrow_mut().pop().unwrap_or_default()
    }

    /// Returns a buffer to the pool (cleared; very large ones are freed instead).
    pub fn recycle_buffer(&self, mut v: Vec<u8>) {
        if v.capacity() == 0 || v.capacity() > POOLED_BUFFER_MAX {
            return;
        }
        let mut pool = self.inner.buffers.borrow_mut();
        if pool.len() < POOLED_BUFFERS {
            v.clear();
            pool.push(v);
        }
    }

    /// Runs `f` on this loop after the current callback, before the next wait.
    pub fn defer(&self, f: impl FnOnce() + 'static) {
        self.inner.deferred.borrow_mut().push_back(Box::new(f));
    }

    /// Counts a handle that must be closed before the loop may be freed.
    pub fn handle_opened(&self) {
        self.inner
            .open_handles
            .set(self.inner.open_handles.get() + 1);
    }

    /// The counterpart of `handle_opened`.
    pub fn handle_closed(&self) {
        self.inner
            .open_handles
            .set(self.inner.open_handles.get().saturating_sub(1));
    }

    /// Finishes closing a handle: after every callback already queued, the handle stops
    /// counting as open and `close_cb` runs (last of the handle's callbacks).
    pub fn defer_close(&self, close_cb: impl FnOnce() + 'static) {
        let lp = self.clone();
        self.defer(move || {
            lp.handle_closed();
            close_cb();
        });
    }

    /// Handles opened and not yet closed.
    pub fn open_handles(&self) -> usize {
        self.inner.open_handles.get()
    }

    /// Operations in flight, not counting the loop's own wake-up watch.
    pub fn pending_ops(&self) -> usize {
        self.inner.ops.borrow().len() - usize::from(self.inner.wake_token.get().is_some())
    }

    /// Marks one pending operation as not keeping `run` going (libuv's unref): an idle pooled
    /// client connection's receive, which only watches for the server closing it. Its owner
    /// calls `ref_op` when the operation ends or matters again.
    pub fn unref_op(&self) {
        self.inner.unref_ops.set(self.inner.unref_ops.get() + 1);
    }

    /// The counterpart of `unref_op`.
    pub fn ref_op(&self) {
        let n = self.inner.unref_ops.get();
        debug_assert!(n > 0, "ref_op without unref_op");
        self.inner.unref_ops.set(n.saturating_sub(1));
    }

    /// Whether anything keeps the loop running: operations (but those marked with `unref_op`),
    /// armed timers (but those that do not keep it alive), started signal handles, deferred
    /// calls or posted jobs.
    /// Asked twice a turn, and the first test answers on a busy loop: inline.
    #[inline]
    pub fn is_alive(&self) -> bool {
        self.pending_ops() > self.inner.unref_ops.get()
            || self.inner.timers.borrow().armed_keeping_alive() > 0
            || self.inner.signals.borrow().keeps_alive()
            || !self.inner.deferred.borrow().is_empty()
            || self.inner.remote.has_jobs()
    }

    /// Asks `run` to return after the current turn (also callable from callbacks).
    pub fn stop(&self) {
        self.inner.remote.stop();
    }

    /// Runs the deferred jobs, if any: a turn asks five times, and most times there are none,
    /// so that test stays inline in the turn and the queue is walked out of line.
    #[inline(always)]
    fn run_deferred(&self) {
        if !self.inner.deferred.borrow().is_empty() {
            self.run_deferred_jobs();
        }
    }

    #[inline(never)]
    fn run_deferred_jobs(&self) {
        loop {
            let f = self.inner.deferred.borrow_mut().pop_front();
            match f {
                Some(f) => f(),
                None => break,
            }
        }
    }

    /// Runs the timers due at the loop's time (read before and after each wait). A turn asks
    /// twice and most times none is due: that test stays inline, the queue is run out of line.
    #[inline(always)]
    fn run_timers(&self) {
        let now = self.now_ns();
        if timer::any_due(self, now) {
            timer::run_expired(self, now);
        }
    }

    /// Reads the clock into the loop's time: once, for both forms (the `Instant` is the base
    /// one plus the nanoseconds since it; `Instant` counts `CLOCK_MONOTONIC` on Linux too).
    fn update_time(&self) {
        let ns = clock_ns();
        let (base, base_ns) = self.inner.clock_base;
        self.inner.now_ns.set(ns);
        self.inner
            .now
            .set(base + Duration::from_nanos(ns.saturating_sub(base_ns)));
    }

    fn dispatch(&self, c: Completion) {
        let found = {
            let mut ops = self.inner.ops.borrow_mut();
            if c.more {
                ops.get(c.token).map(|s| (s.op, s.owner.clone()))
            } else {
                ops.remove(c.token).map(|s| (s.op, s.owner))
            }
        };
        let data: &mut [u8] = match c.buf {
            Some(bid) if c.res > 0 && found.is_some() => {
                let p = self.inner.driver.borrow_mut().buffer(bid);
                // SAFETY: the driver wrote `res` bytes into buffer `bid`, which belongs to this
                // completion alone (neither the kernel nor another owner touches it) until it
                // is recycled below, after the owner has returned.
                unsafe { std::slice::from_raw_parts_mut(p, c.res as usize) }
            }
            _ => &mut [],
        };
        if let Some((op, owner)) = found {
            owner.complete(self, op, &c, data);
        }
        if let Some(bid) = c.buf {
            self.inner.driver.borrow_mut().recycle(bid);
        }
    }

    /// Runs the loop. Returns whether anything is still alive (see `is_alive`). Calling `run`
    /// from one of the loop's own callbacks fails with `ALREADY`.
    pub fn run(&self, mode: RunMode) -> Result<bool> {
        if self.inner.running.replace(true) {
            return Err(Error::ALREADY);
        }
        struct Reset<'a>(&'a Cell<bool>);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _reset = Reset(&self.inner.running);
        self.update_time(); // the loop may have been idle since the last run
        let mut batch = std::mem::take(&mut *self.inner.completions.borrow_mut());
        let result = self.run_turns(mode, &mut batch);
        batch.clear();
        *self.inner.completions.borrow_mut() = batch;
        result
    }

    fn run_turns(&self, mode: RunMode, batch: &mut Vec<Completion>) -> Result<bool> {
        loop {
            if self.inner.remote.take_stop() {
                break;
            }
            self.run_deferred();
            self.run_timers();
            self.run_deferred();
            if self.inner.remote.stop_requested() {
                continue;
            }
            if !self.is_alive() {
                break;
            }
            let timeout = if mode == RunMode::NoWait || !self.inner.deferred.borrow().is_empty() {
                Some(Duration::ZERO)
            } else {
                // The clock is read here, before blocking, and after the wait: the wait ends
                // on time however long this turn's callbacks took, and a timer started between
                // two runs of the loop counts from when it was started.
                self.update_time();
                let next = self.inner.timers.borrow_mut().next_deadline();
                next.map(|d| Duration::from_nanos(d.saturating_sub(self.now_ns())))
            };
            self.inner.driver.borrow_mut().wait(timeout, batch)?;
            self.update_time();
            for c in batch.drain(..) {
                self.dispatch(c);
            }
            self.run_deferred();
            // What the callbacks started and the driver finished at once (an epoll send that
            // went out whole) completes in this turn rather than costing a turn of its own;
            // once per turn, so callbacks that keep writing cannot starve the wait.
            self.inner.driver.borrow_mut().take_ready(batch);
            for c in batch.drain(..) {
                self.dispatch(c);
            }
            self.run_deferred();
            self.run_timers();
            self.run_deferred();
            if mode != RunMode::Default {
                break;
            }
        }
        Ok(self.is_alive())
    }

    /// Prepares the loop for freeing: fails with `BUSY` while it is running (from one of its
    /// callbacks) or while handles are open; otherwise refuses further posts and drops the jobs
    /// still queued.
    pub fn close(&self) -> Result<()> {
        if self.inner.running.get() || self.open_handles() > 0 {
            return Err(Error::BUSY);
        }
        drop(self.inner.remote.close());
        self.run_deferred();
        Ok(())
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
fn clock_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter; CLOCK_MONOTONIC is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Milliseconds since an arbitrary fixed point (process start), for C callers.
pub fn monotonic_ms(t: Instant) -> u64 {
    use std::sync::OnceLock;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    t.saturating_duration_since(origin).as_millis() as u64
}
