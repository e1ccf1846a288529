//! The blocking-work pool: one per process, like libuv's threadpool. Calls that block
//! (`getaddrinfo`, `PQcancel`) are queued and run by at most `ASYNCLOOP_THREADPOOL_SIZE`
//! worker threads (default 4, 1..=128; read once, at first use); their results come back to
//! the submitting loop as posted jobs. Workers start on demand and then stay, waiting for work.
//!
//! Slow work (host name lookups, which can wait seconds for a DNS server) runs on at most half
//! the workers, rounded up, as libuv does: a burst of lookups of dead names cannot hold back a
//! cancel request that must stop a runaway query.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::{Condvar, Mutex};

use super::Loop;

/// Default number of worker threads.
const DEFAULT_SIZE: usize = 4;
/// Largest accepted `ASYNCLOOP_THREADPOOL_SIZE`.
const MAX_SIZE: usize = 128;

type Work = Box<dyn FnOnce() + Send>;

/// How long a piece of work may block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Blocking {
    /// Bounded by the peer answering soon (a cancel request to a database server).
    Quick,
    /// May wait seconds (a DNS lookup): at most half the workers take such work at once.
    Slow,
}

struct Pool {
    size: usize,
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Most workers ever busy at once (for tests and statistics).
    peak_busy: AtomicUsize,
}

struct Queue {
    quick: VecDeque<Work>,
    slow: VecDeque<Work>,
    workers: usize,
    idle: usize,
    slow_running: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        size: pool_size_from(std::env::var("ASYNCLOOP_THREADPOOL_SIZE").ok().as_deref()),
        queue: Mutex::new(Queue {
            quick: VecDeque::new(),
            slow: VecDeque::new(),
            workers: 0,
            idle: 0,
            slow_running: 0,
        }),
        ready: Condvar::new(),
        peak_busy: AtomicUsize::new(0),
    })
}

/// The pool size for a value of `ASYNCLOOP_THREADPOOL_SIZE` (clamped; the default when unset or
/// not a number).
fn pool_size_from(v: Option<&str>) -> usize {
    v.and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(DEFAULT_SIZE, |n| n.clamp(1, MAX_SIZE))
}

impl Pool {
    /// Most workers that may run slow work at once.
    fn slow_limit(&self) -> usize {
        self.size.div_ceil(2)
    }

    fn submit(&'static self, kind: Blocking, work: Work) {
        let mut q = self.queue.lock();
        match kind {
            Blocking::Quick => q.quick.push_back(work),
            Blocking::Slow => q.slow.push_back(work),
        }
        if q.idle > 0 {
            self.ready.notify_all();
        } else if q.workers < self.size {
            q.workers += 1;
            let spawned = std::thread::Builder::new()
                .name("asyncloop-blocking".into())
                .spawn(move || self.work_loop());
            if spawned.is_err() {
                // No thread now: the work waits for a running worker (there is at least one
                // unless none could ever start; then the next submit tries again).
                q.workers -= 1;
            }
        }
    }

    fn work_loop(&self) {
        let mut q = self.queue.lock();
        loop {
            let (work, slow) = match q.quick.pop_front() {
                Some(w) => (Some(w), false),
                None if q.slow_running < self.slow_limit() => (q.slow.pop_front(), true),
                None => (None, false),
            };
            match work {
                Some(work) => {
                    let busy = q.workers - q.idle;
                    self.peak_busy.fetch_max(busy, Ordering::Relaxed);
                    q.slow_running += usize::from(slow);
                    drop(q);
                    work();
                    q = self.queue.lock();
                    if slow {
                        q.slow_running -= 1;
                        if !q.slow.is_empty() && q.idle > 0 {
                            self.ready.notify_one(); // an idle worker may take the next one
                        }
                    }
                }
                None => {
                    q.idle += 1;
                    self.ready.wait(&mut q);
                    q.idle -= 1;
                }
            }
        }
    }
}

/// Runs `work` on the blocking-work pool, then `then(result)` on `lp`'s thread, from the loop
/// (never inside this call). If the loop is gone by the time the work is done, `then` is
/// leaked: it is never run, and never dropped off its thread.
pub fn run_blocking<T: Send + 'static>(
    lp: &Loop,
    kind: Blocking,
    work: impl FnOnce() -> T + Send + 'static,
    then: impl FnOnce(T) + 'static,
) {
    struct OnLoop<F>(F);
    // SAFETY: the value is moved to a worker untouched and moved back inside a job that runs on
    // the loop's thread; if the loop is gone the job is leaked, never dropped on the worker.
    unsafe impl<F> Send for OnLoop<F> {}
    let back = OnLoop(then);
    let remote = lp.remote();
    pool().submit(
        kind,
        Box::new(move || {
            let result = work();
            let job = Box::new(move || {
                let back = back; // captures the Send wrapper whole, not its field
                (back.0)(result)
            });
            if let Err((_, job)) = remote.post(job) {
                std::mem::forget(job);
            }
        }),
    );
}

/// Runs `work` on the blocking-work pool, with no result to hand back.
pub fn spawn_blocking(kind: Blocking, work: impl FnOnce() + Send + 'static) {
    pool().submit(kind, Box::new(work));
}

/// The pool's size and the most workers that were ever busy at once.
pub fn blocking_pool_stats() -> (usize, usize) {
    let p = pool();
    (p.size, p.peak_busy.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_work_leaves_workers_for_quick_work() {
        use std::sync::mpsc;
        let p: &'static Pool = Box::leak(Box::new(Pool {
            size: 4,
            queue: Mutex::new(Queue {
                quick: VecDeque::new(),
                slow: VecDeque::new(),
                workers: 0,
                idle: 0,
                slow_running: 0,
            }),
            ready: Condvar::new(),
            peak_busy: AtomicUsize::new(0),
        }));
        // Eight slow jobs that block until released: only two may run at once.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Arc::new(parking_lot::Mutex::new(release_rx));
        let running = std::sync::Arc::new(AtomicUsize::new(0));
        let peak = std::sync::Arc::new(AtomicUsize::new(0));
        for _ in 0..8 {
            let (rx, running, peak) = (release_rx.clone(), running.clone(), peak.clone());
            p.submit(
                Blocking::Slow,
                Box::new(move || {
                    let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    let _ = rx.lock().recv();
                    running.fetch_sub(1, Ordering::SeqCst);
                }),
            );
        }
        let t0 = std::time::Instant::now();
        while running.load(Ordering::SeqCst) < 2 {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "slow work never ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // A quick job still runs at once, on a worker the slow ones may not take.
        let (done_tx, done_rx) = mpsc::channel();
        p.submit(
            Blocking::Quick,
            Box::new(move || {
                let _ = done_tx.send(());
            }),
        );
        assert!(done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .is_ok());
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        for _ in 0..8 {
            release_tx.send(()).unwrap();
        }
        let t0 = std::time::Instant::now();
        while running.load(Ordering::SeqCst) > 0 || !p.queue.lock().slow.is_empty() {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn pool_size_is_read_from_the_environment_value() {
        assert_eq!(pool_size_from(None), DEFAULT_SIZE);
        assert_eq!(pool_size_from(Some("8")), 8);
        assert_eq!(pool_size_from(Some(" 2 ")), 2);
        assert_eq!(pool_size_from(Some("0")), 1);
        assert_eq!(pool_size_from(Some("100000")), MAX_SIZE);
        assert_eq!(pool_size_from(Some("many")), DEFAULT_SIZE);
    }
}
