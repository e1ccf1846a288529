//! The request parser's fast path: a complete head of the common shape, parsed in one pass
//! without llhttp. The shape: `GET`, `HEAD`, `POST`, `PUT` or `DELETE`, an origin-form target of
//! visible ASCII but `#`, `HTTP/1.1`, and header fields of token names and visible-ASCII
//! values (with SP and HTAB) ending in CRLF, exactly one `Host`, no body and nothing
//! that changes framing or the connection: no `Content-Length`, `Transfer-Encoding`,
//! `Upgrade`, `Expect`, `Proxy-Connection`, nor a `Connection` other than `keep-alive`.
//!
//! Anything else, including every head llhttp or the parser's checks would refuse and a head
//! not yet complete in the bytes given, is declined and left to llhttp, which parses it from
//! its first byte. So the fast path only ever accepts: what it accepts, llhttp accepts with the
//! same method, target, path, query and header fields (the parser fuzz harness compares the
//! two on every input).

use std::ops::Range;

use super::super::request::RequestData;
use super::Limits;

/// What each byte may be, as a bit set.
const TOKEN: u8 = 1; // a header name's byte (RFC 9110 tchar)
const TARGET: u8 = 2; // a target's byte on the fast path (llhttp takes each of them)
const VALUE: u8 = 4; // a header value's byte (SP, HTAB, visible ASCII)

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0x21;
    while b < 0x7f {
        t[b] |= VALUE | TARGET;
        if (b as u8).is_ascii_alphanumeric() {
            t[b] |= TOKEN;
        }
        b += 1;
    }
    t[b'#' as usize] &= !TARGET; // a fragment: the target check's to refuse
    t[b' ' as usize] |= VALUE;
    t[b'\t' as usize] |= VALUE;
    let token = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < token.len() {
        t[token[i] as usize] |= TOKEN;
        i += 1;
    }
    t
};

// Eight bytes at a time: each mask below sets the high bit of the bytes of a word that stop a
// scan. Exact for the lowest such byte (a borrow or carry can only mark bytes above it), which
// is all `scan` uses.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bytes below `n` (`n` <= 128).
const fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * n as u64) & !x & HIGH
}

/// Bytes above `n` (`n` <= 127).
const fn above(x: u64, n: u8) -> u64 {
    (x.wrapping_add(ONES * (127 - n) as u64) | x) & HIGH
}

/// A target ends at a byte outside 0x21..=0x7e, or is declined at `#`.
fn target_stops(x: u64) -> u64 {
    below(x, 0x21) | above(x, 0x7e) | below(x ^ (ONES * b'#' as u64), 1)
}

/// The end of the target starting at `i` and its first `?`: `target_stops` and, until one is
/// found, `?` stop the word scan.
fn scan_target(buf: &[u8], mut i: usize) -> (usize, Option<usize>) {
    let mut query = None;
    while let Some(word) = buf.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let q = if query.is_none() {
            below(x ^ (ONES * b'?' as u64), 1)
        } else {
            0
        };
        let m = target_stops(x) | q;
        if m == 0 {
            i += 8;
            continue;
        }
        i += (m.trailing_zeros() / 8) as usize;
        if buf[i] != b'?' {
            return (i, query); // every other byte `target_stops` flags ends the target
        }
        query = Some(i);
        i += 1;
    }
    while i < buf.len() && CLASS[buf[i] as usize] & TARGET != 0 {
        if buf[i] == b'?' && query.is_none() {
            query = Some(i);
        }
        i += 1;
    }
    (i, query)
}

/// A value ends at a control byte (HTAB aside, which `scan` steps over) or one above 0x7e.
fn value_stops(x: u64) -> u64 {
    below(x, 0x20) | above(x, 0x7e)
}

/// Index of the first byte at or after `i` not of `class` (`buf.len()` when none), eight
/// bytes at a time while `stops` finds none in them; `stops` flags every byte not of `class`.
#[inline]
fn scan(buf: &[u8], mut i: usize, class: u8, stops: fn(u64) -> u64) -> usize {
    while let Some(word) = buf.get(i..i + 8) {
        let m = stops(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        if m == 0 {
            i += 8;
            continue;
        }
        i += (m.trailing_zeros() / 8) as usize;
        if CLASS[buf[i] as usize] & class == 0 {
            return i;
        }
        i += 1;
    }
    skip(buf, i, class)
}

/// The method at the start of `buf` (followed by a space): its llhttp code and length.
fn method(buf: &[u8]) -> Option<(u8, usize)> {
    let w = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    Some(match &w.to_le_bytes() {
        b"GET " => (1, 3),
        b"PUT " => (4, 3),
        b"HEAD" if buf.get(4) == Some(&b' ') => (2, 4),
        b"POST" if buf.get(4) == Some(&b' ') => (3, 4),
        b"DELE" if buf.get(4..7) == Some(b"TE ") => (0, 6),
        _ => return None,
    })
}

/// Index of the first byte at or after `i` not of `class` (`buf.len()` when none).
#[inline]
fn skip(buf: &[u8], mut i: usize, class: u8) -> usize {
    while i < buf.len() && CLASS[buf[i] as usize] & class != 0 {
        i += 1;
    }
    i
}

fn lower_is(n: &[u8], lower: &[u8]) -> bool {
    n.len() == lower.len() && n.iter().zip(lower).all(|(&b, &l)| b | 0x20 == l)
}

/// Parses a head of the fast path's shape at the start of `buf` into `req` (cleared); returns
/// the head's length. `None`: the bytes are llhttp's to parse (`req` is then to be cleared).
pub(super) fn parse(buf: &[u8], limits: &Limits, req: &mut RequestData) -> Option<usize> {
    let (code, mlen) = method(buf)?;
    let t0 = mlen + 1;
    if buf.get(t0) != Some(&b'/') {
        return None;
    }
    let (t_end, query_at) = scan_target(buf, t0);
    if t_end - t0 > limits.max_request_line || buf.get(t_end..t_end + 11)? != b" HTTP/1.1\r\n" {
        return None;
    }
    let mut i = t_end + 11;
    let mut hosts = 0u32;
    let mut header_bytes = 0usize;
    let headers = &mut req.headers;
    loop {
        match buf.get(i)? {
            b'\r' if buf.get(i + 1)? == &b'\n' => break,
            _ => {}
        }
        let name = i..skip(buf, i, TOKEN);
        if name.is_empty() || buf.get(name.end)? != &b':' {
            return None;
        }
        let v0 = skip_ows(buf, name.end + 1);
        let v_end = scan(buf, v0, VALUE, value_stops);
        if buf.get(v_end..v_end + 2)? != b"\r\n" {
            return None;
        }
        // The parser's measure: each name and value as llhttp delivers it, plus 4.
        header_bytes += name.len() + (v_end - v0) + 4;
        let mut value = v0..v_end;
        while value.end > value.start && matches!(buf[value.end - 1], b' ' | b'\t') {
            value.end -= 1;
        }
        let n = &buf[name.clone()];
        match n.len() {
            4 if lower_is(n, b"host") => hosts += 1,
            10 if lower_is(n, b"connection")
                && !buf[value.clone()].eq_ignore_ascii_case(b"keep-alive") =>
            {
                return None
            }
            6 | 7 | 14 | 16 | 17
                if lower_is(n, b"expect")
                    || lower_is(n, b"upgrade")
                    || lower_is(n, b"content-length")
                    || lower_is(n, b"proxy-connection")
                    || lower_is(n, b"transfer-encoding") =>
            {
                return None
            }
            _ => {}
        }
        headers.push((name, value));
        if headers.len() > limits.max_headers || header_bytes > limits.max_header_bytes {
            return None; // as soon as a limit is passed: a long head is not scanned twice
        }
        i = v_end + 2;
    }
    if hosts != 1 {
        return None;
    }
    let len = i + 2;
    // The arena is the head itself, each piece ended in place by a NUL over the byte after
    // it (a space, `:`, a CR or trailing whitespace); a path followed by a query gets a copy.
    let arena = &mut req.arena;
    arena.extend_from_slice(&buf[..len]);
    arena[mlen] = 0;
    arena[t_end] = 0;
    for (name, value) in req.headers.iter() {
        arena[name.end] = 0;
        arena[value.end] = 0;
    }
    req.method = 0..mlen;
    req.method_code = Some(code);
    req.target = t0..t_end;
    (req.path, req.query) = match query_at {
        None => (t0..t_end, t_end..t_end),
        Some(q) => {
            let copy = push_piece(arena, t0..q);
            (copy, q + 1..t_end)
        }
    };
    req.version_minor = 1;
    req.keep_alive = true;
    req.head_ascii = true;
    Some(len)
}

/// Past the optional whitespace (SP, HTAB) from `i`.
fn skip_ows(buf: &[u8], mut i: usize) -> usize {
    while i < buf.len() && matches!(buf[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// Appends a NUL-terminated copy of `src` (a range of the arena); returns its range.
fn push_piece(arena: &mut Vec<u8>, src: Range<usize>) -> Range<usize> {
    let start = arena.len();
    arena.extend_from_within(src);
    let range = start..arena.len();
    arena.push(0);
    range
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &[u8]) -> Option<(usize, RequestData)> {
        let mut r = RequestData::default();
        r.clear();
        parse(head, &Limits::default(), &mut r).map(|n| (n, r))
    }

    #[test]
    fn takes_the_common_heads() {
        let wrk = b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\n\r\nGET /";
        let (n, r) = parsed(wrk).expect("taken");
        assert_eq!(n, wrk.len() - 5);
        assert_eq!(
            (r.method(), r.target(), r.path(), r.query()),
            ("GET", "/plaintext", "/plaintext", "")
        );
        assert_eq!(r.method_code, Some(1));
        assert_eq!(r.header_at(0), Some(("Host", "localhost:8080")));
        assert!(r.keep_alive && r.head_ascii && !r.upgrade && !r.expect_continue);
        assert_eq!(r.version_minor, 1);
        // Every piece is NUL-terminated, as the C accessors need.
        for range in r
            .ranges()
            .iter()
            .chain(r.headers.iter().flat_map(|(n, v)| [n, v]))
        {
            assert_eq!(r.arena[range.end], 0);
        }

        let tfb = b"GET /queries?queries=20&x=%41 HTTP/1.1\r\nHost: tfb-server\r\nAccept: text/plain,text/html;q=0.9,*/*;q=0.7\r\nConnection: keep-alive\r\nX-Empty:\r\nX-Pad: \t v \t\r\n\r\n";
        let (n, r) = parsed(tfb).expect("taken");
        assert_eq!(n, tfb.len());
        assert_eq!((r.path(), r.query()), ("/queries", "queries=20&x=%41"));
        assert_eq!(r.target(), "/queries?queries=20&x=%41");
        assert_eq!(
            r.header("accept"),
            Some("text/plain,text/html;q=0.9,*/*;q=0.7")
        );
        assert_eq!(r.header("X-Empty"), Some(""));
        assert_eq!(r.header("x-pad"), Some("v"));
        assert_eq!(r.header_count(), 5);

        for (m, code) in [("HEAD", 2), ("POST", 3), ("PUT", 4), ("DELETE", 0)] {
            let head = format!("{m} /a?b HTTP/1.1\r\nhost: h\r\n\r\n");
            let (_, r) = parsed(head.as_bytes()).expect(m);
            assert_eq!((r.method(), r.method_code), (m, Some(code)));
        }
    }

    #[test]
    fn leaves_the_rest_to_llhttp() {
        let declined: &[&[u8]] = &[
            b"GET /plaintext HTTP/1.1\r\nHost: x\r\n",   // incomplete
            b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r", // incomplete
            b"GET /x HTTP/1.0\r\nHost: x\r\n\r\n",       // HTTP/1.0
            b"GET /x HTTP/1.1\r\n\r\n",                  // no Host
            b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",    // other method and form
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", // absolute-form
            b"GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n",     // fragment
            b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n",  // DEL in the target
            b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", // not ASCII in the target
            b"GET  /x HTTP/1.1\r\nHost: x\r\n\r\n",      // two spaces
            b"get /x HTTP/1.1\r\nHost: x\r\n\r\n",       // lower case
            b"GET /x HTTP/1.1\nHost: x\r\n\r\n",         // bare LF
            b"GET /x HTTP/1.1\r\nHost: x\n\r\n",         // bare LF
            b"GET /x HTTP/1.1\r\nHost : x\r\n\r\n",      // space before the colon
            b"GET /x HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", // obs-fold
            b"GET /x HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", // not ASCII
            b"GET /x HTTP/1.1\r\nHost: a\x7fb\r\n\r\n",  // DEL
            b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: x\r\nProxy-Connection: close\r\n\r\n",
            b"\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n", // a leading empty line
        ];
        for head in declined {
            assert!(
                parsed(head).is_none(),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn the_word_scans_stop_where_the_byte_loop_does() {
        // Every byte value at every offset of two words, alone and after an HTAB, a `#`, a `?`
        // or a byte above 0x7f: the same end as one byte at a time, and the same first `?`.
        for b in 0..=255u8 {
            for at in 0..17 {
                for before in [None, Some(b'\t'), Some(b'#'), Some(b'?'), Some(0x80)] {
                    let mut buf = vec![b'a'; 24];
                    buf[at] = b;
                    if let Some(c) = before.filter(|_| at > 0) {
                        buf[at - 1] = c;
                    }
                    let why = format!("byte {b:#x} at {at} after {before:?}");
                    let end = skip(&buf, 0, TARGET);
                    let query = buf[..end].iter().position(|&c| c == b'?');
                    assert_eq!(scan_target(&buf, 0), (end, query), "target: {why}");
                    let end = skip(&buf, 0, VALUE);
                    assert_eq!(scan(&buf, 0, VALUE, value_stops), end, "value: {why}");
                }
            }
        }
    }

    #[test]
    fn limits_are_left_to_llhttp() {
        let mut r = RequestData::default();
        let small = Limits {
            max_request_line: 4,
            ..Limits::default()
        };
        assert!(parse(b"GET /abc HTTP/1.1\r\nHost: x\r\n\r\n", &small, &mut r).is_some());
        r.clear();
        assert!(parse(b"GET /abcd HTTP/1.1\r\nHost: x\r\n\r\n", &small, &mut r).is_none());
        let few = Limits {
            max_headers: 1,
            ..Limits::default()
        };
        r.clear();
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n", &few, &mut r).is_none());
        // "Host" + "x" + 4 = 9 bytes of header block.
        let tight = Limits {
            max_header_bytes: 9,
            ..Limits::default()
        };
        r.clear();
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &tight, &mut r).is_some());
        r.clear();
        assert!(parse(b"GET / HTTP/1.1\r\nHost: xy\r\n\r\n", &tight, &mut r).is_none());
    }
}
