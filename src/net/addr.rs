//! Socket addresses: parsing numeric IP strings and converting to and from `sockaddr`, for
//! IPv4, IPv6 and Unix stream sockets (a path, or `@name` in Linux's abstract namespace).

use std::ffi::OsStr;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The address of either end of a stream socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// An IPv4 or IPv6 address and port.
    Ip(SocketAddr),
    /// A Unix socket's path (`@name` for an abstract one; empty for an unnamed socket, as
    /// connecting clients' are).
    Unix(PathBuf),
}

impl Address {
    /// The IP address and port, for an IP socket.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Address::Ip(a) => Some(*a),
            Address::Unix(_) => None,
        }
    }

    /// The text form: the IP (no port), or the Unix socket's path.
    pub fn host_text(&self) -> String {
        match self {
            Address::Ip(a) => a.ip().to_string(),
            Address::Unix(p) => p.to_string_lossy().into_owned(),
        }
    }

    /// The port (0 for a Unix socket).
    pub fn port(&self) -> u16 {
        self.ip().map_or(0, |a| a.port())
    }
}

/// A `sockaddr_storage` with its length, ready for the kernel.
#[derive(Clone, Copy)]
pub struct SockAddr {
    pub storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
}

/// Parses a numeric IPv4 or IPv6 address (`"127.0.0.1"`, `"::1"`, `"[::1]"`, `"0.0.0.0"`) with a
/// port. Host names are not resolved here (that would block); `BAD_ADDRESS` otherwise.
pub fn parse_ip_port(host: &str, port: u16) -> Result<SocketAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = h.parse().map_err(|_| Error::BAD_ADDRESS)?;
    Ok(SocketAddr::new(ip, port))
}

impl SockAddr {
    /// The kernel form of `addr`.
    pub fn from_std(addr: &SocketAddr) -> SockAddr {
        // SAFETY: an all-zero sockaddr_storage is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        SockAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    /// The kernel form of a Unix socket path; `@name` is `name` in the abstract namespace.
    /// `INVALID` for an empty path, one with a NUL byte, or one longer than `sun_path` (107
    /// bytes, 108 for an abstract name).
    pub fn from_unix(path: &Path) -> Result<SockAddr> {
        let bytes = path.as_os_str().as_bytes();
        // SAFETY: an all-zero sockaddr_storage is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_un.
        let sun = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_un) };
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let (abstract_ns, name) = match bytes.strip_prefix(b"@") {
            Some(n) => (true, n),
            None => (false, bytes),
        };
        let room = sun.sun_path.len() - usize::from(!abstract_ns); // a path keeps its NUL
        if name.is_empty() || name.len() + usize::from(abstract_ns) > room || name.contains(&0) {
            return Err(Error::INVALID);
        }
        let start = usize::from(abstract_ns); // an abstract name starts after a NUL byte
        for (i, &b) in name.iter().enumerate() {
            sun.sun_path[start + i] = b as libc::c_char;
        }
        let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        let len = base + start + name.len() + usize::from(!abstract_ns);
        Ok(SockAddr {
            storage,
            len: len as libc::socklen_t,
        })
    }

    /// Any family this library uses, as an `Address` (`None` for others).
    pub fn to_address(&self) -> Option<Address> {
        if self.storage.ss_family as i32 != libc::AF_UNIX {
            return self.to_std().map(Address::Ip);
        }
        // SAFETY: the family says the storage holds a sockaddr_un.
        let sun = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_un) };
        let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        let n = (self.len as usize)
            .saturating_sub(base)
            .min(sun.sun_path.len());
        let raw: Vec<u8> = sun.sun_path[..n].iter().map(|&c| c as u8).collect();
        let path = match raw.first() {
            None => Vec::new(),                    // unnamed
            Some(0) => [b"@", &raw[1..]].concat(), // abstract
            Some(_) => raw.split(|&b| b == 0).next().unwrap_or(&[]).to_vec(),
        };
        Some(Address::Unix(PathBuf::from(OsStr::from_bytes(&path))))
    }

    /// The std form, for AF_INET and AF_INET6.
    pub fn to_std(&self) -> Option<SocketAddr> {
        match self.storage.ss_family as i32 {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in) };
                let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in6) };
                let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// `sockaddr *` for syscalls.
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        for (h, p) in [
            ("127.0.0.1", 80),
            ("::1", 443),
            ("[::1]", 8080),
            ("0.0.0.0", 0),
        ] {
            let a = parse_ip_port(h, p).unwrap();
            assert_eq!(SockAddr::from_std(&a).to_std(), Some(a));
        }
        assert_eq!(
            parse_ip_port("localhost", 1).unwrap_err(),
            Error::BAD_ADDRESS
        );
        assert_eq!(
            parse_ip_port("1.2.3.256", 1).unwrap_err(),
            Error::BAD_ADDRESS
        );
    }

    #[test]
    fn unix_paths_and_abstract_names_round_trip() {
        for p in ["/tmp/x.sock", "relative.sock", "@abstract-name"] {
            let a = SockAddr::from_unix(Path::new(p)).unwrap();
            assert_eq!(a.to_address(), Some(Address::Unix(PathBuf::from(p))), "{p}");
        }
        let longest = "/".to_string() + &"a".repeat(106);
        assert!(SockAddr::from_unix(Path::new(&longest)).is_ok());
        let too_long = longest + "b";
        assert_eq!(
            SockAddr::from_unix(Path::new(&too_long)).map(|_| ()),
            Err(Error::INVALID)
        );
        assert_eq!(
            SockAddr::from_unix(Path::new("")).map(|_| ()),
            Err(Error::INVALID)
        );
        assert_eq!(
            SockAddr::from_unix(Path::new("@")).map(|_| ()),
            Err(Error::INVALID)
        );
    }
}
