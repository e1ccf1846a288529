//! The pipeline of one connection: queries are sent back to back (`PQsendQueryParams` /
//! `PQsendQueryPrepared`, one `PQpipelineSync` per query), `PQflush`ed while the socket takes
//! more, and their results read with `PQconsumeInput`/`PQisBusy`/`PQgetResult` as they arrive,
//! filed under the query they belong to. Notifications that arrive meanwhile go to the owner.

use std::ffi::{c_char, CString};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use pq_sys as pq;

use super::conn::{error_message, Conn, State};
use super::notify::take_notifications;
use super::result::{PgError, PgResult};
use crate::error::Error;
use crate::reactor::Readiness;

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

impl Step {
    /// Copies `params` as C strings; a NUL byte inside a text parameter is an error.
    pub(crate) fn new(stmt: Rc<Statement>, params: &[Option<&[u8]>]) -> Result<Step, PgError> {
        let mut ps = Vec::with_capacity(params.len());
        for p in params {
            match p.map(CString::new) {
                None => ps.push(None),
                Some(Ok(c)) => ps.push(Some(c)),
                Some(Err(_)) => {
                    return Err(PgError::new(
                        Error::INVALID,
                        "a text parameter contains a NUL byte",
                    ))
                }
            }
        }
        Ok(Step { stmt, params: ps })
    }
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
    /// Results in binary format (each type's `typsend` form) instead of text.
    pub(crate) binary: bool,
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
pub(super) enum Group {
    Prepare(String),
    Exec(usize),
}

pub(crate) struct InFlight {
    done: Option<Done>,
    /// What was sent, kept for one resend (see `resend_if_stray_cancelled`).
    steps: Vec<Step>,
    resent: bool,
    binary: bool,
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

impl InFlight {
    /// Fails every statement of the query with `e`.
    pub(super) fn fail(mut self, e: PgError) {
        match self.done.take() {
            Some(Done::One(cb)) => cb(Err(e)),
            Some(Done::Many(cb)) => cb(self.outcomes.iter().map(|_| Err(e.clone())).collect()),
            None => {}
        }
    }
}

impl Conn {
    /// Sends `q`. On failure the connection is broken and `q` is handed back, unsent.
    pub(crate) fn send(&self, q: Query) -> Result<(), Query> {
        self.send_inner(q, false)
    }

    fn send_inner(&self, q: Query, resent: bool) -> Result<(), Query> {
        if self.state.get() != State::Ready || self.copying() {
            return Err(q);
        }
        let pg = self.pg.get();
        self.cork_for_this_turn();
        let mut groups = Vec::with_capacity(q.steps.len());
        let mut ok = true;
        let format = q.binary as i32;
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
                    Statement::Sql(sql) | Statement::Prepared { sql, .. } if self.no_prepare => {
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
                            format,
                        ) == 1
                    }
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
                            format,
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
                            format,
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
            binary: q.binary,
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

    pub(super) fn flush(&self) {
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

    pub(super) fn read(&self) {
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
            if matches!(
                status,
                pq::ExecStatusType::PGRES_COPY_OUT
                    | pq::ExecStatusType::PGRES_COPY_IN
                    | pq::ExecStatusType::PGRES_COPY_BOTH
            ) {
                // A COPY sent as a query: pipeline mode cannot run it, and libpq would report
                // it forever. The query fails; the connection, stuck in COPY, is replaced.
                // SAFETY: we own res.
                unsafe { pq::PQclear(res) };
                let front = self.inflight.borrow_mut().pop_front();
                if let Some(f) = front {
                    let e = PgError::new(
                        Error::INVALID,
                        "COPY cannot run as a query: use copy_in or copy_out",
                    );
                    InFlight::fail(f, e);
                }
                return self.fail("a COPY was sent as a query");
            }
            self.record(res, status);
        }
        if self.state.get() == State::Ready {
            take_notifications(self);
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
        self.fire_idle_hook();
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
            binary: f.binary,
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

    /// Cancels whatever query runs now (a transaction past its time): it fails with `TIMEOUT`.
    pub(crate) fn cancel_running(&self) {
        let mut q = self.inflight.borrow_mut();
        let Some(f) = q.front_mut() else { return };
        if f.timed_out {
            return;
        }
        f.timed_out = true;
        drop(q);
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
}
