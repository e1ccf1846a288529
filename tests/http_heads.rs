//! Reused response heads, on both backends, seen from a raw TCP client: a response whose
//! status, headers (names, values, order, count) or body length differ from an earlier one's
//! gets its own bytes, never the earlier head's, and every `Date` the server adds is the
//! current one, also for heads it reuses seconds later.

#[path = "common_backends.rs"]
mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asyncloop::http::{HttpServer, ServerOptions};
use asyncloop::reactor::{Backend, RunMode};

type Headers = &'static [(&'static [u8], &'static [u8])];

/// The application's own `Date` (kept as given; never replaced by the current one).
const APP_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// Header sets the handler answers with, chosen by the request. Neighbours differ in one
/// thing only: a value or a name's case of the same length, one header more, the order, a
/// last value, the application's own `Date`, a shorter value.
const SETS: [Headers; 9] = [
    &[],
    &[(b"Content-Type", b"text/plain")],
    &[(b"Content-Type", b"text/xhtml")],
    &[(b"content-type", b"text/plain")],
    &[(b"Content-Type", b"text/plain"), (b"X-A", b"1")],
    &[(b"X-A", b"1"), (b"Content-Type", b"text/plain")],
    &[(b"Content-Type", b"text/plain"), (b"X-A", b"2")],
    &[
        (b"Content-Type", b"text/plain"),
        (b"Date", APP_DATE.as_bytes()),
    ],
    &[(b"Content-Type", b"text/plai")],
];

/// (status, header set, body length) of each request, in order. More distinct heads than the
/// server keeps, so earlier ones are replaced and come back.
const SEQUENCE: [(u16, usize, usize); 20] = [
    (200, 1, 1),
    (200, 1, 2),
    (404, 1, 2),
    (200, 1, 12345),
    (200, 1, 0),
    (201, 1, 3),
    (200, 2, 3),
    (200, 3, 3),
    (200, 4, 3),
    (200, 5, 3),
    (200, 6, 3),
    (200, 7, 3),
    (200, 1, 100),
    (200, 0, 5),
    (200, 8, 5),
    (404, 1, 9),
    (200, 7, 10),
    (200, 1, 99),
    (200, 6, 4),
    (200, 1, 7),
];

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        _ => unreachable!(),
    }
}

/// The response a fresh head would give, with `DATE` for the server's `Date` value.
fn expected(status: u16, set: usize, len: usize, close: bool) -> String {
    let mut s = format!(
        "HTTP/1.1 {status} {}\r\nServer: asyncloop\r\n",
        reason(status)
    );
    if !SETS[set]
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"date"))
    {
        s.push_str("Date: DATE\r\n");
    }
    for (n, v) in SETS[set] {
        s.push_str(std::str::from_utf8(n).unwrap());
        s.push_str(": ");
        s.push_str(std::str::from_utf8(v).unwrap());
        s.push_str("\r\n");
    }
    s.push_str(&format!("Content-Length: {len}\r\n"));
    if close {
        s.push_str("Connection: close\r\n");
    }
    s.push_str("\r\n");
    s.push_str(&"x".repeat(len));
    s
}

/// Seconds since the epoch of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
fn parse_date(d: &str) -> u64 {
    let b = d.as_bytes();
    assert!(
        d.len() == 29 && b[3] == b',' && d.ends_with(" GMT"),
        "{d:?}"
    );
    let num = |r: std::ops::Range<usize>| d[r].parse::<i64>().unwrap();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == &d[8..11]).expect("month") as i64 + 1;
    let (year, day) = (num(12..16), num(5..7));
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86400 + num(17..19) * 3600 + num(20..22) * 60 + num(23..25)) as u64
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends the whole sequence pipelined on a new connection (the last request with
/// `Connection: close`) and returns what came back, with the seconds before and after.
fn exchange(addr: std::net::SocketAddr) -> (String, u64, u64) {
    let mut req = String::new();
    for (i, (status, set, len)) in SEQUENCE.iter().enumerate() {
        let close = if i + 1 == SEQUENCE.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        req.push_str(&format!(
            "GET /h?{status},{set},{len} HTTP/1.1\r\nHost: x\r\n{close}\r\n"
        ));
    }
    let before = unix_now();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    (String::from_utf8(out).unwrap(), before, unix_now())
}

/// Checks `resp` against the fresh heads, each server `Date` within a second of
/// `before..=after` (the application's own left as it gave it).
fn check(resp: &str, before: u64, after: u64) {
    let mut blanked = String::new();
    let mut rest = resp;
    let mut dates = 0;
    while let Some(i) = rest.find("\r\nDate: ") {
        let date = &rest[i + 8..i + 8 + 29];
        blanked.push_str(&rest[..i + 8]);
        if date == APP_DATE {
            blanked.push_str(date);
        } else {
            let t = parse_date(date);
            assert!(
                t + 1 >= before && t <= after + 1,
                "Date {date:?} ({t}) is not of {before}..={after}"
            );
            blanked.push_str("DATE");
            dates += 1;
        }
        rest = &rest[i + 8 + 29..];
    }
    blanked.push_str(rest);
    // One response at a time (no body holds "HTTP/"), to say which one differs.
    let got: Vec<&str> = blanked.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(got.len(), SEQUENCE.len(), "{blanked}");
    for (i, &(status, set, len)) in SEQUENCE.iter().enumerate() {
        let want = expected(status, set, len, i + 1 == SEQUENCE.len());
        assert_eq!(
            format!("HTTP/1.1 {}", got[i]),
            want,
            "response {i}: {status}, set {set}, {len} bytes"
        );
    }
    let own = SEQUENCE.iter().filter(|(_, set, _)| *set == 7).count();
    assert_eq!(dates, SEQUENCE.len() - own);
}

fn heads_follow_status_headers_length_and_date(b: Backend) {
    let lp = common::new_loop(b);
    let srv = HttpServer::new(&lp, ServerOptions::default());
    srv.route(Some("GET"), "/h", |r| {
        let q: Vec<usize> = r
            .data()
            .query()
            .split(',')
            .map(|x| x.parse().unwrap())
            .collect();
        let body = vec![b'x'; q[2]];
        r.respond(q[0] as u16, SETS[q[1]], &body).unwrap();
    });
    let addr = srv.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (d2, remote) = (done.clone(), lp.remote());
    let client = std::thread::spawn(move || {
        let first = exchange(addr);
        // Heads cached in the first exchange are reused in the second, seconds later: the
        // Date in them must have moved on.
        let until = first.2 + 3;
        while unix_now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
        let second = exchange(addr);
        d2.store(true, Ordering::SeqCst);
        remote.stop();
        (first, second)
    });
    while !done.load(Ordering::SeqCst) {
        lp.run(RunMode::Once).unwrap();
    }
    let (first, second) = client.join().unwrap();
    check(&first.0, first.1, first.2);
    assert!(second.1 >= first.2 + 3);
    check(&second.0, second.1, second.2);
    let stopped = std::rc::Rc::new(std::cell::Cell::new(false));
    let s2 = stopped.clone();
    srv.shutdown(Duration::from_secs(1), move || s2.set(true))
        .expect("shutdown");
    while !stopped.get() {
        lp.run(RunMode::Once).unwrap();
    }
}

both_backends!(heads_follow_status_headers_length_and_date);
