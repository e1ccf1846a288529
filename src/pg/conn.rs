//! One libpq connection driven by the loop: non-blocking connect (`PQconnectStartParams` and
//! `PQconnectPoll` on socket readiness, re-registered when libpq changes sockets), then the
//! socket watch, corking, cancels and teardown. What runs on a connection lives beside it:
//! the pipeline of queries (`pipeline.rs`) and COPY, which leaves pipeline mode for its
//! duration (`copy.rs`). The owner (a pool or a listener) hears `ready`, `capacity`, `broken`
//! and notifications; a broken connection fails every query in flight on it.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::ffi::{c_char, c_void, CStr, CString};
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pq_sys as pq;

use super::copy::CopyState;
use super::hosts::{hosts_to_resolve, Resolved};
use super::notify::Notification;
use super::pipeline::InFlight;
use super::result::PgError;
use crate::error::Error;
use crate::net::resolve::resolve_all_off_loop;
use crate::reactor::{FdWatch, Loop, Readiness, Timer};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    Connecting,
    Ready,
    Closed,
}

/// Events a connection reports to its owner.
pub(crate) trait ConnEvents {
    fn ready(&self, id: usize);
    fn capacity(&self, id: usize);
    fn broken(&self, id: usize, why: &str);
    /// A `NOTIFY` for a channel this connection listens on (only listeners do).
    fn notification(&self, _id: usize, _n: Notification) {}
}

/// The cancel requests of a connection, shared with the workers that send them (no closure
/// goes back to the loop, so none is left behind when the loop is gone first).
#[derive(Default)]
pub(super) struct CancelsSent {
    /// Handed to the pool, `PQcancel` not returned yet.
    pub(super) pending: AtomicUsize,
    /// When the last `PQcancel` returned.
    pub(super) delivered_at: parking_lot::Mutex<Option<Instant>>,
}

/// How a connection runs statements.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ConnOptions {
    pub(crate) connect_timeout: Duration,
    /// Never prepare named statements: `Statement::Prepared` is sent as its SQL, parsed as the
    /// unnamed statement each time (what PgBouncer's transaction pooling needs).
    pub(crate) no_prepare: bool,
}

pub(crate) struct Conn {
    pub(super) id: usize,
    pub(super) lp: Loop,
    pub(super) owner: Weak<dyn ConnEvents>,
    pub(super) pg: Cell<*mut pq::PGconn>,
    watch: RefCell<Option<FdWatch>>,
    sock: Cell<RawFd>,
    pub(super) state: Cell<State>,
    pub(super) inflight: RefCell<VecDeque<InFlight>>,
    pub(super) prepared: RefCell<HashSet<String>>,
    pub(super) no_prepare: bool,
    /// Fails the connect when it takes longer than the pool allows.
    connect_timer: RefCell<Option<Timer>>,
    /// The socket corked (TCP_CORK) until the end of this loop turn, if any.
    corked: Cell<Option<RawFd>>,
    /// A cancel was sent for a query that then finished by itself: until it is spent, it may
    /// reach this connection's backend and cancel a later query instead, which is then sent
    /// again (see `resend_if_stray_cancelled`).
    pub(super) stray_cancel: Cell<bool>,
    /// Cancel requests on their way and when the last one was delivered: the blocking-work
    /// pool may hold one back behind other work.
    pub(super) cancels: Arc<CancelsSent>,
    /// False once corking failed (a Unix socket): not tried again.
    can_cork: Cell<bool>,
    /// Lent to one transaction or COPY (see `lease.rs`): the pool sends it nothing else.
    pub(super) leased: Cell<bool>,
    /// A COPY in progress: the connection is out of pipeline mode until it ends.
    pub(super) copy: RefCell<Option<CopyState>>,
    /// Runs once when nothing is in flight any more (a lease waiting to start a COPY).
    pub(super) idle_hook: RefCell<Option<Box<dyn FnOnce()>>>,
    pub(super) me: Weak<Conn>,
}

unsafe extern "C" fn ignore_notice(_arg: *mut c_void, _message: *const c_char) {}

pub(super) fn error_message(pg: *mut pq::PGconn) -> String {
    // SAFETY: pg is a live connection; the message is owned by it.
    let m = unsafe { CStr::from_ptr(pq::PQerrorMessage(pg)) }.to_string_lossy();
    m.trim_end().to_string()
}

impl Conn {
    /// Starts connecting with `conninfo` (a libpq conninfo string or URI). Never blocks: a host
    /// given by name is resolved on a helper thread first, then passed to libpq as `hostaddr`.
    /// The outcome arrives as `ready` or `broken` on `owner`.
    pub(crate) fn start(
        lp: &Loop,
        id: usize,
        conninfo: &str,
        opts: ConnOptions,
        owner: Weak<dyn ConnEvents>,
    ) -> Rc<Conn> {
        let conn = Rc::new_cyclic(|me| Conn {
            id,
            lp: lp.clone(),
            owner,
            pg: Cell::new(std::ptr::null_mut()),
            watch: RefCell::new(None),
            sock: Cell::new(-1),
            state: Cell::new(State::Connecting),
            inflight: RefCell::new(VecDeque::new()),
            prepared: RefCell::new(HashSet::new()),
            no_prepare: opts.no_prepare,
            connect_timer: RefCell::new(None),
            corked: Cell::new(None),
            stray_cancel: Cell::new(false),
            cancels: Arc::default(),
            can_cork: Cell::new(true),
            leased: Cell::new(false),
            copy: RefCell::new(None),
            idle_hook: RefCell::new(None),
            me: me.clone(),
        });
        let t = Timer::new(lp);
        let weak = conn.me.clone();
        t.start(opts.connect_timeout, None, move || {
            if let Some(c) = weak.upgrade() {
                if c.state.get() == State::Connecting {
                    c.fail("timed out connecting to the database");
                }
            }
        });
        *conn.connect_timer.borrow_mut() = Some(t);
        match hosts_to_resolve(conninfo) {
            None => conn.begin(conninfo, None),
            Some(list) => {
                let (weak, conninfo) = (conn.me.clone(), conninfo.to_string());
                let names = list.names();
                resolve_all_off_loop(lp, names.clone(), 0, move |addrs| {
                    if let Some(c) = weak.upgrade() {
                        match list.expand(&addrs) {
                            Some(r) => c.begin(&conninfo, Some(r)),
                            None => c.fail(&format!(
                                "could not resolve host name \"{}\"",
                                names.join(",")
                            )),
                        }
                    }
                });
            }
        }
        conn
    }

    /// Starts libpq's non-blocking connect. When host names were resolved here, `resolved`
    /// replaces the conninfo's host list with one entry per address (see `hosts`), which
    /// libpq tries in turn without DNS of its own.
    fn begin(&self, conninfo: &str, resolved: Option<Resolved>) {
        if self.state.get() != State::Connecting {
            return; // closed while resolving
        }
        let info = CString::new(conninfo).unwrap_or_default();
        let c = |s: &str| CString::new(s).unwrap_or_default();
        let lists = resolved.map(|r| (c(&r.host), c(&r.hostaddr), r.port.as_deref().map(c)));
        let mut keys = vec![c"dbname".as_ptr()];
        let mut vals = vec![info.as_ptr()];
        if let Some((host, hostaddr, port)) = &lists {
            keys.extend([c"host".as_ptr(), c"hostaddr".as_ptr()]);
            vals.extend([host.as_ptr(), hostaddr.as_ptr()]);
            if let Some(port) = port {
                keys.push(c"port".as_ptr());
                vals.push(port.as_ptr());
            }
        }
        keys.push(std::ptr::null());
        vals.push(std::ptr::null());
        // SAFETY: NULL-terminated keyword/value arrays of C strings that live for the call;
        // expand_dbname=1 lets the dbname value be a full conninfo string or URI, and the later
        // host, hostaddr and port override what it says.
        let pg = unsafe { pq::PQconnectStartParams(keys.as_ptr(), vals.as_ptr(), 1) };
        self.pg.set(pg);
        // SAFETY: pg may be NULL (out of memory) or a connection object.
        if pg.is_null() || unsafe { pq::PQstatus(pg) } == pq::ConnStatusType::CONNECTION_BAD {
            let why = if pg.is_null() {
                "out of memory".to_string()
            } else {
                error_message(pg)
            };
            let c = self.me.upgrade().expect("alive");
            self.lp.defer(move || c.fail(&why));
            return;
        }
        // SAFETY: live connection; the processor ignores notices instead of printing them.
        unsafe { pq::PQsetNoticeProcessor(pg, Some(ignore_notice), std::ptr::null_mut()) };
        // libpq: treat the start as if PQconnectPoll had said "writing".
        self.watch_socket(Readiness {
            readable: false,
            writable: true,
        });
    }

    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.inflight.borrow().len()
    }

    /// Whether a transaction or COPY holds this connection.
    pub(crate) fn is_leased(&self) -> bool {
        self.leased.get()
    }

    /// Whether a COPY runs (the connection takes no queries until it ends).
    pub(crate) fn copying(&self) -> bool {
        self.copy.borrow().is_some()
    }

    /// Runs `f` once nothing is in flight (deferred to the loop when that is already so).
    pub(crate) fn when_idle(&self, f: Box<dyn FnOnce()>) {
        if self.in_flight() == 0 && !self.copying() {
            self.lp.defer(f);
        } else {
            *self.idle_hook.borrow_mut() = Some(f);
        }
    }

    /// Runs the idle hook if nothing is in flight.
    pub(super) fn fire_idle_hook(&self) {
        if self.in_flight() == 0 && !self.copying() {
            let hook = self.idle_hook.borrow_mut().take();
            if let Some(h) = hook {
                h();
            }
        }
    }

    /// Watches libpq's current socket (a new watch when the socket changed).
    pub(super) fn watch_socket(&self, want: Readiness) {
        // SAFETY: live connection.
        let fd = unsafe { pq::PQsocket(self.pg.get()) };
        if fd < 0 {
            self.fail("connection has no socket");
            return;
        }
        // While connecting, libpq may close its socket and open another (the next host or
        // address, or a retry without SSL), which often gets the same number; the kernel
        // forgot the old one's registration. So each step of the connect watches anew.
        let connecting = self.state.get() == State::Connecting;
        if connecting || fd != self.sock.get() || self.watch.borrow().is_none() {
            let old = self.watch.borrow_mut().take();
            drop(old);
            let weak = self.me.clone();
            let w = FdWatch::new(&self.lp, fd, move |r| {
                if let Some(c) = weak.upgrade() {
                    c.on_ready(r);
                }
            });
            self.sock.set(fd);
            *self.watch.borrow_mut() = Some(w);
        }
        let r = self.watch.borrow().as_ref().map(|w| w.set_interest(want));
        if let Some(Err(e)) = r {
            self.fail(&format!("cannot watch the socket: {e}"));
        }
    }

    fn on_ready(&self, r: Readiness) {
        match self.state.get() {
            State::Connecting => self.poll_connect(),
            State::Ready if self.copying() => self.copy_on_ready(r),
            State::Ready => {
                if r.writable {
                    self.flush();
                }
                if r.readable && self.state.get() == State::Ready {
                    self.read();
                }
            }
            State::Closed => {}
        }
    }

    fn poll_connect(&self) {
        let pg = self.pg.get();
        // SAFETY: live connection in the connecting state.
        match unsafe { pq::PQconnectPoll(pg) } {
            pq::PostgresPollingStatusType::PGRES_POLLING_READING => self.watch_socket(Readiness {
                readable: true,
                writable: false,
            }),
            pq::PostgresPollingStatusType::PGRES_POLLING_WRITING => self.watch_socket(Readiness {
                readable: false,
                writable: true,
            }),
            pq::PostgresPollingStatusType::PGRES_POLLING_OK => {
                // SAFETY: live, connected.
                let ok =
                    unsafe { pq::PQsetnonblocking(pg, 1) == 0 && pq::PQenterPipelineMode(pg) == 1 };
                if !ok {
                    self.fail(&error_message(pg));
                    return;
                }
                self.state.set(State::Ready);
                self.watch_socket(Readiness {
                    readable: true,
                    writable: false,
                });
                if let Some(o) = self.owner.upgrade() {
                    o.ready(self.id);
                }
            }
            _ => self.fail(&error_message(pg)),
        }
    }

    /// Holds the socket's output back until the end of this loop turn (TCP_CORK). libpq 15
    /// flushes at every `PQpipelineSync`, and each query has its own sync: without the cork, a
    /// handler that sends 20 queries sends 20 segments and wakes the server 20 times; with it,
    /// they leave together when the turn ends.
    pub(super) fn cork_for_this_turn(&self) {
        if self.corked.get().is_some() || !self.can_cork.get() {
            return;
        }
        // SAFETY: live connection.
        let fd = unsafe { pq::PQsocket(self.pg.get()) };
        if fd < 0 {
            return;
        }
        if crate::net::set_socket_option(fd, libc::IPPROTO_TCP, libc::TCP_CORK, 1).is_err() {
            self.can_cork.set(false); // not TCP: nothing to coalesce
            return;
        }
        self.corked.set(Some(fd));
        let weak = self.me.clone();
        self.lp.defer(move || {
            if let Some(c) = weak.upgrade() {
                c.uncork();
            }
        });
    }

    /// Sends what the cork held back (the socket is only touched while this connection still
    /// owns it: a closed connection's fd number may belong to someone else by now).
    fn uncork(&self) {
        let Some(fd) = self.corked.take() else { return };
        // SAFETY: pg is live or null; PQsocket of a live connection is its open socket.
        let live = !self.pg.get().is_null() && unsafe { pq::PQsocket(self.pg.get()) } == fd;
        if live {
            let _ = crate::net::set_socket_option(fd, libc::IPPROTO_TCP, libc::TCP_CORK, 0);
        }
    }

    /// Sends a cancel request for whatever the backend runs now. `PQcancel` blocks, so it runs
    /// on the blocking-work pool, never on the loop.
    pub(super) fn send_cancel(&self) {
        // SAFETY: live connection; PQgetCancel copies what the cancel request needs.
        let cancel = unsafe { pq::PQgetCancel(self.pg.get()) };
        if cancel.is_null() {
            return;
        }
        struct SendCancel(*mut pq::PGcancel);
        // SAFETY: the PGcancel object is owned by the worker from here on; libpq documents
        // PQcancel as safe to call from another thread.
        unsafe impl Send for SendCancel {}
        let c = SendCancel(cancel);
        let sent = self.cancels.clone();
        sent.pending.fetch_add(1, Ordering::AcqRel);
        crate::reactor::spawn_blocking(crate::reactor::Blocking::Quick, move || {
            let c = c;
            let mut buf = [0 as c_char; 256];
            // SAFETY: c.0 is a live PGcancel; buf is a writable error buffer of its length.
            unsafe {
                pq::PQcancel(c.0, buf.as_mut_ptr(), buf.len() as i32);
                pq::PQfreeCancel(c.0);
            }
            *sent.delivered_at.lock() = Some(Instant::now());
            sent.pending.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Breaks the connection: every query in flight fails with `PG_CONNECTION`, the socket
    /// watch ends and libpq's connection is freed. The owner hears `broken` once.
    pub(crate) fn fail(&self, why: &str) {
        self.fail_with(Error::PG_CONNECTION, why);
    }

    /// As `fail`, with `code` for the work in flight (`CANCELLED` when the pool closes).
    pub(crate) fn fail_with(&self, code: Error, why: &str) {
        if self.state.replace(State::Closed) == State::Closed {
            return;
        }
        let t = self.connect_timer.borrow_mut().take();
        drop(t);
        let w = self.watch.borrow_mut().take();
        drop(w); // stop watching before libpq closes the fd
        let pg = self.pg.replace(std::ptr::null_mut());
        if !pg.is_null() {
            // SAFETY: we own the connection and free it once.
            unsafe { pq::PQfinish(pg) };
        }
        let failed: Vec<InFlight> = self.inflight.borrow_mut().drain(..).collect();
        for f in failed {
            f.fail(PgError::new(code, why));
        }
        let copy = self.copy.borrow_mut().take();
        if let Some(c) = copy {
            c.fail(PgError::new(code, why));
        }
        let hook = self.idle_hook.borrow_mut().take();
        if let Some(h) = hook {
            h(); // whoever waits sees the connection closed
        }
        if let Some(o) = self.owner.upgrade() {
            o.broken(self.id, why);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let pg = self.pg.replace(std::ptr::null_mut());
        if !pg.is_null() {
            let w = self.watch.borrow_mut().take();
            drop(w);
            // SAFETY: we own the connection.
            unsafe { pq::PQfinish(pg) };
        }
    }
}
