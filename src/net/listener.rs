//! Stream listener (TCP, or a Unix socket path): multishot accept. When accept fails for lack of resources (EMFILE, ENFILE,
//! ENOBUFS, ENOMEM) the error is reported and accepting pauses for `ACCEPT_RETRY`, then resumes
//! by itself: no busy loop, and the pending connections wait in the backlog.

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use super::addr::{Address, SockAddr};
use super::socket;
use super::stream::{Callbacks, TcpStream};
use super::unix::{self, FileOwner, Shared, SocketFile};
use crate::error::{Error, Result};
use crate::reactor::{Completion, Loop, Op, OpOwner, Timer, Token};

/// Pause after an accept error before accepting again.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Options for `TcpListener::bind`.
#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    /// `listen(2)` backlog.
    pub backlog: i32,
    /// SO_REUSEPORT: several sockets (loops, processes) share the address and port. For a
    /// Unix path: the listeners of this process share one socket (see `bind_unix`).
    pub reuse_port: bool,
    /// IPV6_V6ONLY for IPv6 addresses.
    pub ipv6_only: bool,
    /// TCP_NODELAY on accepted connections.
    pub nodelay: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: 1024,
            reuse_port: false,
            ipv6_only: false,
            nodelay: true,
        }
    }
}

/// Gets each accepted fd (owned by the callee) or a transient error.
type AcceptCb = Box<dyn FnMut(Result<RawFd>)>;

struct ListenerInner {
    lp: Loop,
    fd: Cell<RawFd>,
    local: Address,
    /// The socket file of a Unix listener, released (removed, or left to other sharers) at close.
    file: RefCell<Option<FileOwner>>,
    /// Listeners on other loops or processes may accept from the same socket (a shared Unix
    /// socket, or one made elsewhere: `adopt`).
    shared: bool,
    nodelay: bool,
    accept: Cell<Option<Token>>,
    close_op: Cell<Option<Token>>,
    on_accept: RefCell<Option<AcceptCb>>,
    retry: RefCell<Option<Timer>>,
    closing: Cell<bool>,
    close_cb: RefCell<Option<Box<dyn FnOnce()>>>,
}

/// A listening stream socket, TCP or Unix (`bind_unix`). Clones share it; `close` ends it for
/// all of them.
#[derive(Clone)]
pub struct TcpListener {
    inner: Rc<ListenerInner>,
}

impl TcpListener {
    /// Creates, binds and listens (SO_REUSEADDR always; SO_REUSEPORT if asked). Port 0 picks a
    /// free port: see `local_addr`. Must be closed with `close`.
    pub fn bind(lp: &Loop, addr: SocketAddr, opts: ListenOptions) -> Result<TcpListener> {
        let fd = socket::tcp_socket(&addr)?;
        use std::os::fd::AsRawFd;
        let raw = fd.as_raw_fd();
        socket::set_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        if opts.reuse_port {
            socket::set_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        if addr.is_ipv6() {
            socket::set_opt(
                raw,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                opts.ipv6_only as i32,
            )?;
        }
        socket::bind(raw, &addr)?;
        socket::listen(raw, opts.backlog.max(1))?;
        let local = socket::local_addr(raw)?;
        Ok(TcpListener::from_bound(
            lp,
            fd,
            Address::Ip(local),
            None,
            false,
            opts.nodelay,
        ))
    }

    /// Creates, binds and listens on the Unix socket `path` (`@name`: Linux's abstract
    /// namespace, no file). A socket file left by a server that died (connecting to it is
    /// refused) is replaced; `-EADDRINUSE` when a server listens there, `-EEXIST` when the
    /// path is not a socket, `INVALID` for a path too long for `sun_path` (107 bytes). The
    /// file is removed when the listener closes.
    ///
    /// With `reuse_port`, listeners of this process on one path share one socket: the first
    /// binds it, the next ones (on any loop or thread, also asking `reuse_port`) accept from
    /// the same socket, and the kernel hands each connection to one loop that waits for it
    /// (SO_REUSEPORT does not spread a Unix socket's connections). The file is removed when
    /// the last of them closes. `backlog` and `reuse_port` of `opts` apply.
    pub fn bind_unix(lp: &Loop, path: &Path, opts: ListenOptions) -> Result<TcpListener> {
        let sa = SockAddr::from_unix(path)?;
        let bind = || -> Result<(std::os::fd::OwnedFd, Option<SocketFile>)> {
            unix::clear_stale(path, &sa)?;
            let fd = socket::unix_socket()?;
            socket::bind_raw(fd.as_raw_fd(), &sa)?;
            let file = SocketFile::bound(path);
            if let Err(e) = socket::listen(fd.as_raw_fd(), opts.backlog.max(1)) {
                if let Some(f) = &file {
                    f.remove();
                }
                return Err(e);
            }
            Ok((fd, file))
        };
        let (fd, owner) = if opts.reuse_port {
            let (fd, shared) = Shared::listen(path, bind)?;
            (fd, Some(FileOwner::Shared(shared)))
        } else {
            let (fd, file) = bind()?;
            (fd, file.map(FileOwner::Own))
        };
        let shared = matches!(owner, Some(FileOwner::Shared(_)));
        Ok(TcpListener::from_bound(
            lp,
            fd,
            Address::Unix(path.to_path_buf()),
            owner,
            shared,
            false,
        ))
    }

    /// Listens on a socket made elsewhere and already listening: socket activation
    /// (systemd's `LISTEN_FDS`), a socket inherited from a parent, or one shared by the
    /// workers of a pre-forking server. `INVALID` for anything but a listening TCP or Unix
    /// stream socket (`fd` is then dropped). `fd` is made non-blocking and closed at `close`.
    /// Other processes or loops may accept from the same socket, so it is accepted from as a
    /// shared one (see `bind_unix`). A Unix socket's file is not the listener's: it stays
    /// when the listener closes.
    pub(crate) fn adopt(lp: &Loop, fd: OwnedFd, nodelay: bool) -> Result<TcpListener> {
        let raw = fd.as_raw_fd();
        let stream = socket::get_opt(raw, libc::SOL_SOCKET, libc::SO_TYPE) == Ok(libc::SOCK_STREAM);
        let listening = socket::get_opt(raw, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Ok(1);
        let local = match socket::local_address(raw) {
            Ok(a) if stream && listening => a,
            _ => return Err(Error::INVALID),
        };
        socket::set_nonblocking(raw)?;
        let nodelay = nodelay && matches!(local, Address::Ip(_));
        Ok(TcpListener::from_bound(lp, fd, local, None, true, nodelay))
    }

    fn from_bound(
        lp: &Loop,
        fd: std::os::fd::OwnedFd,
        local: Address,
        file: Option<FileOwner>,
        shared: bool,
        nodelay: bool,
    ) -> TcpListener {
        lp.handle_opened();
        TcpListener {
            inner: Rc::new(ListenerInner {
                lp: lp.clone(),
                fd: Cell::new(fd.into_raw_fd()),
                local,
                shared,
                file: RefCell::new(file),
                nodelay,
                accept: Cell::new(None),
                close_op: Cell::new(None),
                on_accept: RefCell::new(None),
                retry: RefCell::new(None),
                closing: Cell::new(false),
                close_cb: RefCell::new(None),
            }),
        }
    }

    /// The bound TCP address (with the real port when bound to port 0); `0.0.0.0:0` for a
    /// Unix listener (see `local_address`).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner
            .local
            .ip()
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }

    /// The bound address, TCP or Unix.
    pub fn local_address(&self) -> &Address {
        &self.inner.local
    }

    /// The listening fd (-1 once closing).
    pub fn fd(&self) -> RawFd {
        self.inner.fd.get()
    }

    /// Starts accepting: `cb` gets each new connection (owned by the callee, who must close it)
    /// or a transient error (accepting resumes by itself). `ALREADY` if started, `CLOSED` if
    /// closing.
    pub fn start(&self, mut cb: impl FnMut(Result<TcpStream>) + 'static) -> Result<()> {
        let lp = self.inner.lp.clone();
        self.start_raw(move |r| {
            cb(r.map(|fd| TcpStream::from_accepted(&lp, fd, Callbacks::default())));
        })
    }

    /// As `start`, handing over each connection as a bare fd (non-blocking, TCP_NODELAY as
    /// configured), for owners that build their own `Stream` around it.
    pub(crate) fn start_raw(&self, cb: impl FnMut(Result<RawFd>) + 'static) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.get() {
            return Err(Error::CLOSED);
        }
        if inner.on_accept.borrow().is_some() {
            return Err(Error::ALREADY);
        }
        *inner.on_accept.borrow_mut() = Some(Box::new(cb));
        if let Err(e) = inner.clone().arm() {
            inner.on_accept.borrow_mut().take();
            return Err(e);
        }
        Ok(())
    }

    /// Closes the listener: accepting stops, the fd is closed, and `cb` runs once nothing is in
    /// flight. Closing twice does nothing the second time.
    pub fn close(&self, cb: impl FnOnce() + 'static) {
        let inner = &self.inner;
        if inner.closing.replace(true) {
            return;
        }
        *inner.close_cb.borrow_mut() = Some(Box::new(cb));
        let old = inner.on_accept.borrow_mut().take();
        drop(old);
        let timer = inner.retry.borrow_mut().take();
        drop(timer);
        if let Some(t) = inner.accept.get() {
            inner.lp.cancel(t);
        }
        let fd = inner.fd.replace(-1);
        inner.close_op.set(inner.lp.submit_close(fd, inner.clone()));
        inner.clone().maybe_finish_close();
    }
}

impl ListenerInner {
    fn arm(self: Rc<Self>) -> Result<()> {
        let t = self.lp.submit(
            Op::Accept {
                fd: self.fd.get(),
                shared: self.shared,
            },
            self.clone(),
        )?;
        self.accept.set(Some(t));
        Ok(())
    }

    fn maybe_finish_close(self: Rc<Self>) {
        if self.closing.get() && self.accept.get().is_none() && self.close_op.get().is_none() {
            let cb = self.close_cb.borrow_mut().take();
            if let Some(cb) = cb {
                let file = self.file.borrow_mut().take();
                if let Some(f) = file {
                    f.release();
                }
                self.lp.defer_close(cb);
            }
        }
    }

    fn report(&self, r: Result<RawFd>) {
        let cb = self.on_accept.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb(r);
            let mut slot = self.on_accept.borrow_mut();
            if slot.is_none() && !self.closing.get() {
                *slot = Some(cb);
            }
        }
    }

    /// Re-arms accept if the listener still wants connections; pauses again if that fails.
    fn resume_accepting(self: Rc<Self>) {
        let wanted =
            !self.closing.get() && self.accept.get().is_none() && self.on_accept.borrow().is_some();
        if wanted && self.clone().arm().is_err() {
            self.pause_then_retry();
        }
    }

    fn pause_then_retry(self: Rc<Self>) {
        let timer = Timer::new(&self.lp);
        let weak = Rc::downgrade(&self);
        timer.start(ACCEPT_RETRY, None, move || {
            if let Some(l) = weak.upgrade() {
                let t = l.retry.borrow_mut().take();
                l.clone().resume_accepting();
                // Dropping the timer inside its own callback is allowed.
                drop(t);
            }
        });
        *self.retry.borrow_mut() = Some(timer);
    }
}

impl OpOwner for ListenerInner {
    fn complete(self: Rc<Self>, _lp: &Loop, op: Op, c: &Completion, _data: &mut [u8]) {
        if let Op::Close { .. } = op {
            self.close_op.set(None);
            self.maybe_finish_close();
            return;
        }
        if !c.more && self.accept.get() == Some(c.token) {
            self.accept.set(None);
        }
        if c.res >= 0 {
            if self.closing.get() || self.on_accept.borrow().is_none() {
                // SAFETY: a connection accepted after close started: nobody else owns it.
                unsafe { libc::close(c.res) };
            } else {
                if self.nodelay {
                    let _ = socket::set_opt(c.res, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
                }
                self.report(Ok(c.res));
            }
            if !c.more {
                self.clone().resume_accepting();
            }
        } else if c.res != -libc::ECANCELED && !self.closing.get() {
            self.report(Err(Error::from_code(c.res)));
            if self.accept.get().is_none() && !self.closing.get() {
                self.clone().pause_then_retry();
            }
        }
        self.maybe_finish_close();
    }
}
