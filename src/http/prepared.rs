//! Prepared responses: a status and headers checked and laid out once, then used for any
//! number of answers, each with a body of its own (`Request::respond_prepared`). An answer with
//! one skips what `respond` does for its headers every time: the checks, the head cache's
//! lookup. The bytes a client gets are those `respond` with the same status, headers and body
//! would send (the tests compare them).

use super::date::DATE_LEN;
use super::head_cache::Template;
use super::response::{self, Asked, Framing};
use crate::error::{Error, Result};

/// A response's status and headers, checked once. Immutable: share it (`Arc`) between loops
/// and threads as needed.
#[derive(Clone, Debug)]
pub struct PreparedResponse {
    status: u16,
    /// What its framing headers ask (a `Connection: close`, a `Content-Length`).
    asked: Asked,
    head: Template,
}

impl PreparedResponse {
    /// Checks `status` (200..=999) and `headers` as `respond` would, and lays out the head.
    /// `INVALID` for what `respond` refuses whatever the body: a bad status, a header with
    /// CR, LF or NUL (or an invalid name), a `Connection` option other than `close` and
    /// `keep-alive`, a malformed `Content-Length`, any `Transfer-Encoding`. A `Content-Length`
    /// is checked against each answer's body then (as `respond` does).
    pub fn new(status: u16, headers: &[(&[u8], &[u8])]) -> Result<PreparedResponse> {
        if !(200..=999).contains(&status) {
            return Err(Error::INVALID);
        }
        let asked = response::check_headers(headers).ok_or(Error::INVALID)?;
        if asked.chunked {
            return Err(Error::INVALID);
        }
        let mut out = Vec::new();
        let layout = response::write_head(
            &mut out,
            status,
            &[b' '; DATE_LEN],
            headers.iter().copied(),
            Framing::Length(0),
            false,
            false,
        );
        let mut head = Template::default();
        let kept = head.set(&out, layout);
        debug_assert!(kept, "a head with a length has a template");
        Ok(PreparedResponse {
            status,
            asked,
            head,
        })
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The `Content-Length` its headers give, if any.
    pub fn length(&self) -> Option<u64> {
        self.asked.length
    }

    pub(crate) fn asked(&self) -> Asked {
        self.asked
    }

    pub(crate) fn head(&self) -> &Template {
        &self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &[u8; DATE_LEN] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn heads_are_the_bytes_write_head_writes() {
        let sets: [&[(&[u8], &[u8])]; 4] = [
            &[],
            &[(b"Content-Type", b"text/plain")],
            &[(b"date", b"yesterday"), (b"Server", b"mine"), (b"X", b"")],
            &[(b"Connection", b"close"), (b"Content-Length", b"5")],
        ];
        for hs in sets {
            for status in [200, 404, 999] {
                let p = PreparedResponse::new(status, hs).unwrap();
                for (len, close, ka) in [(0, false, false), (5, true, false), (123, false, true)] {
                    let mut want = Vec::new();
                    response::write_head(
                        &mut want,
                        status,
                        D,
                        hs.iter().copied(),
                        Framing::Length(len),
                        close,
                        ka,
                    );
                    let mut got = b"x".to_vec();
                    p.head().write(&mut got, D, len, close, ka);
                    assert_eq!(got[1..], want[..], "{status} {hs:?}");
                }
            }
        }
    }

    #[test]
    fn what_respond_refuses_is_refused() {
        let bad: [&[(&[u8], &[u8])]; 6] = [
            &[(b"X", b"a\r\nb")],
            &[(b"X Y", b"1")],
            &[(b"", b"1")],
            &[(b"Connection", b"upgrade")],
            &[(b"Content-Length", b"x")],
            &[(b"Transfer-Encoding", b"chunked")],
        ];
        for hs in bad {
            assert_eq!(PreparedResponse::new(200, hs).unwrap_err(), Error::INVALID);
        }
        for status in [0, 101, 199, 1000] {
            assert_eq!(
                PreparedResponse::new(status, &[]).unwrap_err(),
                Error::INVALID
            );
        }
        let p = PreparedResponse::new(200, &[(b"connection", b"close")]).unwrap();
        assert!(p.asked().close);
    }
}
