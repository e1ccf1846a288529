//! The thread-safe side of a loop: a queue of posted jobs, a stop flag and the eventfd that wakes
//! the loop. Wake-ups are coalesced: one eventfd write per batch of posts.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// A job posted from any thread; runs on the loop's thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// Shared between the loop and other threads (held in an `Arc`). Owns the eventfd, so a late
/// post after the loop is gone never writes to a reused descriptor.
pub struct Remote {
    queue: Mutex<Vec<Job>>,
    wake_pending: AtomicBool,
    stop: AtomicBool,
    closed: AtomicBool,
    eventfd: OwnedFd,
}

impl Remote {
    pub(crate) fn new() -> Result<Remote> {
        // SAFETY: plain syscall; checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last_os_error());
        }
        Ok(Remote {
            queue: Mutex::new(Vec::new()),
            wake_pending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            // SAFETY: fd is new and owned only here.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn eventfd(&self) -> i32 {
        self.eventfd.as_raw_fd()
    }

    /// Queues `job` to run on the loop's thread. Thread-safe. Once the loop has been closed the
    /// job is handed back, unrun, with `CLOSED`.
    pub fn post(&self, job: Job) -> std::result::Result<(), (Error, Job)> {
        {
            let mut q = self.queue.lock();
            if self.closed.load(Ordering::Acquire) {
                return Err((Error::CLOSED, job));
            }
            q.push(job);
        }
        self.wake();
        Ok(())
    }

    /// Asks the loop to return from `run` after the current turn. Thread-safe.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
    }

    /// Wakes the loop from its wait; coalesced while a wake-up is pending.
    pub fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to our own eventfd. EAGAIN (counter full)
            // still leaves the fd readable, which is all a wake-up needs.
            unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Loop side: consume the wake-up, then take the queued jobs. The pending flag is cleared
    /// before the queue is drained so a post racing with this is never lost.
    pub(crate) fn take_jobs(&self, into: &mut Vec<Job>) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.eventfd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        self.wake_pending.store(false, Ordering::Release);
        std::mem::swap(&mut *self.queue.lock(), into);
    }

    pub(crate) fn has_jobs(&self) -> bool {
        !self.queue.lock().is_empty()
    }

    pub(crate) fn take_stop(&self) -> bool {
        self.stop.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Refuses further posts and returns what is still queued (dropped by the caller).
    pub(crate) fn close(&self) -> Vec<Job> {
        let mut q = self.queue.lock();
        self.closed.store(true, Ordering::Release);
        std::mem::take(&mut *q)
    }
}
