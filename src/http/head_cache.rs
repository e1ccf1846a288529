//! Reused response heads. Most answers of a server repeat the status and headers of an earlier
//! one (`200`, `Content-Type: text/plain`): for those the head is the bytes `write_head` wrote
//! last time, up to the `Content-Length` value, with the current `Date` copied over the old one;
//! only the length and the `Connection` line are written afresh. The bytes a client gets are
//! exactly those `write_head` would write (the tests compare them). A set of headers that
//! matches a cached one byte for byte was checked when it was cached, so it needs no check of
//! its own.

use super::date::DATE_LEN;
use super::response::{self, Asked, Framing, HeadLayout};

/// Heads kept (replaced in turn).
const ENTRIES: usize = 4;
/// Most application headers in a cached head.
const MAX_HEADERS: usize = 8;
/// Most bytes of application header names and values in a cached head.
const MAX_KEY: usize = 512;

/// A head laid out for reuse: the bytes `write_head` wrote up to and including
/// `Content-Length: `, and where its `Date` value is in them.
#[derive(Default, Clone, Debug)]
pub struct Template {
    prefix: Vec<u8>,
    /// None when the application gave its own `Date`.
    date_at: Option<usize>,
}

impl Template {
    /// Keeps the head `write_head` wrote as `head` (from its first byte) with `layout`; false
    /// (nothing kept) for a chunked one.
    pub fn set(&mut self, head: &[u8], layout: HeadLayout) -> bool {
        let Some(length_at) = layout.length_at else {
            return false;
        };
        self.prefix.clear();
        self.prefix.extend_from_slice(&head[..length_at]);
        self.date_at = layout.date_at;
        true
    }

    /// Writes the head with the current `date`, a body of `len` bytes and the `Connection`
    /// line `write_head` would write for `close` and `http10_keep_alive`.
    #[inline]
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        date: &[u8; DATE_LEN],
        len: usize,
        close: bool,
        http10_keep_alive: bool,
    ) {
        let start = out.len();
        out.reserve(self.prefix.len() + 48);
        out.extend_from_slice(&self.prefix);
        if let Some(at) = self.date_at {
            out[start + at..start + at + DATE_LEN].copy_from_slice(date);
        }
        response::push_decimal(out, len as u64);
        if !close && !http10_keep_alive {
            // The common end as a copy of constant length, written inline (no memcpy call).
            out.extend_from_slice(b"\r\n\r\n");
        } else {
            out.extend_from_slice(response::head_end(close, http10_keep_alive));
        }
    }
}

#[derive(Default)]
struct Entry {
    /// 0 while empty.
    status: u16,
    count: usize,
    /// Name and value lengths of the application's headers, in order.
    lens: [(usize, usize); MAX_HEADERS],
    /// Their names and values, concatenated.
    key: Vec<u8>,
    /// The head, up to its `Content-Length` value.
    head: Template,
    /// What the headers' framing headers ask (`response::asked_framing` of them).
    asked: Asked,
}

impl Entry {
    fn matches(&self, status: u16, headers: &[(&[u8], &[u8])]) -> bool {
        if self.status != status || self.count != headers.len() {
            return false;
        }
        let mut at = 0;
        for (&(n, v), &(ln, lv)) in headers.iter().zip(&self.lens) {
            if n.len() != ln || v.len() != lv {
                return false;
            }
            let (kn, kv) = self.key[at..at + ln + lv].split_at(ln);
            if kn != n || kv != v {
                return false;
            }
            at += ln + lv;
        }
        true
    }
}

/// A found head: valid until the cache is next filled.
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    index: usize,
    fills: u64,
    /// What the headers' framing headers ask, as found when they were cached.
    pub asked: Asked,
}

/// The heads of recent responses with a `Content-Length` (one cache per server, on its loop).
#[derive(Default)]
pub struct HeadCache {
    entries: [Entry; ENTRIES],
    /// The entry the next fill replaces.
    next: usize,
    /// Fills so far: a `Hit` from before the last fill may name a replaced entry.
    fills: u64,
}

impl HeadCache {
    /// The cached head for `status` and exactly these `headers` (names and values byte for
    /// byte, in order), if there is one. Such headers passed `valid_name` and `valid_value`.
    pub fn find(&self, status: u16, headers: &[(&[u8], &[u8])]) -> Option<Hit> {
        self.entries
            .iter()
            .position(|e| e.matches(status, headers))
            .map(|index| Hit {
                index,
                fills: self.fills,
                asked: self.entries[index].asked,
            })
    }

    /// Writes the head of `hit` with the current `date`, a body of `len` bytes and the
    /// `Connection` line `write_head` would write for `close` and `http10_keep_alive`; false
    /// (nothing written) when the entry was replaced since `find`.
    pub fn write(
        &self,
        hit: Hit,
        out: &mut Vec<u8>,
        date: &[u8; DATE_LEN],
        len: usize,
        close: bool,
        http10_keep_alive: bool,
    ) -> bool {
        if hit.fills != self.fills {
            return false;
        }
        self.entries[hit.index]
            .head
            .write(out, date, len, close, http10_keep_alive);
        true
    }

    /// Writes a head with `write_head` and keeps it for reuse when its headers are few and
    /// short enough. The headers must have been checked, and `asked` is what their framing
    /// headers ask.
    #[allow(clippy::too_many_arguments)]
    pub fn write_and_fill(
        &mut self,
        out: &mut Vec<u8>,
        status: u16,
        date: &[u8; DATE_LEN],
        headers: &[(&[u8], &[u8])],
        asked: Asked,
        len: usize,
        close: bool,
        http10_keep_alive: bool,
    ) {
        let start = out.len();
        let layout = response::write_head(
            out,
            status,
            date,
            headers.iter().copied(),
            Framing::Length(len),
            close,
            http10_keep_alive,
        );
        let key_len: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if layout.length_at.is_none() || headers.len() > MAX_HEADERS || key_len > MAX_KEY {
            return;
        }
        let e = &mut self.entries[self.next];
        self.next = (self.next + 1) % ENTRIES;
        self.fills += 1;
        e.status = status;
        e.count = headers.len();
        e.key.clear();
        for (slot, (n, v)) in e.lens.iter_mut().zip(headers) {
            *slot = (n.len(), v.len());
            e.key.extend_from_slice(n);
            e.key.extend_from_slice(v);
        }
        e.head.set(&out[start..], layout);
        e.asked = asked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &[u8; DATE_LEN] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn asked(hs: &[(&[u8], &[u8])]) -> Asked {
        response::asked_framing(hs.iter().copied()).unwrap_or_default()
    }
    const D2: &[u8; DATE_LEN] = b"Mon, 07 Nov 1994 09:50:38 GMT";

    fn plain(
        status: u16,
        headers: &[(&[u8], &[u8])],
        date: &[u8],
        len: usize,
        close: bool,
        ka: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        response::write_head(
            &mut out,
            status,
            date,
            headers.iter().copied(),
            Framing::Length(len),
            close,
            ka,
        );
        out
    }

    #[test]
    fn cached_heads_are_the_bytes_write_head_writes() {
        let sets: [&[(&[u8], &[u8])]; 5] = [
            &[],
            &[(b"Content-Type", b"text/plain")],
            &[(b"Content-Type", b"application/json"), (b"X-A", b"")],
            &[
                (b"date", b"yesterday"),
                (b"Server", b"mine"),
                (b"content-length", b"7"),
            ],
            &[(b"Connection", b"upgrade"), (b"Transfer-Encoding", b"gzip")],
        ];
        for hs in sets {
            for status in [200, 404, 999] {
                let mut c = HeadCache::default();
                let mut out = b"before".to_vec();
                c.write_and_fill(&mut out, status, D1, hs, asked(hs), 13, false, false);
                assert_eq!(out[6..], plain(status, hs, D1, 13, false, false)[..]);
                for (len, close, ka) in [
                    (0, false, false),
                    (13, true, false),
                    (99, false, true),
                    (100, false, false),
                    (123_456_789, true, false),
                ] {
                    let hit = c.find(status, hs).expect("cached");
                    let mut out = b"x".to_vec();
                    assert!(c.write(hit, &mut out, D2, len, close, ka));
                    assert_eq!(
                        out[1..],
                        plain(status, hs, D2, len, close, ka)[..],
                        "{status} {hs:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_exact_headers_match() {
        let mut c = HeadCache::default();
        let hs: &[(&[u8], &[u8])] = &[(b"A", b"b: c")];
        c.write_and_fill(&mut Vec::new(), 200, D1, hs, asked(hs), 1, false, false);
        assert!(c.find(200, hs).is_some());
        assert!(c.find(201, hs).is_none());
        // The same bytes split otherwise ("A: b: c") are another header.
        assert!(c.find(200, &[(b"A: b", b"c")]).is_none());
        assert!(c.find(200, &[(b"a", b"b: c")]).is_none());
        assert!(c.find(200, &[(b"A", b"b: d")]).is_none());
        assert!(c.find(200, &[]).is_none());
        assert!(c.find(200, &[(b"A", b"b: c"), (b"A", b"b: c")]).is_none());
    }

    #[test]
    fn a_hit_from_before_a_fill_is_not_used() {
        let mut c = HeadCache::default();
        let a: &[(&[u8], &[u8])] = &[(b"A", b"1")];
        c.write_and_fill(&mut Vec::new(), 200, D1, a, asked(a), 1, false, false);
        let hit = c.find(200, a).unwrap();
        for i in 0..ENTRIES {
            let v = [b'0' + i as u8];
            c.write_and_fill(
                &mut Vec::new(),
                200,
                D1,
                &[(b"B", &v)],
                Asked::default(),
                1,
                false,
                false,
            );
        }
        let mut out = Vec::new();
        assert!(!c.write(hit, &mut out, D1, 1, false, false));
        assert!(out.is_empty());
        assert!(c.find(200, a).is_none(), "replaced in turn");
    }

    #[test]
    fn a_hit_gives_what_its_framing_headers_ask() {
        let mut c = HeadCache::default();
        let hs: &[(&[u8], &[u8])] = &[(b"Connection", b"close"), (b"Content-Length", b"5")];
        c.write_and_fill(&mut Vec::new(), 200, D1, hs, asked(hs), 5, true, false);
        let a = c.find(200, hs).expect("cached").asked;
        assert_eq!(a, asked(hs));
        assert!(a.close && a.length == Some(5) && !a.chunked);
    }

    #[test]
    fn many_or_long_headers_are_not_kept() {
        let mut c = HeadCache::default();
        let many: Vec<(&[u8], &[u8])> = vec![(b"X", b"1"); MAX_HEADERS + 1];
        c.write_and_fill(
            &mut Vec::new(),
            200,
            D1,
            &many,
            asked(&many),
            1,
            false,
            false,
        );
        assert!(c.find(200, &many).is_none());
        let long = vec![b'v'; MAX_KEY];
        let hs: &[(&[u8], &[u8])] = &[(b"X", &long)];
        let mut out = Vec::new();
        c.write_and_fill(&mut out, 200, D1, hs, asked(hs), 1, false, false);
        assert_eq!(out, plain(200, hs, D1, 1, false, false));
        assert!(c.find(200, hs).is_none());
    }
}
