//! Connecting a stream: to a TCP address or a Unix socket path, with a timeout, cancelled by
//! closing the stream.

use super::*;

/// A connect in progress.
pub(super) struct Connecting {
    /// Read by the kernel until the connect completes.
    pub(super) addr: SockAddr,
    pub(super) cb: Option<DoneCb>,
    pub(super) timer: Option<Timer>,
    pub(super) timed_out: bool,
}

impl Stream<Callbacks> {
    /// Starts connecting to `addr`; `cb` gets the result: `Ok`, `-errno`, `TIMEOUT` when
    /// `timeout` passes first, `CANCELLED` when the stream is closed first. The stream is
    /// returned at once (close it to cancel) and must be closed in every case.
    pub fn connect(
        lp: &Loop,
        addr: SocketAddr,
        timeout: Option<Duration>,
        cb: impl FnOnce(Result<()>) + 'static,
    ) -> Result<TcpStream> {
        let fd = socket::tcp_socket(&addr)?;
        let _ = socket::set_opt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        let s = Stream::from_fd(lp, fd.into_raw_fd(), Callbacks::default());
        s.start_connect(SockAddr::from_std(&addr), timeout, Box::new(cb))?;
        Ok(s)
    }

    /// As `connect`, to the Unix stream socket `path` (`@name`: an abstract one). `INVALID`
    /// for a path too long for `sun_path`; a missing socket is `-ENOENT`, one nobody accepts
    /// on `-ECONNREFUSED`, a server whose backlog is full `-EAGAIN` (all through `cb`).
    pub fn connect_unix(
        lp: &Loop,
        path: &std::path::Path,
        timeout: Option<Duration>,
        cb: impl FnOnce(Result<()>) + 'static,
    ) -> Result<TcpStream> {
        let sa = SockAddr::from_unix(path)?;
        let fd = socket::unix_socket()?;
        let s = Stream::from_fd(lp, fd.into_raw_fd(), Callbacks::default());
        s.start_connect(sa, timeout, Box::new(cb))?;
        Ok(s)
    }
}

impl<H: StreamEvents> Stream<H> {
    pub(in crate::net) fn connect_token(&self) -> Option<Token> {
        self.inner.extra.borrow().as_ref().and_then(|e| e.connect)
    }

    pub(super) fn start_connect(
        &self,
        addr: SockAddr,
        timeout: Option<Duration>,
        cb: DoneCb,
    ) -> Result<()> {
        let inner = &self.inner;
        let op = {
            let mut extra = self.extra();
            let state = extra.connecting.insert(Connecting {
                addr,
                cb: Some(cb),
                timer: None,
                timed_out: false,
            });
            // The address lives in the extra box, which stays put until the stream is freed,
            // and the loop keeps the stream alive until the connect completes.
            Op::Connect {
                fd: inner.fd.get(),
                addr: state.addr.as_ptr(),
                len: state.addr.len as u16, // a sockaddr_storage is 128 bytes
            }
        };
        // SAFETY: the address lives in the extra box, which stays put until the stream is
        // freed, and the loop keeps the stream (`inner`) alive until the final completion.
        match unsafe { inner.lp.submit_borrowing(op, inner.clone()) } {
            Ok(t) => self.extra().connect = Some(t),
            Err(e) => {
                self.extra().connecting.take();
                self.begin_close();
                return Err(e);
            }
        }
        if let Some(d) = timeout {
            let timer = Timer::new(&inner.lp);
            let weak = self.downgrade();
            timer.start(d, None, move || {
                if let Some(s) = weak.upgrade() {
                    if let Some(t) = s.connect_token() {
                        if let Some(c) = s.extra().connecting.as_mut() {
                            c.timed_out = true;
                        }
                        s.inner.lp.cancel(t);
                    }
                }
            });
            if let Some(c) = self.extra().connecting.as_mut() {
                c.timer = Some(timer);
            }
        }
        Ok(())
    }

    pub(super) fn on_connect(&self, res: i32) {
        let state = {
            let mut extra = self.extra();
            extra.connect = None;
            extra.connecting.take()
        };
        let Some(Connecting {
            cb,
            timer,
            timed_out,
            ..
        }) = state
        else {
            return;
        };
        drop(timer);
        let r = if res >= 0 {
            Ok(())
        } else if res == -libc::ECANCELED {
            Err(if timed_out && !self.is_closing() {
                Error::TIMEOUT
            } else {
                Error::CANCELLED
            })
        } else {
            Err(Error::from_code(res))
        };
        if let Some(cb) = cb {
            cb(r);
        }
    }
}
