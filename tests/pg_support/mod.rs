//! Shared by the PostgreSQL tests: throwaway clusters (scripts/pg.sh), standbys, PgBouncer
//! (scripts/pgbouncer.sh), psql, and running a loop until a condition holds.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use asyncloop::reactor::{Loop, RunMode, Timer};

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn scratch(kind: &str) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::env::temp_dir().join(format!(
        "asyncloop-{kind}-{}-{n}-{nanos}",
        std::process::id()
    ))
}

fn run_script(name: &str, args: &[&Path]) -> String {
    let out = Command::new(script(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn bindir() -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn as_owner(program: &str) -> Command {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

/// A cluster started for one test and removed when it ends.
pub struct Cluster {
    pub dir: PathBuf,
    pub url: String,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = scratch("pg");
        let url = run_script("pg.sh", &[Path::new("start"), &dir]);
        Cluster { dir, url }
    }

    /// A streaming replica of `primary` (pg_basebackup -R), streaming when this returns.
    pub fn standby_of(primary: &Cluster) -> Cluster {
        let dir = scratch("standby");
        let url = run_script("pg.sh", &[Path::new("standby"), &dir, &primary.dir]);
        Cluster { dir, url }
    }

    pub fn port(&self) -> u16 {
        std::fs::read_to_string(self.dir.join("port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// `pg_ctl stop` (fast) or `start` again on the same port.
    pub fn pg_ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
            self.port(),
            self.dir.display()
        );
        let mut cmd = as_owner(&format!("{}/pg_ctl", bindir()));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-m", "fast", "-l"])
            .arg(self.dir.join("server.log"));
        if action == "start" {
            cmd.args(["-o", &opts]);
        }
        let out = cmd.arg(action).output().unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Promotes a standby to a primary (waits until it is).
    pub fn promote(&self) {
        run_script("pg.sh", &[Path::new("promote"), &self.dir]);
    }

    /// Runs `sql` with psql; returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script("pg.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Runs `sql` through psql against `url`.
pub fn psql(url: &str, sql: &str) -> String {
    let out = as_owner(&format!("{}/psql", bindir()))
        .args(["-qAt", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A PgBouncer in front of a cluster (transaction pooling; a session-mode alias too).
pub struct Bouncer {
    pub dir: PathBuf,
    /// Transaction pooling.
    pub url: String,
    /// Session pooling, for LISTEN.
    pub session_url: String,
}

impl Bouncer {
    pub fn start(of: &Cluster) -> Bouncer {
        let dir = scratch("pgbouncer");
        let url = run_script("pgbouncer.sh", &[Path::new("start"), &dir, &of.dir]);
        let session_url = run_script("pgbouncer.sh", &[Path::new("session-url"), &dir]);
        Bouncer {
            dir,
            url,
            session_url,
        }
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = Command::new(script("pgbouncer.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Runs the loop until `done()` holds; panics after `limit`.
pub fn run_until(lp: &Loop, limit: Duration, done: impl Fn() -> bool + 'static) {
    let t = Timer::new(lp);
    let lp2 = lp.clone();
    let deadline = Instant::now() + limit;
    let timed_out = std::rc::Rc::new(std::cell::Cell::new(false));
    let to = timed_out.clone();
    t.start(
        Duration::from_millis(2),
        Some(Duration::from_millis(2)),
        move || {
            if done() {
                lp2.stop();
            } else if Instant::now() > deadline {
                to.set(true);
                lp2.stop();
            }
        },
    );
    lp.run(RunMode::Default).unwrap();
    t.stop();
    assert!(!timed_out.get(), "timed out after {limit:?}");
}

/// Runs the loop for `d`.
pub fn run_for(lp: &Loop, d: Duration) {
    let t = Timer::new(lp);
    let lp2 = lp.clone();
    t.start(d, None, move || lp2.stop());
    lp.run(RunMode::Default).unwrap();
}
