//! Opening a connection for a request: the host name resolved off the loop, each address tried in
//! turn, the TLS handshake for `https://`, or a Unix socket path.

use super::*;
use crate::reactor::{run_blocking, Blocking};

impl ClientInner {
    pub(super) fn open(&self, key: Origin, p: Rc<Pending>) {
        if key.2 && self.tls.borrow().is_none() && !TlsClientConfig::system_ready() {
            // The system's CA store is read from disk once per process: on a worker, while
            // the loop runs on; the request opens its connection once it is there.
            let me = self.me.clone();
            let work = || drop(TlsClientConfig::system());
            run_blocking(&self.lp, Blocking::Slow, work, move |()| {
                if let Some(c) = me.upgrade() {
                    c.open(key, p);
                }
            });
            return;
        }
        if key.2 {
            // Made before connecting, so a server's handshake timer runs from the connect on.
            if let Err((e, why)) = self.origin_tls(&key) {
                if let Some(o) = self.origins.borrow_mut().get_mut(&key) {
                    o.open = o.open.saturating_sub(1);
                }
                self.fail(&p, e, why);
                return;
            }
        }
        let conn = Rc::new(Conn {
            origin: key.clone(),
            stream: RefCell::new(None),
            parser: RefCell::new(ResponseParser::new(self.opts.max_body)),
            current: RefCell::new(None),
            got_bytes: Cell::new(false),
            reused: Cell::new(false),
            closed: Cell::new(false),
            idle_timer: RefCell::new(None),
            last_read: Cell::new(self.lp.now()),
            held: RefCell::new(Vec::new()),
        });
        *p.conn.borrow_mut() = Some(conn.clone());
        if let Some(path) = key.3.clone() {
            self.connect_unix(conn, &path, p);
            return;
        }
        match key.0.parse::<IpAddr>() {
            Ok(ip) => self.connect(conn, vec![SocketAddr::new(ip, key.1)], p),
            Err(_) => {
                let (client, host) = (self.me.clone(), key.0.clone());
                let host2 = host.clone();
                resolve_off_loop(&self.lp, host, key.1, move |addrs| {
                    let Some(c) = client.upgrade() else { return };
                    if addrs.is_empty() {
                        c.close_conn(&conn);
                        c.fail(&p, Error::DNS, format!("no address found for {host2}"));
                    } else {
                        c.connect(conn, addrs, p);
                    }
                });
            }
        }
    }

    /// Connects to the first of the origin's addresses that accepts, within the connect
    /// timeout.
    pub(super) fn connect(&self, conn: Rc<Conn>, addrs: Vec<SocketAddr>, p: Rc<Pending>) {
        if p.cb.borrow().is_none() || conn.closed.get() {
            self.close_conn(&conn);
            return;
        }
        let weak = Rc::downgrade(&conn);
        let adopt = move |s: &TcpStream| match weak.upgrade() {
            Some(c) if !c.closed.get() => {
                *c.stream.borrow_mut() = Some(s.clone());
                true
            }
            _ => false,
        };
        let me = self.me.clone();
        connect_first(
            &self.lp,
            addrs,
            self.opts.connect_timeout,
            adopt,
            move |r| {
                let Some(me) = me.upgrade() else { return };
                match r {
                    Ok(()) if conn.origin.2 => me.handshake(&conn, p),
                    Ok(()) => me.connected(&conn, p),
                    Err(e) => {
                        me.close_conn(&conn);
                        let e = if e == Error::TIMEOUT {
                            Error::CONNECT_TIMEOUT
                        } else {
                            e
                        };
                        let (h, port) = (&conn.origin.0, conn.origin.1);
                        me.fail(&p, e, format!("connect to {h} port {port}: {e}"));
                    }
                }
            },
        );
    }

    /// The origin's TLS configuration: the client's (or the system's roots), with a session
    /// cache of the origin's own.
    pub(super) fn origin_tls(
        &self,
        origin: &Origin,
    ) -> std::result::Result<TlsClientConfig, (Error, String)> {
        if let Some(c) = self
            .origins
            .borrow()
            .get(origin)
            .and_then(|o| o.tls.clone())
        {
            return Ok(c);
        }
        let base = match self.tls.borrow().clone() {
            Some(c) => c,
            None => TlsClientConfig::system().map_err(|e| (e.code, e.reason))?,
        };
        let cfg = base.with_own_session_cache(SESSIONS_PER_ORIGIN);
        if let Some(o) = self.origins.borrow_mut().get_mut(origin) {
            o.tls = Some(cfg.clone());
        }
        Ok(cfg)
    }

    /// Runs the TLS handshake of a new https connection, within the connect timeout.
    pub(super) fn handshake(&self, conn: &Rc<Conn>, p: Rc<Pending>) {
        let stream = conn.stream.borrow().clone();
        let Some(stream) = stream else { return };
        let cfg = match self.origin_tls(&conn.origin) {
            Ok(c) => c,
            Err((e, why)) => {
                self.close_conn(conn);
                self.fail(&p, e, why);
                return;
            }
        };
        let timer = Timer::new(&self.lp);
        let (me, weak, weak_p) = (self.me.clone(), Rc::downgrade(conn), Rc::downgrade(&p));
        let ms = self.opts.connect_timeout.as_millis();
        timer.start(self.opts.connect_timeout, None, move || {
            if let (Some(me), Some(c), Some(p)) = (me.upgrade(), weak.upgrade(), weak_p.upgrade()) {
                me.close_conn(&c);
                me.fail(
                    &p,
                    Error::CONNECT_TIMEOUT,
                    format!("TLS handshake not finished within {ms} ms"),
                );
            }
        });
        *conn.idle_timer.borrow_mut() = Some(timer);
        let (me, weak, s2, p2) = (
            self.me.clone(),
            Rc::downgrade(conn),
            stream.clone(),
            p.clone(),
        );
        let r = stream.start_tls_client(&cfg, &conn.origin.0, move |r| {
            let p = p2;
            let (Some(me), Some(c)) = (me.upgrade(), weak.upgrade()) else {
                return;
            };
            let t = c.idle_timer.borrow_mut().take();
            drop(t);
            match r {
                Ok(()) => me.connected(&c, p),
                Err(e) => {
                    let why = s2
                        .tls_failure()
                        .map(|f| f.reason)
                        .unwrap_or_else(|| e.to_string());
                    me.close_conn(&c);
                    me.fail(&p, e, why);
                }
            }
        });
        if let Err(e) = r {
            let t = conn.idle_timer.borrow_mut().take();
            drop(t);
            self.close_conn(conn);
            let host = &conn.origin.0;
            self.fail(&p, e, format!("cannot start TLS for {host:?}"));
        }
    }

    /// Connects to the Unix socket of the origin, within the connect timeout.
    pub(super) fn connect_unix(&self, conn: Rc<Conn>, path: &std::path::Path, p: Rc<Pending>) {
        let me = self.me.clone();
        let (c2, p2) = (conn.clone(), p.clone());
        let r =
            TcpStream::connect_unix(&self.lp, path, Some(self.opts.connect_timeout), move |r| {
                let Some(me) = me.upgrade() else { return };
                match r {
                    Ok(()) if c2.origin.2 => me.handshake(&c2, p2),
                    Ok(()) => me.connected(&c2, p2),
                    Err(e) => {
                        me.close_conn(&c2);
                        let e = if e == Error::TIMEOUT {
                            Error::CONNECT_TIMEOUT
                        } else {
                            e
                        };
                        let path = c2.origin.3.as_deref().unwrap_or(std::path::Path::new(""));
                        me.fail(&p2, e, format!("connect to {}: {e}", path.display()));
                    }
                }
            });
        match r {
            Ok(s) if conn.closed.get() => s.close(|| {}),
            Ok(s) => *conn.stream.borrow_mut() = Some(s),
            Err(e) => {
                self.close_conn(&conn);
                self.finish(&p, Err(e));
            }
        }
    }

    pub(super) fn connected(&self, conn: &Rc<Conn>, p: Rc<Pending>) {
        if let Err(e) = self.start_reading(conn) {
            self.close_conn(conn);
            self.finish(&p, Err(e));
            return;
        }
        self.send(conn, p);
    }
}
