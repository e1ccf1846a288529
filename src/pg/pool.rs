//! A pool of PostgreSQL connections for one loop: the primary's connections and, optionally,
//! each read replica's. Queries go to the ready connection with the fewest in flight
//! (pipelined, up to `max_pipeline` each), else wait in one bounded FIFO queue with the
//! transactions and COPYs that wait for a connection of their own (a lease, `lease.rs`).
//! Read-only work goes to the replicas round robin, to the primary when no replica is up;
//! everything else to the primary. A connection that breaks fails its queries in flight (never
//! retried: they may have run) and is replaced in the background after a jittered backoff,
//! 100 ms doubling to 5 s. While nothing that could take a query is up or connecting, new
//! queries fail at once with `PG_UNAVAILABLE`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::conn::{Conn, ConnEvents, ConnOptions, State};
use super::lease::{Lease, LeaseCb};
use super::pipeline::{BatchCb, Done, Query, Statement, Step};
use super::result::{PgError, PgResult};
use crate::error::Error;
use crate::reactor::{Loop, Timer};

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// libpq conninfo string or URI of the primary. Host names are resolved off the loop;
    /// several hosts (`host=a,b`) with `target_session_attrs=read-write` follow a failover.
    pub conninfo: String,
    /// Connections to the primary.
    pub size: usize,
    /// Queries, transactions and COPYs waiting for a connection before new ones fail with
    /// `PG_QUEUE_FULL`.
    pub max_queue: usize,
    /// Queries in flight per connection.
    pub max_pipeline: usize,
    /// Time a query may take, queueing included; past it the query is cancelled on the server
    /// (without blocking the loop) and fails with `TIMEOUT`. Also the default time limit of a
    /// transaction, and of waiting for a connection to COPY on. None: no limit.
    pub query_timeout: Option<Duration>,
    /// Time a connection attempt may take (resolving included) before it counts as failed.
    pub connect_timeout: Duration,
    /// Conninfos of read replicas (streaming standbys). Read-only queries and transactions go
    /// to them round robin, and to the primary while none is up.
    pub replicas: Vec<String>,
    /// Connections per replica (0: as many as `size`).
    pub replica_size: usize,
    /// Never prepare named statements: prepared statements are sent as their SQL each time
    /// (the unnamed statement), for PgBouncer's transaction pooling, where consecutive
    /// statements may run on different server connections.
    pub no_prepare: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            conninfo: String::new(),
            size: 4,
            max_queue: 65536,
            max_pipeline: 256,
            query_timeout: None,
            connect_timeout: Duration::from_secs(5),
            replicas: Vec::new(),
            replica_size: 0,
            no_prepare: false,
        }
    }
}

/// How one query runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// The query only reads: it may run on a read replica.
    pub read_only: bool,
    /// Results in binary format (see `PgResult`'s typed getters) instead of text.
    pub binary: bool,
}

/// One statement of a batch and its parameters (text; `None` is NULL).
pub type BatchStep<'a> = (Rc<Statement>, &'a [Option<&'a [u8]>]);

/// Counters of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections to the primary that are up.
    pub connected: usize,
    /// Queries sent and not yet answered.
    pub busy: usize,
    /// Queries, transactions and COPYs waiting for a connection.
    pub queued: usize,
    /// Connections to replicas that are up.
    pub replicas_connected: usize,
    /// Connections lent to a transaction or a COPY.
    pub leased: usize,
}

/// Where a piece of work may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Primary,
    /// A replica, or the primary when no replica can take it.
    ReadOnly,
}

/// What waits in the queue.
enum Waiter {
    Query(Query, Route),
    Lease {
        route: Route,
        deadline: Option<Instant>,
        id: u64,
        cb: LeaseCb,
    },
}

impl Waiter {
    fn route(&self) -> Route {
        match self {
            Waiter::Query(_, r) | Waiter::Lease { route: r, .. } => *r,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self {
            Waiter::Query(q, _) => q.deadline,
            Waiter::Lease { deadline, .. } => *deadline,
        }
    }

    fn fail(self, e: PgError) {
        match self {
            Waiter::Query(q, _) => q.fail(e),
            Waiter::Lease { cb, .. } => cb(Err(e)),
        }
    }
}

struct Slot {
    conn: Option<Rc<Conn>>,
    backoff: Backoff,
    retry: Option<Timer>,
    /// 0: the primary; 1..: `replicas[group - 1]`.
    group: usize,
}

pub(crate) struct PoolInner {
    pub(crate) lp: Loop,
    pub(crate) opts: PoolOptions,
    slots: RefCell<Vec<Slot>>,
    queue: RefCell<VecDeque<Waiter>>,
    closed: Cell<bool>,
    sweeper: RefCell<Option<Timer>>,
    /// The replica group to try first for the next read-only work.
    next_replica: Cell<usize>,
    next_lease_id: Cell<u64>,
    me: Weak<PoolInner>,
}

/// A connection pool on one loop. Clones share it.
#[derive(Clone)]
pub struct PgPool {
    pub(crate) inner: Rc<PoolInner>,
}

impl PgPool {
    /// Creates the pool and starts connecting every connection (without blocking).
    pub fn new(lp: &Loop, opts: PoolOptions) -> PgPool {
        let size = opts.size.max(1);
        let per_replica = if opts.replica_size == 0 {
            size
        } else {
            opts.replica_size
        };
        let mut slots: Vec<Slot> = (0..size).map(|_| new_slot(0)).collect();
        for g in 1..=opts.replicas.len() {
            slots.extend((0..per_replica).map(|_| new_slot(g)));
        }
        let n = slots.len();
        let inner = Rc::new_cyclic(|me| PoolInner {
            lp: lp.clone(),
            opts,
            slots: RefCell::new(slots),
            queue: RefCell::new(VecDeque::new()),
            closed: Cell::new(false),
            sweeper: RefCell::new(None),
            next_replica: Cell::new(0),
            next_lease_id: Cell::new(1),
            me: me.clone(),
        });
        for i in 0..n {
            inner.connect(i);
        }
        if let Some(limit) = inner.opts.query_timeout {
            let period = (limit / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
            let t = Timer::new(lp);
            let weak = inner.me.clone();
            t.start(period, Some(period), move || {
                if let Some(p) = weak.upgrade() {
                    p.expire();
                }
            });
            *inner.sweeper.borrow_mut() = Some(t);
        }
        PgPool { inner }
    }

    /// The loop the pool runs on.
    pub fn event_loop(&self) -> &Loop {
        &self.inner.lp
    }

    /// Runs `sql` with `params` (text values, copied now; `None` is NULL) on the primary. `cb`
    /// gets the result or the error, once, from the loop (never from inside this call).
    pub fn query(
        &self,
        sql: &str,
        params: &[Option<&[u8]>],
        cb: impl FnOnce(Result<PgResult, PgError>) + 'static,
    ) {
        self.query_with(sql, params, QueryOptions::default(), cb)
    }

    /// `query` with options: read-only work may go to a replica; results may be binary.
    pub fn query_with(
        &self,
        sql: &str,
        params: &[Option<&[u8]>],
        opts: QueryOptions,
        cb: impl FnOnce(Result<PgResult, PgError>) + 'static,
    ) {
        let stmt = Rc::new(Statement::Sql(sql.to_string()));
        self.submit(&[(stmt, params)], opts, Done::One(Box::new(cb)));
    }

    /// Runs a statement prepared once per connection (see `Statement::Prepared`).
    pub fn execute(
        &self,
        stmt: &Rc<Statement>,
        params: &[Option<&[u8]>],
        cb: impl FnOnce(Result<PgResult, PgError>) + 'static,
    ) {
        self.execute_with(stmt, params, QueryOptions::default(), cb)
    }

    /// `execute` with options (see `query_with`).
    pub fn execute_with(
        &self,
        stmt: &Rc<Statement>,
        params: &[Option<&[u8]>],
        opts: QueryOptions,
        cb: impl FnOnce(Result<PgResult, PgError>) + 'static,
    ) {
        self.submit(&[(stmt.clone(), params)], opts, Done::One(Box::new(cb)));
    }

    /// Runs several statements in order on one connection, as one transaction: they are sent
    /// together with a single sync, so if one fails the later ones are skipped (`PG_ABORTED`)
    /// and nothing of the batch is committed. `cb` gets one outcome per statement.
    pub fn batch(
        &self,
        steps: &[BatchStep<'_>],
        cb: impl FnOnce(Vec<Result<PgResult, PgError>>) + 'static,
    ) {
        self.batch_with(steps, QueryOptions::default(), cb)
    }

    /// `batch` with options (see `query_with`).
    pub fn batch_with(
        &self,
        steps: &[BatchStep<'_>],
        opts: QueryOptions,
        cb: impl FnOnce(Vec<Result<PgResult, PgError>>) + 'static,
    ) {
        let cb: BatchCb = Box::new(cb);
        self.submit(steps, opts, Done::Many(cb));
    }

    fn submit(&self, steps: &[BatchStep<'_>], opts: QueryOptions, done: Done) {
        let route = if opts.read_only {
            Route::ReadOnly
        } else {
            Route::Primary
        };
        match self.inner.make_query(steps, opts.binary, done) {
            (q, None) => self.inner.submit(Waiter::Query(q, route)),
            (q, Some(e)) => self.inner.lp.defer(move || q.fail(e)),
        }
    }

    /// For tests: on the first open connection, a cancel as if meant for a query that has
    /// just finished (see `Conn::send_stray_cancel_for_tests`).
    #[doc(hidden)]
    pub fn send_stray_cancel_for_tests(&self) {
        let c = self
            .inner
            .slots
            .borrow()
            .iter()
            .filter_map(|s| s.conn.clone())
            .find(|c| c.state() == State::Ready);
        if let Some(c) = c {
            c.send_stray_cancel_for_tests();
        }
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        let slots = self.inner.slots.borrow();
        let mut s = PoolStats {
            queued: self.inner.queue.borrow().len(),
            ..PoolStats::default()
        };
        for (slot, c) in slots.iter().filter_map(|x| x.conn.as_ref().map(|c| (x, c))) {
            let up = c.state() == State::Ready;
            match (up, slot.group) {
                (true, 0) => s.connected += 1,
                (true, _) => s.replicas_connected += 1,
                _ => {}
            }
            s.busy += c.in_flight();
            s.leased += (up && c.is_leased()) as usize;
        }
        s
    }

    /// Closes every connection; queued and in-flight work completes with `CANCELLED`, from the
    /// loop (never inside this call). Later work fails with `PG_UNAVAILABLE`.
    pub fn close(&self) {
        let inner = &self.inner;
        if inner.closed.replace(true) {
            return;
        }
        let sweeper = inner.sweeper.borrow_mut().take();
        drop(sweeper);
        let conns: Vec<Rc<Conn>> = inner
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(|s| {
                s.retry = None;
                s.conn.take()
            })
            .collect();
        let queued: Vec<Waiter> = inner.queue.borrow_mut().drain(..).collect();
        inner.lp.defer(move || {
            for c in conns {
                c.fail_with(Error::CANCELLED, "the pool was closed");
            }
            for w in queued {
                w.fail(PgError::new(Error::CANCELLED, "the pool was closed"));
            }
        });
    }
}

fn new_slot(group: usize) -> Slot {
    Slot {
        conn: None,
        backoff: Backoff::new(),
        retry: None,
        group,
    }
}

impl PoolInner {
    fn connect(&self, i: usize) {
        if self.closed.get() {
            return;
        }
        let group = self.slots.borrow()[i].group;
        let conninfo = if group == 0 {
            &self.opts.conninfo
        } else {
            &self.opts.replicas[group - 1]
        };
        let owner: Weak<dyn ConnEvents> = self.me.clone();
        let opts = ConnOptions {
            connect_timeout: self.opts.connect_timeout,
            no_prepare: self.opts.no_prepare,
        };
        let conn = Conn::start(&self.lp, i, conninfo, opts, owner);
        self.slots.borrow_mut()[i].conn = Some(conn);
    }

    /// Copies the statements and parameters of a query (parameters become C strings). With
    /// the query comes the error to fail it with, unsent: a NUL byte inside a parameter.
    pub(crate) fn make_query(
        &self,
        steps: &[BatchStep<'_>],
        binary: bool,
        done: Done,
    ) -> (Query, Option<PgError>) {
        let copied: Result<Vec<Step>, PgError> = steps
            .iter()
            .map(|(stmt, params)| Step::new(stmt.clone(), params))
            .collect();
        let (steps, err) = match copied {
            Ok(s) => (s, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let q = Query {
            steps,
            done,
            deadline: self.deadline(),
            binary,
        };
        (q, err)
    }

    /// When work started now must be done by, per `query_timeout`.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.opts.query_timeout.map(|t| self.lp.now() + t)
    }

    /// The least loaded ready connection of `group` that can take work: unleased, not
    /// copying, and (for a query) with room in its pipeline.
    fn pick_in(&self, group: usize, for_lease: bool) -> Option<Rc<Conn>> {
        let slots = self.slots.borrow();
        slots
            .iter()
            .filter(|s| s.group == group)
            .filter_map(|s| s.conn.as_ref())
            .filter(|c| {
                c.state() == State::Ready
                    && !c.is_leased()
                    && !c.copying()
                    && (for_lease || c.in_flight() < self.opts.max_pipeline)
            })
            .min_by_key(|c| c.in_flight())
            .cloned()
    }

    /// Where work on `route` goes now: read-only work to the next replica round robin that
    /// can take it, else to the primary.
    fn pick(&self, route: Route, for_lease: bool) -> Option<Rc<Conn>> {
        let replicas = self.opts.replicas.len();
        if route == Route::ReadOnly && replicas > 0 {
            let start = self.next_replica.get();
            for k in 0..replicas {
                let g = (start + k) % replicas;
                if let Some(c) = self.pick_in(g + 1, for_lease) {
                    self.next_replica.set(g + 1);
                    return Some(c);
                }
            }
        }
        self.pick_in(0, for_lease)
    }

    /// Whether some connection that `route` may use is up or connecting.
    fn route_alive(&self, route: Route) -> bool {
        self.slots.borrow().iter().any(|s| {
            (route == Route::ReadOnly || s.group == 0)
                && s.conn
                    .as_ref()
                    .is_some_and(|c| matches!(c.state(), State::Ready | State::Connecting))
        })
    }

    /// Sends `w` now if a connection can take it; hands it back otherwise.
    fn dispatch(&self, w: Waiter) -> Result<(), Waiter> {
        match w {
            Waiter::Query(q, route) => {
                let mut q = q;
                loop {
                    let Some(c) = self.pick(route, false) else {
                        return Err(Waiter::Query(q, route));
                    };
                    match c.send(q) {
                        Ok(()) => return Ok(()),
                        Err(back) => q = back, // that connection just broke: try another
                    }
                }
            }
            Waiter::Lease {
                route,
                deadline,
                id,
                cb,
            } => {
                let Some(c) = self.pick(route, true) else {
                    return Err(Waiter::Lease {
                        route,
                        deadline,
                        id,
                        cb,
                    });
                };
                c.leased.set(true);
                let lease = Lease::new(c, self.me.clone(), self.lp.clone());
                // Never from inside the call that asked: the grant arrives from the loop.
                self.lp.defer(move || cb(Ok(lease)));
                Ok(())
            }
        }
    }

    fn submit(&self, w: Waiter) {
        if self.closed.get() {
            self.lp
                .defer(move || w.fail(PgError::new(Error::PG_UNAVAILABLE, "the pool is closed")));
            return;
        }
        let w = if self.queue.borrow().is_empty() {
            match self.dispatch(w) {
                Ok(()) => return,
                Err(w) => w,
            }
        } else {
            w
        };
        if !self.route_alive(w.route()) {
            self.lp.defer(move || {
                w.fail(PgError::new(
                    Error::PG_UNAVAILABLE,
                    "no database connection is up",
                ))
            });
            return;
        }
        if self.queue.borrow().len() >= self.opts.max_queue {
            self.lp.defer(move || {
                w.fail(PgError::new(
                    Error::PG_QUEUE_FULL,
                    "too many queries waiting",
                ))
            });
            return;
        }
        self.queue.borrow_mut().push_back(w);
    }

    /// Asks for a connection of one's own (see `Lease`). `cb` runs once from the loop: with
    /// the lease, or with `PG_UNAVAILABLE`, `PG_QUEUE_FULL` or `TIMEOUT` (past `deadline`).
    /// Returns the request's id, for `withdraw_lease`.
    pub(crate) fn lease(&self, route: Route, deadline: Option<Instant>, cb: LeaseCb) -> u64 {
        let id = self.next_lease_id.get();
        self.next_lease_id.set(id + 1);
        self.submit(Waiter::Lease {
            route,
            deadline,
            id,
            cb,
        });
        id
    }

    /// Takes back a lease request still waiting in the queue; its callback is returned (not
    /// run). None when it was granted or failed already.
    pub(crate) fn withdraw_lease(&self, id: u64) -> Option<LeaseCb> {
        let mut q = self.queue.borrow_mut();
        let i = q
            .iter()
            .position(|w| matches!(w, Waiter::Lease { id: x, .. } if *x == id))?;
        match q.remove(i) {
            Some(Waiter::Lease { cb, .. }) => Some(cb),
            _ => None,
        }
    }

    /// Sends queued work, in order, while a connection can take the next one.
    pub(crate) fn drain(&self) {
        loop {
            let Some(w) = self.queue.borrow_mut().pop_front() else {
                return;
            };
            if let Err(w) = self.dispatch(w) {
                self.queue.borrow_mut().push_front(w);
                return;
            }
        }
    }

    /// Fails the queued work that nothing up or connecting could ever take.
    fn fail_unroutable(&self, why: &str) {
        let (keep, fail): (VecDeque<Waiter>, VecDeque<Waiter>) = {
            let all: VecDeque<Waiter> = self.queue.borrow_mut().drain(..).collect();
            all.into_iter().partition(|w| self.route_alive(w.route()))
        };
        *self.queue.borrow_mut() = keep;
        for w in fail {
            w.fail(PgError::new(Error::PG_UNAVAILABLE, why));
        }
    }

    /// Query timeouts: queued work past its deadline fails; running queries are cancelled.
    fn expire(&self) {
        let now = self.lp.now();
        loop {
            let expired = {
                let mut q = self.queue.borrow_mut();
                match q
                    .iter()
                    .position(|x| x.deadline().is_some_and(|d| d <= now))
                {
                    Some(i) => q.remove(i),
                    None => None,
                }
            };
            match expired {
                Some(w) => w.fail(PgError::new(
                    Error::TIMEOUT,
                    "timed out waiting for a database connection",
                )),
                None => break,
            }
        }
        let conns: Vec<Rc<Conn>> = self
            .slots
            .borrow()
            .iter()
            .filter_map(|s| s.conn.clone())
            .collect();
        for c in conns {
            if c.state() == State::Ready {
                c.cancel_if_expired(now);
            }
        }
    }
}

impl ConnEvents for PoolInner {
    fn ready(&self, id: usize) {
        self.slots.borrow_mut()[id].backoff.reset();
        self.drain();
    }

    fn capacity(&self, _id: usize) {
        self.drain();
    }

    fn broken(&self, id: usize, why: &str) {
        if self.closed.get() {
            return;
        }
        // Replace the connection after a jittered backoff.
        let delay = self.slots.borrow_mut()[id].backoff.next_delay();
        let t = Timer::new(&self.lp);
        let weak = self.me.clone();
        t.start(delay, None, move || {
            if let Some(p) = weak.upgrade() {
                let old = p.slots.borrow_mut()[id].retry.take();
                p.connect(id);
                drop(old);
            }
        });
        let old = self.slots.borrow_mut()[id].retry.replace(t);
        drop(old);
        // What nothing up or trying could take would wait for a backoff: fail it now.
        self.fail_unroutable(why);
        // Work queued for a route that is still up may go elsewhere now.
        self.drain();
    }
}
