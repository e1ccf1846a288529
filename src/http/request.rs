//! A parsed request: head bytes in one arena (each piece NUL-terminated, so C gets `const char *`
//! without copies), header and target ranges into it, and the body. Cleared and reused through
//! the server's pool, so steady-state parsing allocates nothing.

use std::ops::Range;

/// One request's data.
#[derive(Default, Debug)]
pub struct RequestData {
    pub(crate) arena: Vec<u8>,
    pub(crate) method: Range<usize>,
    pub(crate) target: Range<usize>,
    pub(crate) path: Range<usize>,
    pub(crate) query: Range<usize>,
    pub(crate) headers: Vec<(Range<usize>, Range<usize>)>,
    pub(crate) body: Vec<u8>,
    pub(crate) version_minor: u8,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
    /// The head (the whole arena) is ASCII, checked once when it is complete: the text
    /// accessors then need no UTF-8 validation of their own.
    pub(crate) head_ascii: bool,
    /// It asked to switch protocols (`Connection: upgrade` and `Upgrade`); parsing stopped
    /// after it.
    pub(crate) upgrade: bool,
}

/// Whether `m` is a method name the server can route and the client can send: methods are
/// case-sensitive (RFC 9110 section 9.1) and every registered one is upper case, so this is a
/// non-empty token of upper-case letters, `-` and `_` ("GET", "M-SEARCH"). "get" is refused
/// rather than registered as a route no client request could reach.
pub fn valid_method(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

impl RequestData {
    /// Empties it for the next request, keeping capacity (the parser does this at the start of
    /// every request).
    pub(crate) fn clear(&mut self) {
        self.arena.clear();
        self.headers.clear();
        self.body.clear();
        self.method = 0..0;
        self.target = 0..0;
        self.path = 0..0;
        self.query = 0..0;
        self.version_minor = 1;
        self.keep_alive = true;
        self.expect_continue = false;
        self.head_ascii = false;
        self.upgrade = false;
    }

    /// Bounds the memory it keeps while pooled, so one huge request does not pin its buffers
    /// (what is above the bound is emptied first: `shrink_to` keeps the length).
    pub(crate) fn trim(&mut self) {
        const KEEP: usize = 64 * 1024;
        if self.arena.capacity() > KEEP {
            self.arena.clear();
            self.arena.shrink_to(KEEP);
        }
        if self.body.capacity() > KEEP {
            self.body.clear();
            self.body.shrink_to(KEEP);
        }
        if self.headers.capacity() > 128 {
            self.headers.clear();
            self.headers.shrink_to(128);
        }
    }

    /// Whether the method is HEAD (no text conversion).
    pub(crate) fn is_head(&self) -> bool {
        &self.arena[self.method.clone()] == b"HEAD"
    }

    /// Records whether the head is ASCII (call when it is complete).
    pub(crate) fn check_ascii(&mut self) {
        self.head_ascii = self.arena.is_ascii();
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        let bytes = &self.arena[r.clone()];
        if self.head_ascii {
            // SAFETY: the whole arena was found to be ASCII (`check_ascii`) and has not changed
            // since (it is only appended to while the head is parsed, and cleared for reuse,
            // which resets the flag); ASCII is valid UTF-8.
            return unsafe { std::str::from_utf8_unchecked(bytes) };
        }
        // Head bytes are checked by llhttp to be visible ASCII or obs-text; obs-text (>= 0x80)
        // may not be UTF-8, in which case the accessor gives "".
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// Pointer to a NUL-terminated copy of the piece at `r` (for the C API).
    pub(crate) fn c_ptr(&self, r: &Range<usize>) -> *const u8 {
        debug_assert_eq!(self.arena.get(r.end), Some(&0));
        self.arena[r.start..].as_ptr()
    }

    /// The method, as sent ("GET").
    pub fn method(&self) -> &str {
        self.str_at(&self.method)
    }
    /// The request target, as sent ("/path?query").
    pub fn target(&self) -> &str {
        self.str_at(&self.target)
    }
    /// The path part of the target, not decoded.
    pub fn path(&self) -> &str {
        self.str_at(&self.path)
    }
    /// The raw query after '?', without it ("" when none).
    pub fn query(&self) -> &str {
        self.str_at(&self.query)
    }
    /// Whether it asked to switch protocols (`Connection: upgrade` with an `Upgrade` header).
    pub fn is_upgrade(&self) -> bool {
        self.upgrade
    }
    /// HTTP/1.x minor version.
    pub fn version_minor(&self) -> u8 {
        self.version_minor
    }
    /// The body (complete, bounded by the server's body limit).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    /// Number of header fields.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }
    /// Header `i` as (name, value), in the order received.
    pub fn header_at(&self, i: usize) -> Option<(&str, &str)> {
        self.headers
            .get(i)
            .map(|(n, v)| (self.str_at(n), self.str_at(v)))
    }
    /// Index of the first header called `name` (case-insensitive).
    pub(crate) fn header_index(&self, name: &str) -> Option<usize> {
        self.headers
            .iter()
            .position(|(n, _)| eq_ignore_case(&self.arena[n.clone()], name.as_bytes()))
    }
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_index(name)
            .map(|i| self.str_at(&self.headers[i].1))
    }
    /// Range of header `i`'s value (for the C API).
    pub(crate) fn header_ranges(&self, i: usize) -> Option<(Range<usize>, Range<usize>)> {
        self.headers.get(i).cloned()
    }
    /// Range of the method, target, path, query (for the C API).
    pub(crate) fn ranges(&self) -> [Range<usize>; 4] {
        [
            self.method.clone(),
            self.target.clone(),
            self.path.clone(),
            self.query.clone(),
        ]
    }

    /// The first query parameter called `name`, percent-decoded ('+' is a space). `None` when
    /// absent; invalid escapes are kept as they are.
    pub fn query_param(&self, name: &str) -> Option<Vec<u8>> {
        let q = &self.arena[self.query.clone()];
        for pair in q.split(|&b| b == b'&') {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[..0]),
            };
            if percent_decode(k) == name.as_bytes() {
                return Some(percent_decode(v));
            }
        }
        None
    }
}

/// Percent-decodes `s` ('+' as space; malformed escapes kept literally).
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_plus() {
        assert_eq!(percent_decode(b"a%20b+c%2Fd"), b"a b c/d");
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
        assert_eq!(percent_decode(b"%41"), b"A");
    }
}
