//! The system's CA store is read off the loop: the first `https://` request, or the first
//! `wss://` connect, of a process that has no CA of its own waits for the store on a worker
//! thread while the loop runs on. The store is read once per process, so each client kind runs
//! in a process of its own (this binary again, with `--ignored --exact child`): there
//! `SSL_CERT_FILE` is a FIFO that gives the file only when the test writes it, 300 ms later,
//! so a read on the loop's thread would stop every timer until then.

#[path = "common_backends.rs"]
#[allow(unused_macros)]
mod common;
#[path = "common_tls.rs"]
mod common_tls;

use std::cell::{Cell, RefCell};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use asyncloop::error::{Error, Result};
use asyncloop::http::client::{ClientOptions, ClientRequest, HttpClient};
use asyncloop::http::ws::{self, CloseInfo, Message, WebSocket, WsHandler, WsOptions};
use asyncloop::reactor::{Backend, Loop, RunMode, Timer};

fn in_own_process(kind: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ALOOP_ROOTS_CLIENT", kind)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{kind}: {text}");
    assert!(
        text.contains("1 passed"),
        "{kind}: the child ran nothing: {text}"
    );
}

#[test]
fn the_first_https_request_reads_the_system_roots_on_a_worker() {
    in_own_process("http");
}

#[test]
fn the_first_wss_connect_reads_the_system_roots_on_a_worker() {
    in_own_process("ws");
}

/// Ends the loop with how a `wss://` connect ended.
struct Ended(Rc<RefCell<Option<Result<()>>>>, Loop);

impl WsHandler for Ended {
    fn on_message(&self, _ws: &WebSocket, _msg: Message<'_>) {}
    fn on_close(&self, _ws: &WebSocket, info: &CloseInfo<'_>) {
        *self.0.borrow_mut() = Some(info.status);
        self.1.stop();
    }
}

/// The child process: one client kind's first TLS connection, the store arriving late.
#[test]
#[ignore = "run by the tests above, in a process of its own"]
fn child() {
    let kind = std::env::var("ALOOP_ROOTS_CLIENT").expect("started by in_own_process");
    let dir = std::env::temp_dir().join(format!("aloop-roots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("ca.pem");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the file.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    // The test CA, made (by openssl) before the variable points at the FIFO.
    let pem = common_tls::certs().read("ca.pem");
    std::env::set_var("SSL_CERT_FILE", &fifo);
    std::env::remove_var("SSL_CERT_DIR");

    let lp = common::new_loop(Backend::Epoll);
    let ticks = Rc::new(Cell::new(0u32));
    let ticks_when_written = Rc::new(Cell::new(None::<u32>));
    let result = Rc::new(RefCell::new(None));

    // The store arrives 300 ms from now, from another thread (opening a FIFO for writing waits
    // for its reader, so the writer also waits for whoever reads the store).
    let written = Arc::new(AtomicBool::new(false));
    let w = written.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        w.store(true, Ordering::SeqCst);
        std::fs::write(&fifo, pem).unwrap();
    });

    let tick = Rc::new(Timer::new(&lp));
    let (t, tw, wr) = (ticks.clone(), ticks_when_written.clone(), written.clone());
    tick.start(
        Duration::from_millis(20),
        Some(Duration::from_millis(20)),
        move || {
            t.set(t.get() + 1);
            if wr.load(Ordering::SeqCst) && tw.get().is_none() {
                tw.set(Some(t.get()));
            }
        },
    );

    // Port 1 on loopback refuses: each client fails at connect, after the store was read.
    let client = HttpClient::new(&lp, ClientOptions::default());
    let _ws;
    if kind == "http" {
        let req = ClientRequest::new("GET", "https://127.0.0.1:1/").unwrap();
        let (r, lp2) = (result.clone(), lp.clone());
        client.request(req, move |res| {
            *r.borrow_mut() = Some(res.map(|_| ()));
            lp2.stop();
        });
    } else {
        let h = Rc::new(Ended(result.clone(), lp.clone()));
        _ws = ws::connect(&lp, "wss://127.0.0.1:1/", &WsOptions::default(), h).expect("connect");
    }
    lp.run(RunMode::Default).unwrap();
    tick.stop();
    writer.join().unwrap();

    let got = result
        .borrow_mut()
        .take()
        .expect("the connection attempt ended");
    assert!(
        got.is_err() && got != Err(Error::TLS_CONFIG),
        "{kind}: the store was read and the connect refused: {got:?}"
    );
    let before = ticks_when_written.get().unwrap_or(ticks.get());
    assert!(
        before >= 5,
        "{kind}: the loop's 20 ms timer ran {before} times in the 300 ms the store took: the loop waited for it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
