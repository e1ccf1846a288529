//! Beyond one server, against real processes on both backends: read replicas (streaming
//! standbys made with pg_basebackup -R) taking read-only work round robin and the primary
//! taking it while they are down; failover to a promoted standby through a multi-host
//! conninfo; and everything through a real PgBouncer in transaction pooling mode.

#[path = "common_backends.rs"]
mod common;
mod pg_support;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncloop::pg::{
    BatchStep, Flow, ListenerOptions, PgListener, PgPool, PoolOptions, QueryOptions, Statement,
    TxnOptions,
};
use asyncloop::reactor::{Backend, Loop, Timer};
use pg_support::{run_until, Bouncer, Cluster};

const RO: QueryOptions = QueryOptions {
    read_only: true,
    binary: false,
};

/// Which server (by port) answered each of `n` queries sent at once, and whether it was in
/// recovery (a standby).
fn who_answers(lp: &Loop, p: &PgPool, n: usize, opts: QueryOptions) -> BTreeMap<String, usize> {
    let got = Rc::new(RefCell::new(BTreeMap::new()));
    let done = Rc::new(Cell::new(0));
    for _ in 0..n {
        let (g, d) = (got.clone(), done.clone());
        p.query_with(
            "SELECT inet_server_port() || ':' || pg_is_in_recovery()",
            &[],
            opts,
            move |r| {
                let k = r.unwrap().text(0, 0).unwrap().to_string();
                *g.borrow_mut().entry(k).or_insert(0) += 1;
                d.set(d.get() + 1);
            },
        );
    }
    let d = done.clone();
    run_until(lp, Duration::from_secs(10), move || d.get() == n);
    let m = got.borrow().clone();
    m
}

fn wait_stats(lp: &Loop, p: &PgPool, primary: usize, replicas: usize) {
    let p2 = p.clone();
    run_until(lp, Duration::from_secs(15), move || {
        let s = p2.stats();
        s.connected == primary && s.replicas_connected == replicas
    });
}

fn replicas(b: Backend, primary: &Cluster, standbys: &[Cluster]) {
    let lp = common::new_loop(b);
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: primary.url.clone(),
            size: 2,
            replicas: standbys.iter().map(|s| s.url.clone()).collect(),
            replica_size: 1,
            ..Default::default()
        },
    );
    wait_stats(&lp, &p, 2, 2);
    let (pp, s1, s2) = (
        primary.port().to_string(),
        standbys[0].port().to_string(),
        standbys[1].port().to_string(),
    );
    // Read-only work: round robin over the standbys, half each.
    let reads = who_answers(&lp, &p, 20, RO);
    assert_eq!(
        reads,
        BTreeMap::from([(format!("{s1}:true"), 10), (format!("{s2}:true"), 10)]),
        "{reads:?}"
    );
    // Everything else: the primary.
    let writes = who_answers(&lp, &p, 10, QueryOptions::default());
    assert_eq!(writes, BTreeMap::from([(format!("{pp}:false"), 10)]));
    // Transactions: read-only ones on a standby, serializable or writing ones on the primary.
    let seen = Rc::new(RefCell::new(Vec::new()));
    for (i, opts) in [
        TxnOptions {
            read_only: true,
            ..Default::default()
        },
        TxnOptions {
            read_only: true,
            isolation: asyncloop::pg::Isolation::Serializable,
            ..Default::default()
        },
        TxnOptions::default(),
    ]
    .into_iter()
    .enumerate()
    {
        let t = p.begin(opts);
        let s = seen.clone();
        t.query("SELECT pg_is_in_recovery()::text", &[], move |r| {
            s.borrow_mut()
                .push((i, r.unwrap().text(0, 0).unwrap().to_string()))
        });
        t.commit(|r| r.unwrap());
    }
    let s = seen.clone();
    run_until(&lp, Duration::from_secs(10), move || s.borrow().len() == 3);
    seen.borrow_mut().sort();
    let seen: Vec<String> = seen.borrow().iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(seen, ["true", "false", "false"]);
    // A write on the primary shows on the standbys (streaming).
    let name = format!("replicated-{b:?}");
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    p.query(
        "INSERT INTO counters (name, value) VALUES ($1, 1)",
        &[Some(name.as_bytes())],
        move |r| {
            r.unwrap();
            d.set(true)
        },
    );
    let d = done.clone();
    run_until(&lp, Duration::from_secs(10), move || d.get());
    let visible = Rc::new(Cell::new(0));
    let (p2, v2, name2) = (p.clone(), visible.clone(), name.clone());
    let poll = Timer::new(&lp);
    poll.start(
        Duration::from_millis(10),
        Some(Duration::from_millis(50)),
        move || {
            let v3 = v2.clone();
            p2.query_with(
                "SELECT count(*) FROM counters WHERE name = $1",
                &[Some(name2.as_bytes())],
                RO,
                move |r| {
                    if r.unwrap().int(0, 0) == Some(1) {
                        v3.set(v3.get() + 1)
                    }
                },
            );
        },
    );
    let v = visible.clone();
    run_until(&lp, Duration::from_secs(10), move || v.get() >= 2);
    poll.stop();
    // Both standbys down: read-only work goes to the primary, without errors once the pool
    // has seen them go.
    for s in standbys {
        s.pg_ctl("stop");
    }
    wait_stats(&lp, &p, 2, 0);
    let reads = who_answers(&lp, &p, 10, RO);
    assert_eq!(reads, BTreeMap::from([(format!("{pp}:false"), 10)]));
    // One back: it takes all the read-only work again.
    standbys[1].pg_ctl("start");
    wait_stats(&lp, &p, 2, 1);
    let reads = who_answers(&lp, &p, 10, RO);
    assert_eq!(reads, BTreeMap::from([(format!("{s2}:true"), 10)]));
    standbys[0].pg_ctl("start");
    wait_stats(&lp, &p, 2, 2);
    p.close();
}

#[test]
fn read_replicas_round_robin_and_fall_back_both_backends() {
    let primary = Cluster::start();
    let standbys = [Cluster::standby_of(&primary), Cluster::standby_of(&primary)];
    for b in [Backend::Uring, Backend::Epoll] {
        replicas(b, &primary, &standbys);
    }
}

/// The primary stops, the standby is promoted: with both hosts in the conninfo and
/// `target_session_attrs=read-write`, writes succeed again within 10 s.
fn failover(b: Backend) {
    let primary = Cluster::start();
    let standby = Cluster::standby_of(&primary);
    let conninfo = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/asyncloop?sslmode=disable&target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let lp = common::new_loop(b);
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo,
            size: 2,
            connect_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    );
    let served_by = Rc::new(RefCell::new(Vec::new()));
    let write = {
        let (p, served_by) = (p.clone(), served_by.clone());
        move || {
            let s = served_by.clone();
            p.query(
                "INSERT INTO counters (name, value) VALUES ('failover', 1) \
                 ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 \
                 RETURNING inet_server_port()",
                &[],
                move |r| {
                    s.borrow_mut()
                        .push(r.map(|r| r.int(0, 0).unwrap()).map_err(|e| e.code))
                },
            );
        }
    };
    write();
    let s = served_by.clone();
    run_until(&lp, Duration::from_secs(10), move || !s.borrow().is_empty());
    assert_eq!(served_by.borrow()[0], Ok(primary.port() as i64));
    let stopped = Instant::now();
    primary.pg_ctl("stop");
    standby.promote();
    // Writes every 100 ms until one succeeds on the new primary.
    let t = Timer::new(&lp);
    t.start(
        Duration::from_millis(100),
        Some(Duration::from_millis(100)),
        write,
    );
    let s = served_by.clone();
    let port = standby.port() as i64;
    run_until(&lp, Duration::from_secs(12), move || {
        s.borrow().last() == Some(&Ok(port))
    });
    t.stop();
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(10), "writes back after {took:?}");
    p.close();
}

#[test]
fn failover_to_a_promoted_standby_uring() {
    failover(Backend::Uring);
}

#[test]
fn failover_to_a_promoted_standby_epoll() {
    failover(Backend::Epoll);
}

/// Through PgBouncer in transaction pooling mode, without named prepared statements:
/// prepared statements, batches, transactions, COPY both ways; LISTEN through its session
/// pool.
fn through_pgbouncer(b: Backend, c: &Cluster, bouncer: &Bouncer) {
    let lp = common::new_loop(b);
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: bouncer.url.clone(),
            size: 4,
            no_prepare: true,
            ..Default::default()
        },
    );
    let stmt = Rc::new(Statement::Prepared {
        name: "world".into(),
        sql: "SELECT randomnumber FROM world WHERE id = $1".into(),
    });
    let ok = Rc::new(Cell::new(0));
    for i in 1..=300 {
        let o = ok.clone();
        let id = i.to_string();
        p.execute(&stmt, &[Some(id.as_bytes())], move |r| {
            assert_eq!(r.unwrap().rows(), 1);
            o.set(o.get() + 1)
        });
    }
    let seven: [Option<&[u8]>; 1] = [Some(b"7")];
    let batch_steps: Vec<BatchStep<'_>> = (0..5).map(|_| (stmt.clone(), &seven[..])).collect();
    let o = ok.clone();
    p.batch(&batch_steps, move |outs| {
        assert!(outs.iter().all(|r| r.is_ok()));
        o.set(o.get() + 1)
    });
    let o = ok.clone();
    run_until(&lp, Duration::from_secs(20), move || o.get() == 301);
    // 100 concurrent increments, each its own transaction.
    let name = format!("bouncer-{b:?}");
    let done = Rc::new(Cell::new(0));
    for _ in 0..100 {
        let t = p.begin(TxnOptions::default());
        let (t2, d, n2) = (t.clone(), done.clone(), name.clone());
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
                let v = (r.unwrap().get_i64(0, 0).unwrap() + 1).to_string();
                t2.query(
                    "UPDATE counters SET value = $2 WHERE name = $1",
                    &[Some(n2.as_bytes()), Some(v.as_bytes())],
                    |r| {
                        r.unwrap();
                    },
                );
                t2.commit(move |r| {
                    r.unwrap();
                    d.set(d.get() + 1)
                });
            },
        );
    }
    let d = done.clone();
    run_until(&lp, Duration::from_secs(30), move || d.get() == 100);
    assert_eq!(
        c.psql(&format!("SELECT value FROM counters WHERE name = '{name}'")),
        "100"
    );
    // COPY out and in.
    let rows = Rc::new(RefCell::new(Vec::new()));
    let r = rows.clone();
    p.copy_out(
        "COPY world TO STDOUT",
        |_| Flow::Continue,
        move |x| r.borrow_mut().push(x.unwrap()),
    );
    let table = format!("bouncer_copy_{b:?}").to_lowercase();
    c.psql(&format!("CREATE TABLE {table} (v int)"));
    let r = rows.clone();
    p.copy_in(
        &format!("COPY {table} FROM STDIN"),
        |cp| {
            for i in 0..1000 {
                cp.write(format!("{i}\n").as_bytes()).unwrap();
            }
            cp.finish();
        },
        move |x| r.borrow_mut().push(x.unwrap()),
    );
    let r = rows.clone();
    run_until(&lp, Duration::from_secs(20), move || r.borrow().len() == 2);
    let mut got = rows.borrow().clone();
    got.sort();
    assert_eq!(got, [1000, 10000]);
    // LISTEN through the session-mode pool, NOTIFY through transaction pooling.
    let heard = Rc::new(RefCell::new(Vec::new()));
    let h = heard.clone();
    let l = PgListener::new(
        &lp,
        ListenerOptions {
            conninfo: bouncer.session_url.clone(),
            ..Default::default()
        },
        move |n| h.borrow_mut().push(n.payload.clone()),
    );
    let listening = Rc::new(Cell::new(false));
    let li = listening.clone();
    l.listen("bounced", move |r| {
        r.unwrap();
        li.set(true)
    });
    let li = listening.clone();
    run_until(&lp, Duration::from_secs(10), move || li.get());
    p.query("NOTIFY bounced, 'through pgbouncer'", &[], |r| {
        r.unwrap();
    });
    let h = heard.clone();
    run_until(&lp, Duration::from_secs(10), move || !h.borrow().is_empty());
    assert_eq!(*heard.borrow(), ["through pgbouncer"]);
    l.close();
    p.close();
}

#[test]
fn everything_through_pgbouncer_both_backends() {
    let c = Cluster::start();
    let bouncer = Bouncer::start(&c);
    for b in [Backend::Uring, Backend::Epoll] {
        through_pgbouncer(b, &c, &bouncer);
    }
}
