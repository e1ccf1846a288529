//! io_uring driver: native completions. Multishot accept, multishot recv into a provided-buffer
//! ring, one-shot polls (re-armed by their owner, so readiness is level-like as with epoll), one `io_uring_enter` per loop turn (submit and wait
//! together, with the timer deadline as the wait's timeout).

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use super::buffers::BufPool;
use super::op::{Completion, Op};
use super::token::Token;

/// user_data of cancel requests; their own completions are not reported.
const CANCEL_USER_DATA: u64 = u64::MAX;
/// Buffer group id of the loop's receive buffers.
const BGID: u16 = 0;

/// The provided-buffer ring shared with the kernel (page-aligned, mmap'd).
struct BufRing {
    base: *mut BufRingEntry,
    entries: u16,
    tail: u16,
    map_len: usize,
}

impl BufRing {
    fn new(entries: u16) -> io::Result<BufRing> {
        let map_len = entries as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: anonymous private mapping; checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(BufRing {
            base: p.cast(),
            entries,
            tail: 0,
            map_len,
        })
    }

    /// Queues buffer `bid` (at `addr`, `len` bytes) for the kernel; visible after `commit`.
    fn push(&mut self, bid: u16, addr: *mut u8, len: usize) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries, inside the mapping; the kernel reads only entries before the
        // published tail, and this one is past it until `commit`.
        let e = unsafe { &mut *self.base.add(idx) };
        e.set_addr(addr as u64);
        e.set_len(len as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the pushed entries to the kernel.
    fn commit(&self) {
        // SAFETY: base is the first entry of a live, initialised ring; the tail field is a u16
        // the kernel reads concurrently, so it is written atomically with release ordering.
        unsafe {
            let tail = BufRingEntry::tail(self.base) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`; the ring is unregistered or destroyed first.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// The io_uring driver. Field order matters: the ring is dropped before the buffer memory.
pub struct UringDriver {
    ring: IoUring,
    bufring: BufRing,
    pool: BufPool,
    enabled: bool,
}

impl UringDriver {
    /// Creates the ring with the best flags the kernel accepts, and registers the buffer ring.
    /// Fails when io_uring is unavailable (seccomp, `kernel.io_uring_disabled`, old kernel).
    pub fn new(entries: u32, pool: BufPool) -> io::Result<UringDriver> {
        let mut last_err = None;
        let mut ring = None;
        // Strongest set first; older kernels reject flags they do not know with EINVAL.
        for level in 0..3 {
            let mut b = IoUring::builder();
            b.setup_cqsize(entries * 4);
            match level {
                0 => {
                    // TASKRUN_FLAG: the kernel flags pending deferred work in the SQ ring, so a
                    // zero-timeout wait (a `NoWait` turn) still enters with GETEVENTS and runs
                    // it; without it such a turn never sees a completion.
                    b.setup_single_issuer()
                        .setup_defer_taskrun()
                        .setup_taskrun_flag()
                        .setup_r_disabled()
                        .setup_submit_all();
                }
                1 => {
                    b.setup_coop_taskrun().setup_submit_all();
                }
                _ => {}
            }
            match b.build(entries) {
                Ok(r) => {
                    ring = Some((r, level == 0));
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let (ring, disabled): (IoUring, bool) = match ring {
            Some(r) => r,
            None => {
                return Err(last_err.unwrap_or_else(|| io::Error::from_raw_os_error(libc::ENOSYS)))
            }
        };
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        let count = pool.count();
        assert!(count.is_power_of_two());
        let bufring = BufRing::new(count)?;
        // SAFETY: the ring memory lives in `bufring`, which outlives the registration (the
        // io_uring instance is dropped first, see the field order).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufring.base as u64, count, BGID, 0)?;
        }
        let mut d = UringDriver {
            ring,
            bufring,
            pool,
            enabled: !disabled,
        };
        for bid in 0..count {
            let p = d.pool.ptr(bid);
            d.bufring.push(bid, p, d.pool.size());
        }
        d.bufring.commit();
        Ok(d)
    }

    /// Enables a ring created disabled, binding it to the calling (the loop's) thread.
    fn ensure_enabled(&mut self) -> io::Result<()> {
        if !self.enabled {
            self.ring.submitter().register_enable_rings()?;
            self.enabled = true;
        }
        Ok(())
    }

    fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer an entry carries (msghdr, sockaddr) belongs to an owner that the
            // loop keeps alive until the entry's final completion.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return Ok(());
            }
            // Queue full: hand what is queued to the kernel and retry.
            self.ensure_enabled()?;
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    // Completion queue full; the kernel keeps overflowed CQEs, next wait drains.
                    return Err(e);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues `op` under `token`; it is handed to the kernel at the next `wait`.
    pub fn submit(&mut self, token: Token, op: &Op) -> io::Result<()> {
        let e = match *op {
            Op::Accept { fd, shared: false } => opcode::AcceptMulti::new(Fd(fd))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build(),
            Op::Accept { fd, shared: true } => {
                opcode::Accept::new(Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                    .build()
            }
            Op::Recv { fd } => opcode::RecvMulti::new(Fd(fd), BGID).build(),
            Op::Send { fd, msg } => opcode::SendMsg::new(Fd(fd), msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build(),
            Op::SendOne { fd, iov } => {
                // SAFETY: iov points to an iovec the op's owner keeps alive and unchanged until
                // the final completion.
                let iov = unsafe { &*iov };
                // Longer buffers are sent in parts, as any short send.
                let len = iov.iov_len.min(u32::MAX as usize) as u32;
                opcode::Send::new(Fd(fd), iov.iov_base as *const u8, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            Op::Connect { fd, addr, len } => opcode::Connect::new(Fd(fd), addr, len.into()).build(),
            Op::PollRead { fd } => opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32).build(),
            Op::PollWrite { fd } => opcode::PollAdd::new(Fd(fd), libc::POLLOUT as u32).build(),
            Op::Close { fd } => opcode::Close::new(Fd(fd)).build(),
        };
        self.push(e.user_data(token.get()))
    }

    /// Asks the kernel to cancel the operation; its final completion follows (`-ECANCELED`, or
    /// its natural result if it finished first).
    pub fn cancel(&mut self, token: Token, _op: &Op) -> io::Result<()> {
        self.push(
            opcode::AsyncCancel::new(token.get())
                .build()
                .user_data(CANCEL_USER_DATA),
        )
    }

    /// Submits what is queued, waits up to `timeout` (None: until something completes) for at
    /// least one completion, and appends every completion to `out`.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        self.ensure_enabled()?;
        self.bufring.commit();
        let want = if self.ring.completion().is_empty() && timeout != Some(Duration::ZERO) {
            1
        } else {
            0
        };
        let r = match timeout {
            Some(d) => {
                let ts = Timespec::from(d);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            None => self.ring.submitter().submit_and_wait(want),
        };
        if let Err(e) = r {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        if want > 0 && self.ring.completion().is_empty() && self.ring.submission().taskrun() {
            // The wait ended without a completion and with deferred work pending: a signal
            // interrupted it (the enter then returns what it submitted, or EINTR), and the
            // handler of a signal handle made the wake-up eventfd readable on the way back.
            // One enter without waiting runs that work, so this turn delivers it.
            let ts = Timespec::from(Duration::ZERO);
            let args = SubmitArgs::new().timespec(&ts);
            if let Err(e) = self.ring.submitter().submit_with_args(0, &args) {
                match e.raw_os_error() {
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                    | Some(libc::EAGAIN) => {}
                    _ => return Err(e),
                }
            }
        }
        for cqe in self.ring.completion() {
            if cqe.user_data() == CANCEL_USER_DATA {
                continue;
            }
            let flags = cqe.flags();
            let Some(token) = Token::from_raw(cqe.user_data()) else {
                continue; // 0 is never ours
            };
            out.push(Completion {
                token,
                res: cqe.result(),
                more: cqueue::more(flags),
                buf: cqueue::buffer_select(flags),
            });
        }
        Ok(())
    }

    /// Start of buffer `bid`.
    pub fn buffer(&mut self, bid: u16) -> *mut u8 {
        self.pool.ptr(bid)
    }

    /// Gives buffer `bid` back to the kernel (published at the next `wait`).
    pub fn recycle(&mut self, bid: u16) {
        let p = self.pool.ptr(bid);
        self.bufring.push(bid, p, self.pool.size());
    }
}
