//! Socket creation and options, thin and checked.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::addr::{Address, SockAddr};
use crate::error::{Error, Result};

fn check(r: libc::c_int) -> Result<libc::c_int> {
    if r < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A non-blocking, close-on-exec TCP socket for `addr`'s family.
pub fn tcp_socket(addr: &SocketAddr) -> Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall; checked.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd is new and owned only here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking, close-on-exec Unix stream socket.
pub fn unix_socket() -> Result<OwnedFd> {
    // SAFETY: plain syscall; checked.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd is new and owned only here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `bind(2)` to a kernel-form address.
pub fn bind_raw(fd: RawFd, sa: &SockAddr) -> Result<()> {
    // SAFETY: sa is a valid sockaddr of sa.len bytes.
    check(unsafe { libc::bind(fd, sa.as_ptr(), sa.len) }).map(drop)
}

/// Sets an integer socket option.
pub fn set_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> Result<()> {
    // SAFETY: value is a valid c_int for the option's duration.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Reads an integer socket option.
pub fn get_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given.
    check(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// Puts `fd` in non-blocking mode (descriptors handed to us from elsewhere may not be).
pub fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; F_GETFL/F_SETFL take and return ints.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// A duplicate of `fd` (close-on-exec), owned by the caller.
pub fn dup_cloexec(fd: RawFd) -> Result<std::os::fd::OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor or fails; it touches nothing else.
    let new = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `new` was just made and is owned by nobody else.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(new) })
}

/// `bind(2)`.
pub fn bind(fd: RawFd, addr: &SocketAddr) -> Result<()> {
    let sa = SockAddr::from_std(addr);
    // SAFETY: sa is a valid sockaddr of sa.len bytes.
    check(unsafe { libc::bind(fd, sa.as_ptr(), sa.len) }).map(drop)
}

/// `listen(2)`.
pub fn listen(fd: RawFd, backlog: i32) -> Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::listen(fd, backlog) }).map(drop)
}

fn raw_name(fd: RawFd, peer: bool) -> Result<SockAddr> {
    // SAFETY: zeroed storage is valid; len tells the kernel its size.
    let mut sa = SockAddr {
        storage: unsafe { std::mem::zeroed() },
        len: 0,
    };
    sa.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = &mut sa.storage as *mut _ as *mut libc::sockaddr;
    // SAFETY: p/len describe writable storage of the stated size.
    check(unsafe {
        if peer {
            libc::getpeername(fd, p, &mut sa.len)
        } else {
            libc::getsockname(fd, p, &mut sa.len)
        }
    })?;
    Ok(sa)
}

fn name(fd: RawFd, peer: bool) -> Result<SocketAddr> {
    raw_name(fd, peer)?
        .to_std()
        .ok_or(Error::from_errno(libc::EAFNOSUPPORT))
}

/// The local address of a socket of any family the library uses.
pub fn local_address(fd: RawFd) -> Result<Address> {
    raw_name(fd, false)?
        .to_address()
        .ok_or(Error::from_errno(libc::EAFNOSUPPORT))
}

/// The peer address of a connected socket of any family the library uses.
pub fn peer_address(fd: RawFd) -> Result<Address> {
    raw_name(fd, true)?
        .to_address()
        .ok_or(Error::from_errno(libc::EAFNOSUPPORT))
}

/// The local address of a socket.
pub fn local_addr(fd: RawFd) -> Result<SocketAddr> {
    name(fd, false)
}

/// The peer address of a connected socket.
pub fn peer_addr(fd: RawFd) -> Result<SocketAddr> {
    name(fd, true)
}
