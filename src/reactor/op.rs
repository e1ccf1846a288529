//! The operations a driver runs and the completions it reports. Both drivers accept the same
//! operations and produce the same completions; epoll emulates them with readiness + syscall.

use std::os::fd::RawFd;

use super::token::Token;

/// One operation. Pointers inside stay valid until the final completion: their owner is kept
/// alive by the loop's op table until then.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// Accept on a listening socket; each completion carries a new fd. Multishot, unless
    /// `shared`: listeners on other loops accept from the same socket, and the driver makes
    /// them take turns. epoll wakes one waiting loop per connection (`EPOLLEXCLUSIVE`) and
    /// stays armed; io_uring accepts one connection per operation (`more` is false, the owner
    /// arms again), since a multishot accept keeps its place at the head of the socket's wait
    /// queue and would take every connection.
    Accept { fd: RawFd, shared: bool },
    /// Multishot receive into the loop's provided buffers; each completion carries a buffer.
    Recv { fd: RawFd },
    /// One `sendmsg(MSG_NOSIGNAL)` of the iovecs in `msg`.
    Send { fd: RawFd, msg: *const libc::msghdr },
    /// One `send(MSG_NOSIGNAL)` of the buffer `iov` describes: the common single-buffer case,
    /// which spares the kernel copying and importing a msghdr and iovec.
    SendOne { fd: RawFd, iov: *const libc::iovec },
    /// One non-blocking connect to `addr` (`len` bytes; a `u16` keeps `Op` at 16 bytes, which
    /// every pending operation's slot pays for).
    Connect {
        fd: RawFd,
        addr: *const libc::sockaddr,
        len: u16,
    },
    /// Readiness, readable (`POLLIN`): repeats while armed (epoll) or fires once (io_uring); the
    /// owner re-arms after a final completion.
    PollRead { fd: RawFd },
    /// Readiness, writable (`POLLOUT`), as `PollRead`.
    PollWrite { fd: RawFd },
    /// Closes the fd. io_uring runs it in submission order, after any earlier entry that names
    /// the fd, so the number cannot be reused under an operation not yet submitted.
    Close { fd: RawFd },
}

impl Op {
    /// The file descriptor the operation works on.
    pub fn fd(&self) -> RawFd {
        match *self {
            Op::Accept { fd, .. }
            | Op::Recv { fd }
            | Op::Send { fd, .. }
            | Op::SendOne { fd, .. }
            | Op::Connect { fd, .. }
            | Op::PollRead { fd }
            | Op::PollWrite { fd }
            | Op::Close { fd } => fd,
        }
    }

    /// True for operations that carry pointers the kernel reads (`Send`, `SendOne`, `Connect`):
    /// they go through `Loop::submit_borrowing`, whose contract covers them.
    pub fn carries_pointers(&self) -> bool {
        matches!(
            self,
            Op::Send { .. } | Op::SendOne { .. } | Op::Connect { .. }
        )
    }

    /// True for operations that wait for input (epoll: `EPOLLIN` interest).
    pub fn is_read_side(&self) -> bool {
        matches!(
            self,
            Op::Accept { .. } | Op::Recv { .. } | Op::PollRead { .. }
        )
    }
}

/// A completion: `res` is the syscall's result or `-errno`; `more` means a multishot operation
/// stays armed; `buf` names a provided buffer holding `res` bytes (recycled after dispatch).
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub token: Token,
    pub res: i32,
    pub more: bool,
    pub buf: Option<u16>,
}
