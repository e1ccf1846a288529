//! The epoll driver's hot system calls made with `syscall(2)` rather than through their libc
//! wrappers: `recv`, `send`, `sendmsg` and `epoll_wait` are pthread cancellation points in
//! glibc, and each wrapper enables and disables asynchronous cancellation around the call
//! (about 40 instructions, three times per request answered one per round trip). The loop's
//! thread is never a cancellation target (a forced unwind through Rust frames would be
//! undefined behaviour), so nothing is lost. Same arguments, results and `errno` as the
//! wrappers.

use std::os::fd::RawFd;

/// `recv(2)`.
///
/// # Safety
/// As for `libc::recv`: `buf` is valid for writes of `len` bytes.
#[inline]
pub(super) unsafe fn recv(fd: RawFd, buf: *mut libc::c_void, len: usize, flags: i32) -> isize {
    // SAFETY: recvfrom with no address is recv; the caller vouches for the buffer.
    unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf,
            len,
            flags,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        ) as isize
    }
}

/// `send(2)`.
///
/// # Safety
/// As for `libc::send`: `buf` is valid for reads of `len` bytes.
#[inline]
pub(super) unsafe fn send(fd: RawFd, buf: *const libc::c_void, len: usize, flags: i32) -> isize {
    // SAFETY: sendto with no address is send; the caller vouches for the buffer.
    unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf,
            len,
            flags,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        ) as isize
    }
}

/// `sendmsg(2)`.
///
/// # Safety
/// As for `libc::sendmsg`: `msg` points to a valid msghdr whose iovecs and bytes are readable.
#[inline]
pub(super) unsafe fn sendmsg(fd: RawFd, msg: *const libc::msghdr, flags: i32) -> isize {
    // SAFETY: the caller vouches for the message.
    unsafe { libc::syscall(libc::SYS_sendmsg, fd, msg, flags) as isize }
}

/// `epoll_wait(2)`, as `epoll_pwait` with no signal mask (what glibc's wrapper calls too).
///
/// # Safety
/// As for `libc::epoll_wait`: `events` is valid for writes of `max` entries.
#[inline]
pub(super) unsafe fn epoll_wait(
    epfd: RawFd,
    events: *mut libc::epoll_event,
    max: i32,
    timeout_ms: i32,
) -> i32 {
    // SAFETY: a NULL sigmask makes epoll_pwait epoll_wait; the caller vouches for `events`.
    unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait,
            epfd,
            events,
            max,
            timeout_ms,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        ) as i32
    }
}
