//! The PostgreSQL pool against a real throwaway cluster (scripts/pg.sh), on both backends.

#[path = "common_backends.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncloop::error::Error;
use asyncloop::pg::{PgError, PgPool, PgResult, PoolOptions, Statement};
use asyncloop::reactor::{Backend, Loop, RunMode, Timer};

/// A cluster started for one test and removed when it ends.
struct Cluster {
    dir: PathBuf,
    url: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh")
}

impl Cluster {
    fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "asyncloop-pg-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("scripts/pg.sh");
        assert!(
            out.status.success(),
            "pg.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Cluster { dir, url }
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let bindir = Command::new("sh")
            .arg("-c")
            .arg("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1")
            .output()
            .unwrap();
        let pg_ctl = format!(
            "{}/pg_ctl",
            String::from_utf8(bindir.stdout).unwrap().trim()
        );
        let port = std::fs::read_to_string(self.dir.join("port")).unwrap();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            port.trim(),
            self.dir.display()
        );
        // SAFETY: getuid has no preconditions.
        let mut cmd = if unsafe { libc::getuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &pg_ctl]);
            c
        } else {
            Command::new(&pg_ctl)
        };
        cmd.arg("-D")
            .arg(&data)
            .args(["-w", "-m", "fast", "-l"])
            .arg(self.dir.join("server.log"));
        if action == "start" {
            cmd.args(["-o", &opts]);
        }
        assert!(
            cmd.arg(action).status().unwrap().success(),
            "pg_ctl {action}"
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

/// Established client connections to `port` on 127.0.0.1, from the kernel's socket table
/// (IPv4, this network namespace): leaked connections would show up here.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            f[3] == "01" && remote_port == Some(port)
        })
        .count()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

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

type Outcome = Result<(Vec<Vec<Option<String>>>, u64), PgError>;

fn rows(r: Result<PgResult, PgError>) -> Outcome {
    r.map(|r| {
        let v = (0..r.rows())
            .map(|i| {
                (0..r.columns())
                    .map(|j| {
                        r.value(i, j)
                            .map(|b| String::from_utf8(b.to_vec()).unwrap())
                    })
                    .collect()
            })
            .collect();
        (v, r.affected_rows())
    })
}

/// Runs the loop until `n` callbacks have been recorded (or a deadline).
fn run_until(lp: &Loop, done: &Rc<Cell<usize>>, n: usize, limit: Duration) {
    let t = Timer::new(lp);
    let (lp2, d2) = (lp.clone(), done.clone());
    let deadline = Instant::now() + limit;
    t.start(
        Duration::from_millis(5),
        Some(Duration::from_millis(5)),
        move || {
            if d2.get() >= n || Instant::now() > deadline {
                lp2.stop();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
}

fn parameters_round_trip_verbatim(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    let p = pool(&lp, &c, 2);
    let got = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(Cell::new(0));
    let values: Vec<Option<&[u8]>> = vec![
        Some(b"it's \"quoted\"; DROP TABLE world; --"),
        Some("unicode: Jörg 日本語 🎉".as_bytes()),
        None,
        Some(b""),
        Some(b"back\\slash"),
    ];
    for v in &values {
        let (g, d) = (got.clone(), done.clone());
        p.query("SELECT $1::text, $1::text IS NULL", &[*v], move |r| {
            g.borrow_mut().push(rows(r));
            d.set(d.get() + 1);
        });
    }
    run_until(&lp, &done, values.len(), Duration::from_secs(10));
    let got = got.borrow();
    assert_eq!(got.len(), values.len());
    for (v, r) in values.iter().zip(got.iter()) {
        let (rows, _) = r.as_ref().expect("query");
        let want = v.map(|b| String::from_utf8(b.to_vec()).unwrap());
        assert_eq!(rows[0][0], want);
        assert_eq!(
            rows[0][1].as_deref(),
            Some(if v.is_none() { "t" } else { "f" })
        );
    }
    // The table survived the "injection".
    let n = Rc::new(RefCell::new(None));
    let (n2, d) = (n.clone(), done.clone());
    p.query("SELECT count(*) FROM world", &[], move |r| {
        *n2.borrow_mut() = Some(rows(r).unwrap().0[0][0].clone());
        d.set(d.get() + 1);
    });
    run_until(&lp, &done, values.len() + 1, Duration::from_secs(10));
    assert_eq!(n.borrow().clone().flatten().as_deref(), Some("10000"));
    p.close();
}

fn errors_in_a_pipeline_leave_the_connection_working(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    let p = pool(&lp, &c, 1);
    let got = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(Cell::new(0));
    for sql in [
        "SELECT 1",
        "SELECT 1/0",
        "SELECT * FROM no_such_table",
        "SELECT 3",
    ] {
        let (g, d) = (got.clone(), done.clone());
        p.query(sql, &[], move |r| {
            g.borrow_mut().push(rows(r));
            d.set(d.get() + 1);
        });
    }
    run_until(&lp, &done, 4, Duration::from_secs(10));
    let got = got.borrow();
    assert_eq!(got[0].as_ref().unwrap().0[0][0].as_deref(), Some("1"));
    let e = got[1].as_ref().unwrap_err();
    assert_eq!((e.code, e.sqlstate.as_str()), (Error::PG_QUERY, "22012"));
    assert!(e.message.contains("division by zero"), "{e}");
    assert_eq!(got[2].as_ref().unwrap_err().sqlstate, "42P01");
    assert_eq!(got[3].as_ref().unwrap().0[0][0].as_deref(), Some("3"));
    assert_eq!(p.stats().connected, 1);
    p.close();
}

fn ten_thousand_queued_queries_on_a_pool_of_two(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    let p = pool(&lp, &c, 2);
    let stmt = Rc::new(Statement::Prepared {
        name: "world_by_id".into(),
        sql: "SELECT id, randomnumber FROM world WHERE id = $1".into(),
    });
    let done = Rc::new(Cell::new(0));
    let ok = Rc::new(Cell::new(0));
    for i in 0..10_000u32 {
        let id = (i % 10_000 + 1).to_string();
        let (d, o) = (done.clone(), ok.clone());
        p.execute(&stmt, &[Some(id.as_bytes())], move |r| {
            let r = r.expect("query");
            assert_eq!(r.int(0, 0), Some(i as i64 % 10_000 + 1));
            o.set(o.get() + 1);
            d.set(d.get() + 1);
        });
    }
    assert!(p.stats().queued > 0, "queries wait while connecting");
    run_until(&lp, &done, 10_000, Duration::from_secs(60));
    assert_eq!(ok.get(), 10_000);
    let s = p.stats();
    assert_eq!((s.connected, s.busy, s.queued), (2, 0, 0));
    p.close();
}

fn queue_bound_and_unavailable_database(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: c.url.clone(),
            size: 1,
            max_queue: 5,
            max_pipeline: 1,
            ..Default::default()
        },
    );
    let codes = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(Cell::new(0));
    for _ in 0..10 {
        let (cs, d) = (codes.clone(), done.clone());
        p.query("SELECT pg_sleep(0.01)", &[], move |r| {
            cs.borrow_mut().push(r.err().map(|e| e.code));
            d.set(d.get() + 1);
        });
    }
    run_until(&lp, &done, 10, Duration::from_secs(10));
    let full = codes
        .borrow()
        .iter()
        .filter(|c| **c == Some(Error::PG_QUEUE_FULL))
        .count();
    let ok = codes.borrow().iter().filter(|c| c.is_none()).count();
    assert_eq!((ok, full), (5, 5), "{:?}", codes.borrow());
    p.close();
    // A pool whose server refuses connections fails queries fast, and keeps the loop alive.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: format!("postgresql://postgres@127.0.0.1:{port}/x"),
            size: 2,
            ..Default::default()
        },
    );
    let t0 = Instant::now();
    let e = Rc::new(RefCell::new(None));
    let (e2, d) = (e.clone(), done.clone());
    dead.query("SELECT 1", &[], move |r| {
        *e2.borrow_mut() = r.err();
        d.set(d.get() + 1);
    });
    run_until(&lp, &done, 11, Duration::from_secs(10));
    let err = e.borrow().clone().expect("an error");
    assert_eq!(err.code, Error::PG_UNAVAILABLE, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    dead.close();
}

fn server_restart_and_killed_backend_recover(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    let p = pool(&lp, &c, 2);
    let done = Rc::new(Cell::new(0));
    // Warm up both connections.
    for _ in 0..4 {
        let d = done.clone();
        p.query("SELECT 1", &[], move |r| {
            r.unwrap();
            d.set(d.get() + 1)
        });
    }
    run_until(&lp, &done, 4, Duration::from_secs(10));
    // A backend killed while its query runs: that query fails, nothing hangs, the pool heals.
    let killed = Rc::new(RefCell::new(None));
    let (k, d) = (killed.clone(), done.clone());
    p.query("SELECT pg_sleep(5)", &[], move |r| {
        *k.borrow_mut() = r.err();
        d.set(d.get() + 1);
    });
    let d = done.clone();
    let p2 = p.clone();
    let killer = Timer::new(&lp);
    killer.start(Duration::from_millis(300), None, move || {
        let d = d.clone();
        p2.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(5)%'", &[], move |r| {
            r.unwrap();
            d.set(d.get() + 1);
        });
    });
    run_until(&lp, &done, 6, Duration::from_secs(10));
    assert_eq!(
        killed.borrow().as_ref().map(|e| e.code),
        Some(Error::PG_CONNECTION)
    );
    // Stop the server under load: every query completes (rows, or an error), none hangs.
    let loaded = Rc::new(Cell::new(0));
    for _ in 0..300 {
        let l = loaded.clone();
        p.query("SELECT pg_sleep(0.001)", &[], move |_| l.set(l.get() + 1));
    }
    c.pg_ctl("stop");
    let l2 = loaded.clone();
    let lp4 = lp.clone();
    let wait_all = Timer::new(&lp);
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_all.start(
        Duration::from_millis(5),
        Some(Duration::from_millis(5)),
        move || {
            if l2.get() == 300 || Instant::now() > deadline {
                lp4.stop();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
    wait_all.stop();
    assert_eq!(loaded.get(), 300, "queries hung across the stop");
    // Stopped: new queries fail fast; started again: the pool reconnects by itself.
    let t0 = Instant::now();
    let e = Rc::new(RefCell::new(None));
    let (e2, d) = (e.clone(), done.clone());
    // Let the pool notice (its connections break on their next use or read).
    let probe = Timer::new(&lp);
    let p3 = p.clone();
    probe.start(Duration::from_millis(200), None, move || {
        let (e2, d) = (e2.clone(), d.clone());
        p3.query("SELECT 1", &[], move |r| {
            *e2.borrow_mut() = r.err();
            d.set(d.get() + 1);
        });
    });
    run_until(&lp, &done, 7, Duration::from_secs(10));
    let err = e.borrow().clone().expect("fails while stopped");
    assert!(
        [Error::PG_UNAVAILABLE, Error::PG_CONNECTION].contains(&err.code),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3));
    c.pg_ctl("start");
    let t1 = Instant::now();
    let ok = Rc::new(Cell::new(false));
    let (ok2, d, p4, lp2) = (ok.clone(), done.clone(), p.clone(), lp.clone());
    let retry = Rc::new(Timer::new(&lp));
    let retry2 = retry.clone();
    retry.start(
        Duration::from_millis(100),
        Some(Duration::from_millis(200)),
        move || {
            let _ = &retry2;
            let (ok3, d) = (ok2.clone(), d.clone());
            if ok2.get() {
                lp2.stop();
                return;
            }
            p4.query("SELECT 42", &[], move |r| {
                if r.map(|r| r.int(0, 0) == Some(42)).unwrap_or(false) {
                    ok3.set(true);
                }
                d.set(d.get() + 1);
            });
        },
    );
    lp.run(RunMode::Default).unwrap();
    assert!(ok.get(), "recovered after restart");
    assert!(t1.elapsed() < Duration::from_secs(10));
    retry.stop();
    // Give the second connection time to come back too, then count sockets: exactly the pool's
    // two, nothing left from the killed and restarted ones; none after close.
    let port: u16 = std::fs::read_to_string(c.dir.join("port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let settle = Timer::new(&lp);
    let lp3 = lp.clone();
    settle.start(Duration::from_millis(6000), None, move || lp3.stop());
    lp.run(RunMode::Default).unwrap();
    assert_eq!(p.stats().connected, 2);
    assert_eq!(connections_to(port), 2);
    p.close();
    // io_uring keeps a closed socket open until the polls on it are cancelled: a few turns.
    for _ in 0..5 {
        lp.run(RunMode::NoWait).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(connections_to(port), 0);
}

fn batch_with_an_error_in_the_middle(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    let p = pool(&lp, &c, 1);
    let done = Rc::new(Cell::new(0));
    let got = Rc::new(RefCell::new(Vec::new()));
    let sql = |s: &str| Rc::new(Statement::Sql(s.to_string()));
    let (g, d) = (got.clone(), done.clone());
    let title: &[u8] = b"batch";
    p.batch(
        &[
            (
                sql("INSERT INTO books (id, title) VALUES (900, $1)"),
                &[Some(title)],
            ),
            (sql("SELECT 1/0"), &[]),
            (
                sql("INSERT INTO books (id, title) VALUES (901, 'never')"),
                &[],
            ),
            (sql("SELECT 2"), &[]),
        ],
        move |outcomes| {
            *g.borrow_mut() = outcomes
                .into_iter()
                .map(|o| {
                    o.map(|r| r.affected_rows())
                        .map_err(|e| (e.code, e.sqlstate))
                })
                .collect();
            d.set(d.get() + 1);
        },
    );
    // The connection works afterwards, and the batch left nothing behind: one transaction.
    let n = Rc::new(RefCell::new(None));
    let (n2, d) = (n.clone(), done.clone());
    p.query(
        "SELECT count(*) FROM books WHERE id >= 900",
        &[],
        move |r| {
            *n2.borrow_mut() = r.unwrap().int(0, 0);
            d.set(d.get() + 1);
        },
    );
    run_until(&lp, &done, 2, Duration::from_secs(10));
    let got = got.borrow();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0], Ok(1));
    assert_eq!(got[1], Err((Error::PG_QUERY, "22012".to_string())));
    assert_eq!(got[2].as_ref().unwrap_err().0, Error::PG_ABORTED);
    assert_eq!(got[3].as_ref().unwrap_err().0, Error::PG_ABORTED);
    assert_eq!(*n.borrow(), Some(0), "the failed batch was rolled back");
    p.close();
}

fn query_timeout_cancels_on_the_server(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: c.url.clone(),
            size: 1,
            query_timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    );
    let done = Rc::new(Cell::new(0));
    let got = Rc::new(RefCell::new(Vec::new()));
    let t0 = Instant::now();
    for sql in ["SELECT pg_sleep(10)", "SELECT 7"] {
        let (g, d) = (got.clone(), done.clone());
        p.query(sql, &[], move |r| {
            g.borrow_mut()
                .push((r.map(|r| r.int(0, 0)).map_err(|e| e.code), t0.elapsed()));
            d.set(d.get() + 1);
        });
    }
    run_until(&lp, &done, 2, Duration::from_secs(10));
    let got = got.borrow();
    assert_eq!(got[0].0, Err(Error::TIMEOUT));
    assert!(
        got[0].1 < Duration::from_secs(3),
        "cancelled promptly: {:?}",
        got[0].1
    );
    // The connection is reusable: the query behind the cancelled one ran.
    assert_eq!(got[1].0, Ok(Some(7)));
    assert_eq!(p.stats().connected, 1);
    p.close();
}

/// A cancel meant for a query that finished just before it arrived hits the next query the
/// backend runs: that query is sent again (once) and succeeds, instead of failing with
/// `query_canceled` for a request that never timed out. (On a busy machine the cancel's second
/// signal can hit the query sent again: it is sent again once more.)
fn a_stray_cancel_does_not_fail_the_next_query(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    let p = pool(&lp, &c, 1);
    let done = Rc::new(Cell::new(0));
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, d) = (got.clone(), done.clone());
    p.query("SELECT 1", &[], move |r| {
        g.borrow_mut()
            .push(r.map(|r| r.int(0, 0)).map_err(|e| (e.code, e.sqlstate)));
        d.set(d.get() + 1);
    });
    run_until(&lp, &done, 1, Duration::from_secs(10));
    let (g, d) = (got.clone(), done.clone());
    p.query("SELECT pg_sleep(0.5), 8", &[], move |r| {
        g.borrow_mut()
            .push(r.map(|r| r.int(0, 1)).map_err(|e| (e.code, e.sqlstate)));
        d.set(d.get() + 1);
    });
    // While pg_sleep runs on the server, the stray cancel arrives.
    let t = Timer::new(&lp);
    let p2 = p.clone();
    t.start(Duration::from_millis(150), None, move || {
        p2.send_stray_cancel_for_tests()
    });
    run_until(&lp, &done, 2, Duration::from_secs(10));
    let got = got.borrow();
    assert_eq!(got[1], Ok(Some(8)), "the cancelled query was sent again");
    p.close();
}

fn host_names_are_resolved_off_the_loop(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    let (host_port, port) = {
        let rest = c.url.split_once("@").unwrap().1;
        let hp = rest.split('/').next().unwrap().to_string();
        let port = hp.rsplit_once(':').unwrap().1.to_string();
        (hp, port)
    };
    let cases = [
        // One name.
        c.url.replace("127.0.0.1", "localhost"),
        // Several hosts, each with its port: a name that does not resolve is skipped, an
        // address where nothing listens is tried and refused, then the name that works.
        c.url.replace(
            &host_port,
            &format!("name.invalid:1,127.0.0.2:{port},localhost:{port}"),
        ),
    ];
    for conninfo in cases {
        let p = PgPool::new(
            &lp,
            PoolOptions {
                conninfo: conninfo.clone(),
                size: 1,
                ..Default::default()
            },
        );
        let done = Rc::new(Cell::new(0));
        let got = Rc::new(RefCell::new(None));
        let (g, d) = (got.clone(), done.clone());
        p.query("SELECT inet_server_addr()::text", &[], move |r| {
            *g.borrow_mut() = Some(
                r.map(|r| r.text(0, 0).map(str::to_string))
                    .map_err(|e| e.message),
            );
            d.set(d.get() + 1);
        });
        run_until(&lp, &done, 1, Duration::from_secs(10));
        assert_eq!(
            got.borrow_mut().take(),
            Some(Ok(Some("127.0.0.1/32".to_string()))),
            "{conninfo}"
        );
        p.close();
    }
}

fn connect_timeout_and_refused_login(b: Backend) {
    let c = Cluster::start();
    let lp = common::new_loop(b);
    // A server that accepts and never answers: the library's own connect timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: format!("postgresql://postgres@127.0.0.1:{port}/x?connect_timeout=30"),
            size: 1,
            connect_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let done = Rc::new(Cell::new(0));
    let errs = Rc::new(RefCell::new(Vec::new()));
    let t0 = Instant::now();
    let (e, d) = (errs.clone(), done.clone());
    p.query("SELECT 1", &[], move |r| {
        e.borrow_mut().push((r.err().unwrap(), t0.elapsed()));
        d.set(d.get() + 1);
    });
    // A database that refuses the login (it does not exist).
    let bad = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: c.url.replace("/asyncloop?", "/no_such_db?"),
            size: 1,
            ..Default::default()
        },
    );
    let (e, d) = (errs.clone(), done.clone());
    bad.query("SELECT 1", &[], move |r| {
        e.borrow_mut().push((r.err().unwrap(), t0.elapsed()));
        d.set(d.get() + 1);
    });
    run_until(&lp, &done, 2, Duration::from_secs(10));
    let errs = errs.borrow();
    assert_eq!(errs.len(), 2);
    for (e, at) in errs.iter() {
        assert_eq!(e.code, Error::PG_UNAVAILABLE, "{e}");
        assert!(*at < Duration::from_secs(3), "{at:?}");
    }
    assert!(errs
        .iter()
        .any(|(e, at)| e.message.contains("timed out") && *at >= Duration::from_millis(250)));
    assert!(
        errs.iter().any(|(e, _)| e.message.contains("no_such_db")),
        "{errs:?}"
    );
    p.close();
    bad.close();
    drop(silent);
}

both_backends!(
    a_stray_cancel_does_not_fail_the_next_query,
    connect_timeout_and_refused_login,
    host_names_are_resolved_off_the_loop,
    batch_with_an_error_in_the_middle,
    query_timeout_cancels_on_the_server,
    parameters_round_trip_verbatim,
    errors_in_a_pipeline_leave_the_connection_working,
    ten_thousand_queued_queries_on_a_pool_of_two,
    queue_bound_and_unavailable_database,
    server_restart_and_killed_backend_recover,
);
