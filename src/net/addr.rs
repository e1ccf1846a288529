//! Socket addresses: parsing numeric IP strings and converting to and from `sockaddr`.

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::error::{Error, Result};

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
}
