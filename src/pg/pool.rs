//! A pool of PostgreSQL connections for one loop. Queries go to the ready connection with the
//! fewest in flight (pipelined, up to `max_pipeline` each), else wait in a bounded FIFO queue.
//! A connection that breaks fails its queries in flight (never retried: they may have run) and
//! is replaced in the background after a jittered backoff, 100 ms doubling to 5 s. While no
//! connection is up or connecting, new queries fail at once with `PG_UNAVAILABLE`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::CString;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::conn::{BatchCb, Conn, ConnEvents, Done, Query, State, Statement, Step};
use super::result::{PgError, PgResult};
use crate::error::Error;
use crate::reactor::{Loop, Timer};

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// libpq conninfo string or URI. Use numeric hosts (`hostaddr` or an IP in `host`): a
    /// host name would be resolved by libpq with a blocking call.
    pub conninfo: String,
    /// Connections.
    pub size: usize,
    /// Queries waiting for a connection before new ones fail with `PG_QUEUE_FULL`.
    pub max_queue: usize,
    /// Queries in flight per connection.
    pub max_pipeline: usize,
    /// Time a query may take, queueing included; past it the query is cancelled on the server
    /// (without blocking the loop) and fails with `TIMEOUT`. None: no limit.
    pub query_timeout: Option<Duration>,
    /// Time a connection attempt may take (resolving included) before it counts as failed.
    pub connect_timeout: Duration,
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
        }
    }
}

/// One statement of a batch and its parameters (text; `None` is NULL).
pub type BatchStep<'a> = (Rc<Statement>, &'a [Option<&'a [u8]>]);

/// Counters of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections up.
    pub connected: usize,
    /// Queries sent and not yet answered.
    pub busy: usize,
    /// Queries waiting for a connection.
    pub queued: usize,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

struct Slot {
    conn: Option<Rc<Conn>>,
    backoff: Duration,
    retry: Option<Timer>,
}

struct PoolInner {
    lp: Loop,
    opts: PoolOptions,
    slots: RefCell<Vec<Slot>>,
    queue: RefCell<VecDeque<Query>>,
    closed: Cell<bool>,
    sweeper: RefCell<Option<Timer>>,
    rng: Cell<u64>,
    me: Weak<PoolInner>,
}

/// A connection pool on one loop. Clones share it.
#[derive(Clone)]
pub struct PgPool {
    inner: Rc<PoolInner>,
}

impl PgPool {
    /// Creates the pool and starts connecting every connection (without blocking).
    pub fn new(lp: &Loop, opts: PoolOptions) -> PgPool {
        let size = opts.size.max(1);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let inner = Rc::new_cyclic(|me| PoolInner {
            lp: lp.clone(),
            opts,
            slots: RefCell::new(
                (0..size)
                    .map(|_| Slot {
                        conn: None,
                        backoff: BACKOFF_MIN,
                        retry: None,
                    })
                    .collect(),
            ),
            queue: RefCell::new(VecDeque::new()),
            closed: Cell::new(false),
            sweeper: RefCell::new(None),
            rng: Cell::new(seed | 1),
            me: me.clone(),
        });
        for i in 0..size {
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

    /// Runs `sql` with `params` (text values, copied now; `None` is NULL). `cb` gets the result
    /// or the error, once, from the loop (never from inside this call).
    pub fn query(
        &self,
        sql: &str,
        params: &[Option<&[u8]>],
        cb: impl FnOnce(Result<PgResult, PgError>) + 'static,
    ) {
        let stmt = Rc::new(Statement::Sql(sql.to_string()));
        self.submit(&[(stmt, params)], Done::One(Box::new(cb)));
    }

    /// Runs a statement prepared once per connection (see `Statement::Prepared`).
    pub fn execute(
        &self,
        stmt: &Rc<Statement>,
        params: &[Option<&[u8]>],
        cb: impl FnOnce(Result<PgResult, PgError>) + 'static,
    ) {
        self.submit(&[(stmt.clone(), params)], Done::One(Box::new(cb)));
    }

    /// Runs several statements in order on one connection, as one transaction: they are sent
    /// together with a single sync, so if one fails the later ones are skipped (`PG_ABORTED`)
    /// and nothing of the batch is committed. `cb` gets one outcome per statement.
    pub fn batch(
        &self,
        steps: &[BatchStep<'_>],
        cb: impl FnOnce(Vec<Result<PgResult, PgError>>) + 'static,
    ) {
        let cb: BatchCb = Box::new(cb);
        self.submit(steps, Done::Many(cb));
    }

    fn submit(&self, steps: &[BatchStep<'_>], done: Done) {
        let mut copied = Vec::with_capacity(steps.len());
        for (stmt, params) in steps {
            let mut ps = Vec::with_capacity(params.len());
            for p in params.iter() {
                match p.map(CString::new) {
                    None => ps.push(None),
                    Some(Ok(c)) => ps.push(Some(c)),
                    Some(Err(_)) => {
                        let q = Query {
                            steps: Vec::new(),
                            done,
                            deadline: None,
                        };
                        let e =
                            PgError::new(Error::INVALID, "a text parameter contains a NUL byte");
                        self.inner.lp.defer(move || q.fail(e));
                        return;
                    }
                }
            }
            copied.push(Step {
                stmt: stmt.clone(),
                params: ps,
            });
        }
        let deadline = self
            .inner
            .opts
            .query_timeout
            .map(|t| self.inner.lp.now() + t);
        self.inner.submit(Query {
            steps: copied,
            done,
            deadline,
        });
    }

    /// Current counters.
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

    pub fn stats(&self) -> PoolStats {
        let slots = self.inner.slots.borrow();
        let live = slots.iter().filter_map(|s| s.conn.as_ref());
        PoolStats {
            connected: live.clone().filter(|c| c.state() == State::Ready).count(),
            busy: live.map(|c| c.in_flight()).sum(),
            queued: self.inner.queue.borrow().len(),
        }
    }

    /// Closes every connection; queued and in-flight queries complete with `CANCELLED`, from
    /// the loop (never inside this call). Later queries fail with `PG_UNAVAILABLE`.
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
        let queued: Vec<Query> = inner.queue.borrow_mut().drain(..).collect();
        inner.lp.defer(move || {
            for c in conns {
                c.fail_with(Error::CANCELLED, "the pool was closed");
            }
            for q in queued {
                q.fail(PgError::new(Error::CANCELLED, "the pool was closed"));
            }
        });
    }
}

impl PoolInner {
    fn connect(&self, i: usize) {
        if self.closed.get() {
            return;
        }
        let owner: Weak<dyn ConnEvents> = self.me.clone();
        let conn = Conn::start(
            &self.lp,
            i,
            &self.opts.conninfo,
            self.opts.connect_timeout,
            owner,
        );
        self.slots.borrow_mut()[i].conn = Some(conn);
    }

    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    /// A ready connection with room, the least loaded one.
    fn pick(&self) -> Option<Rc<Conn>> {
        let slots = self.slots.borrow();
        slots
            .iter()
            .filter_map(|s| s.conn.as_ref())
            .filter(|c| c.state() == State::Ready && c.in_flight() < self.opts.max_pipeline)
            .min_by_key(|c| c.in_flight())
            .cloned()
    }

    fn any_connecting(&self) -> bool {
        self.slots.borrow().iter().any(|s| {
            s.conn
                .as_ref()
                .is_some_and(|c| c.state() == State::Connecting)
        })
    }

    fn any_ready(&self) -> bool {
        self.slots
            .borrow()
            .iter()
            .any(|s| s.conn.as_ref().is_some_and(|c| c.state() == State::Ready))
    }

    fn submit(&self, q: Query) {
        if self.closed.get() {
            self.lp
                .defer(move || q.fail(PgError::new(Error::PG_UNAVAILABLE, "the pool is closed")));
            return;
        }
        if self.queue.borrow().is_empty() {
            if let Some(c) = self.pick() {
                match c.send(q) {
                    Ok(()) => return,
                    Err(q) => return self.submit(q), // that connection just broke: try again
                }
            }
        }
        if !self.any_ready() && !self.any_connecting() {
            self.lp.defer(move || {
                q.fail(PgError::new(
                    Error::PG_UNAVAILABLE,
                    "no database connection is up",
                ))
            });
            return;
        }
        if self.queue.borrow().len() >= self.opts.max_queue {
            self.lp.defer(move || {
                q.fail(PgError::new(
                    Error::PG_QUEUE_FULL,
                    "too many queries waiting",
                ))
            });
            return;
        }
        self.queue.borrow_mut().push_back(q);
    }

    /// Sends queued queries while a connection has room.
    fn drain(&self) {
        loop {
            if self.queue.borrow().is_empty() {
                return;
            }
            let Some(c) = self.pick() else { return };
            let q = self.queue.borrow_mut().pop_front().unwrap();
            if let Err(q) = c.send(q) {
                self.queue.borrow_mut().push_front(q);
            }
        }
    }

    fn fail_queue(&self, code: Error, why: &str) {
        let queued: Vec<Query> = self.queue.borrow_mut().drain(..).collect();
        for q in queued {
            q.fail(PgError::new(code, why));
        }
    }

    /// Query timeouts: queued queries past their deadline fail; running ones are cancelled.
    fn expire(&self) {
        let now = self.lp.now();
        loop {
            let expired = {
                let mut q = self.queue.borrow_mut();
                match q.iter().position(|x| x.deadline.is_some_and(|d| d <= now)) {
                    Some(i) => q.remove(i),
                    None => None,
                }
            };
            match expired {
                Some(q) => q.fail(PgError::new(
                    Error::TIMEOUT,
                    "the query timed out waiting for a connection",
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
        self.slots.borrow_mut()[id].backoff = BACKOFF_MIN;
        self.drain();
    }

    fn capacity(&self, _id: usize) {
        self.drain();
    }

    fn broken(&self, id: usize, why: &str) {
        if self.closed.get() {
            return;
        }
        // Replace the connection after a jittered backoff (75%..125% of the current step).
        let delay = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[id];
            let base = s.backoff;
            s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
            let jitter = 750 + self.random() % 501;
            base * jitter as u32 / 1000
        };
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
        // Nothing up and nothing trying: what waits would wait for a backoff. Fail it now.
        if !self.any_ready() && !self.any_connecting() {
            self.fail_queue(Error::PG_UNAVAILABLE, why);
        }
    }
}
