//! LISTEN/NOTIFY against a real throwaway cluster, on both backends: channel, payload and the
//! sender's pid arrive; LISTEN is issued again after the server restarts; UNLISTEN stops
//! delivery; what was sent while disconnected is lost.

#[path = "common_backends.rs"]
mod common;
mod pg_support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncloop::error::Error;
use asyncloop::pg::{ListenerOptions, Notification, PgListener, PgPool, PoolOptions};
use asyncloop::reactor::{Backend, Loop, Timer};
use pg_support::{psql, run_for, run_until, Cluster};

fn notify(lp: &Loop, p: &PgPool, channel: &str, payload: &str) -> i32 {
    let pid = Rc::new(Cell::new(None));
    let pid2 = pid.clone();
    p.query(
        "SELECT pg_backend_pid(), pg_notify($1, $2)",
        &[Some(channel.as_bytes()), Some(payload.as_bytes())],
        move |r| pid2.set(Some(r.unwrap().int(0, 0).unwrap() as i32)),
    );
    let pid3 = pid.clone();
    run_until(lp, Duration::from_secs(10), move || pid3.get().is_some());
    pid.get().unwrap()
}

fn listen_reconnect_unlisten(b: Backend, c: &Cluster) {
    let lp = common::new_loop(b);
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: c.url.clone(),
            size: 1,
            ..Default::default()
        },
    );
    let got: Rc<RefCell<Vec<Notification>>> = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let l = PgListener::new(
        &lp,
        ListenerOptions {
            conninfo: c.url.clone(),
            ..Default::default()
        },
        move |n| g.borrow_mut().push(n.clone()),
    );
    let reconnects = Rc::new(Cell::new(0));
    let r = reconnects.clone();
    l.on_reconnect(move || r.set(r.get() + 1));
    // Listened before the connection is up: confirmed once it is. A quoted name works too.
    let acks = Rc::new(RefCell::new(Vec::new()));
    for ch in ["jobs", "Mixed \"Case\""] {
        let a = acks.clone();
        l.listen(ch, move |r| a.borrow_mut().push(r.map_err(|e| e.code)));
    }
    let a = acks.clone();
    l.listen("", move |r| a.borrow_mut().push(r.map_err(|e| e.code)));
    let a2 = acks.clone();
    run_until(&lp, Duration::from_secs(10), move || a2.borrow().len() == 3);
    let mut codes = acks.borrow().clone();
    codes.sort_by_key(|r| r.is_ok());
    assert_eq!(codes, [Err(Error::INVALID), Ok(()), Ok(())]);
    assert!(l.is_connected());

    let t0 = Instant::now();
    let pid = notify(&lp, &p, "jobs", "first");
    let g = got.clone();
    run_until(&lp, Duration::from_secs(5), move || !g.borrow().is_empty());
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(
        got.borrow()[0],
        Notification {
            channel: "jobs".into(),
            payload: "first".into(),
            pid
        }
    );
    // From another session (psql), with an empty payload, on the quoted channel.
    psql(&c.url, "NOTIFY \"Mixed \"\"Case\"\"\"");
    let g = got.clone();
    run_until(&lp, Duration::from_secs(5), move || g.borrow().len() == 2);
    assert_eq!(got.borrow()[1].channel, "Mixed \"Case\"");
    assert_eq!(got.borrow()[1].payload, "");
    assert_ne!(got.borrow()[1].pid, pid);

    // The server restarts: the listener comes back and listens again by itself.
    c.pg_ctl("stop");
    let l2 = l.clone();
    run_until(&lp, Duration::from_secs(5), move || !l2.is_connected());
    // Listened while down: registered, answered PG_UNAVAILABLE, listened after the restart.
    let a = acks.clone();
    l.listen("later", move |r| a.borrow_mut().push(r.map_err(|e| e.code)));
    c.pg_ctl("start");
    let r = reconnects.clone();
    run_until(&lp, Duration::from_secs(15), move || r.get() == 1);
    assert_eq!(acks.borrow()[3], Err(Error::PG_UNAVAILABLE));
    assert_eq!(l.channels(), ["Mixed \"Case\"", "jobs", "later"]);
    // The pool reconnects too (it may need a try or two).
    let sent = Rc::new(Cell::new(false));
    let (p2, s2) = (p.clone(), sent.clone());
    let retry = Timer::new(&lp);
    retry.start(
        Duration::from_millis(10),
        Some(Duration::from_millis(100)),
        move || {
            let s3 = s2.clone();
            if !s3.get() {
                p2.query(
                    "SELECT pg_notify('later', 'after restart')",
                    &[],
                    move |r| {
                        if r.is_ok() {
                            s3.set(true)
                        }
                    },
                );
            }
        },
    );
    let g = got.clone();
    run_until(&lp, Duration::from_secs(15), move || g.borrow().len() == 3);
    retry.stop();
    assert_eq!(got.borrow()[2].channel, "later");
    assert_eq!(got.borrow()[2].payload, "after restart");

    // UNLISTEN: nothing more on that channel; the others still deliver.
    let a = acks.clone();
    l.unlisten("jobs", move |r| a.borrow_mut().push(r.map_err(|e| e.code)));
    let a2 = acks.clone();
    run_until(&lp, Duration::from_secs(5), move || a2.borrow().len() == 5);
    assert_eq!(acks.borrow()[4], Ok(()));
    notify(&lp, &p, "jobs", "unheard");
    notify(&lp, &p, "later", "heard");
    let g = got.clone();
    run_until(&lp, Duration::from_secs(5), move || g.borrow().len() == 4);
    run_for(&lp, Duration::from_millis(100));
    assert_eq!(got.borrow().len(), 4);
    assert_eq!(got.borrow()[3].payload, "heard");
    // Closed: no more notifications.
    l.close();
    assert!(!l.is_connected());
    notify(&lp, &p, "later", "after close");
    run_for(&lp, Duration::from_millis(100));
    assert_eq!(got.borrow().len(), 4);
    p.close();
}

#[test]
fn listen_reconnect_unlisten_both_backends() {
    let c = Cluster::start();
    for b in [Backend::Uring, Backend::Epoll] {
        listen_reconnect_unlisten(b, &c);
    }
}
