//! What a request is: its URL (`http://`, `https://`) and its method, headers and body, and how it
//! is written on the wire.

use super::Origin;
use crate::error::{Error, Result};

/// A parsed `http://host[:port]/path?query` or `https://...` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// https: over TLS.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least "/".
    pub target: String,
}

impl Url {
    /// Parses an http:// or https:// URL (default ports 80 and 443); anything else is
    /// `BAD_URL`.
    pub fn parse(s: &str) -> Result<Url> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(Error::BAD_URL);
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or(Error::BAD_URL)?;
            let port = match &v6[end + 1..] {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or(Error::BAD_URL)?,
            };
            (v6[..end].to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| Error::BAD_URL)?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::BAD_URL);
        }
        Ok(Url {
            tls,
            host,
            port,
            target,
        })
    }

    pub(crate) fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

/// A request to send.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    pub method: String,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Connect to this Unix stream socket instead of the URL's host and port, which then only
    /// name the `Host` header (curl's `--unix-socket`). Connections are pooled per socket.
    pub unix_socket: Option<std::path::PathBuf>,
}

impl ClientRequest {
    /// A request with no headers and no body.
    pub fn new(method: &str, url: &str) -> Result<ClientRequest> {
        if !crate::http::request::valid_method(method) {
            return Err(Error::INVALID);
        }
        Ok(ClientRequest {
            method: method.to_string(),
            url: Url::parse(url)?,
            headers: Vec::new(),
            body: Vec::new(),
            unix_socket: None,
        })
    }

    /// Where the request goes: its pool's key.
    pub(super) fn origin(&self) -> Origin {
        (
            self.url.host.clone(),
            self.url.port,
            self.url.tls,
            self.unix_socket.clone(),
        )
    }

    pub(super) fn idempotent(&self) -> bool {
        matches!(
            self.method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
        )
    }

    pub(super) fn serialize(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(
            out,
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method,
            self.url.target,
            self.url.host_header()
        );
        for (n, v) in &self.headers {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://example.com:8080/a/b?c=d").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("example.com", 8080, "/a/b?c=d")
        );
        let u = Url::parse("http://127.0.0.1").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.host_header()),
            (80, "/", "127.0.0.1".to_string())
        );
        let u = Url::parse("http://[::1]:9000?x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str(), u.host_header()),
            ("::1", 9000, "/?x", "[::1]:9000".into())
        );
        let u = Url::parse("https://example.com/a").unwrap();
        assert_eq!(
            (u.tls, u.port, u.host_header()),
            (true, 443, "example.com".to_string())
        );
        let u = Url::parse("https://[::1]:8443").unwrap();
        assert_eq!(
            (u.tls, u.port, u.host_header()),
            (true, 8443, "[::1]:8443".into())
        );
        assert!(!Url::parse("http://x").unwrap().tls);
        assert_eq!(Url::parse("ftp://x/").unwrap_err(), Error::BAD_URL);
        assert_eq!(
            Url::parse("http://x:notaport/").unwrap_err(),
            Error::BAD_URL
        );
        assert_eq!(Url::parse("http:///path").unwrap_err(), Error::BAD_URL);
        assert_eq!(Url::parse("http://x/a b").unwrap_err(), Error::BAD_URL);
    }
}
