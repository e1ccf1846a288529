//! Host names resolved off the loop: `getaddrinfo` blocks, so it runs on a helper thread and
//! the answer comes back as a job on the loop's thread.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::reactor::Loop;

/// Resolves `host` on a helper thread, then runs `then` on the loop's thread with one address
/// for `port` (IPv4 first: "localhost" servers often listen on 127.0.0.1 only), or `None` when
/// the name does not resolve. If the loop is gone by then, `then` is leaked, never run or
/// dropped off its thread.
pub(crate) fn resolve_off_loop(
    lp: &Loop,
    host: String,
    port: u16,
    then: impl FnOnce(Option<SocketAddr>) + 'static,
) {
    struct OnLoop<F>(F);
    // SAFETY: the value is moved to the helper thread untouched and moved back inside a job
    // that runs on the loop's thread; if the loop is gone the job is leaked, never dropped on
    // the helper thread.
    unsafe impl<F> Send for OnLoop<F> {}
    let back = OnLoop(then);
    let remote = lp.remote();
    std::thread::spawn(move || {
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied();
        let job = Box::new(move || {
            let back = back; // captures the Send wrapper whole, not its field
            (back.0)(addr)
        });
        if let Err((_, job)) = remote.post(job) {
            std::mem::forget(job);
        }
    });
}
