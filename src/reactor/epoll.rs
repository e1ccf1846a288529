//! epoll driver: emulates the completion interface. Level-triggered readiness, then the
//! non-blocking syscall, then a completion. Sends and connects are tried at once and wait for
//! `EPOLLOUT` only when the socket is not ready; cancellations complete at the next turn.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::buffers::BufPool;
use super::op::{Completion, Op};
use super::sys;
use super::token::Token;

/// Accepts done for one readiness event before other fds get a turn.
const ACCEPTS_PER_EVENT: usize = 64;
/// Events taken per `epoll_wait`.
const MAX_EVENTS: usize = 256;

/// Slots per page of the fd table.
const FD_PAGE: usize = 256;

/// What waits for input on an fd. The operation is rebuilt from this and the fd, so that the
/// slot every open fd pays for stays small.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum ReadKind {
    #[default]
    Accept,
    /// Accept on a socket other loops accept from too (`EPOLLEXCLUSIVE`).
    AcceptShared,
    Recv,
    PollRead,
}

impl ReadKind {
    fn of(op: &Op) -> Option<ReadKind> {
        match op {
            Op::Accept { shared: false, .. } => Some(ReadKind::Accept),
            Op::Accept { shared: true, .. } => Some(ReadKind::AcceptShared),
            Op::Recv { .. } => Some(ReadKind::Recv),
            Op::PollRead { .. } => Some(ReadKind::PollRead),
            _ => None,
        }
    }

    fn op(self, fd: RawFd) -> Op {
        match self {
            ReadKind::Accept => Op::Accept { fd, shared: false },
            ReadKind::AcceptShared => Op::Accept { fd, shared: true },
            ReadKind::Recv => Op::Recv { fd },
            ReadKind::PollRead => Op::PollRead { fd },
        }
    }
}

/// One fd's pending operations (12 bytes). The read side lives here, because an idle
/// connection always has its receive pending. A write side waits only while the socket is full,
/// so it lives in `EpollDriver::writes` and the slot only says that it does.
#[derive(Default, Clone, Copy)]
struct FdSlot {
    /// The read side's token, as two halves (0: none), so the slot needs 4-byte alignment only.
    read_token: [u32; 2],
    read_kind: ReadKind,
    writing: bool,
    /// The interest the kernel holds for the fd (`EPOLLIN` | `EPOLLOUT`).
    registered: u8,
}

const _: () = assert!(std::mem::size_of::<FdSlot>() == 12);

impl FdSlot {
    fn read(&self) -> Option<Token> {
        Token::from_raw(u64::from(self.read_token[1]) << 32 | u64::from(self.read_token[0]))
    }

    fn set_read(&mut self, t: Option<Token>) {
        let raw = t.map_or(0, Token::get);
        self.read_token = [raw as u32, (raw >> 32) as u32];
    }
}

/// Slots indexed by fd, in pages allocated on first use and never moved, so the table grows
/// without copying and without the slack of a doubling vector.
#[derive(Default)]
struct FdTable {
    pages: Vec<Option<Box<[FdSlot; FD_PAGE]>>>,
}

impl FdTable {
    fn get(&self, fd: RawFd) -> Option<&FdSlot> {
        let i = usize::try_from(fd).ok()?;
        self.pages
            .get(i / FD_PAGE)?
            .as_ref()
            .map(|p| &p[i % FD_PAGE])
    }

    fn get_mut(&mut self, fd: RawFd) -> Option<&mut FdSlot> {
        let i = usize::try_from(fd).ok()?;
        self.pages
            .get_mut(i / FD_PAGE)?
            .as_mut()
            .map(|p| &mut p[i % FD_PAGE])
    }

    /// The slot of `fd` (not negative), made on first use.
    fn slot(&mut self, fd: RawFd) -> &mut FdSlot {
        let i = fd as usize;
        if i / FD_PAGE >= self.pages.len() {
            self.pages.resize_with(i / FD_PAGE + 1, || None);
        }
        let page =
            self.pages[i / FD_PAGE].get_or_insert_with(|| Box::new([FdSlot::default(); FD_PAGE]));
        &mut page[i % FD_PAGE]
    }
}

/// The epoll driver.
pub struct EpollDriver {
    epfd: OwnedFd,
    fds: FdTable,
    /// Write-side operations waiting for `EPOLLOUT`, by fd.
    writes: HashMap<RawFd, (Token, Op)>,
    pool: BufPool,
    free_bufs: Vec<u16>,
    ready: Vec<Completion>,
    events: Vec<libc::epoll_event>,
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

impl EpollDriver {
    /// Creates the epoll instance.
    pub fn new(pool: BufPool) -> io::Result<EpollDriver> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let free_bufs = (0..pool.count()).rev().collect();
        Ok(EpollDriver {
            // SAFETY: fd is a new descriptor owned by nobody else.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            fds: FdTable::default(),
            writes: HashMap::new(),
            pool,
            free_bufs,
            ready: Vec::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS],
        })
    }

    /// The pending read-side operation on `fd`.
    fn read_op(&self, fd: RawFd) -> Option<(Token, Op)> {
        let s = self.fds.get(fd)?;
        s.read().map(|t| (t, s.read_kind.op(fd)))
    }

    /// The pending write-side operation on `fd`.
    fn write_op(&self, fd: RawFd) -> Option<(Token, Op)> {
        match self.fds.get(fd) {
            Some(s) if s.writing => self.writes.get(&fd).copied(),
            _ => None,
        }
    }

    /// Sets (or with `None` clears) the operation pending on one side of `fd` (the read side
    /// when `read_side`).
    fn set_side(&mut self, fd: RawFd, read_side: bool, pending: Option<(Token, Op)>) {
        let s = self.fds.slot(fd);
        if read_side {
            s.set_read(pending.map(|(t, _)| t));
            if let Some(kind) = pending.and_then(|(_, op)| ReadKind::of(&op)) {
                s.read_kind = kind;
            }
        } else {
            s.writing = pending.is_some();
            match pending {
                Some(p) => {
                    self.writes.insert(fd, p);
                }
                None => {
                    self.writes.remove(&fd);
                }
            }
        }
    }

    /// Brings the kernel's interest set for `fd` in line with its pending operations.
    fn update_interest(&mut self, fd: RawFd) -> io::Result<()> {
        let epfd = self.epfd.as_raw_fd();
        let s = self.fds.slot(fd);
        let want = (if s.read().is_some() {
            libc::EPOLLIN as u8
        } else {
            0
        }) | (if s.writing { libc::EPOLLOUT as u8 } else { 0 });
        if want == s.registered {
            return Ok(());
        }
        let op = if s.registered == 0 {
            libc::EPOLL_CTL_ADD
        } else if want == 0 {
            libc::EPOLL_CTL_DEL
        } else {
            libc::EPOLL_CTL_MOD
        };
        let mut events = u32::from(want);
        if op == libc::EPOLL_CTL_ADD && s.read().is_some() && s.read_kind == ReadKind::AcceptShared
        {
            // A listening socket several loops accept from wakes one of them per connection,
            // one that waits in epoll_wait (a busy one is passed over), not all. A listener
            // only ever waits for input, so it is added and deleted, never modified (which
            // EPOLLEXCLUSIVE forbids).
            events |= libc::EPOLLEXCLUSIVE as u32;
        }
        let mut ev = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: epfd and ev are valid; fd is owned by the operation's owner.
        let r = unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        s.registered = want;
        Ok(())
    }

    /// Registers `op`. Sends and connects are attempted right away; their result (or any other
    /// completion) is reported by the next `wait`, never from here.
    pub fn submit(&mut self, token: Token, op: &Op) -> io::Result<()> {
        let fd = op.fd();
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        match *op {
            Op::Send { .. } | Op::SendOne { .. } => {
                if let Some(c) = self.try_write(token, op) {
                    self.ready.push(c);
                    return Ok(());
                }
            }
            Op::Connect { fd, addr, len } => {
                // SAFETY: addr/len describe a sockaddr owned by the op's owner.
                let r = unsafe { libc::connect(fd, addr, len.into()) };
                if r == 0 {
                    self.ready.push(Completion {
                        token,
                        res: 0,
                        more: false,
                        buf: None,
                    });
                    return Ok(());
                }
                let e = errno();
                // EAGAIN is a failure, not a connect in progress (a Unix socket's full backlog,
                // or no local port left for TCP): waiting for writability would report success.
                if e != libc::EINPROGRESS && e != libc::EINTR {
                    self.ready.push(Completion {
                        token,
                        res: -e,
                        more: false,
                        buf: None,
                    });
                    return Ok(());
                }
            }
            Op::Close { fd } => {
                // Operations still registered on the fd end first, as cancelled.
                for (t, o) in [self.read_op(fd), self.write_op(fd)].into_iter().flatten() {
                    self.cancel(t, &o)?;
                }
                if let Some(s) = self.fds.get_mut(fd) {
                    s.registered = 0;
                }
                // SAFETY: the op's owner hands the fd over to be closed; nothing uses it after.
                let r = unsafe { libc::close(fd) };
                let res = if r < 0 { -errno() } else { 0 };
                self.ready.push(Completion {
                    token,
                    res,
                    more: false,
                    buf: None,
                });
                return Ok(());
            }
            _ => {}
        }
        let read_side = op.is_read_side();
        let busy = if read_side {
            self.read_op(fd)
        } else {
            self.write_op(fd)
        };
        if busy.is_some() {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.set_side(fd, read_side, Some((token, *op)));
        if let Err(e) = self.update_interest(fd) {
            self.set_side(fd, read_side, None);
            return Err(e);
        }
        Ok(())
    }

    /// Removes the operation; its `-ECANCELED` completion comes with the next `wait`.
    pub fn cancel(&mut self, token: Token, op: &Op) -> io::Result<()> {
        let fd = op.fd();
        let read_side = op.is_read_side();
        let pending = if read_side {
            self.read_op(fd)
        } else {
            self.write_op(fd)
        };
        if matches!(pending, Some((t, _)) if t == token) {
            self.set_side(fd, read_side, None);
            self.ready.push(Completion {
                token,
                res: -libc::ECANCELED,
                more: false,
                buf: None,
            });
            // The fd may already be closed by its owner; a failed DEL then changes nothing.
            let _ = self.update_interest(fd);
            let s = self.fds.slot(fd);
            if s.read().is_none() && !s.writing {
                s.registered = 0;
            }
        }
        Ok(())
    }

    /// The completion of a send that returned `n`; `None` to wait for writability.
    fn sent(token: Token, n: isize) -> Option<Completion> {
        if n >= 0 {
            return Some(Completion {
                token,
                res: n as i32,
                more: false,
                buf: None,
            });
        }
        match errno() {
            libc::EAGAIN | libc::EINTR => None,
            e => Some(Completion {
                token,
                res: -e,
                more: false,
                buf: None,
            }),
        }
    }

    fn try_write(&mut self, token: Token, op: &Op) -> Option<Completion> {
        match *op {
            // SAFETY: msg points to a msghdr and iovecs kept alive by the op's owner.
            Op::Send { fd, msg } => {
                Self::sent(token, unsafe { sys::sendmsg(fd, msg, libc::MSG_NOSIGNAL) })
            }
            // SAFETY: iov points to an iovec (and its buffer) kept alive by the op's owner.
            Op::SendOne { fd, iov } => Self::sent(token, unsafe {
                sys::send(fd, (*iov).iov_base, (*iov).iov_len, libc::MSG_NOSIGNAL)
            }),
            Op::Connect { fd, .. } => {
                let mut err: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: err/len are valid out-parameters for SO_ERROR.
                let r = unsafe {
                    libc::getsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_ERROR,
                        (&mut err as *mut libc::c_int).cast(),
                        &mut len,
                    )
                };
                let res = if r < 0 { -errno() } else { -err };
                Some(Completion {
                    token,
                    res,
                    more: false,
                    buf: None,
                })
            }
            Op::PollWrite { .. } => Some(Completion {
                token,
                res: libc::POLLOUT as i32,
                more: true,
                buf: None,
            }),
            _ => None,
        }
    }

    fn on_readable(&mut self, token: Token, op: Op, hup: bool, out: &mut Vec<Completion>) {
        match op {
            Op::Accept { fd, .. } => {
                for _ in 0..ACCEPTS_PER_EVENT {
                    // SAFETY: accept4 with null address out-parameters.
                    let nfd = unsafe {
                        libc::accept4(
                            fd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if nfd >= 0 {
                        out.push(Completion {
                            token,
                            res: nfd,
                            more: true,
                            buf: None,
                        });
                        continue;
                    }
                    match errno() {
                        libc::EAGAIN | libc::EINTR => {}
                        libc::ECONNABORTED | libc::EPROTO => continue,
                        e => {
                            // Like io_uring's multishot accept, an error ends the operation.
                            self.set_side(fd, true, None);
                            let _ = self.update_interest(fd);
                            out.push(Completion {
                                token,
                                res: -e,
                                more: false,
                                buf: None,
                            });
                        }
                    }
                    break;
                }
            }
            Op::Recv { fd } => {
                let Some(bid) = self.free_bufs.pop() else {
                    return;
                };
                let p = self.pool.ptr(bid);
                // SAFETY: p points to a free pool buffer of pool.size() bytes.
                let n = unsafe { sys::recv(fd, p.cast(), self.pool.size(), 0) };
                if n > 0 {
                    out.push(Completion {
                        token,
                        res: n as i32,
                        more: true,
                        buf: Some(bid),
                    });
                    return;
                }
                self.free_bufs.push(bid);
                let res = if n == 0 {
                    0
                } else {
                    match errno() {
                        libc::EAGAIN | libc::EINTR => return,
                        e => -e,
                    }
                };
                self.set_side(fd, true, None);
                let _ = self.update_interest(fd);
                out.push(Completion {
                    token,
                    res,
                    more: false,
                    buf: None,
                });
            }
            Op::PollRead { .. } => {
                let mut ev = libc::POLLIN as i32;
                if hup {
                    ev |= libc::POLLHUP as i32;
                }
                out.push(Completion {
                    token,
                    res: ev,
                    more: true,
                    buf: None,
                });
            }
            _ => {}
        }
    }

    /// Reports queued completions, then waits up to `timeout` for readiness and runs the
    /// syscalls of ready operations.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        out.append(&mut self.ready);
        let ms: i32 = if !out.is_empty() {
            0
        } else {
            match timeout {
                None => -1,
                // Round up so a timer is never woken for early.
                // (u64 arithmetic: whole seconds are whole milliseconds.)
                Some(d) => (d.as_secs().min(i32::MAX as u64 / 1000) * 1000
                    + u64::from(d.subsec_nanos()).div_ceil(1_000_000))
                .min(i32::MAX as u64) as i32,
            }
        };
        let mut ms = ms;
        let n = loop {
            // SAFETY: events has MAX_EVENTS entries.
            let n = unsafe {
                sys::epoll_wait(
                    self.epfd.as_raw_fd(),
                    self.events.as_mut_ptr(),
                    MAX_EVENTS as i32,
                    ms,
                )
            };
            if n >= 0 {
                break n;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
            if ms == 0 {
                return Ok(());
            }
            // Interrupted: look once more without waiting. A signal handled on this thread
            // (a signal handle's) has just made the wake-up eventfd readable, and the turn
            // should deliver it rather than end empty.
            ms = 0;
        };
        for i in 0..n as usize {
            let ev = self.events[i];
            let fd = ev.u64 as RawFd;
            let flags = ev.events;
            let err_or_hup = flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            if flags & libc::EPOLLIN as u32 != 0 || err_or_hup {
                if let Some((token, op)) = self.read_op(fd) {
                    self.on_readable(token, op, err_or_hup, out);
                }
            }
            if flags & libc::EPOLLOUT as u32 != 0 || err_or_hup {
                if let Some((token, op)) = self.write_op(fd) {
                    if let Some(c) = self.try_write(token, &op) {
                        if !c.more {
                            self.set_side(fd, false, None);
                            let _ = self.update_interest(fd);
                        }
                        out.push(c);
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves the completions made at submission (sends, connects, closes, cancellations) to
    /// `out` without waiting.
    pub fn take_ready(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.ready);
    }

    /// Start of buffer `bid`.
    pub fn buffer(&mut self, bid: u16) -> *mut u8 {
        self.pool.ptr(bid)
    }

    /// Returns buffer `bid` to the free list.
    pub fn recycle(&mut self, bid: u16) {
        self.free_bufs.push(bid);
    }
}
