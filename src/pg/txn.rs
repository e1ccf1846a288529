//! Interactive transactions: a connection leased from the pool for one transaction, its
//! statements, then `COMMIT` or `ROLLBACK`, and the connection back to the pool, exactly once.
//!
//! `PgPool::begin` returns at once; statements may be queued before the connection is there.
//! The first one leaves together with `BEGIN`, in one round trip; statements queued after it
//! wait until `BEGIN` is confirmed (so nothing can run outside the transaction), then are
//! pipelined. A transaction ends by `commit`, `rollback`, its time limit (the statement running
//! is cancelled, then `ROLLBACK`), a broken connection (`PG_CONNECTION`), or when its last
//! handle is dropped unfinished (`ROLLBACK`): an error no callback followed up on ends it
//! there. A `COMMIT` that PostgreSQL answers with `ROLLBACK` (a statement had failed) is
//! reported as `PG_ABORTED`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::conn::{Conn, State};
use super::copy::{after_copy, copy_in_handle, copy_out_handle, CopyIn, CopyOut, CopyShared, Flow};
use super::lease::Lease;
use super::pipeline::{Done, Query, Statement, Step};
use super::pool::{BatchStep, PgPool, PoolInner, QueryOptions, Route};
use super::result::{PgError, PgResult};
use crate::error::Error;
use crate::reactor::{Loop, Timer};

/// The isolation level of a transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// The server's default (`default_transaction_isolation`, normally read committed).
    #[default]
    Default,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

/// How a transaction runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxnOptions {
    pub isolation: Isolation,
    /// `READ ONLY`; such a transaction may run on a read replica (unless serializable, which
    /// a standby cannot run).
    pub read_only: bool,
    /// Time the whole transaction may take, from `begin` (waiting for a connection included)
    /// to its end. None: the pool's `query_timeout` (if any).
    pub timeout: Option<Duration>,
}

impl TxnOptions {
    fn begin_sql(&self) -> String {
        let mut s = String::from("BEGIN");
        match self.isolation {
            Isolation::Default => {}
            Isolation::ReadCommitted => s.push_str(" ISOLATION LEVEL READ COMMITTED"),
            Isolation::RepeatableRead => s.push_str(" ISOLATION LEVEL REPEATABLE READ"),
            Isolation::Serializable => s.push_str(" ISOLATION LEVEL SERIALIZABLE"),
        }
        if self.read_only {
            s.push_str(" READ ONLY");
        }
        s
    }
}

/// Called once when a transaction ends.
pub type EndCb = Box<dyn FnOnce(Result<(), PgError>)>;

/// An interactive transaction. Clones share it. When the last one is dropped before `commit`
/// or `rollback` was asked, it rolls back (what was queued and not sent fails with
/// `CANCELLED`); once either was asked, it finishes by itself. Loop thread only.
#[derive(Clone)]
pub struct Transaction {
    inner: Rc<TxnInner>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Begun {
    NotSent,
    /// `BEGIN` sent with the first statement; the answer has not arrived.
    Pending,
    Open,
}

enum Op {
    Query(Query),
    Copy(Rc<CopyShared>),
    End { commit: bool, cb: Option<EndCb> },
}

impl Op {
    fn fail(self, e: PgError) {
        match self {
            Op::Query(q) => q.fail(e),
            Op::Copy(s) => s.finish(Err(e)),
            Op::End { commit, cb } => {
                if let Some(cb) = cb {
                    cb(if commit { Err(e) } else { Ok(()) });
                }
            }
        }
    }
}

struct TxnInner {
    lp: Loop,
    pool: Rc<PoolInner>,
    begin_sql: String,
    lease: RefCell<Option<Lease>>,
    lease_id: Cell<Option<u64>>,
    begun: Cell<Begun>,
    /// `commit` or `rollback` asked: no more statements.
    ended: Cell<bool>,
    /// The lease is back (or was never had): nothing more happens.
    finished: Cell<bool>,
    /// Why every later operation fails without being sent (time limit, broken connection).
    error: RefCell<Option<PgError>>,
    ops: RefCell<VecDeque<Op>>,
    copy: RefCell<Option<Rc<CopyShared>>>,
    timer: RefCell<Option<Timer>>,
    /// Set by `commit`/`rollback`: the transaction finishes even when every handle is gone.
    keep: RefCell<Option<Rc<TxnInner>>>,
    me: Weak<TxnInner>,
}

impl PgPool {
    /// Starts a transaction. Returns at once: statements may be queued right away, and are
    /// sent when a connection is leased. Waiting for the connection counts against the pool's
    /// queue and the transaction's time limit; if none can be had, every operation fails with
    /// the reason (`PG_UNAVAILABLE`, `PG_QUEUE_FULL`, `TIMEOUT`).
    pub fn begin(&self, opts: TxnOptions) -> Transaction {
        let inner = Rc::new_cyclic(|me| TxnInner {
            lp: self.inner.lp.clone(),
            pool: self.inner.clone(),
            begin_sql: opts.begin_sql(),
            lease: RefCell::new(None),
            lease_id: Cell::new(None),
            begun: Cell::new(Begun::NotSent),
            ended: Cell::new(false),
            finished: Cell::new(false),
            error: RefCell::new(None),
            ops: RefCell::new(VecDeque::new()),
            copy: RefCell::new(None),
            timer: RefCell::new(None),
            keep: RefCell::new(None),
            me: me.clone(),
        });
        let limit = opts.timeout.or(self.inner.opts.query_timeout);
        if let Some(limit) = limit {
            let t = Timer::new(&self.inner.lp);
            let weak = inner.me.clone();
            t.start(limit, None, move || {
                if let Some(t) = weak.upgrade() {
                    t.expire();
                }
            });
            *inner.timer.borrow_mut() = Some(t);
        }
        let route = if opts.read_only && opts.isolation != Isolation::Serializable {
            Route::ReadOnly
        } else {
            Route::Primary
        };
        let weak = inner.me.clone();
        let deadline = limit.map(|l| self.inner.lp.now() + l);
        let id = self.inner.lease(
            route,
            deadline,
            Box::new(move |r| match weak.upgrade() {
                Some(t) => t.on_lease(r),
                None => drop(r), // dropped while waiting: the lease goes straight back
            }),
        );
        inner.lease_id.set(Some(id));
        Transaction { inner }
    }
}

impl Transaction {
    /// Runs `sql` with `params` (text, copied now) in the transaction. `cb` runs once, from
    /// the loop.
    pub fn query(
        &self,
        sql: &str,
        params: &[Option<&[u8]>],
        cb: impl FnOnce(Result<PgResult, PgError>) + 'static,
    ) {
        let stmt = Rc::new(Statement::Sql(sql.to_string()));
        self.submit(&[(stmt, params)], false, Done::One(Box::new(cb)));
    }

    /// `query` with options (`binary` results; `read_only` is the transaction's to decide).
    pub fn query_with(
        &self,
        sql: &str,
        params: &[Option<&[u8]>],
        opts: QueryOptions,
        cb: impl FnOnce(Result<PgResult, PgError>) + 'static,
    ) {
        let stmt = Rc::new(Statement::Sql(sql.to_string()));
        self.submit(&[(stmt, params)], opts.binary, Done::One(Box::new(cb)));
    }

    /// Runs a prepared statement (see `Statement::Prepared`) in the transaction.
    pub fn execute(
        &self,
        stmt: &Rc<Statement>,
        params: &[Option<&[u8]>],
        cb: impl FnOnce(Result<PgResult, PgError>) + 'static,
    ) {
        self.submit(&[(stmt.clone(), params)], false, Done::One(Box::new(cb)));
    }

    fn submit(&self, steps: &[BatchStep<'_>], binary: bool, done: Done) {
        let t = &self.inner;
        if t.ended.get() {
            let q = Query {
                steps: Vec::new(),
                done,
                deadline: None,
                binary,
            };
            return t.defer_fail(Op::Query(q), t.why_ended());
        }
        match t.pool.make_query(steps, binary, done) {
            (q, None) => t.push(Op::Query(q)),
            (q, Some(e)) => t.defer_fail(Op::Query(q), e),
        }
    }

    /// Commits. `cb` gets `Ok` once the commit is durable, `PG_ABORTED` when PostgreSQL
    /// rolled back instead (a statement had failed), or the error that ended the transaction.
    /// `ALREADY` when the transaction has already ended.
    pub fn commit(&self, cb: impl FnOnce(Result<(), PgError>) + 'static) {
        self.end(true, Box::new(cb));
    }

    /// Rolls back. `cb` gets `Ok` (also when the transaction had already failed and rolled
    /// back), or `ALREADY` when it has already ended.
    pub fn rollback(&self, cb: impl FnOnce(Result<(), PgError>) + 'static) {
        self.end(false, Box::new(cb));
    }

    fn end(&self, commit: bool, cb: EndCb) {
        let t = &self.inner;
        if t.ended.replace(true) {
            // After a failure, rollback is fine and commit gets the failure; else ALREADY.
            return match t.error.borrow().clone() {
                Some(e) => t.defer_fail(
                    Op::End {
                        commit,
                        cb: Some(cb),
                    },
                    e,
                ),
                None => t.lp.defer(move || cb(Err(ended()))),
            };
        }
        *t.keep.borrow_mut() = t.me.upgrade();
        t.push(Op::End {
            commit,
            cb: Some(cb),
        });
    }

    /// Whether `commit` or `rollback` was asked, or the transaction failed for good.
    pub fn is_ended(&self) -> bool {
        self.inner.ended.get() || self.inner.finished.get()
    }

    /// Runs a `COPY ... TO STDOUT` in the transaction (see `PgPool::copy_out`); it starts
    /// once the statements before it are done.
    pub fn copy_out(
        &self,
        sql: &str,
        on_data: impl FnMut(&[u8]) -> Flow + 'static,
        on_done: impl FnOnce(Result<u64, PgError>) + 'static,
    ) -> CopyOut {
        let pool = PgPool {
            inner: self.inner.pool.clone(),
        };
        let s = pool.new_copy(sql, true, Some(Box::new(on_data)), None, Box::new(on_done));
        self.push_copy(&s);
        copy_out_handle(&s)
    }

    /// Runs a `COPY ... FROM STDIN` in the transaction (see `PgPool::copy_in`).
    pub fn copy_in(
        &self,
        sql: &str,
        on_ready: impl FnMut(&CopyIn) + 'static,
        on_done: impl FnOnce(Result<u64, PgError>) + 'static,
    ) -> CopyIn {
        let pool = PgPool {
            inner: self.inner.pool.clone(),
        };
        let s = pool.new_copy(
            sql,
            false,
            None,
            Some(Box::new(on_ready)),
            Box::new(on_done),
        );
        self.push_copy(&s);
        copy_in_handle(&s)
    }

    fn push_copy(&self, s: &Rc<CopyShared>) {
        let t = &self.inner;
        if t.ended.get() {
            return t.defer_fail(Op::Copy(s.clone()), t.why_ended());
        }
        t.push(Op::Copy(s.clone()));
    }
}

fn ended() -> PgError {
    PgError::new(Error::ALREADY, "the transaction has ended")
}

impl TxnInner {
    fn push(&self, op: Op) {
        if self.finished.get() {
            return self.defer_fail(op, self.why_ended());
        }
        self.ops.borrow_mut().push_back(op);
        self.pump();
    }

    /// What later operations fail with: the failure that ended the transaction, or `ALREADY`.
    fn why_ended(&self) -> PgError {
        self.error.borrow().clone().unwrap_or_else(ended)
    }

    /// Fails `op` from the loop (never from inside the caller's call).
    fn defer_fail(&self, op: Op, e: PgError) {
        self.lp.defer(move || op.fail(e));
    }

    fn conn(&self) -> Option<Rc<Conn>> {
        self.lease.borrow().as_ref().map(|l| l.conn().clone())
    }

    fn on_lease(&self, r: Result<Lease, PgError>) {
        self.lease_id.set(None);
        if self.finished.get() {
            return; // timed out meanwhile: the lease goes straight back
        }
        match r {
            Ok(lease) => {
                *self.lease.borrow_mut() = Some(lease);
                self.pump();
            }
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                self.pump();
            }
        }
    }

    /// Sends what may be sent now, in order.
    fn pump(&self) {
        if self.finished.get() {
            return;
        }
        let failed = self.error.borrow().clone();
        if let Some(e) = failed {
            return self.finish_with(e);
        }
        let Some(conn) = self.conn() else { return };
        loop {
            let begun = self.begun.get();
            let copying = self.copy.borrow().is_some();
            let mut ops = self.ops.borrow_mut();
            let Some(front) = ops.front() else { return };
            match (front, begun) {
                (_, Begun::Pending) => return,
                (Op::Query(_), Begun::NotSent) => {
                    let Some(Op::Query(q)) = ops.pop_front() else {
                        unreachable!()
                    };
                    drop(ops);
                    return self.send_begin(&conn, Some(q));
                }
                (Op::Copy(_), Begun::NotSent) => {
                    drop(ops);
                    return self.send_begin(&conn, None);
                }
                (Op::End { .. }, Begun::NotSent) => {
                    // Nothing was sent: nothing to commit or roll back.
                    let Some(Op::End { cb, .. }) = ops.pop_front() else {
                        unreachable!()
                    };
                    drop(ops);
                    self.release(false);
                    if let Some(cb) = cb {
                        self.lp.defer(move || cb(Ok(())));
                    }
                    return;
                }
                (_, Begun::Open) if copying => return,
                (Op::Query(_), Begun::Open) => {
                    let Some(Op::Query(q)) = ops.pop_front() else {
                        unreachable!()
                    };
                    drop(ops);
                    if let Err(q) = conn.send(q) {
                        self.broken(Op::Query(q));
                        return;
                    }
                }
                (Op::Copy(_), Begun::Open) => {
                    if conn.in_flight() > 0 {
                        drop(ops);
                        let weak = self.me.clone();
                        conn.when_idle(Box::new(move || {
                            if let Some(t) = weak.upgrade() {
                                t.pump();
                            }
                        }));
                        return;
                    }
                    let Some(Op::Copy(s)) = ops.pop_front() else {
                        unreachable!()
                    };
                    drop(ops);
                    if conn.state() != State::Ready {
                        self.broken(Op::Copy(s));
                        return;
                    }
                    *self.copy.borrow_mut() = Some(s.clone());
                    let weak = self.me.clone();
                    after_copy(
                        &s,
                        Box::new(move || {
                            if let Some(t) = weak.upgrade() {
                                t.copy.borrow_mut().take();
                                t.pump();
                            }
                        }),
                    );
                    s.start_on(&conn);
                    return;
                }
                (Op::End { .. }, Begun::Open) => {
                    let Some(Op::End { commit, cb }) = ops.pop_front() else {
                        unreachable!()
                    };
                    drop(ops);
                    return self.send_end(&conn, commit, cb);
                }
            }
        }
    }

    /// Sends `BEGIN`, with the first statement when there is one (one round trip, one sync:
    /// if `BEGIN` fails, the statement does not run).
    fn send_begin(&self, conn: &Rc<Conn>, first: Option<Query>) {
        self.begun.set(Begun::Pending);
        let begin = Step {
            stmt: Rc::new(Statement::Sql(self.begin_sql.clone())),
            params: Vec::new(),
        };
        let weak = self.me.clone();
        let (steps, done, deadline, binary) = match first {
            Some(q) => {
                let mut steps = Vec::with_capacity(1 + q.steps.len());
                steps.push(begin);
                steps.extend(q.steps);
                (steps, Some(q.done), q.deadline, q.binary)
            }
            None => (vec![begin], None, self.pool.deadline(), false),
        };
        let q = Query {
            steps,
            done: Done::Many(Box::new(move |mut outcomes| {
                let began = outcomes.remove(0);
                let began_err = began.as_ref().err().cloned();
                if let Some(t) = weak.upgrade() {
                    match &began {
                        Ok(_) => t.begun.set(Begun::Open),
                        Err(e) => {
                            t.error.borrow_mut().get_or_insert(e.clone());
                        }
                    }
                }
                match done {
                    Some(Done::One(cb)) => cb(match began_err {
                        Some(e) => Err(e),
                        None => outcomes
                            .pop()
                            .unwrap_or_else(|| Err(PgError::new(Error::PG_QUERY, "no result"))),
                    }),
                    Some(Done::Many(cb)) => cb(outcomes),
                    None => {}
                }
                if let Some(t) = weak.upgrade() {
                    t.pump();
                }
            })),
            deadline,
            binary,
        };
        if let Err(q) = conn.send(q) {
            self.broken(Op::Query(q));
        }
    }

    fn send_end(&self, conn: &Rc<Conn>, commit: bool, cb: Option<EndCb>) {
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        let q = Query {
            steps: vec![Step {
                stmt: Rc::new(Statement::Sql(sql.to_string())),
                params: Vec::new(),
            }],
            done: Done::One(Box::new(move |r| {
                let r = r.and_then(|res| {
                    if commit && res.command_tag() == "ROLLBACK" {
                        Err(PgError::new(
                            Error::PG_ABORTED,
                            "the transaction was rolled back: a statement in it failed",
                        ))
                    } else {
                        Ok(())
                    }
                });
                if let Some(cb) = cb {
                    cb(r);
                }
            })),
            deadline: self.pool.deadline(),
            binary: false,
        };
        // The lease goes back now: whatever the pool sends next runs after the end.
        self.finished.set(true);
        self.timer.borrow_mut().take();
        self.let_go();
        let lease = self.lease.borrow_mut().take();
        if let Err(q) = conn.send(q) {
            let e = PgError::new(Error::PG_CONNECTION, "the connection broke");
            self.lp.defer(move || q.fail(e));
        }
        drop(lease);
    }

    /// The connection broke: `op` and everything after it fail with `PG_CONNECTION`.
    fn broken(&self, op: Op) {
        let e = PgError::new(Error::PG_CONNECTION, "the connection broke");
        self.error.borrow_mut().get_or_insert(e.clone());
        self.defer_fail(op, e);
        self.pump();
    }

    /// Ends the transaction for good: what waits fails with `e`, a transaction that began is
    /// rolled back, the lease goes back.
    fn finish_with(&self, e: PgError) {
        let ops: Vec<Op> = self.ops.borrow_mut().drain(..).collect();
        for op in ops {
            self.defer_fail(op, e.clone());
        }
        let copy = self.copy.borrow().clone();
        if let Some(s) = copy {
            // Ends first; its `after` hook brings us back here.
            return copy_out_handle(&s).cancel();
        }
        self.release(self.begun.get() != Begun::NotSent);
    }

    /// Gives the lease back, after a `ROLLBACK` when `rollback`.
    fn release(&self, rollback: bool) {
        if self.finished.replace(true) {
            return;
        }
        self.timer.borrow_mut().take();
        self.let_go();
        if let Some(id) = self.lease_id.take() {
            drop(self.pool.withdraw_lease(id));
        }
        let lease = self.lease.borrow_mut().take();
        if let Some(lease) = lease {
            if rollback {
                send_rollback(lease.conn());
            }
            drop(lease);
        }
    }

    /// Drops the hold `commit`/`rollback` took, from the loop (never under our own feet).
    fn let_go(&self) {
        let keep = self.keep.borrow_mut().take();
        if keep.is_some() {
            self.lp.defer(move || drop(keep));
        }
    }

    /// The time limit passed: the statement running is cancelled, then the transaction rolls
    /// back; everything waiting fails with `TIMEOUT`.
    fn expire(&self) {
        if self.finished.get() {
            return;
        }
        self.error
            .borrow_mut()
            .get_or_insert(PgError::new(Error::TIMEOUT, "the transaction timed out"));
        if let Some(c) = self.conn() {
            if c.in_flight() > 0 && !c.copying() {
                c.cancel_running();
            }
        }
        self.ended.set(true);
        self.pump();
    }
}

/// Sends `ROLLBACK`; its outcome matters to no one (a broken connection is replaced anyway).
fn send_rollback(conn: &Conn) {
    if conn.state() != State::Ready {
        return;
    }
    let q = Query {
        steps: vec![Step {
            stmt: Rc::new(Statement::Sql("ROLLBACK".to_string())),
            params: Vec::new(),
        }],
        done: Done::One(Box::new(|_| {})),
        deadline: None,
        binary: false,
    };
    let _ = conn.send(q);
}

impl Drop for TxnInner {
    fn drop(&mut self) {
        if self.finished.get() {
            return;
        }
        // The last handle went before commit or rollback: roll back.
        let e = PgError::new(
            Error::CANCELLED,
            "the transaction was dropped before it ended",
        );
        let ops: Vec<Op> = self.ops.borrow_mut().drain(..).collect();
        for op in ops {
            self.defer_fail(op, e.clone());
        }
        let copy = self.copy.borrow_mut().take();
        let lease = self.lease.borrow_mut().take();
        match (copy, lease) {
            (Some(s), Some(lease)) => {
                // The COPY ends first; then the rollback, then the lease goes back.
                after_copy(
                    &s,
                    Box::new(move || {
                        send_rollback(lease.conn());
                        drop(lease);
                    }),
                );
                copy_out_handle(&s).cancel();
            }
            (None, Some(lease)) => {
                if self.begun.get() != Begun::NotSent {
                    send_rollback(lease.conn());
                }
                drop(lease);
            }
            (_, None) => {
                if let Some(id) = self.lease_id.take() {
                    drop(self.pool.withdraw_lease(id));
                }
            }
        }
        self.finished.set(true);
    }
}
