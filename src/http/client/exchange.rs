//! One request on one connection: dispatching it to an idle or a new connection, sending it,
//! reading and parsing the response (whole or streamed, with pause and resume), finishing it
//! exactly once, and returning the connection to its origin's pool.

use super::*;
impl ClientInner {
    pub(super) fn me(&self) -> Rc<ClientInner> {
        self.me.upgrade().expect("client alive")
    }

    /// Calls the request's callback once and releases what it holds.
    pub(super) fn finish(&self, p: &Rc<Pending>, r: Result<Response>) {
        let cb = p.cb.borrow_mut().take();
        if cb.is_none() && (!p.emitting.get() || p.late_done.get().is_some()) {
            return; // finished already
        }
        if let Some(id) = p.id.get() {
            self.live.borrow_mut().remove(id);
        }
        let t = p.timer.borrow_mut().take();
        drop(t);
        let key = p.req.origin();
        if let Some(o) = self.origins.borrow_mut().get_mut(&key) {
            o.queue.retain(|q| !Rc::ptr_eq(q, p));
        }
        if r.is_err() {
            // A connection in the middle of this request cannot be reused.
            let conn = p.conn.borrow_mut().take();
            if let Some(c) = conn {
                self.close_conn(&c);
            }
        }
        let detail = if r.is_err() {
            p.detail.borrow_mut().take()
        } else {
            None
        };
        match (cb, r) {
            (Some(Deliver::Whole(cb)), Err(e)) => with_error_detail(e, detail, || cb(Err(e))),
            (Some(Deliver::Whole(cb)), ok) => cb(ok),
            (Some(Deliver::Stream(mut cb)), Err(e)) => {
                with_error_detail(e, detail, || cb(ClientEvent::Done(Err(e))))
            }
            (Some(Deliver::Stream(mut cb)), Ok(_)) => cb(ClientEvent::Done(Ok(()))),
            // Its callback is running (this is a cancel from inside it): `emit` delivers the
            // end when it returns.
            (None, r) => p.late_done.set(Some(r.map(drop))),
        }
    }

    /// `finish` with an error and its reason.
    pub(super) fn fail(&self, p: &Rc<Pending>, e: Error, reason: String) {
        *p.detail.borrow_mut() = Some(reason);
        self.finish(p, Err(e));
    }

    /// Gives a streamed request's callback one event (not `Done`: see `finish`). Returns
    /// whether the request goes on (it was not cancelled from the callback).
    pub(super) fn emit(&self, p: &Rc<Pending>, ev: ClientEvent<'_>) -> bool {
        let cb = p.cb.borrow_mut().take();
        let Some(Deliver::Stream(mut cb)) = cb else {
            if let Some(other) = cb {
                *p.cb.borrow_mut() = Some(other);
            }
            return p.cb.borrow().is_some();
        };
        p.emitting.set(true);
        cb(ev);
        p.emitting.set(false);
        if let Some(r) = p.late_done.take() {
            cb(ClientEvent::Done(r)); // finished (cancelled) from inside the callback
            return false;
        }
        *p.cb.borrow_mut() = Some(Deliver::Stream(cb));
        true
    }

    /// Runs the read-timeout check while requests are pending (a stopped timer does not keep
    /// the loop alive when the client is idle).
    pub(super) fn arm_sweeper(&self) {
        if self
            .sweeper
            .borrow()
            .as_ref()
            .is_some_and(|t| t.is_active())
        {
            return;
        }
        let period =
            (self.opts.read_timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let t = self
            .sweeper
            .borrow_mut()
            .take()
            .unwrap_or_else(|| Timer::new(&self.lp));
        let weak = self.me.clone();
        t.start(period, Some(period), move || {
            if let Some(c) = weak.upgrade() {
                c.check_reads();
            }
        });
        *self.sweeper.borrow_mut() = Some(t);
    }

    pub(super) fn check_reads(&self) {
        let now = self.lp.now();
        let live: Vec<Rc<Pending>> = self
            .live
            .borrow()
            .iter()
            .filter_map(|(_, w)| w.upgrade())
            .collect();
        if live.is_empty() {
            if let Some(t) = self.sweeper.borrow().as_ref() {
                t.stop();
            }
            return;
        }
        for p in live {
            let conn = p.conn.borrow().clone();
            let silent = !p.paused.get()
                && conn.is_some_and(|c| {
                    c.current
                        .borrow()
                        .as_ref()
                        .is_some_and(|q| Rc::ptr_eq(q, &p))
                        && now.duration_since(c.last_read.get()) >= self.opts.read_timeout
                });
            if silent {
                self.finish(&p, Err(Error::READ_TIMEOUT));
            }
        }
    }

    pub(super) fn dispatch(&self, p: Rc<Pending>) {
        self.dispatch_on(p, true);
    }

    /// Sends `p` on an idle pooled connection (when `reuse_idle`), a new one, or queues it
    /// for the next connection that finishes a response.
    pub(super) fn dispatch_on(&self, p: Rc<Pending>, reuse_idle: bool) {
        if p.cb.borrow().is_none() {
            return; // cancelled or timed out already
        }
        if self.shut.get() {
            self.finish(&p, Err(Error::CANCELLED));
            return;
        }
        let key = p.req.origin();
        let idle = {
            let mut origins = self.origins.borrow_mut();
            let o = origins.entry(key.clone()).or_default();
            let idle = if reuse_idle { o.idle.pop() } else { None };
            if idle.is_none() && o.open >= self.opts.max_per_origin {
                o.queue.push_back(p);
                return;
            }
            if idle.is_none() {
                o.open += 1;
            }
            idle
        };
        match idle {
            Some(c) => {
                let t = c.idle_timer.borrow_mut().take();
                drop(t);
                c.keep_loop_alive(true);
                c.reused.set(true);
                self.send(&c, p);
            }
            None => self.open(key, p),
        }
    }

    pub(super) fn start_reading(&self, conn: &Rc<Conn>) -> Result<()> {
        let stream = conn.stream.borrow().clone();
        let Some(stream) = stream else {
            return Err(Error::CLOSED);
        };
        let (me, weak) = (self.me.clone(), Rc::downgrade(conn));
        stream.read_start(move |ev| {
            if let (Some(me), Some(c)) = (me.upgrade(), weak.upgrade()) {
                me.on_read(&c, ev);
            }
        })
    }

    /// A paused streamed request goes on: what its connection held, then reading.
    pub(super) fn resume_stream(&self, p: &Rc<Pending>) {
        if p.paused.get() || p.cb.borrow().is_none() {
            return;
        }
        let Some(conn) = p.conn.borrow().clone() else {
            return;
        };
        conn.last_read.set(self.lp.now());
        // With nothing held the parser is asked again all the same: paused by the body's last
        // bytes, it still has the end to give, and a server done sending sends nothing more.
        let held = std::mem::take(&mut *conn.held.borrow_mut());
        if !self.feed_stream(&conn, p, &held) {
            return;
        }
        let reading = conn
            .stream
            .borrow()
            .as_ref()
            .is_some_and(|s| s.is_reading());
        if !p.paused.get() && !conn.closed.get() && !reading {
            if let Err(e) = self.start_reading(&conn) {
                self.finish(p, Err(e));
            }
        }
    }

    pub(super) fn send(&self, conn: &Rc<Conn>, p: Rc<Pending>) {
        if p.cb.borrow().is_none() {
            self.release(conn);
            return;
        }
        *p.conn.borrow_mut() = Some(conn.clone());
        conn.got_bytes.set(false);
        conn.last_read.set(self.lp.now());
        conn.parser
            .borrow_mut()
            .expect(p.req.method == "HEAD", p.streaming);
        let mut out = self.lp.take_buffer();
        p.req.serialize(&mut out);
        *conn.current.borrow_mut() = Some(p.clone());
        let stream = conn.stream.borrow().clone();
        let r = stream
            .map(|s| s.write(out, None))
            .unwrap_or(Err(Error::CLOSED));
        if r.is_err() {
            self.connection_failed(conn);
        }
    }

    pub(super) fn on_read(&self, conn: &Rc<Conn>, ev: ReadEvent<'_>) {
        let current = conn.current.borrow().clone();
        let Some(p) = current else {
            // Data or EOF on an idle connection: the server closed it (or misbehaves).
            self.drop_idle(conn);
            return;
        };
        match ev {
            ReadEvent::Data(d) => {
                conn.got_bytes.set(true);
                conn.last_read.set(self.lp.now());
                if p.streaming {
                    self.feed_stream(conn, &p, d);
                    return;
                }
                let r = conn.parser.borrow_mut().feed(d);
                self.on_parsed(conn, &p, r);
            }
            ReadEvent::Eof => {
                let r = conn.parser.borrow_mut().finish();
                match r {
                    Ok(Some(resp)) => self.on_parsed(conn, &p, Ok(Some(resp))),
                    _ => self.connection_failed(conn),
                }
            }
            ReadEvent::Error(_) => self.connection_failed(conn),
        }
    }

    /// Parses and hands out a streamed response's events from `data`, until the data is used
    /// up, the consumer pauses (the rest is held) or the response ends. Returns whether the
    /// request is still going on.
    pub(super) fn feed_stream(&self, conn: &Rc<Conn>, p: &Rc<Pending>, data: &[u8]) -> bool {
        let mut off = 0;
        loop {
            if p.paused.get() {
                conn.held.borrow_mut().extend_from_slice(&data[off..]);
                if let Some(s) = conn.stream.borrow().as_ref() {
                    s.read_stop();
                }
                return true;
            }
            let step = conn.parser.borrow_mut().feed_stream(&data[off..]);
            let step = match step {
                Ok(s) => s,
                Err(e) => {
                    self.on_parsed(conn, p, Err(e));
                    return false;
                }
            };
            let at = off;
            off += step.consumed;
            let StreamStep {
                head, body, done, ..
            } = step;
            if head {
                // The whole-request timeout ends with the head: the body may take its time,
                // bounded by the read timeout.
                let t = p.timer.borrow_mut().take();
                drop(t);
                let resp = conn.parser.borrow().current().clone();
                if !self.emit(p, ClientEvent::Head(&resp)) {
                    return false;
                }
            }
            if let Some(r) = &body {
                if !self.emit(p, ClientEvent::Data(&data[at + r.start..at + r.end])) {
                    return false;
                }
            }
            if done {
                let resp = conn.parser.borrow_mut().take_done();
                self.on_parsed(conn, p, Ok(resp));
                return false;
            }
            if !head && body.is_none() {
                return true; // all of `data` parsed: wait for more
            }
        }
    }

    pub(super) fn on_parsed(
        &self,
        conn: &Rc<Conn>,
        p: &Rc<Pending>,
        r: std::result::Result<Option<Response>, ResponseError>,
    ) {
        match r {
            Ok(None) => {}
            Ok(Some(resp)) => {
                conn.current.borrow_mut().take();
                p.conn.borrow_mut().take();
                let keep = resp.keep_alive;
                self.finish(p, Ok(resp));
                if keep {
                    self.release(conn);
                } else {
                    self.close_conn(conn);
                }
            }
            Err(e) => {
                conn.current.borrow_mut().take();
                self.close_conn(conn);
                let code = if e == ResponseError::TooLarge {
                    Error::HTTP_TOO_LARGE
                } else {
                    Error::HTTP_PROTOCOL
                };
                self.finish(p, Err(code));
            }
        }
    }

    /// The connection failed under a request: a pooled connection the server had closed is
    /// retried once on a new one when nothing of the response came and the method allows it.
    pub(super) fn connection_failed(&self, conn: &Rc<Conn>) {
        let p = conn.current.borrow_mut().take();
        let stale = conn.reused.get() && !conn.got_bytes.get();
        self.close_conn(conn);
        let Some(p) = p else { return };
        p.conn.borrow_mut().take();
        if stale && p.req.idempotent() && !p.retried.get() {
            p.retried.set(true);
            // Not on another idle connection: it went idle as long ago and may be as stale.
            self.dispatch_on(p, false);
        } else {
            self.finish(&p, Err(Error::HTTP_PROTOCOL));
        }
    }

    /// Puts a connection back in its origin's pool, or gives it to the next waiting request.
    pub(super) fn release(&self, conn: &Rc<Conn>) {
        if conn.closed.get() {
            return;
        }
        if self.shut.get() {
            self.close_conn(conn);
            return;
        }
        // A streamed request that ended paused, or as it resumed, left its connection not
        // reading: the next request, or the server closing an idle one, must be heard.
        let reading = conn
            .stream
            .borrow()
            .as_ref()
            .is_some_and(|s| s.is_reading());
        if !reading && self.start_reading(conn).is_err() {
            self.close_conn(conn);
            return;
        }
        let next = {
            let mut origins = self.origins.borrow_mut();
            let o = origins.entry(conn.origin.clone()).or_default();
            o.queue.pop_front()
        };
        if let Some(p) = next {
            conn.reused.set(true);
            self.send(conn, p);
            return;
        }
        // Pooled and idle, it must not keep the loop running: neither its read (which only
        // notices the server closing it) nor its expiry.
        let t = Timer::new(&self.lp);
        t.set_keeps_loop_alive(false);
        let (me, weak) = (self.me.clone(), Rc::downgrade(conn));
        t.start(self.opts.idle_timeout, None, move || {
            if let (Some(me), Some(c)) = (me.upgrade(), weak.upgrade()) {
                me.drop_idle(&c);
            }
        });
        *conn.idle_timer.borrow_mut() = Some(t);
        conn.keep_loop_alive(false);
        self.origins
            .borrow_mut()
            .entry(conn.origin.clone())
            .or_default()
            .idle
            .push(conn.clone());
    }

    pub(super) fn drop_idle(&self, conn: &Rc<Conn>) {
        if let Some(o) = self.origins.borrow_mut().get_mut(&conn.origin) {
            o.idle.retain(|c| !Rc::ptr_eq(c, conn));
        }
        self.close_conn(conn);
    }

    /// Closes a connection and frees its place in the origin's budget (a waiting request
    /// may then open a new one).
    pub(super) fn close_conn(&self, conn: &Rc<Conn>) {
        if conn.closed.replace(true) {
            return;
        }
        let t = conn.idle_timer.borrow_mut().take();
        drop(t);
        if let Some(s) = conn.stream.borrow_mut().take() {
            s.close(|| {});
        }
        let next = {
            let mut origins = self.origins.borrow_mut();
            let Some(o) = origins.get_mut(&conn.origin) else {
                return;
            };
            o.idle.retain(|c| !Rc::ptr_eq(c, conn));
            o.open = o.open.saturating_sub(1);
            o.queue.pop_front()
        };
        if let Some(p) = next {
            let me = self.me();
            self.lp.defer(move || me.dispatch(p));
        }
    }
}
