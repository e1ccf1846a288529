//! The hosts of a conninfo, resolved off the loop. libpq resolves a host name with a blocking
//! `getaddrinfo` inside `PQconnectPoll`, which would stall every connection of the loop. So the
//! names are resolved on a helper thread first, and libpq gets `host`, `hostaddr` (and, when
//! given per host, `port`) lists with one entry per address, which it tries in turn.

use std::ffi::{c_char, CStr, CString};
use std::net::{IpAddr, SocketAddr};

use pq_sys as pq;

/// The hosts libpq would try, when at least one of them is a name it would resolve itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HostList {
    /// In conninfo order: names, IP addresses, socket folders (`/...`, `@...`) or empty.
    pub hosts: Vec<String>,
    /// `port` as given: none, one for every host, or one per host.
    pub ports: Vec<String>,
}

/// The libpq keywords that replace what the conninfo says about hosts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub host: String,
    pub hostaddr: String,
    /// Only when the conninfo gives one port per host.
    pub port: Option<String>,
}

/// Checks that libpq can parse `conninfo` (a keyword/value string or a URI); `Err` holds
/// libpq's reason ("missing \"=\" after \"x\" in connection info string").
pub fn check_conninfo(conninfo: &str) -> Result<(), String> {
    let c = CString::new(conninfo).map_err(|_| "the conninfo contains a NUL byte".to_string())?;
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: c is a valid C string; err receives a malloc'd message on failure.
    let opts = unsafe { pq::PQconninfoParse(c.as_ptr(), &mut err) };
    if !opts.is_null() {
        // SAFETY: returned by PQconninfoParse, freed once.
        unsafe { pq::PQconninfoFree(opts) };
        return Ok(());
    }
    let why = if err.is_null() {
        "libpq could not parse the conninfo (out of memory?)".to_string()
    } else {
        // SAFETY: libpq's NUL-terminated message, freed right after copying it.
        let text = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .trim()
            .to_string();
        // SAFETY: libpq allocated it; PQfreemem frees it.
        unsafe { pq::PQfreemem(err.cast()) };
        text
    };
    Err(why)
}

fn needs_dns(host: &str) -> bool {
    !(host.is_empty()
        || host.starts_with('/')
        || host.starts_with('@')
        || host.parse::<IpAddr>().is_ok())
}

/// The conninfo's hosts (or `PGHOST`'s) when one of them is a name and no `hostaddr` (or
/// `PGHOSTADDR`) is given; `None` when libpq needs no DNS, or the conninfo does not parse (libpq reports that
/// itself).
pub(crate) fn hosts_to_resolve(conninfo: &str) -> Option<HostList> {
    let c = CString::new(conninfo).ok()?;
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: c is a valid C string; err receives a malloc'd message on failure.
    let opts = unsafe { pq::PQconninfoParse(c.as_ptr(), &mut err) };
    if opts.is_null() {
        if !err.is_null() {
            // SAFETY: libpq allocated it; PQfreemem frees it.
            unsafe { pq::PQfreemem(err.cast()) };
        }
        return None;
    }
    let (mut host, mut hostaddr, mut port) = (None, None, None);
    let mut o = opts;
    // SAFETY: opts is an array terminated by an entry with a NULL keyword; strings are owned by
    // it until PQconninfoFree.
    unsafe {
        while !(*o).keyword.is_null() {
            let k = CStr::from_ptr((*o).keyword).to_bytes();
            let v = (*o).val;
            if !v.is_null() {
                let v = CStr::from_ptr(v).to_string_lossy().into_owned();
                match k {
                    b"host" => host = Some(v),
                    b"hostaddr" => hostaddr = Some(v),
                    b"port" => port = Some(v),
                    _ => {}
                }
            }
            o = o.add(1);
        }
        pq::PQconninfoFree(opts);
    }
    let hostaddr = hostaddr.or_else(|| std::env::var("PGHOSTADDR").ok());
    if hostaddr.is_some_and(|a| !a.is_empty()) {
        return None; // libpq connects to the given addresses without DNS
    }
    let hosts: Vec<String> = host
        .or_else(|| std::env::var("PGHOST").ok())?
        .split(',')
        .map(str::to_string)
        .collect();
    if !hosts.iter().any(|h| needs_dns(h)) {
        return None;
    }
    let ports = port
        .or_else(|| std::env::var("PGPORT").ok())
        .filter(|p| !p.is_empty())
        .map(|p| p.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    Some(HostList { hosts, ports })
}

impl HostList {
    /// The names to resolve, in order (one entry per host that needs DNS).
    pub fn names(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| needs_dns(h))
            .cloned()
            .collect()
    }

    /// The lists for libpq, given the addresses of each of `names()`: a name becomes one
    /// entry per address, other hosts stay as they are. `None` when no host is left.
    pub fn expand(&self, addrs: &[Vec<SocketAddr>]) -> Option<Resolved> {
        let per_host_port = self.ports.len() == self.hosts.len() && self.hosts.len() > 1;
        let (mut host, mut hostaddr, mut port) = (Vec::new(), Vec::new(), Vec::new());
        let mut resolved = addrs.iter();
        for (i, h) in self.hosts.iter().enumerate() {
            let addrs_here: Vec<String> = if needs_dns(h) {
                resolved
                    .next()
                    .map(|a| a.iter().map(|a| a.ip().to_string()).collect())
                    .unwrap_or_default()
            } else if h.parse::<IpAddr>().is_ok() {
                vec![h.clone()]
            } else {
                vec![String::new()] // a socket folder: libpq needs no address for it
            };
            for a in addrs_here {
                host.push(h.clone());
                hostaddr.push(a);
                if per_host_port {
                    port.push(self.ports[i].clone());
                }
            }
        }
        if host.is_empty() {
            return None;
        }
        Some(Resolved {
            host: host.join(","),
            hostaddr: hostaddr.join(","),
            port: per_host_port.then(|| port.join(",")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_conninfo_is_refused_with_libpq_reason() {
        assert_eq!(check_conninfo("host=127.0.0.1 port=5432"), Ok(()));
        assert_eq!(
            check_conninfo("postgresql://u@h:5/db?sslmode=disable"),
            Ok(())
        );
        let why = check_conninfo("host=x nonsense").unwrap_err();
        assert!(why.contains("nonsense"), "{why}");
        assert!(check_conninfo("bogus_keyword=1")
            .unwrap_err()
            .contains("bogus_keyword"));
        assert!(check_conninfo("a\0b").is_err());
    }

    fn list(hosts: &[&str], ports: &[&str]) -> HostList {
        HostList {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ports: ports.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn hosts_that_need_dns_are_found() {
        assert_eq!(
            hosts_to_resolve("postgresql://u@db.example:5432/x"),
            Some(list(&["db.example"], &["5432"]))
        );
        assert_eq!(
            hosts_to_resolve("host=localhost port=5432"),
            Some(list(&["localhost"], &["5432"]))
        );
        assert_eq!(
            hosts_to_resolve("host=a,127.0.0.1,/tmp port=1,2,3"),
            Some(list(&["a", "127.0.0.1", "/tmp"], &["1", "2", "3"]))
        );
        assert_eq!(hosts_to_resolve("postgresql://u@127.0.0.1:5432/x"), None);
        assert_eq!(hosts_to_resolve("postgresql://u@[::1]:5432/x"), None);
        assert_eq!(hosts_to_resolve("host=/var/run/postgresql"), None);
        assert_eq!(hosts_to_resolve("host=127.0.0.1,/tmp"), None);
        assert_eq!(hosts_to_resolve("host=db hostaddr=10.0.0.1"), None);
        assert_eq!(hosts_to_resolve("not a = valid = conninfo"), None);
    }

    #[test]
    fn each_name_becomes_its_addresses() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let l = list(&["a", "127.0.0.9", "/tmp", "b"], &["1", "2", "3", "4"]);
        assert_eq!(l.names(), vec!["a", "b"]);
        let r = l.expand(&[vec![a("10.0.0.1:0"), a("[::1]:0")], vec![a("10.0.0.2:0")]]);
        assert_eq!(
            r,
            Some(Resolved {
                host: "a,a,127.0.0.9,/tmp,b".into(),
                hostaddr: "10.0.0.1,::1,127.0.0.9,,10.0.0.2".into(),
                port: Some("1,1,2,3,4".into()),
            })
        );
        // One port for all stays as the conninfo says; a name without addresses is dropped.
        let l = list(&["a", "b"], &["5432"]);
        let r = l.expand(&[vec![], vec![a("10.0.0.2:0")]]);
        assert_eq!(
            r,
            Some(Resolved {
                host: "b".into(),
                hostaddr: "10.0.0.2".into(),
                port: None,
            })
        );
        assert_eq!(list(&["a"], &[]).expand(&[vec![]]), None);
    }
}
