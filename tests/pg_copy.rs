//! COPY against a real throwaway cluster, on both backends: 100,000 rows in through
//! `COPY FROM STDIN` with backpressure, out through `COPY TO STDOUT` paused and resumed,
//! cancelled midway, inside a transaction, and refused statements; the connection works after
//! each.

#[path = "common_backends.rs"]
mod common;
mod pg_support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use asyncloop::error::Error;
use asyncloop::pg::{CopyIn, Flow, PgPool, PoolOptions, TxnOptions};
use asyncloop::reactor::{Backend, Timer};
use pg_support::{run_for, run_until, Cluster};

const ROWS: u64 = 100_000;

fn copy_in_then_out(b: Backend, c: &Cluster) {
    let lp = common::new_loop(b);
    let p = PgPool::new(
        &lp,
        PoolOptions {
            conninfo: c.url.clone(),
            size: 2,
            ..Default::default()
        },
    );
    let table = format!("bulk_{b:?}").to_lowercase();
    c.psql(&format!("CREATE TABLE {table} (id int, label text)"));
    // The server stops reading for half a second at the first row: the socket fills.
    c.psql(&format!(
        "CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.id = 0 THEN PERFORM pg_sleep(0.5); END IF; RETURN NEW; END $$; \
         CREATE TRIGGER slow BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_slow()"
    ));
    // In: rows written until the socket is full, then again on the next ready call.
    let next = Rc::new(Cell::new(0u64));
    let full_times = Rc::new(Cell::new(0u32));
    let done = Rc::new(RefCell::new(None));
    let (n, f, d) = (next.clone(), full_times.clone(), done.clone());
    p.copy_in(
        &format!("COPY {table} (id, label) FROM STDIN"),
        move |cp: &CopyIn| loop {
            let i = n.get();
            if i == ROWS {
                cp.finish();
                return;
            }
            // 100 rows per write.
            let mut chunk = String::new();
            for k in i..(i + 100).min(ROWS) {
                chunk.push_str(&format!("{k}\trow {k:0>190}\n"));
            }
            n.set((i + 100).min(ROWS));
            match cp.write(chunk.as_bytes()) {
                Ok(true) => {}
                Ok(false) => {
                    f.set(f.get() + 1);
                    return; // called again once drained
                }
                Err(e) => panic!("write: {e:?}"),
            }
        },
        move |r| *d.borrow_mut() = Some(r),
    );
    let d2 = done.clone();
    run_until(&lp, Duration::from_secs(60), move || d2.borrow().is_some());
    assert_eq!(done.borrow_mut().take().unwrap().unwrap(), ROWS);
    assert!(full_times.get() > 0, "the socket filled at least once");
    assert_eq!(
        c.psql(&format!("SELECT count(*) FROM {table}")),
        ROWS.to_string()
    );

    // Out: paused for 300 ms after the first row; rows add up; the pool works meanwhile.
    let bytes = Rc::new(Cell::new(0usize));
    let lines = Rc::new(Cell::new(0u64));
    let paused = Rc::new(Cell::new(false));
    let handle: Rc<RefCell<Option<asyncloop::pg::CopyOut>>> = Rc::new(RefCell::new(None));
    let (by, li, pa, h) = (bytes.clone(), lines.clone(), paused.clone(), handle.clone());
    let lp2 = lp.clone();
    let resume_timer = Rc::new(Timer::new(&lp));
    let rt = resume_timer.clone();
    let out = p.copy_out(
        &format!("COPY (SELECT id, label FROM {table} ORDER BY id) TO STDOUT (FORMAT csv)"),
        move |chunk| {
            by.set(by.get() + chunk.len());
            li.set(li.get() + chunk.iter().filter(|&&c| c == b'\n').count() as u64);
            if li.get() == 1 {
                pa.set(true);
                let (h, pa) = (h.clone(), pa.clone());
                rt.start(Duration::from_millis(300), None, move || {
                    pa.set(false);
                    h.borrow().as_ref().unwrap().resume();
                });
                let _ = &lp2;
                return Flow::Pause;
            }
            assert!(!pa.get(), "no data while paused");
            Flow::Continue
        },
        {
            let d = done.clone();
            move |r| *d.borrow_mut() = Some(r)
        },
    );
    *handle.borrow_mut() = Some(out);
    // While paused: one row arrived, and the other connection still answers.
    let p1 = paused.clone();
    run_until(&lp, Duration::from_secs(10), move || p1.get());
    let other = Rc::new(Cell::new(None));
    let o2 = other.clone();
    p.query("SELECT 5", &[], move |r| o2.set(r.unwrap().int(0, 0)));
    let o3 = other.clone();
    run_until(&lp, Duration::from_secs(10), move || o3.get().is_some());
    assert_eq!(lines.get(), 1, "nothing delivered while paused");
    let d2 = done.clone();
    run_until(&lp, Duration::from_secs(60), move || d2.borrow().is_some());
    assert_eq!(done.borrow_mut().take().unwrap().unwrap(), ROWS);
    assert_eq!(lines.get(), ROWS);
    assert!(bytes.get() > 19_000_000, "{}", bytes.get());

    // Cancelled midway: ends with CANCELLED; the connection is fine afterwards.
    let lines = Rc::new(Cell::new(0u64));
    let handle: Rc<RefCell<Option<asyncloop::pg::CopyOut>>> = Rc::new(RefCell::new(None));
    let (li, h) = (lines.clone(), handle.clone());
    let out = p.copy_out(
        &format!("COPY {table} TO STDOUT"),
        move |_| {
            li.set(li.get() + 1);
            if li.get() == 1000 {
                h.borrow().as_ref().unwrap().cancel();
            }
            Flow::Continue
        },
        {
            let d = done.clone();
            move |r| *d.borrow_mut() = Some(r)
        },
    );
    *handle.borrow_mut() = Some(out);
    let d2 = done.clone();
    run_until(&lp, Duration::from_secs(30), move || d2.borrow().is_some());
    let e = done.borrow_mut().take().unwrap().unwrap_err();
    assert_eq!(e.code, Error::CANCELLED, "{e}");
    assert_eq!(lines.get(), 1000, "nothing delivered after the cancel");

    // In a transaction rolled back: nothing stored. A statement after the COPY waits for it.
    let t = p.begin(TxnOptions::default());
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    t.copy_in(
        &format!("COPY {table} FROM STDIN"),
        |cp| {
            cp.write(b"-1\tin a transaction\n").unwrap();
            cp.finish();
        },
        move |r| {
            l.borrow_mut()
                .push(format!("copy:{:?}", r.map_err(|e| e.code)))
        },
    );
    let l = log.clone();
    t.query(
        &format!("SELECT count(*) FROM {table} WHERE id = -1"),
        &[],
        move |r| {
            l.borrow_mut()
                .push(format!("seen:{}", r.unwrap().int(0, 0).unwrap()))
        },
    );
    let l = log.clone();
    t.rollback(move |r| {
        l.borrow_mut()
            .push(format!("rollback:{:?}", r.map_err(|e| e.code)))
    });
    let l2 = log.clone();
    run_until(&lp, Duration::from_secs(10), move || l2.borrow().len() == 3);
    assert_eq!(*log.borrow(), ["copy:Ok(1)", "seen:1", "rollback:Ok(())"]);
    assert_eq!(
        c.psql(&format!("SELECT count(*) FROM {table} WHERE id = -1")),
        "0"
    );

    // Refused: bad data (PG_QUERY with the server's message), a statement that is no COPY
    // (INVALID), an aborted COPY IN (CANCELLED); the pool answers after each.
    let codes = Rc::new(RefCell::new(Vec::new()));
    let cs = codes.clone();
    p.copy_in(
        &format!("COPY {table} FROM STDIN"),
        |cp| {
            cp.write(b"not a number\tx\n").unwrap();
            cp.finish();
        },
        move |r| cs.borrow_mut().push(r.map_err(|e| (e.code, e.sqlstate))),
    );
    let cs = codes.clone();
    p.copy_out(
        "SELECT 1",
        |_| Flow::Continue,
        move |r| cs.borrow_mut().push(r.map_err(|e| (e.code, e.sqlstate))),
    );
    let cs = codes.clone();
    p.copy_in(
        &format!("COPY {table} FROM STDIN"),
        |cp| {
            cp.write(b"1\tx\n").unwrap();
            cp.abort();
        },
        move |r| cs.borrow_mut().push(r.map_err(|e| (e.code, e.sqlstate))),
    );
    let c2 = codes.clone();
    run_until(&lp, Duration::from_secs(10), move || c2.borrow().len() == 3);
    let mut got: Vec<(i32, String)> = codes
        .borrow()
        .iter()
        .map(|r| {
            r.clone()
                .map(|_| (0, String::new()))
                .unwrap_or_else(|(c, s)| (c.code(), s))
        })
        .collect();
    got.sort();
    let mut want = vec![
        (Error::CANCELLED.code(), String::new()),
        (Error::INVALID.code(), String::new()),
        (Error::PG_QUERY.code(), "22P02".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    // COPY sent as a plain query cannot run in pipeline mode: an error, and the pool heals.
    let r = Rc::new(RefCell::new(None));
    let r2 = r.clone();
    p.query(&format!("COPY {table} TO STDOUT"), &[], move |x| {
        *r2.borrow_mut() = Some(x.map(|_| ()).map_err(|e| e.code))
    });
    let r3 = r.clone();
    run_until(&lp, Duration::from_secs(10), move || r3.borrow().is_some());
    assert!(r.borrow().as_ref().unwrap().is_err());
    let ok = Rc::new(Cell::new(false));
    let (p2, ok2) = (p.clone(), ok.clone());
    let retry = Timer::new(&lp);
    retry.start(
        Duration::from_millis(20),
        Some(Duration::from_millis(100)),
        move || {
            let ok3 = ok2.clone();
            p2.query("SELECT 1", &[], move |r| ok3.set(ok3.get() || r.is_ok()));
        },
    );
    let ok4 = ok.clone();
    run_until(&lp, Duration::from_secs(10), move || ok4.get());
    retry.stop();
    run_for(&lp, Duration::from_millis(50));
    assert_eq!(p.stats().leased, 0);
    p.close();
}

#[test]
fn copy_in_then_out_both_backends() {
    let c = Cluster::start();
    for b in [Backend::Uring, Backend::Epoll] {
        copy_in_then_out(b, &c);
    }
}
