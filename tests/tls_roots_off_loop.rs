//! The system's CA store is read off the loop: the first `https://` request of a process that
//! has no CA of its own waits for the store on a worker thread while the loop runs on. Its own
//! test binary, because the store is read once per process: `SSL_CERT_FILE` here is a FIFO
//! that gives the file only when the test writes it, so a read on the loop's thread would
//! stop every timer until then.

#[path = "common_backends.rs"]
#[allow(unused_macros)]
mod common;
#[path = "common_tls.rs"]
mod common_tls;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use asyncloop::error::Error;
use asyncloop::http::client::{ClientOptions, ClientRequest, HttpClient};
use asyncloop::reactor::{Backend, RunMode, Timer};

#[test]
fn the_first_https_request_reads_the_system_roots_on_a_worker() {
    let dir = std::env::temp_dir().join(format!("aloop-roots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("ca.pem");
    let _ = std::fs::remove_file(&fifo);
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the file.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    // The test CA, made (by openssl) before the variable points at the FIFO.
    let pem = common_tls::certs().read("ca.pem");
    // Set before anything in this process reads the store (this binary's only test).
    std::env::set_var("SSL_CERT_FILE", &fifo);
    std::env::remove_var("SSL_CERT_DIR");

    let lp = common::new_loop(Backend::Epoll);
    let ticks = Rc::new(Cell::new(0u32));
    let ticks_when_written = Rc::new(Cell::new(None::<u32>));
    let result = Rc::new(RefCell::new(None));

    // The store arrives 300 ms from now, from another thread (opening a FIFO for writing waits
    // for its reader, so the writer also waits for whoever reads the store).
    let written = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = written.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        w.store(true, std::sync::atomic::Ordering::SeqCst);
        std::fs::write(&fifo, pem).unwrap();
    });

    let tick = Rc::new(Timer::new(&lp));
    let (t, tw, wr) = (ticks.clone(), ticks_when_written.clone(), written.clone());
    tick.start(
        Duration::from_millis(20),
        Some(Duration::from_millis(20)),
        move || {
            t.set(t.get() + 1);
            if wr.load(std::sync::atomic::Ordering::SeqCst) && tw.get().is_none() {
                tw.set(Some(t.get()));
            }
        },
    );

    let client = HttpClient::new(&lp, ClientOptions::default());
    // Port 1 on loopback refuses: the request fails at connect, after the roots are read.
    let req = ClientRequest::new("GET", "https://127.0.0.1:1/").unwrap();
    let (r, tk, lp2) = (result.clone(), tick.clone(), lp.clone());
    client.request(req, move |res| {
        *r.borrow_mut() = Some(res.map(|_| ()));
        tk.stop();
        lp2.stop();
    });
    lp.run(RunMode::Default).unwrap();
    writer.join().unwrap();

    let got = result.borrow_mut().take().expect("the request finished");
    assert!(
        got.is_err() && got != Err(Error::TLS_CONFIG),
        "the roots were read and the connect refused: {got:?}"
    );
    let before = ticks_when_written.get().unwrap_or(ticks.get());
    assert!(
        before >= 5,
        "the loop's 20 ms timer ran {before} times in the 300 ms the store took: the loop waited for it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
