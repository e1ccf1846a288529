//! The blocking-work pool: one per process, like libuv's threadpool. Calls that block
//! (`getaddrinfo`, `PQcancel`) are queued and run by at most `ASYNCLOOP_THREADPOOL_SIZE`
//! worker threads (default 4, 1..=128; read once, at first use); their results come back to
//! the submitting loop as posted jobs. Workers start on demand and then stay, waiting for work.

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

struct Pool {
    size: usize,
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Most workers ever busy at once (for tests and statistics).
    peak_busy: AtomicUsize,
}

struct Queue {
    work: VecDeque<Work>,
    workers: usize,
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        size: pool_size_from(std::env::var("ASYNCLOOP_THREADPOOL_SIZE").ok().as_deref()),
        queue: Mutex::new(Queue {
            work: VecDeque::new(),
            workers: 0,
            idle: 0,
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
    fn submit(&'static self, work: Work) {
        let mut q = self.queue.lock();
        q.work.push_back(work);
        if q.idle > 0 {
            self.ready.notify_one();
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
            match q.work.pop_front() {
                Some(work) => {
                    let busy = q.workers - q.idle;
                    self.peak_busy.fetch_max(busy, Ordering::Relaxed);
                    drop(q);
                    work();
                    q = self.queue.lock();
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
    work: impl FnOnce() -> T + Send + 'static,
    then: impl FnOnce(T) + 'static,
) {
    struct OnLoop<F>(F);
    // SAFETY: the value is moved to a worker untouched and moved back inside a job that runs on
    // the loop's thread; if the loop is gone the job is leaked, never dropped on the worker.
    unsafe impl<F> Send for OnLoop<F> {}
    let back = OnLoop(then);
    let remote = lp.remote();
    pool().submit(Box::new(move || {
        let result = work();
        let job = Box::new(move || {
            let back = back; // captures the Send wrapper whole, not its field
            (back.0)(result)
        });
        if let Err((_, job)) = remote.post(job) {
            std::mem::forget(job);
        }
    }));
}

/// Runs `work` on the blocking-work pool, with no result to hand back.
pub fn spawn_blocking(work: impl FnOnce() + Send + 'static) {
    pool().submit(Box::new(work));
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
    fn pool_size_is_read_from_the_environment_value() {
        assert_eq!(pool_size_from(None), DEFAULT_SIZE);
        assert_eq!(pool_size_from(Some("8")), 8);
        assert_eq!(pool_size_from(Some(" 2 ")), 2);
        assert_eq!(pool_size_from(Some("0")), 1);
        assert_eq!(pool_size_from(Some("100000")), MAX_SIZE);
        assert_eq!(pool_size_from(Some("many")), DEFAULT_SIZE);
    }
}
