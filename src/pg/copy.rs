//! COPY in both directions, streamed, never blocking the loop. libpq allows no COPY in
//! pipeline mode, so a COPY runs on a connection of its own (a lease, or its transaction's
//! connection) once nothing else is in flight there: the connection leaves pipeline mode, sends
//! the statement, streams, reads the final result and enters pipeline mode again.
//!
//! Backpressure: `COPY ... TO STDOUT` hands out data as it arrives; the data callback may ask
//! to pause, and the connection then stops reading its socket (the server blocks on a full
//! TCP window) until `CopyOut::resume`. `COPY ... FROM STDIN` calls its ready callback when it
//! may be written to; `CopyIn::write` says when the socket is full, and the ready callback
//! runs again once it drained.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use pq_sys as pq;

use super::conn::{error_message, Conn, State};
use super::lease::Lease;
use super::pipeline::{Statement, Step};
use super::pool::{PgPool, PoolInner, Route};
use super::result::{PgError, PgResult};
use crate::error::Error;
use crate::reactor::{Loop, Readiness};

/// What the data callback of a `COPY ... TO STDOUT` asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep the data coming.
    Continue,
    /// Stop reading until `CopyOut::resume`.
    Pause,
}

/// A running `COPY ... TO STDOUT`. Clones share it; dropping them does not stop it
/// (`cancel` does).
#[derive(Clone)]
pub struct CopyOut(Rc<CopyShared>);

/// A running `COPY ... FROM STDIN`. Clones share it; dropping them does not stop it (`finish`
/// ends it, `abort` cancels it).
#[derive(Clone)]
pub struct CopyIn(Rc<CopyShared>);

type DataCb = Box<dyn FnMut(&[u8]) -> Flow>;
type ReadyCb = Box<dyn FnMut(&CopyIn)>;
/// Called once with the rows copied, or the error.
pub type CopyDoneCb = Box<dyn FnOnce(Result<u64, PgError>)>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for a connection, or for what runs on it to finish.
    Waiting,
    Running,
    Done,
}

/// The user's side of a COPY, shared by its handles and the connection that runs it.
pub(crate) struct CopyShared {
    out: bool,
    lp: Loop,
    step: RefCell<Option<Step>>,
    conn: RefCell<Weak<Conn>>,
    /// A pool-level COPY's own connection; returned when it ends.
    lease: RefCell<Option<Lease>>,
    pool: Weak<PoolInner>,
    lease_id: Cell<Option<u64>>,
    on_data: RefCell<Option<DataCb>>,
    on_ready: RefCell<Option<ReadyCb>>,
    on_done: RefCell<Option<CopyDoneCb>>,
    /// Runs after `on_done` (the transaction that ran the COPY carries on).
    after: RefCell<Option<Box<dyn FnOnce()>>>,
    phase: Cell<Phase>,
    cancelled: Cell<bool>,
    /// `finish` (None) or `abort` (Some(reason)) asked for before the COPY started.
    end: RefCell<Option<Option<String>>>,
    me: Weak<CopyShared>,
}

impl CopyShared {
    fn new(
        pool: &PgPool,
        out: bool,
        step: Step,
        on_data: Option<DataCb>,
        on_ready: Option<ReadyCb>,
        on_done: CopyDoneCb,
    ) -> Rc<CopyShared> {
        Rc::new_cyclic(|me| CopyShared {
            out,
            lp: pool.inner.lp.clone(),
            step: RefCell::new(Some(step)),
            conn: RefCell::new(Weak::new()),
            lease: RefCell::new(None),
            pool: Rc::downgrade(&pool.inner),
            lease_id: Cell::new(None),
            on_data: RefCell::new(on_data),
            on_ready: RefCell::new(on_ready),
            on_done: RefCell::new(Some(on_done)),
            after: RefCell::new(None),
            phase: Cell::new(Phase::Waiting),
            cancelled: Cell::new(false),
            end: RefCell::new(None),
            me: me.clone(),
        })
    }

    /// Ends the COPY with `r`, once: the lease goes back, `on_done` runs, then `after`.
    pub(crate) fn finish(&self, r: Result<u64, PgError>) {
        if self.phase.replace(Phase::Done) == Phase::Done {
            return;
        }
        let lease = self.lease.borrow_mut().take();
        drop(lease);
        self.on_data.borrow_mut().take();
        self.on_ready.borrow_mut().take();
        let done = self.on_done.borrow_mut().take();
        if let Some(cb) = done {
            cb(r);
        }
        let after = self.after.borrow_mut().take();
        if let Some(f) = after {
            f();
        }
    }

    /// The connection failed under the COPY.
    pub(crate) fn fail(&self, e: PgError) {
        self.finish(Err(e));
    }

    /// Starts on `conn`, which has nothing in flight. Ends the COPY when that fails.
    pub(crate) fn start_on(&self, conn: &Rc<Conn>) {
        if self.phase.get() != Phase::Waiting {
            return;
        }
        if self.cancelled.get() {
            return self.finish(Err(cancelled()));
        }
        let Some(step) = self.step.borrow_mut().take() else {
            return;
        };
        *self.conn.borrow_mut() = Rc::downgrade(conn);
        self.phase.set(Phase::Running);
        let me = self.me.upgrade().expect("alive");
        if let Err(e) = conn.start_copy(&step, me) {
            self.finish(Err(e));
        }
    }

    /// Called by a `COPY FROM STDIN` when the server is ready for data (and again after each
    /// drain): applies an early `finish`/`abort`, or asks the user for data.
    fn ready(&self) {
        let end = self.end.borrow_mut().take();
        if let Some(reason) = end {
            if let Some(c) = self.conn.borrow().upgrade() {
                c.copy_end(reason.as_deref());
            }
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let cb = self.on_ready.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb(&CopyIn(me));
            let mut slot = self.on_ready.borrow_mut();
            if slot.is_none() && self.phase.get() != Phase::Done {
                *slot = Some(cb);
            }
        }
    }

    /// Hands out one piece of `COPY TO STDOUT` data; returns whether to keep reading.
    fn data(&self, chunk: &[u8]) -> Flow {
        if self.cancelled.get() {
            return Flow::Continue; // discarded while the cancel lands
        }
        let cb = self.on_data.borrow_mut().take();
        let Some(mut cb) = cb else {
            return Flow::Continue;
        };
        let flow = cb(chunk);
        let mut slot = self.on_data.borrow_mut();
        if slot.is_none() && self.phase.get() != Phase::Done {
            *slot = Some(cb);
        }
        flow
    }

    fn conn(&self) -> Option<Rc<Conn>> {
        self.conn.borrow().upgrade()
    }

    fn cancel(&self) {
        match self.phase.get() {
            Phase::Done => {}
            Phase::Waiting => {
                self.cancelled.set(true);
                // Still queued for a connection: withdraw and end now (from the loop).
                let withdrawn = match (self.lease_id.get(), self.pool.upgrade()) {
                    (Some(id), Some(p)) => p.withdraw_lease(id).is_some(),
                    _ => false,
                };
                if withdrawn {
                    let me = self.me.upgrade().expect("alive");
                    self.lp.defer(move || me.finish(Err(cancelled())));
                }
            }
            Phase::Running => {
                if self.cancelled.replace(true) {
                    return;
                }
                if let Some(c) = self.conn() {
                    if self.out {
                        c.send_cancel();
                        c.copy_resume(); // read on, discarding, until the cancel lands
                    } else {
                        c.copy_end(Some("cancelled by the client"));
                    }
                }
            }
        }
    }
}

fn cancelled() -> PgError {
    PgError::new(Error::CANCELLED, "the COPY was cancelled")
}

impl CopyOut {
    /// Reads on after the data callback asked to pause.
    pub fn resume(&self) {
        if let Some(c) = self.0.conn() {
            c.copy_resume();
        }
    }

    /// Stops the COPY: the server is asked to cancel it, data still arriving is dropped, and
    /// it ends with `CANCELLED`.
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

impl CopyIn {
    /// Sends `data` (copied). `Ok(true)`: write more now; `Ok(false)`: the socket is full,
    /// wait for the ready callback before writing more. `INVALID` before the ready callback
    /// first ran or after `finish`/`abort`; `PG_CONNECTION` when the connection broke.
    pub fn write(&self, data: &[u8]) -> Result<bool, Error> {
        if self.0.phase.get() != Phase::Running || self.0.end.borrow().is_some() {
            return Err(Error::INVALID);
        }
        match self.0.conn() {
            Some(c) => c.copy_put(data),
            None => Err(Error::PG_CONNECTION),
        }
    }

    /// Ends the data; the COPY completes when the server has stored it.
    pub fn finish(&self) {
        self.end(None);
    }

    /// Cancels the COPY: nothing of it is stored; it ends with `CANCELLED`.
    pub fn abort(&self) {
        self.0.cancelled.set(true);
        self.end(Some("cancelled by the client"));
    }

    fn end(&self, reason: Option<&str>) {
        match self.0.phase.get() {
            Phase::Done => {}
            Phase::Waiting => {
                if reason.is_some() {
                    return self.0.cancel();
                }
                *self.0.end.borrow_mut() = Some(None);
            }
            Phase::Running => {
                if let Some(c) = self.0.conn() {
                    c.copy_end(reason);
                }
            }
        }
    }
}

impl PgPool {
    /// Runs `sql` (a `COPY ... TO STDOUT`, with `$n` parameters allowed only where COPY takes
    /// a query) on a connection of its own, and hands its data to `on_data` as it arrives, in
    /// pieces (one row each in text and CSV format). Waiting for the connection counts against
    /// the queue and `query_timeout`; the COPY itself has no time limit. `on_done` gets the
    /// number of rows, or the error, once.
    pub fn copy_out(
        &self,
        sql: &str,
        on_data: impl FnMut(&[u8]) -> Flow + 'static,
        on_done: impl FnOnce(Result<u64, PgError>) + 'static,
    ) -> CopyOut {
        let s = self.new_copy(sql, true, Some(Box::new(on_data)), None, Box::new(on_done));
        self.lease_for_copy(&s);
        CopyOut(s)
    }

    /// Runs `sql` (a `COPY ... FROM STDIN`) on a connection of its own; `on_ready` runs when
    /// data may be written, and again each time a full socket has drained. `on_done` gets the
    /// number of rows stored, or the error, once.
    pub fn copy_in(
        &self,
        sql: &str,
        on_ready: impl FnMut(&CopyIn) + 'static,
        on_done: impl FnOnce(Result<u64, PgError>) + 'static,
    ) -> CopyIn {
        let s = self.new_copy(
            sql,
            false,
            None,
            Some(Box::new(on_ready)),
            Box::new(on_done),
        );
        self.lease_for_copy(&s);
        CopyIn(s)
    }

    pub(crate) fn new_copy(
        &self,
        sql: &str,
        out: bool,
        on_data: Option<DataCb>,
        on_ready: Option<ReadyCb>,
        on_done: CopyDoneCb,
    ) -> Rc<CopyShared> {
        let step = Step {
            stmt: Rc::new(Statement::Sql(sql.to_string())),
            params: Vec::new(),
        };
        CopyShared::new(self, out, step, on_data, on_ready, on_done)
    }

    /// Asks for a connection for `s`, and starts it there once nothing else is in flight.
    /// The queue, then the connection's idle hook, then the connection itself hold `s` while
    /// it runs: its handles may all be dropped.
    fn lease_for_copy(&self, s: &Rc<CopyShared>) {
        let s2 = s.clone();
        let id = self.inner.lease(
            Route::Primary,
            self.inner.deadline(),
            Box::new(move |r| {
                let s = s2;
                match r {
                    Err(e) => s.finish(Err(e)),
                    Ok(lease) => {
                        if s.phase.get() != Phase::Waiting {
                            return; // cancelled meanwhile: the lease goes straight back
                        }
                        let conn = lease.conn().clone();
                        *s.lease.borrow_mut() = Some(lease);
                        let c2 = Rc::downgrade(&conn);
                        conn.when_idle(Box::new(move || match c2.upgrade() {
                            Some(c) if c.state() == State::Ready => s.start_on(&c),
                            _ => s.finish(Err(PgError::new(
                                Error::PG_CONNECTION,
                                "the connection broke",
                            ))),
                        }));
                    }
                }
            }),
        );
        s.lease_id.set(Some(id));
    }
}

/// Runs `f` once the COPY has ended (its `on_done` ran).
pub(crate) fn after_copy(s: &CopyShared, f: Box<dyn FnOnce()>) {
    *s.after.borrow_mut() = Some(f);
}

pub(crate) fn copy_out_handle(s: &Rc<CopyShared>) -> CopyOut {
    CopyOut(s.clone())
}

pub(crate) fn copy_in_handle(s: &Rc<CopyShared>) -> CopyIn {
    CopyIn(s.clone())
}

/// Where a COPY stands on its connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Sent; waiting for the server to start copying (or to refuse).
    Starting,
    /// `COPY TO STDOUT`: data arriving.
    Out { paused: bool },
    /// `COPY FROM STDIN`: taking data; `full` while the socket has unsent data.
    In { full: bool },
    /// Data done; reading the final result.
    Finishing,
}

/// A COPY on a connection (the connection's side).
pub(crate) struct CopyState {
    shared: Rc<CopyShared>,
    stage: Stage,
    result: Option<Result<u64, PgError>>,
}

impl CopyState {
    pub(crate) fn fail(self, e: PgError) {
        self.shared.fail(e);
    }
}

impl Conn {
    /// Leaves pipeline mode and sends the COPY statement. The connection must have nothing in
    /// flight.
    fn start_copy(&self, step: &Step, shared: Rc<CopyShared>) -> Result<(), PgError> {
        if self.state.get() != State::Ready || self.copying() || self.in_flight() > 0 {
            return Err(PgError::new(
                Error::PG_CONNECTION,
                "the connection is not available",
            ));
        }
        let pg = self.pg.get();
        let sql = match &*step.stmt {
            Statement::Sql(s) | Statement::Prepared { sql: s, .. } => s,
        };
        let sql = std::ffi::CString::new(sql.as_str())
            .map_err(|_| PgError::new(Error::INVALID, "the SQL contains a NUL byte"))?;
        // SAFETY: live connection with nothing pending (no results queued), so it may leave
        // pipeline mode; the SQL is a C string that lives for the call.
        let sent = unsafe {
            pq::PQexitPipelineMode(pg) == 1
                && pq::PQsendQueryParams(
                    pg,
                    sql.as_ptr(),
                    0,
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                ) == 1
        };
        if !sent {
            let why = error_message(pg);
            self.fail(&why);
            return Err(PgError::new(Error::PG_CONNECTION, why));
        }
        *self.copy.borrow_mut() = Some(CopyState {
            shared,
            stage: Stage::Starting,
            result: None,
        });
        self.copy_flush();
        Ok(())
    }

    fn stage(&self) -> Option<Stage> {
        self.copy.borrow().as_ref().map(|c| c.stage)
    }

    fn set_stage(&self, s: Stage) {
        if let Some(c) = self.copy.borrow_mut().as_mut() {
            c.stage = s;
        }
    }

    fn shared(&self) -> Option<Rc<CopyShared>> {
        self.copy.borrow().as_ref().map(|c| c.shared.clone())
    }

    /// Socket events while a COPY runs.
    pub(super) fn copy_on_ready(&self, r: Readiness) {
        if r.writable {
            self.copy_flush();
        }
        if r.readable && self.state.get() == State::Ready && self.copying() {
            self.copy_read();
        }
    }

    /// Flushes libpq's output; watches for writability while some remains. When a full
    /// `COPY FROM STDIN` drained, asks the user for more.
    fn copy_flush(&self) {
        if self.state.get() != State::Ready {
            return;
        }
        // SAFETY: live connection in non-blocking mode.
        let r = unsafe { pq::PQflush(self.pg.get()) };
        if r < 0 {
            let why = error_message(self.pg.get());
            return self.fail(&why);
        }
        let paused = matches!(self.stage(), Some(Stage::Out { paused: true }));
        self.watch_socket(Readiness {
            readable: !paused,
            writable: r == 1,
        });
        if r == 0 && self.stage() == Some(Stage::In { full: true }) {
            self.set_stage(Stage::In { full: false });
            if let Some(s) = self.shared() {
                s.ready();
            }
        }
    }

    fn copy_read(&self) {
        let pg = self.pg.get();
        // SAFETY: live connection.
        if unsafe { pq::PQconsumeInput(pg) } == 0 {
            let why = error_message(pg);
            return self.fail(&why);
        }
        loop {
            if self.state.get() != State::Ready {
                return;
            }
            let Some(stage) = self.stage() else { return };
            match stage {
                Stage::Starting | Stage::Finishing => {
                    // SAFETY: live connection.
                    if unsafe { pq::PQisBusy(pg) } != 0 {
                        break;
                    }
                    // SAFETY: not busy: does not block.
                    let res = unsafe { pq::PQgetResult(pg) };
                    if res.is_null() {
                        return self.end_copy();
                    }
                    self.copy_result(res);
                }
                Stage::Out { paused } => {
                    let cancelling = self.shared().is_some_and(|s| s.cancelled.get());
                    if paused && !cancelling {
                        break;
                    }
                    let mut buf: *mut std::ffi::c_char = std::ptr::null_mut();
                    // SAFETY: live connection in COPY OUT; async=1 never blocks; buf receives
                    // a malloc'd row we free below.
                    let n = unsafe { pq::PQgetCopyData(pg, &mut buf, 1) };
                    if n > 0 {
                        // SAFETY: libpq returned n readable bytes at buf.
                        let chunk =
                            unsafe { std::slice::from_raw_parts(buf as *const u8, n as usize) };
                        let flow = self.shared().map_or(Flow::Continue, |s| s.data(chunk));
                        // SAFETY: allocated by libpq for us.
                        unsafe { pq::PQfreemem(buf.cast()) };
                        if flow == Flow::Pause {
                            if let Some(Stage::Out { .. }) = self.stage() {
                                self.set_stage(Stage::Out { paused: true });
                            }
                        }
                    } else if n == 0 {
                        break; // more to come
                    } else if n == -1 {
                        self.set_stage(Stage::Finishing);
                    } else {
                        let why = error_message(pg);
                        return self.fail(&why);
                    }
                }
                Stage::In { .. } => break, // the server answers after the end of the data
            }
        }
        if self.copying() {
            let paused = matches!(self.stage(), Some(Stage::Out { paused: true }));
            let cancelling = self.shared().is_some_and(|s| s.cancelled.get());
            if paused && !cancelling {
                self.watch_socket(Readiness {
                    readable: false,
                    writable: false,
                });
            }
        }
    }

    /// Files one result of the COPY statement.
    fn copy_result(&self, res: *mut pq::PGresult) {
        use pq::ExecStatusType::*;
        // SAFETY: res is a live result we own.
        let status = unsafe { pq::PQresultStatus(res) };
        let shared = self.shared();
        let cancelling = shared.as_ref().is_some_and(|s| s.cancelled.get());
        let (next, result) = match status {
            PGRES_COPY_OUT => {
                // SAFETY: we own res.
                unsafe { pq::PQclear(res) };
                (Stage::Out { paused: false }, None)
            }
            PGRES_COPY_IN => {
                // SAFETY: we own res.
                unsafe { pq::PQclear(res) };
                (Stage::In { full: false }, None)
            }
            PGRES_COMMAND_OK => {
                let rows = PgResult::from_raw(res).affected_rows();
                // Cancelled, but done before the cancel landed: what came after the cancel
                // was dropped, so it still ends as cancelled. A COPY OUT's cancel (PQcancel)
                // may still reach the backend and hit the next query, which is sent again.
                if cancelling && shared.as_ref().is_some_and(|s| s.out) {
                    self.stray_cancel.set(true);
                }
                let r = if cancelling {
                    Err(cancelled())
                } else {
                    Ok(rows)
                };
                (Stage::Finishing, Some(r))
            }
            PGRES_TUPLES_OK | PGRES_EMPTY_QUERY => {
                drop(PgResult::from_raw(res));
                let e = PgError::new(Error::INVALID, "not a COPY statement");
                (Stage::Finishing, Some(Err(e)))
            }
            _ => {
                let e = PgError::from_result(res);
                // SAFETY: we own res.
                unsafe { pq::PQclear(res) };
                let e = if cancelling && e.sqlstate == "57014" {
                    cancelled()
                } else {
                    e
                };
                (Stage::Finishing, Some(Err(e)))
            }
        };
        if let Some(c) = self.copy.borrow_mut().as_mut() {
            c.stage = next;
            if let Some(r) = result {
                // The first outcome stands (an error before a later status).
                if c.result.is_none() {
                    c.result = Some(r);
                }
            }
        }
        match next {
            Stage::In { .. } => {
                if let Some(s) = shared {
                    s.ready();
                }
            }
            Stage::Out { .. } => {
                self.watch_socket_readable();
            }
            _ => {}
        }
    }

    fn watch_socket_readable(&self) {
        self.watch_socket(Readiness {
            readable: true,
            writable: false,
        });
    }

    /// The COPY's results are all in: back to pipeline mode, then the user hears the outcome.
    fn end_copy(&self) {
        let Some(state) = self.copy.borrow_mut().take() else {
            return;
        };
        // SAFETY: live connection, idle (every result read).
        let ok = unsafe { pq::PQenterPipelineMode(self.pg.get()) } == 1;
        let result = state
            .result
            .unwrap_or_else(|| Err(PgError::new(Error::PG_QUERY, "no result")));
        if !ok {
            let why = error_message(self.pg.get());
            state.shared.finish(result);
            return self.fail(&why);
        }
        self.watch_socket_readable();
        state.shared.finish(result);
        self.fire_idle_hook();
        if let Some(o) = self.owner.upgrade() {
            o.capacity(self.id);
        }
    }

    /// Reads on after a pause (deferred: never from inside the caller's call).
    fn copy_resume(&self) {
        if let Some(Stage::Out { paused: true }) = self.stage() {
            self.set_stage(Stage::Out { paused: false });
        }
        let weak = self.me.clone();
        self.lp.defer(move || {
            if let Some(c) = weak.upgrade() {
                if c.state() == State::Ready && c.copying() {
                    c.watch_socket_readable();
                    // Rows may already wait in libpq's buffer: no readiness would tell.
                    c.copy_read();
                }
            }
        });
    }

    /// Queues `data` for a `COPY FROM STDIN` and flushes what the socket takes.
    fn copy_put(&self, data: &[u8]) -> Result<bool, Error> {
        let Some(Stage::In { .. }) = self.stage() else {
            return Err(Error::INVALID);
        };
        if data.is_empty() {
            return Ok(true);
        }
        let pg = self.pg.get();
        let len = i32::try_from(data.len()).map_err(|_| Error::INVALID)?;
        // SAFETY: live connection in COPY IN; data is readable for len bytes during the call.
        let r = unsafe { pq::PQputCopyData(pg, data.as_ptr().cast(), len) };
        if r != 1 {
            // -1: the COPY is over (the server refused it); 0: no memory for the data.
            self.set_stage(Stage::Finishing);
            let weak = self.me.clone();
            self.lp.defer(move || {
                if let Some(c) = weak.upgrade() {
                    if c.copying() {
                        c.copy_read();
                    }
                }
            });
            return Err(if r == 0 {
                Error::from_errno(libc::ENOMEM)
            } else {
                Error::PG_QUERY
            });
        }
        // SAFETY: live connection in non-blocking mode.
        match unsafe { pq::PQflush(pg) } {
            0 => Ok(true),
            1 => {
                self.set_stage(Stage::In { full: true });
                self.watch_socket(Readiness {
                    readable: true,
                    writable: true,
                });
                Ok(false)
            }
            _ => {
                let why = error_message(pg);
                self.fail(&why);
                Err(Error::PG_CONNECTION)
            }
        }
    }

    /// Ends a `COPY FROM STDIN`: the data is complete (`reason` None) or the COPY fails with
    /// `reason`.
    fn copy_end(&self, reason: Option<&str>) {
        let Some(Stage::In { .. }) = self.stage() else {
            return;
        };
        let pg = self.pg.get();
        let msg = reason.map(|r| std::ffi::CString::new(r).unwrap_or_default());
        // SAFETY: live connection in COPY IN; msg lives for the call (NULL: a normal end).
        let r =
            unsafe { pq::PQputCopyEnd(pg, msg.as_ref().map_or(std::ptr::null(), |m| m.as_ptr())) };
        if r != 1 {
            let why = error_message(pg);
            return self.fail(&why);
        }
        self.set_stage(Stage::Finishing);
        self.copy_flush();
    }
}
