//! A stream's output: the write queue (owned data, pooled `Writer`s), gathered `sendmsg`
//! sends of up to `MAX_IOV` pieces, shutdown after the queue drains, and failing what is
//! queued when the stream breaks.

use super::*;

pub(super) struct WriteReq {
    pub(super) data: Vec<u8>,
    pub(super) offset: usize,
    pub(super) cb: Option<DoneCb>,
}

/// A stream's output while it has any: the queue and the kernel-facing send arguments.
pub(super) struct Writer {
    pub(super) queue: VecDeque<WriteReq>,
    /// Bytes queued and not yet handed to the kernel.
    pub(super) queued_bytes: usize,
    /// When the queued output last made progress (or was queued on an empty queue); the
    /// server's write timeout reads it.
    pub(super) progress_at: Option<Instant>,
    /// The iovec of a single-buffer send (the common case).
    pub(super) iov_one: libc::iovec,
    /// The iovecs of a gathered send.
    pub(super) iov: Vec<libc::iovec>,
    pub(super) msg: libc::msghdr,
}

/// Writers kept for reuse per thread, at most this many.
const WRITER_POOL: usize = 256;

thread_local! {
    #[allow(clippy::vec_box)] // boxed: the kernel holds pointers into a writer while it sends
    static WRITERS: RefCell<Vec<Box<Writer>>> = const { RefCell::new(Vec::new()) };
}

impl Writer {
    pub(super) fn take() -> Box<Writer> {
        WRITERS.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| {
            Box::new(Writer {
                queue: VecDeque::new(),
                queued_bytes: 0,
                progress_at: None,
                iov_one: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                iov: Vec::new(),
                // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control data).
                msg: unsafe { std::mem::zeroed() },
            })
        })
    }

    /// Back to the pool; only with an empty queue and no send in flight.
    pub(super) fn recycle(mut w: Box<Writer>) {
        debug_assert!(w.queue.is_empty() && w.queued_bytes == 0);
        w.progress_at = None;
        w.iov.clear();
        if w.iov.capacity() > MAX_IOV {
            w.iov = Vec::new();
        }
        let _ = WRITERS.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < WRITER_POOL {
                p.push(w);
            }
        });
    }
}

impl<H: StreamEvents> Stream<H> {
    /// Bytes queued and not yet handed to the kernel.
    pub fn write_queue_size(&self) -> usize {
        self.inner
            .writer
            .borrow()
            .as_ref()
            .map_or(0, |w| w.queued_bytes)
    }

    /// Since when queued output has waited without any byte reaching the kernel: `None` when
    /// nothing is queued. A slow reader that keeps taking bytes never looks stalled.
    pub fn write_stalled_since(&self) -> Option<Instant> {
        self.inner
            .writer
            .borrow()
            .as_ref()
            .and_then(|w| w.progress_at)
    }

    /// Queues `data` (owned by the stream from now on); `cb`, if any, runs once with `Ok` when
    /// all of it was handed to the kernel, or the error (`CANCELLED` on close). `CLOSED` if
    /// closing, `-EPIPE` after `shutdown`.
    pub fn write(&self, data: Vec<u8>, cb: Option<DoneCb>) -> Result<()> {
        if self.is_closing() {
            return Err(Error::CLOSED);
        }
        if self.shutdown_pending() || self.flag(SHUTDOWN_DONE) {
            return Err(Error::from_errno(libc::EPIPE));
        }
        if self.connect_token().is_some() {
            return Err(Error::from_errno(libc::ENOTCONN));
        }
        if self.flag(TLS) {
            return self.tls_write(data, cb);
        }
        self.queue_raw(data, cb);
        Ok(())
    }

    /// Queues `data` as it is (ciphertext on a TLS stream) and starts sending it.
    pub(in crate::net) fn queue_raw(&self, data: Vec<u8>, cb: Option<DoneCb>) {
        let inner = &self.inner;
        {
            let mut w = inner.writer.borrow_mut();
            let w = w.get_or_insert_with(Writer::take);
            if w.queued_bytes == 0 {
                w.progress_at = Some(inner.lp.now());
            }
            w.queued_bytes += data.len();
            w.queue.push_back(WriteReq {
                data,
                offset: 0,
                cb,
            });
        }
        if inner.send.get().is_none() {
            if let Err(e) = self.flush() {
                // Nothing was sent: report the error to every queued write, from the loop.
                let s = self.clone();
                inner.lp.defer(move || s.fail_writes(e));
            }
        }
    }

    /// Whether a send is in flight or anything is queued.
    pub(in crate::net) fn sending(&self) -> bool {
        self.inner.send.get().is_some() || self.has_queued()
    }

    /// Shuts down the sending side once queued writes are sent; `cb` gets the result.
    pub fn shutdown(&self, cb: impl FnOnce(Result<()>) + 'static) -> Result<()> {
        if self.is_closing() {
            return Err(Error::CLOSED);
        }
        if self.shutdown_pending() || self.flag(SHUTDOWN_DONE) {
            return Err(Error::ALREADY);
        }
        if self.flag(TLS) {
            self.tls_close_notify();
        }
        self.extra().shutdown = Some(Box::new(cb));
        if self.inner.send.get().is_none() && !self.has_queued() {
            let s = self.clone();
            self.inner.lp.defer(move || s.do_shutdown());
        }
        Ok(())
    }

    /// Whether any write is queued.
    pub(super) fn has_queued(&self) -> bool {
        self.inner
            .writer
            .borrow()
            .as_ref()
            .is_some_and(|w| !w.queue.is_empty())
    }

    /// Gives the writer back to the pool once nothing is queued and no send is in flight.
    pub(super) fn release_writer(&self) {
        if self.inner.send.get().is_some() || self.has_queued() {
            return;
        }
        let w = self.inner.writer.borrow_mut().take();
        if let Some(w) = w {
            Writer::recycle(w);
        }
    }

    /// Submits one send of the front of the queue: a plain send for one buffer, a sendmsg
    /// gathering up to `MAX_IOV` otherwise.
    pub(super) fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        let fd = inner.fd.get();
        let op = {
            let mut guard = inner.writer.borrow_mut();
            let Some(w) = guard.as_mut() else {
                return Ok(());
            };
            // No send is in flight (send is None), so the kernel does not read the writer's
            // iovecs or msghdr now; they stay untouched, in the boxed writer (which is not
            // released while a send is in flight), until this send's completion.
            let w = &mut **w;
            match w.queue.len() {
                0 => return Ok(()),
                1 => {
                    let rest = &w.queue[0].data[w.queue[0].offset..];
                    w.iov_one = libc::iovec {
                        iov_base: rest.as_ptr() as *mut _,
                        iov_len: rest.len(),
                    };
                    Op::SendOne {
                        fd,
                        iov: &w.iov_one,
                    }
                }
                _ => {
                    w.iov.clear();
                    for req in w.queue.iter().take(MAX_IOV) {
                        let rest = &req.data[req.offset..];
                        w.iov.push(libc::iovec {
                            iov_base: rest.as_ptr() as *mut _,
                            iov_len: rest.len(),
                        });
                    }
                    w.msg.msg_iov = w.iov.as_mut_ptr();
                    w.msg.msg_iovlen = w.iov.len();
                    Op::Send { fd, msg: &w.msg }
                }
            }
        };
        // SAFETY: the msghdr and iovecs live in the boxed writer, which stays with the stream
        // (`inner`, kept alive by the loop until the final completion) and is not returned to
        // its pool while `send` is set; the buffers they name are neither freed nor modified
        // until `on_send` (writes meanwhile only append to the queue).
        let t = unsafe { inner.lp.submit_borrowing(op, inner.clone()) }?;
        inner.send.set(Some(t));
        Ok(())
    }

    pub(super) fn on_send(&self, res: i32) {
        let inner = &self.inner;
        inner.send.set(None);
        if res < 0 {
            let e = if res == -libc::ECANCELED {
                Error::CANCELLED
            } else {
                Error::from_code(res)
            };
            self.fail_writes(e);
            return;
        }
        // Account for the bytes sent before any callback runs, then keep the queue moving, so
        // writes made from callbacks simply join the queue.
        let mut sent = res as usize;
        let mut done: Vec<DoneCb> = Vec::new();
        let more = {
            let mut guard = inner.writer.borrow_mut();
            let Some(w) = guard.as_mut() else { return };
            w.queued_bytes -= sent;
            if sent > 0 {
                w.progress_at = Some(inner.lp.now());
            }
            let q = &mut w.queue;
            while let Some(front) = q.front_mut() {
                let left = front.data.len() - front.offset;
                if sent >= left {
                    sent -= left;
                    let req = q.pop_front().unwrap();
                    if let Some(cb) = req.cb {
                        done.push(cb);
                    }
                    inner.lp.recycle_buffer(req.data);
                } else {
                    front.offset += sent;
                    break;
                }
            }
            !q.is_empty()
        };
        if !more {
            self.release_writer(); // idle connections keep no write state
        }
        let mut flush_err = None;
        if more && !self.is_closing() {
            if let Err(e) = self.flush() {
                flush_err = Some(e);
            }
        }
        for cb in done {
            cb(Ok(()));
        }
        if let Some(e) = flush_err {
            self.fail_writes(e);
        } else if self.is_closing() {
            self.fail_writes(Error::CANCELLED);
        } else if !more && inner.send.get().is_none() {
            if self.shutdown_pending() {
                self.do_shutdown();
            }
            if !self.is_closing() {
                H::on_drain(self, Ok(()));
            }
        }
    }

    /// Fails every queued write (and a pending shutdown) with `e`.
    pub(super) fn fail_writes(&self, e: Error) {
        let had_writes = self.has_queued();
        loop {
            let req = self.inner.writer.borrow_mut().as_mut().and_then(|w| {
                let req = w.queue.pop_front()?;
                w.queued_bytes -= req.data.len() - req.offset;
                Some(req)
            });
            let Some(req) = req else { break };
            if let Some(cb) = req.cb {
                cb(Err(e));
            }
        }
        self.release_writer();
        let sd = self
            .inner
            .extra
            .borrow_mut()
            .as_mut()
            .and_then(|x| x.shutdown.take());
        if let Some(cb) = sd {
            self.set_flag(SHUTDOWN_DONE, true);
            cb(Err(e));
        }
        if had_writes && !self.is_closing() {
            H::on_drain(self, Err(e));
        }
    }

    pub(super) fn do_shutdown(&self) {
        let cb = self
            .inner
            .extra
            .borrow_mut()
            .as_mut()
            .and_then(|x| x.shutdown.take());
        let Some(cb) = cb else { return };
        self.set_flag(SHUTDOWN_DONE, true);
        if self.is_closing() {
            cb(Err(Error::CANCELLED));
            return;
        }
        // SAFETY: plain syscall on our open fd.
        let r = unsafe { libc::shutdown(self.inner.fd.get(), libc::SHUT_WR) };
        cb(if r < 0 {
            Err(Error::last_os_error())
        } else {
            Ok(())
        });
    }
}
