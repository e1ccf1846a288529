//! PostgreSQL over TLS (libpq's own TLS) on both backends, against a throwaway cluster
//! (scripts/pg.sh) switched to `ssl=on` with a certificate the test makes (openssl command
//! line): the non-blocking connect with `sslmode=require` and `verify-full` (by address and by
//! host name), pipelined queries, a CA that does not match, and reconnects after every
//! backend was terminated.

#[path = "common_backends.rs"]
mod common;
#[path = "common_tls.rs"]
mod common_tls;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use asyncloop::error::Error;
use asyncloop::pg::{PgError, PgPool, PgResult, PoolOptions};
use asyncloop::reactor::{Backend, Loop, RunMode, Timer};
use common_tls::certs;

/// A cluster for one test, serving TLS beside plain connections.
struct Cluster {
    dir: PathBuf,
    port: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh")
}

impl Cluster {
    fn start(b: Backend) -> Cluster {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("asyncloop-pgtls-{}-{nanos}", std::process::id()));
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
        let port = std::fs::read_to_string(dir.join("port"))
            .unwrap()
            .trim()
            .to_string();
        let c = Cluster { dir, port };
        // The server's certificate and key in its data directory, readable by it only.
        let data = c.dir.join("data");
        for (from, to) in [("server.pem", "server.crt"), ("server.key", "server.key")] {
            std::fs::copy(certs().path(from), data.join(to)).unwrap();
            let p = data.join(to);
            assert!(Command::new("chmod")
                .arg("600")
                .arg(&p)
                .status()
                .unwrap()
                .success());
            // SAFETY: getuid has no preconditions.
            if unsafe { libc::getuid() } == 0 {
                assert!(Command::new("chown")
                    .arg("postgres:")
                    .arg(&p)
                    .status()
                    .unwrap()
                    .success());
            }
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).unwrap();
        // Reload through a plain connection: new connections may then use TLS.
        let lp = common::new_loop(b);
        let p = c.pool(&lp, "sslmode=disable", 1);
        let r = one(&lp, &p, "SELECT pg_reload_conf()");
        assert_eq!(r.unwrap()[0][0].as_deref(), Some("t"));
        p.close();
        // The reload is asynchronous in the postmaster: wait until TLS is on.
        let t0 = Instant::now();
        loop {
            let p = c.pool(&lp, "sslmode=require", 1);
            let ok = one(&lp, &p, "SELECT 1").is_ok();
            p.close();
            if ok {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the server never turned TLS on"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgresql://postgres@{host}:{}/asyncloop?{params}",
            self.port
        )
    }

    fn pool(&self, lp: &Loop, params: &str, size: usize) -> PgPool {
        self.pool_at(lp, "127.0.0.1", params, size)
    }

    fn pool_at(&self, lp: &Loop, host: &str, params: &str, size: usize) -> PgPool {
        PgPool::new(
            lp,
            PoolOptions {
                conninfo: self.url(host, params),
                size,
                query_timeout: Some(Duration::from_secs(20)),
                ..Default::default()
            },
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

type Rows = Vec<Vec<Option<String>>>;

fn rows(r: &PgResult) -> Rows {
    (0..r.rows())
        .map(|i| {
            (0..r.columns())
                .map(|j| {
                    r.value(i, j)
                        .map(|b| String::from_utf8(b.to_vec()).unwrap())
                })
                .collect()
        })
        .collect()
}

/// Runs the loop until `done()` or `limit`.
fn run_until(lp: &Loop, done: impl Fn() -> bool + 'static, limit: Duration) {
    let t = Timer::new(lp);
    let (lp2, deadline) = (lp.clone(), Instant::now() + limit);
    t.start(
        Duration::from_millis(5),
        Some(Duration::from_millis(5)),
        move || {
            if done() || Instant::now() > deadline {
                lp2.stop();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
}

fn one(lp: &Loop, p: &PgPool, sql: &str) -> Result<Rows, PgError> {
    let got: Rc<RefCell<Option<Result<Rows, PgError>>>> = Rc::default();
    let g = got.clone();
    p.query(sql, &[], move |r| {
        *g.borrow_mut() = Some(r.map(|r| rows(&r)))
    });
    let g = got.clone();
    run_until(lp, move || g.borrow().is_some(), Duration::from_secs(30));
    let r = got.borrow_mut().take().expect("answered");
    r
}

const SSL_OF_ME: &str = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

fn require_and_pipelined_queries(b: Backend) {
    let c = Cluster::start(b);
    let lp = common::new_loop(b);
    let p = c.pool(&lp, "sslmode=require", 2);
    let r = one(&lp, &p, SSL_OF_ME).unwrap();
    assert_eq!(r[0][0].as_deref(), Some("t"), "{r:?}");
    assert!(
        r[0][1].as_deref().unwrap_or("").starts_with("TLSv1."),
        "{r:?}"
    );
    // 2,000 queries at once: pipelined over two TLS connections.
    let done = Rc::new(Cell::new(0));
    for i in 0..2000u32 {
        let d = done.clone();
        let id = (i % 10_000 + 1).to_string();
        p.query(
            "SELECT id FROM world WHERE id = $1",
            &[Some(id.as_bytes())],
            move |r| {
                let r = r.expect("query over TLS");
                assert_eq!(r.int(0, 0), Some(i as i64 % 10_000 + 1));
                d.set(d.get() + 1);
            },
        );
    }
    let d = done.clone();
    run_until(&lp, move || d.get() == 2000, Duration::from_secs(60));
    assert_eq!(done.get(), 2000);
    assert_eq!(p.stats().connected, 2);
    p.close();
}

fn verify_full_by_address_and_name_and_a_wrong_ca(b: Backend) {
    let c = Cluster::start(b);
    let lp = common::new_loop(b);
    let ca = certs().path("ca.pem");
    let params = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    for host in ["127.0.0.1", "localhost"] {
        let p = c.pool_at(&lp, host, &params, 1);
        let r = one(&lp, &p, SSL_OF_ME).unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(r[0][0].as_deref(), Some("t"));
        p.close();
    }
    // A CA that did not sign the server's certificate: no connection, the reason in the error.
    let other = certs().path("otherca.pem");
    let p = c.pool(
        &lp,
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
        1,
    );
    let e = one(&lp, &p, "SELECT 1").unwrap_err();
    assert!(
        e.code == Error::PG_UNAVAILABLE || e.code == Error::PG_CONNECTION,
        "{e:?}"
    );
    p.close();
}

fn reconnects_after_the_backends_are_terminated(b: Backend) {
    let c = Cluster::start(b);
    let lp = common::new_loop(b);
    let p = c.pool(&lp, "sslmode=require", 2);
    assert_eq!(one(&lp, &p, SSL_OF_ME).unwrap()[0][0].as_deref(), Some("t"));
    let admin = c.pool(&lp, "sslmode=disable", 1);
    for round in 0..3 {
        let killed = one(
            &lp,
            &admin,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_ssl WHERE ssl",
        )
        .unwrap();
        assert_ne!(killed[0][0].as_deref(), Some("0"), "round {round}");
        // Queries fail while the pool notices and reconnects, then succeed over TLS again.
        let t0 = Instant::now();
        loop {
            match one(&lp, &p, SSL_OF_ME) {
                Ok(r) => {
                    assert_eq!(r[0][0].as_deref(), Some("t"));
                    break;
                }
                Err(e) => assert!(
                    matches!(e.code, Error::PG_CONNECTION | Error::PG_UNAVAILABLE),
                    "{e:?}"
                ),
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no reconnect");
        }
    }
    admin.close();
    p.close();
}

both_backends!(
    require_and_pipelined_queries,
    verify_full_by_address_and_name_and_a_wrong_ca,
    reconnects_after_the_backends_are_terminated,
);
