//! One libpq connection driven by the loop: non-blocking connect (`PQconnectStartParams` and
//! `PQconnectPoll` on socket readiness, re-registered when libpq changes sockets), then
//! pipeline mode with one `PQpipelineSync` per query, `PQflush` while the socket takes more,
//! and results read with `PQconsumeInput`/`PQisBusy`/`PQgetResult` as they arrive.
//! The pool owns connections; a broken one fails every query in flight on it and is dropped.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::ffi::{c_char, c_void, CStr, CString};
use std::os::fd::RawFd;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pq_sys as pq;

use super::hosts::{hosts_to_resolve, Resolved};
use super::result::{PgError, PgResult};
use crate::error::Error;
use crate::net::resolve::resolve_all_off_loop;
use crate::reactor::{FdWatch, Loop, Readiness, Timer};

/// Called once with a query's outcome.
pub type QueryCb = Box<dyn FnOnce(Result<PgResult, PgError>)>;
/// Called once with the outcomes of a batch, one per statement, in order.
pub type BatchCb = Box<dyn FnOnce(Vec<Result<PgResult, PgError>>)>;

/// What to run.
pub enum Statement {
    /// SQL with `$n` parameters, parsed for this call.
    Sql(String),
    /// A named statement, prepared on each connection the first time it runs there.
    Prepared { name: String, sql: String },
}

/// One statement of a query: the statement and its parameters (text, copied, NUL-terminated;
/// `None` is SQL NULL).
pub(crate) struct Step {
    pub(crate) stmt: Rc<Statement>,
    pub(crate) params: Vec<Option<CString>>,
}

/// Who hears the outcome.
pub(crate) enum Done {
    One(QueryCb),
    Many(BatchCb),
}

/// A query waiting to be sent: one statement, or several sent back to back with a single sync
/// (they then run in one implicit transaction: after a failure the rest are skipped).
pub(crate) struct Query {
    pub(crate) steps: Vec<Step>,
    pub(crate) done: Done,
    pub(crate) deadline: Option<Instant>,
}

impl Query {
    /// Fails the query without sending it.
    pub(crate) fn fail(self, e: PgError) {
        match self.done {
            Done::One(cb) => cb(Err(e)),
            Done::Many(cb) => cb(self.steps.iter().map(|_| Err(e.clone())).collect()),
        }
    }
}

/// A result group libpq will report for the query (each ends with a NULL from PQgetResult).
enum Group {
    Prepare(String),
    Exec(usize),
}

struct InFlight {
    done: Option<Done>,
    /// What was sent, kept for one resend (see `resend_if_stray_cancelled`).
    steps: Vec<Step>,
    resent: bool,
    groups: Vec<Group>,
    cursor: usize,
    /// Whether a result arrived for the group at `cursor` (a NULL then ends it).
    seen: bool,
    outcomes: Vec<Option<Result<PgResult, PgError>>>,
    /// The error of a failed prepare, reported for the statement it was for.
    prepare_error: Option<PgError>,
    deadline: Option<Instant>,
    timed_out: bool,
    /// When it was sent (the loop's time of that turn).
    sent_at: Instant,
}

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
}

/// The cancel requests of a connection, shared with the workers that send them (no closure
/// goes back to the loop, so none is left behind when the loop is gone first).
#[derive(Default)]
struct CancelsSent {
    /// Handed to the pool, `PQcancel` not returned yet.
    pending: AtomicUsize,
    /// When the last `PQcancel` returned.
    delivered_at: parking_lot::Mutex<Option<Instant>>,
}

pub(crate) struct Conn {
    id: usize,
    lp: Loop,
    owner: Weak<dyn ConnEvents>,
    pg: Cell<*mut pq::PGconn>,
    watch: RefCell<Option<FdWatch>>,
    sock: Cell<RawFd>,
    state: Cell<State>,
    inflight: RefCell<VecDeque<InFlight>>,
    prepared: RefCell<HashSet<String>>,
    /// Fails the connect when it takes longer than the pool allows.
    connect_timer: RefCell<Option<Timer>>,
    /// The socket corked (TCP_CORK) until the end of this loop turn, if any.
    corked: Cell<Option<RawFd>>,
    /// A cancel was sent for a query that then finished by itself: until it is spent, it may
    /// reach this connection's backend and cancel a later query instead, which is then sent
    /// again (see `resend_if_stray_cancelled`).
    stray_cancel: Cell<bool>,
    /// Cancel requests on their way and when the last one was delivered: the blocking-work
    /// pool may hold one back behind other work.
    cancels: Arc<CancelsSent>,
    /// False once corking failed (a Unix socket): not tried again.
    can_cork: Cell<bool>,
    me: Weak<Conn>,
}

unsafe extern "C" fn ignore_notice(_arg: *mut c_void, _message: *const c_char) {}

fn error_message(pg: *mut pq::PGconn) -> String {
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
        connect_timeout: Duration,
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
            connect_timer: RefCell::new(None),
            corked: Cell::new(None),
            stray_cancel: Cell::new(false),
            cancels: Arc::default(),
            can_cork: Cell::new(true),
            me: me.clone(),
        });
        let t = Timer::new(lp);
        let weak = conn.me.clone();
        t.start(connect_timeout, None, move || {
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

    /// Watches libpq's current socket (a new watch when the socket changed).
    fn watch_socket(&self, want: Readiness) {
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

    /// Sends `q`. On failure the connection is broken and `q` is handed back, unsent.
    pub(crate) fn send(&self, q: Query) -> Result<(), Query> {
        self.send_inner(q, false)
    }

    fn send_inner(&self, q: Query, resent: bool) -> Result<(), Query> {
        if self.state.get() != State::Ready {
            return Err(q);
        }
        let pg = self.pg.get();
        self.cork_for_this_turn();
        let mut groups = Vec::with_capacity(q.steps.len());
        let mut ok = true;
        for (i, step) in q.steps.iter().enumerate() {
            let params: Vec<*const c_char> = step
                .params
                .iter()
                .map(|p| p.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
                .collect();
            let n = params.len() as i32;
            // SAFETY: pg is a live connection in pipeline mode; every string is NUL-terminated
            // and lives for the call; NULL lengths/formats mean text parameters.
            ok = unsafe {
                match &*step.stmt {
                    Statement::Sql(sql) => {
                        let sql = CString::new(sql.as_str()).unwrap_or_default();
                        let (types, lens, fmts) =
                            (std::ptr::null(), std::ptr::null(), std::ptr::null());
                        pq::PQsendQueryParams(
                            pg,
                            sql.as_ptr(),
                            n,
                            types,
                            params.as_ptr(),
                            lens,
                            fmts,
                            0,
                        ) == 1
                    }
                    Statement::Prepared { name, sql } => {
                        let cname = CString::new(name.as_str()).unwrap_or_default();
                        let mut ok = true;
                        if !self.prepared.borrow().contains(name) {
                            let csql = CString::new(sql.as_str()).unwrap_or_default();
                            ok = pq::PQsendPrepare(
                                pg,
                                cname.as_ptr(),
                                csql.as_ptr(),
                                n,
                                std::ptr::null(),
                            ) == 1;
                            if ok {
                                self.prepared.borrow_mut().insert(name.clone());
                                groups.push(Group::Prepare(name.clone()));
                            }
                        }
                        let (lens, fmts) = (std::ptr::null(), std::ptr::null());
                        ok && pq::PQsendQueryPrepared(
                            pg,
                            cname.as_ptr(),
                            n,
                            params.as_ptr(),
                            lens,
                            fmts,
                            0,
                        ) == 1
                    }
                }
            };
            if !ok {
                break;
            }
            groups.push(Group::Exec(i));
        }
        // SAFETY: live connection in pipeline mode.
        if !ok || unsafe { pq::PQpipelineSync(pg) } != 1 {
            let why = error_message(pg);
            self.fail(&why);
            return Err(q);
        }
        let n = q.steps.len();
        self.inflight.borrow_mut().push_back(InFlight {
            done: Some(q.done),
            steps: q.steps,
            resent,
            groups,
            cursor: 0,
            seen: false,
            outcomes: (0..n).map(|_| None).collect(),
            prepare_error: None,
            deadline: q.deadline,
            timed_out: false,
            sent_at: self.lp.now(),
        });
        self.flush();
        Ok(())
    }

    /// Holds the socket's output back until the end of this loop turn (TCP_CORK). libpq 15
    /// flushes at every `PQpipelineSync`, and each query has its own sync: without the cork, a
    /// handler that sends 20 queries sends 20 segments and wakes the server 20 times; with it,
    /// they leave together when the turn ends.
    fn cork_for_this_turn(&self) {
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

    fn flush(&self) {
        if self.state.get() != State::Ready {
            return;
        }
        // SAFETY: live connection in non-blocking mode.
        match unsafe { pq::PQflush(self.pg.get()) } {
            0 => self.watch_socket(Readiness {
                readable: true,
                writable: false,
            }),
            1 => self.watch_socket(Readiness {
                readable: true,
                writable: true,
            }),
            _ => {
                let why = error_message(self.pg.get());
                self.fail(&why);
            }
        }
    }

    fn read(&self) {
        let pg = self.pg.get();
        // SAFETY: live connection.
        if unsafe { pq::PQconsumeInput(pg) } == 0 {
            let why = error_message(pg);
            self.fail(&why);
            return;
        }
        let mut nulls = 0;
        loop {
            if self.state.get() != State::Ready {
                return;
            }
            // SAFETY: live connection.
            if unsafe { pq::PQisBusy(pg) } != 0 {
                break;
            }
            // SAFETY: not busy, so this does not block.
            let res = unsafe { pq::PQgetResult(pg) };
            if res.is_null() {
                // The end of one command's results; a NULL with nothing before it is idle.
                let mut q = self.inflight.borrow_mut();
                match q.front_mut() {
                    Some(f) if f.seen => {
                        f.seen = false;
                        f.cursor += 1;
                        nulls = 0;
                        continue;
                    }
                    _ => {
                        nulls += 1;
                        if nulls >= 2 || q.is_empty() {
                            break;
                        }
                        continue;
                    }
                }
            }
            nulls = 0;
            // SAFETY: res is a live result.
            let status = unsafe { pq::PQresultStatus(res) };
            if status == pq::ExecStatusType::PGRES_PIPELINE_SYNC {
                // SAFETY: we own res.
                unsafe { pq::PQclear(res) };
                self.complete_front();
                continue;
            }
            self.record(res, status);
        }
        // SAFETY: live connection: more queued output may remain.
        if self.state.get() == State::Ready && unsafe { pq::PQisBusy(pg) } == 0 {
            self.flush();
        }
    }

    /// Files one result under the command it belongs to.
    fn record(&self, res: *mut pq::PGresult, status: pq::ExecStatusType) {
        use pq::ExecStatusType::*;
        let mut q = self.inflight.borrow_mut();
        let Some(f) = q.front_mut() else {
            // SAFETY: a result nobody waits for: free it.
            unsafe { pq::PQclear(res) };
            return;
        };
        f.seen = true;
        let outcome = match status {
            PGRES_TUPLES_OK | PGRES_COMMAND_OK | PGRES_EMPTY_QUERY => Ok(PgResult::from_raw(res)),
            PGRES_PIPELINE_ABORTED => {
                // SAFETY: we own res.
                unsafe { pq::PQclear(res) };
                Err(f.prepare_error.take().unwrap_or_else(|| {
                    PgError::new(
                        Error::PG_ABORTED,
                        "an earlier statement in the same transaction failed",
                    )
                }))
            }
            _ => {
                let mut e = PgError::from_result(res);
                // SAFETY: we own res.
                unsafe { pq::PQclear(res) };
                let expired = f.deadline.is_some_and(|d| d <= self.lp.now());
                if (f.timed_out || expired) && e.sqlstate == "57014" {
                    e = PgError::new(Error::TIMEOUT, "the query timed out and was cancelled");
                }
                Err(e)
            }
        };
        match f.groups.get(f.cursor) {
            Some(Group::Prepare(name)) => {
                if let Err(e) = outcome {
                    self.prepared.borrow_mut().remove(name);
                    f.prepare_error = Some(e);
                }
            }
            Some(Group::Exec(i)) => {
                let slot = &mut f.outcomes[*i];
                // The first error of a statement stands; a later success replaces nothing.
                if !matches!(slot, Some(Err(_))) {
                    *slot = Some(outcome);
                }
            }
            None => {}
        }
    }

    fn complete_front(&self) {
        let f = self.inflight.borrow_mut().pop_front();
        let Some(mut f) = f else { return };
        if self.resend_if_stray_cancelled(&mut f) {
            return;
        }
        let mut outcomes: Vec<Result<PgResult, PgError>> = f
            .outcomes
            .drain(..)
            .map(|o| o.unwrap_or_else(|| Err(PgError::new(Error::PG_QUERY, "no result"))))
            .collect();
        match f.done.take() {
            Some(Done::One(cb)) => cb(outcomes
                .pop()
                .unwrap_or_else(|| Err(PgError::new(Error::PG_QUERY, "no result")))),
            Some(Done::Many(cb)) => cb(outcomes),
            None => {}
        }
        if let Some(o) = self.owner.upgrade() {
            o.capacity(self.id);
        }
    }

    /// A cancel is sent for the query the backend runs when the cancel arrives, which may no
    /// longer be the one it was meant for. When a query that was being cancelled finishes by
    /// itself, its cancel is stray: the query the backend runs when it arrives fails with
    /// `query_canceled` instead, and is sent again, once (a cancelled statement ran in its own
    /// implicit transaction, which was rolled back). Only a query sent before the cancel was
    /// delivered can have been hit (a backend between statements ignores a cancel), so the
    /// order of events decides, not a clock: the stray cancel is spent when a query sent after
    /// its delivery completes, or when it hit one. Returns true when `f` was resent.
    fn resend_if_stray_cancelled(&self, f: &mut InFlight) -> bool {
        let cancelled = |o: &Option<Result<PgResult, PgError>>| matches!(o, Some(Err(e)) if e.sqlstate == "57014");
        let hit = f.outcomes.iter().any(cancelled);
        if f.timed_out {
            // Hit by its own cancel, or finished first: then the cancel is stray.
            self.stray_cancel.set(!hit);
            return false;
        }
        if !self.stray_cancel.get() {
            return false;
        }
        let pending = self.cancels.pending.load(Ordering::Acquire) > 0;
        let delivered = *self.cancels.delivered_at.lock();
        let sent_before_delivery = pending || delivered.is_some_and(|d| d >= f.sent_at);
        if !sent_before_delivery {
            self.stray_cancel.set(false); // the backend had it before this query: spent
            return false;
        }
        if !hit || f.resent {
            return false;
        }
        self.stray_cancel.set(false); // one cancel ends one query at most
        let Some(done) = f.done.take() else {
            return false;
        };
        let q = Query {
            steps: std::mem::take(&mut f.steps),
            done,
            deadline: f.deadline,
        };
        if let Err(q) = self.send_inner(q, true) {
            q.fail(PgError::new(Error::PG_CONNECTION, "the connection broke"));
        }
        true
    }

    /// Simulates the race `resend_if_stray_cancelled` handles, for tests: as if a query had
    /// timed out and then finished just before its cancel arrived, sends a cancel now (it hits
    /// whatever the backend runs).
    #[doc(hidden)]
    pub fn send_stray_cancel_for_tests(&self) {
        self.stray_cancel.set(true);
        self.send_cancel();
    }

    /// Cancels the query the server runs now if it is the front one and its deadline passed:
    /// `PQcancel` blocks, so it runs on the blocking-work pool, never on the loop.
    pub(crate) fn cancel_if_expired(&self, now: Instant) {
        let mut q = self.inflight.borrow_mut();
        let Some(f) = q.front_mut() else { return };
        if f.timed_out || f.deadline.is_none_or(|d| d > now) {
            return;
        }
        f.timed_out = true;
        drop(q);
        self.send_cancel();
    }

    /// Sends a cancel request for whatever the backend runs now. `PQcancel` blocks, so it runs
    /// on the blocking-work pool, never on the loop.
    fn send_cancel(&self) {
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

    /// As `fail`, with `code` for the queries in flight (`CANCELLED` when the pool closes).
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
        for mut f in failed {
            let e = PgError::new(code, why);
            match f.done.take() {
                Some(Done::One(cb)) => cb(Err(e)),
                Some(Done::Many(cb)) => cb(f.outcomes.iter().map(|_| Err(e.clone())).collect()),
                None => {}
            }
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
