//! LISTEN/NOTIFY: a listener keeps one connection of its own, `LISTEN`s on its channels, and
//! hands every notification (channel, payload, sender's pid) to a callback. When the
//! connection breaks it reconnects with the pool's backoff and issues `LISTEN` again for every
//! channel, then says so (`on_reconnect`). Notifications sent while it was disconnected are
//! lost: PostgreSQL queues them only for sessions listening at the time.
//!
//! The connection must hold a session: directly to PostgreSQL, or through PgBouncer in
//! session mode (transaction pooling cannot carry `LISTEN`). A standby cannot `LISTEN`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::ffi::CStr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use pq_sys as pq;

use super::backoff::Backoff;
use super::conn::{Conn, ConnEvents, ConnOptions, State};
use super::pipeline::{Done, Query, Statement, Step};
use super::result::PgError;
use crate::error::Error;
use crate::reactor::{Loop, Timer};

/// One `NOTIFY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
    /// The process id of the sending session's backend.
    pub pid: i32,
}

/// Hands the notifications libpq has parsed to the connection's owner.
pub(super) fn take_notifications(conn: &Conn) {
    loop {
        // SAFETY: live connection; PQnotifies returns a malloc'd record or NULL.
        let n = unsafe { pq::PQnotifies(conn.pg.get()) };
        if n.is_null() {
            return;
        }
        // SAFETY: a live PGnotify whose strings are NUL-terminated, freed below.
        let note = unsafe {
            Notification {
                channel: CStr::from_ptr((*n).relname).to_string_lossy().into_owned(),
                payload: CStr::from_ptr((*n).extra).to_string_lossy().into_owned(),
                pid: (*n).be_pid,
            }
        };
        // SAFETY: allocated by libpq for us.
        unsafe { pq::PQfreemem(n.cast()) };
        if let Some(o) = conn.owner.upgrade() {
            o.notification(conn.id, note);
        }
        if conn.state.get() != State::Ready {
            return;
        }
    }
}

/// Listener settings.
#[derive(Clone, Debug)]
pub struct ListenerOptions {
    /// libpq conninfo of a session on the primary (not through transaction pooling).
    pub conninfo: String,
    /// Time a connection attempt may take.
    pub connect_timeout: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            conninfo: String::new(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

type ListenCb = Box<dyn FnOnce(Result<(), PgError>)>;
type NotifyCb = Box<dyn FnMut(&Notification)>;

/// A listening connection on one loop. Clones share it; `close` (or dropping the last clone)
/// ends it.
#[derive(Clone)]
pub struct PgListener {
    inner: Rc<ListenerInner>,
}

struct ListenerInner {
    lp: Loop,
    opts: ListenerOptions,
    conn: RefCell<Option<Rc<Conn>>>,
    channels: RefCell<BTreeSet<String>>,
    on_notify: RefCell<Option<NotifyCb>>,
    on_reconnect: RefCell<Option<Box<dyn FnMut()>>>,
    /// `listen` calls made while connecting: answered once the connection is up.
    waiting: RefCell<Vec<(String, ListenCb)>>,
    /// Times connected; the first connect is no reconnect.
    connects: Cell<u64>,
    backoff: RefCell<Backoff>,
    retry: RefCell<Option<Timer>>,
    closed: Cell<bool>,
    me: Weak<ListenerInner>,
}

/// `LISTEN "channel"`, with the identifier quoted.
fn command(verb: &str, channel: &str) -> String {
    format!("{verb} \"{}\"", channel.replace('"', "\"\""))
}

impl PgListener {
    /// Starts connecting (without blocking). `on_notify` gets every notification on the
    /// channels listened to, from the loop.
    pub fn new(
        lp: &Loop,
        opts: ListenerOptions,
        on_notify: impl FnMut(&Notification) + 'static,
    ) -> PgListener {
        let inner = Rc::new_cyclic(|me| ListenerInner {
            lp: lp.clone(),
            opts,
            conn: RefCell::new(None),
            channels: RefCell::new(BTreeSet::new()),
            on_notify: RefCell::new(Some(Box::new(on_notify))),
            on_reconnect: RefCell::new(None),
            waiting: RefCell::new(Vec::new()),
            connects: Cell::new(0),
            backoff: RefCell::new(Backoff::new()),
            retry: RefCell::new(None),
            closed: Cell::new(false),
            me: me.clone(),
        });
        inner.connect();
        PgListener { inner }
    }

    /// Runs `f` each time the connection came back after a break and listens again: what was
    /// notified in between is lost, so an application may re-read what it watches.
    pub fn on_reconnect(&self, f: impl FnMut() + 'static) {
        *self.inner.on_reconnect.borrow_mut() = Some(Box::new(f));
    }

    /// Listens on `channel` from now on, across reconnects. `cb` runs once: `Ok` when the
    /// server confirmed the `LISTEN`; `PG_UNAVAILABLE` when no connection is up (the channel
    /// stays registered and is listened to when the connection is back); `INVALID` for an
    /// empty name or one with a NUL byte (not registered).
    pub fn listen(&self, channel: &str, cb: impl FnOnce(Result<(), PgError>) + 'static) {
        let t = &self.inner;
        let cb: ListenCb = Box::new(cb);
        if channel.is_empty() || channel.contains('\0') {
            let e = PgError::new(Error::INVALID, "a channel name is non-empty text");
            return t.lp.defer(move || cb(Err(e)));
        }
        if t.closed.get() {
            let e = PgError::new(Error::PG_UNAVAILABLE, "the listener is closed");
            return t.lp.defer(move || cb(Err(e)));
        }
        t.channels.borrow_mut().insert(channel.to_string());
        let conn = t.conn.borrow().clone();
        match conn.as_ref().map(|c| c.state()) {
            Some(State::Ready) => t.send(conn.as_ref().unwrap(), "LISTEN", channel, cb),
            Some(State::Connecting) => t.waiting.borrow_mut().push((channel.to_string(), cb)),
            _ => {
                let e = PgError::new(
                    Error::PG_UNAVAILABLE,
                    "the listening connection is down; listening when it is back",
                );
                t.lp.defer(move || cb(Err(e)));
            }
        }
    }

    /// Stops listening on `channel`. `cb` runs once (`Ok` also when nothing was listened).
    pub fn unlisten(&self, channel: &str, cb: impl FnOnce(Result<(), PgError>) + 'static) {
        let t = &self.inner;
        let cb: ListenCb = Box::new(cb);
        let known = t.channels.borrow_mut().remove(channel);
        let conn = t.conn.borrow().clone();
        match conn {
            Some(c) if known && c.state() == State::Ready => t.send(&c, "UNLISTEN", channel, cb),
            _ => t.lp.defer(move || cb(Ok(()))),
        }
    }

    /// The channels listened to (or to be, once connected).
    pub fn channels(&self) -> Vec<String> {
        self.inner.channels.borrow().iter().cloned().collect()
    }

    /// Whether the listening connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner
            .conn
            .borrow()
            .as_ref()
            .is_some_and(|c| c.state() == State::Ready)
    }

    /// Closes the connection; no notification is delivered after this returns. `listen` and
    /// `unlisten` calls not answered yet complete with `CANCELLED`.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl ListenerInner {
    fn connect(&self) {
        if self.closed.get() {
            return;
        }
        let owner: Weak<dyn ConnEvents> = self.me.clone();
        let opts = ConnOptions {
            connect_timeout: self.opts.connect_timeout,
            no_prepare: true,
        };
        let c = Conn::start(&self.lp, 0, &self.opts.conninfo, opts, owner);
        let old = self.conn.borrow_mut().replace(c);
        drop(old);
    }

    fn send(&self, conn: &Conn, verb: &str, channel: &str, cb: ListenCb) {
        let q = Query {
            steps: vec![Step {
                stmt: Rc::new(Statement::Sql(command(verb, channel))),
                params: Vec::new(),
            }],
            done: Done::One(Box::new(move |r| cb(r.map(|_| ())))),
            deadline: None,
            binary: false,
        };
        if let Err(q) = conn.send(q) {
            let e = PgError::new(Error::PG_CONNECTION, "the connection broke");
            self.lp.defer(move || q.fail(e));
        }
    }

    fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.on_notify.borrow_mut().take();
        self.on_reconnect.borrow_mut().take();
        self.retry.borrow_mut().take();
        let c = self.conn.borrow_mut().take();
        if let Some(c) = c {
            // From the loop, like the pool: answers in flight never run inside this call.
            self.lp
                .defer(move || c.fail_with(Error::CANCELLED, "the listener was closed"));
        }
        self.fail_waiting(Error::CANCELLED, "the listener was closed");
    }

    fn fail_waiting(&self, code: Error, why: &str) {
        let waiting: Vec<(String, ListenCb)> = self.waiting.borrow_mut().drain(..).collect();
        for (_, cb) in waiting {
            let e = PgError::new(code, why);
            self.lp.defer(move || cb(Err(e)));
        }
    }
}

impl ConnEvents for ListenerInner {
    fn ready(&self, _id: usize) {
        self.backoff.borrow_mut().reset();
        let Some(conn) = self.conn.borrow().clone() else {
            return;
        };
        let n = self.connects.get();
        self.connects.set(n + 1);
        let mut waiting: Vec<(String, ListenCb)> = self.waiting.borrow_mut().drain(..).collect();
        let channels: Vec<String> = self.channels.borrow().iter().cloned().collect();
        // Every channel again; the last answer tells a reconnect's listeners.
        let count = channels.len();
        for (i, ch) in channels.into_iter().enumerate() {
            let cbs: Vec<ListenCb> = {
                let (mine, rest): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|(c, _)| *c == ch);
                waiting = rest;
                mine.into_iter().map(|(_, cb)| cb).collect()
            };
            let weak = self.me.clone();
            let last = i + 1 == count && n > 0;
            self.send(
                &conn,
                "LISTEN",
                &ch,
                Box::new(move |r| {
                    for cb in cbs {
                        cb(r.clone());
                    }
                    if last {
                        if let Some(l) = weak.upgrade() {
                            l.reconnected();
                        }
                    }
                }),
            );
        }
        if count == 0 && n > 0 {
            self.reconnected();
        }
        // Waiting for channels unlistened meanwhile: nothing to do.
        for (_, cb) in waiting {
            self.lp.defer(move || cb(Ok(())));
        }
    }

    fn capacity(&self, _id: usize) {}

    fn broken(&self, _id: usize, why: &str) {
        if self.closed.get() {
            return;
        }
        self.fail_waiting(Error::PG_UNAVAILABLE, why);
        let delay = self.backoff.borrow_mut().next_delay();
        let t = Timer::new(&self.lp);
        let weak = self.me.clone();
        t.start(delay, None, move || {
            if let Some(l) = weak.upgrade() {
                let old = l.retry.borrow_mut().take();
                l.connect();
                drop(old);
            }
        });
        let old = self.retry.borrow_mut().replace(t);
        drop(old);
    }

    fn notification(&self, _id: usize, n: Notification) {
        let cb = self.on_notify.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb(&n);
            let mut slot = self.on_notify.borrow_mut();
            if slot.is_none() && !self.closed.get() {
                *slot = Some(cb);
            }
        }
    }
}

impl ListenerInner {
    fn reconnected(&self) {
        let cb = self.on_reconnect.borrow_mut().take();
        if let Some(mut cb) = cb {
            cb();
            let mut slot = self.on_reconnect.borrow_mut();
            if slot.is_none() && !self.closed.get() {
                *slot = Some(cb);
            }
        }
    }
}

impl Drop for ListenerInner {
    fn drop(&mut self) {
        self.close();
    }
}
