//! Host names resolved off the loop: `getaddrinfo` blocks, so it runs on the blocking-work
//! pool and the answer comes back as a job on the loop's thread.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::reactor::{run_blocking, Blocking, Loop};

/// Resolves `host` on the blocking-work pool, then runs `then` on the loop's thread with its addresses
/// for `port`, in the order to try them (see `connect_order`); empty when the name does not
/// resolve. If the loop is gone by then, `then` is leaked, never run or dropped off its thread.
pub(crate) fn resolve_off_loop(
    lp: &Loop,
    host: String,
    port: u16,
    then: impl FnOnce(Vec<SocketAddr>) + 'static,
) {
    resolve_all_off_loop(lp, vec![host], port, move |mut all| {
        then(all.pop().unwrap_or_default())
    });
}

/// As `resolve_off_loop`, for several names at once (one after the other on one worker):
/// `then` gets each name's addresses, in the order of `hosts`.
pub(crate) fn resolve_all_off_loop(
    lp: &Loop,
    hosts: Vec<String>,
    port: u16,
    then: impl FnOnce(Vec<Vec<SocketAddr>>) + 'static,
) {
    run_blocking(
        lp,
        Blocking::Slow,
        move || -> Vec<Vec<SocketAddr>> {
            hosts
                .iter()
                .map(|host| {
                    connect_order(
                        (host.as_str(), port)
                            .to_socket_addrs()
                            .map(|a| a.collect())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        },
        then,
    );
}

/// The resolver's answer without repeats, IPv4 addresses first (each family in the resolver's
/// order). IPv4 leads because a server on "localhost" often listens on 127.0.0.1 only, and
/// because an unroutable IPv6 address would hold the connect until its timeout; the caller
/// moves on to the next address when one fails.
pub(crate) fn connect_order(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for a in addrs
        .iter()
        .filter(|a| a.is_ipv4())
        .chain(addrs.iter().filter(|a| a.is_ipv6()))
    {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_first_each_family_in_order_without_repeats() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let given = vec![
            a("[::1]:80"),
            a("127.0.0.2:80"),
            a("[fe80::1]:80"),
            a("127.0.0.1:80"),
            a("127.0.0.2:80"),
        ];
        assert_eq!(
            connect_order(given),
            vec![
                a("127.0.0.2:80"),
                a("127.0.0.1:80"),
                a("[::1]:80"),
                a("[fe80::1]:80")
            ]
        );
    }
}
