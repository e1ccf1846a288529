//! Interactive transactions against a real throwaway cluster, on both backends: commit,
//! rollback (asked, on drop, after a failure, on timeout), a broken connection, leases counted
//! against the queue, and no lost update under concurrent increments.

#[path = "common_backends.rs"]
mod common;
mod pg_support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncloop::error::Error;
use asyncloop::pg::{Isolation, PgError, PgPool, PoolOptions, Transaction, TxnOptions};
use asyncloop::reactor::{Backend, Loop};
use pg_support::{run_until, Cluster};

fn pool(lp: &Loop, c: &Cluster, size: usize) -> PgPool {
    PgPool::new(
        lp,
        PoolOptions {
            conninfo: c.url.clone(),
            size,
            ..Default::default()
        },
    )
}

type Log = Rc<RefCell<Vec<String>>>;

fn note(log: &Log, what: &str, r: Result<String, PgError>) {
    let s = match r {
        Ok(v) => format!("{what}:{v}"),
        Err(e) => format!("{what}:{}", e.code.name().to_string_lossy()),
    };
    log.borrow_mut().push(s);
}

fn count(lp: &Loop, p: &PgPool, sql: &str) -> i64 {
    let n = Rc::new(Cell::new(None));
    let n2 = n.clone();
    p.query(sql, &[], move |r| {
        n2.set(Some(r.unwrap().int(0, 0).unwrap()))
    });
    let n3 = n.clone();
    run_until(lp, Duration::from_secs(10), move || n3.get().is_some());
    n.get().unwrap()
}

/// Commit makes the rows visible, rollback and a dropped transaction leave nothing, and every
/// lease goes back.
fn commit_rollback_and_drop(b: Backend, c: &Cluster) {
    let lp = common::new_loop(b);
    let p = pool(&lp, c, 2);
    let table = format!("t_{}", b as u8);
    c.psql(&format!("CREATE TABLE {table} (v int)"));
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let insert = format!("INSERT INTO {table} VALUES ($1)");
    // Statements queued at once, before the lease: BEGIN leaves with the first.
    let t = p.begin(TxnOptions::default());
    for v in ["1", "2"] {
        let l = log.clone();
        t.query(&insert, &[Some(v.as_bytes())], move |r| {
            note(&l, "insert", r.map(|r| r.affected_rows().to_string()))
        });
    }
    let l = log.clone();
    t.commit(move |r| note(&l, "commit", r.map(|_| "ok".into())));
    // Ended: more work is refused.
    let l = log.clone();
    t.query("SELECT 1", &[], move |r| {
        note(&l, "late", r.map(|_| String::new()))
    });
    let t2 = p.begin(TxnOptions::default());
    let l = log.clone();
    t2.query(&insert, &[Some(b"3")], move |r| {
        note(&l, "insert3", r.map(|_| "ok".into()))
    });
    let l = log.clone();
    t2.rollback(move |r| note(&l, "rollback", r.map(|_| "ok".into())));
    // Kept open after a statement, then dropped: rolled back.
    let t3 = p.begin(TxnOptions::default());
    let l = log.clone();
    t3.query(&insert, &[Some(b"4")], move |r| {
        note(&l, "insert4", r.map(|_| "ok".into()))
    });
    let l2 = log.clone();
    run_until(&lp, Duration::from_secs(10), move || l2.borrow().len() == 7);
    assert_eq!(p.stats().leased, 1, "t3 holds its connection");
    drop(t3);
    // Dropped before it got a connection: its statement never runs.
    let t4 = p.begin(TxnOptions::default());
    let l = log.clone();
    t4.query(&insert, &[Some(b"5")], move |r| {
        note(&l, "insert5", r.map(|_| "ok".into()))
    });
    drop(t4);
    let l2 = log.clone();
    run_until(&lp, Duration::from_secs(10), move || l2.borrow().len() == 8);
    let mut got = log.borrow().clone();
    got.sort();
    assert_eq!(
        got,
        [
            "commit:ok",
            "insert3:ok",
            "insert4:ok",
            "insert5:ALOOP_E_CANCELLED",
            "insert:1",
            "insert:1",
            "late:ALOOP_E_ALREADY",
            "rollback:ok"
        ]
    );
    assert_eq!(count(&lp, &p, &format!("SELECT sum(v) FROM {table}")), 3);
    assert_eq!(count(&lp, &p, &format!("SELECT count(*) FROM {table}")), 2);
    assert_eq!(p.stats().leased, 0);
    // Isolation and read-only reach the server.
    let t = p.begin(TxnOptions {
        isolation: Isolation::Serializable,
        read_only: true,
        ..Default::default()
    });
    let got = Rc::new(RefCell::new(Vec::new()));
    for sql in ["SHOW transaction_isolation", "SHOW transaction_read_only"] {
        let g = got.clone();
        t.query(sql, &[], move |r| {
            g.borrow_mut()
                .push(r.unwrap().text(0, 0).unwrap().to_string())
        });
    }
    let g = got.clone();
    t.query(&insert, &[Some(b"5")], move |r| {
        g.borrow_mut().push(r.unwrap_err().sqlstate)
    });
    let g = got.clone();
    t.commit(move |r| g.borrow_mut().push(format!("{:?}", r.map_err(|e| e.code))));
    let g2 = got.clone();
    run_until(&lp, Duration::from_secs(10), move || g2.borrow().len() == 4);
    assert_eq!(
        *got.borrow(),
        [
            "serializable",
            "on",
            "25006",
            "Err(ALOOP_E_PG_ABORTED(-10104))"
        ]
    );
    p.close();
}

/// A failed statement: COMMIT reports PG_ABORTED (PostgreSQL rolled back); a savepoint lets
/// the transaction carry on.
fn failures_inside_a_transaction(b: Backend, c: &Cluster) {
    let lp = common::new_loop(b);
    let p = pool(&lp, c, 1);
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let t = p.begin(TxnOptions::default());
    let l = log.clone();
    t.query("SELECT 1/0", &[], move |r| {
        note(&l, "div", r.map(|_| "".into()))
    });
    let l = log.clone();
    t.query("SELECT 1", &[], move |r| {
        note(&l, "after", r.map(|_| "ok".into()))
    });
    let l = log.clone();
    t.commit(move |r| note(&l, "commit", r.map(|_| "ok".into())));
    // A savepoint: the error is handled, the commit goes through.
    let t2 = p.begin(TxnOptions::default());
    for (what, sql) in [
        ("sp", "SAVEPOINT a"),
        ("div", "SELECT 1/0"),
        ("back", "ROLLBACK TO SAVEPOINT a"),
        ("val", "SELECT 42"),
    ] {
        let l = log.clone();
        t2.query(sql, &[], move |r| {
            note(&l, what, r.map(|r| r.text(0, 0).unwrap_or("-").to_string()))
        });
    }
    let l = log.clone();
    t2.commit(move |r| note(&l, "commit2", r.map(|_| "ok".into())));
    let l2 = log.clone();
    run_until(&lp, Duration::from_secs(10), move || l2.borrow().len() == 8);
    assert_eq!(
        *log.borrow(),
        [
            "div:ALOOP_E_PG_QUERY",
            "after:ALOOP_E_PG_QUERY",
            "commit:ALOOP_E_PG_ABORTED",
            "sp:-",
            "div:ALOOP_E_PG_QUERY",
            "back:-",
            "val:42",
            "commit2:ok"
        ]
    );
    // The connection is clean for the next user.
    assert_eq!(count(&lp, &p, "SELECT 7"), 7);
    assert_eq!(p.stats().leased, 0);
    p.close();
}

/// The time limit covers waiting for a lease and running: past it the running statement is
/// cancelled, the transaction rolls back, and later calls get TIMEOUT. A broken connection
/// fails the transaction with PG_CONNECTION.
fn timeouts_queue_and_broken_connection(b: Backend, c: &Cluster) {
    let lp = common::new_loop(b);
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: c.url.clone(),
            size: 1,
            max_queue: 2,
            ..Default::default()
        },
    );
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    assert_eq!(count(&lp, &p, "SELECT 1"), 1); // connected: the first lease is immediate
    let t0 = Instant::now();
    let slow = p.begin(TxnOptions {
        timeout: Some(Duration::from_millis(400)),
        ..Default::default()
    });
    let l = log.clone();
    slow.query("SELECT pg_sleep(5)", &[], move |r| {
        note(&l, "sleep", r.map(|_| "".into()))
    });
    let l = log.clone();
    slow.commit(move |r| note(&l, "commit", r.map(|_| "ok".into())));
    // Waits for the one connection, and gives up first.
    let waiting = p.begin(TxnOptions {
        timeout: Some(Duration::from_millis(150)),
        ..Default::default()
    });
    let l = log.clone();
    waiting.query("SELECT 1", &[], move |r| {
        note(&l, "waiter", r.map(|_| "".into()))
    });
    // Waits, and gets the connection once the slow one rolled back.
    let wait2 = p.begin(TxnOptions::default());
    let l = log.clone();
    wait2.query("SELECT 2", &[], move |r| {
        note(&l, "wait2", r.map(|r| r.text(0, 0).unwrap().into()))
    });
    let l = log.clone();
    wait2.commit(move |r| note(&l, "commit2", r.map(|_| "ok".into())));
    // The queue holds 2: a third waiter is refused.
    let full = p.begin(TxnOptions::default());
    let l = log.clone();
    full.query("SELECT 3", &[], move |r| {
        note(&l, "full", r.map(|_| "".into()))
    });
    let l2 = log.clone();
    run_until(&lp, Duration::from_secs(10), move || l2.borrow().len() == 6);
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let got = log.borrow().clone();
    let at = |s: &str| {
        got.iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} in {got:?}"))
    };
    assert!(at("full:ALOOP_E_PG_QUEUE_FULL") < at("waiter:ALOOP_E_TIMEOUT"));
    assert!(at("waiter:ALOOP_E_TIMEOUT") < at("sleep:ALOOP_E_TIMEOUT"));
    assert!(at("commit:ALOOP_E_TIMEOUT") < at("wait2:2"));
    assert!(at("wait2:2") < at("commit2:ok"));
    drop((slow, waiting, full, wait2));
    // A killed backend: the statement and the commit fail with PG_CONNECTION; the pool heals.
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let t = p.begin(TxnOptions::default());
    let l = log.clone();
    t.query("SELECT pg_backend_pid()", &[], move |r| {
        note(&l, "pid", r.map(|r| r.text(0, 0).unwrap().into()))
    });
    let l2 = log.clone();
    run_until(&lp, Duration::from_secs(10), move || l2.borrow().len() == 1);
    let pid = log.borrow()[0].trim_start_matches("pid:").to_string();
    c.psql(&format!("SELECT pg_terminate_backend({pid})"));
    let l = log.clone();
    t.query("SELECT 1", &[], move |r| {
        note(&l, "after-kill", r.map(|_| "".into()))
    });
    let l = log.clone();
    t.commit(move |r| note(&l, "commit", r.map(|_| "ok".into())));
    let l2 = log.clone();
    run_until(&lp, Duration::from_secs(10), move || l2.borrow().len() == 3);
    assert_eq!(
        log.borrow()[1..],
        [
            "after-kill:ALOOP_E_PG_CONNECTION",
            "commit:ALOOP_E_PG_CONNECTION"
        ]
    );
    let ok = Rc::new(Cell::new(false));
    let (p2, ok2) = (p.clone(), ok.clone());
    let retry = asyncloop::reactor::Timer::new(&lp);
    retry.start(
        Duration::from_millis(50),
        Some(Duration::from_millis(100)),
        move || {
            let ok3 = ok2.clone();
            p2.query("SELECT 1", &[], move |r| {
                if r.is_ok() {
                    ok3.set(true)
                }
            });
        },
    );
    let ok4 = ok.clone();
    run_until(&lp, Duration::from_secs(10), move || ok4.get());
    p.close();
}

/// One interactive transaction per increment (SELECT ... FOR UPDATE, then UPDATE): 200 of
/// them at once on a pool of 4 end with exactly 200, without deadlock.
fn concurrent_increments_lose_nothing(b: Backend, c: &Cluster) {
    let lp = common::new_loop(b);
    let p = pool(&lp, c, 4);
    let name = format!("c{}", b as u8);
    let done = Rc::new(Cell::new(0));
    let values = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..200 {
        let t = p.begin(TxnOptions::default());
        let t2: Transaction = t.clone();
        let (d, vals, name2) = (done.clone(), values.clone(), name.clone());
        t.query(
            "INSERT INTO counters (name, value) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
            &[Some(name.as_bytes())],
            |r| {
                r.unwrap();
            },
        );
        t.query(
            "SELECT value FROM counters WHERE name = $1 FOR UPDATE",
            &[Some(name.as_bytes())],
            move |r| {
                let v = r.unwrap().get_i64(0, 0).unwrap() + 1;
                let s = v.to_string();
                t2.query(
                    "UPDATE counters SET value = $2 WHERE name = $1",
                    &[Some(name2.as_bytes()), Some(s.as_bytes())],
                    |r| assert_eq!(r.unwrap().affected_rows(), 1),
                );
                t2.commit(move |r| {
                    r.unwrap();
                    vals.borrow_mut().push(v);
                    d.set(d.get() + 1);
                });
            },
        );
    }
    let d2 = done.clone();
    run_until(&lp, Duration::from_secs(60), move || d2.get() == 200);
    let mut v = values.borrow().clone();
    v.sort();
    assert_eq!(
        v,
        (1..=200).collect::<Vec<i64>>(),
        "every increment saw its own value"
    );
    let final_value = c.psql(&format!("SELECT value FROM counters WHERE name = '{name}'"));
    assert_eq!(final_value, "200");
    assert_eq!(p.stats().leased, 0);
    p.close();
}

fn both(f: fn(Backend, &Cluster)) {
    let c = Cluster::start();
    for b in [Backend::Uring, Backend::Epoll] {
        f(b, &c);
    }
}

#[test]
fn commit_rollback_and_drop_both_backends() {
    both(commit_rollback_and_drop);
}

#[test]
fn failures_inside_a_transaction_both_backends() {
    both(failures_inside_a_transaction);
}

#[test]
fn timeouts_queue_and_broken_connection_both_backends() {
    both(timeouts_queue_and_broken_connection);
}

#[test]
fn concurrent_increments_lose_nothing_both_backends() {
    both(concurrent_increments_lose_nothing);
}

#[test]
fn error_codes_have_names() {
    assert_eq!(Error::PG_NULL.name().to_str().unwrap(), "ALOOP_E_PG_NULL");
    assert_eq!(Error::PG_TYPE.name().to_str().unwrap(), "ALOOP_E_PG_TYPE");
}
