//! Response heads: status line, `Server`, `Date`, the application's headers (checked: no CR, LF
//! or NUL, names are tokens), framing (`Content-Length` or chunked) and `Connection`.

use std::io::Write;

/// Reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The bytes of a token (RFC 9110 `tchar`), as a table: one lookup per byte of every header
/// name the application gives.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// A header name must be a token (RFC 9110).
pub fn valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|&b| TCHAR[b as usize])
}

/// A header value must not contain CR, LF, NUL or other controls (HTAB allowed).
pub fn valid_value(v: &[u8]) -> bool {
    fn byte_ok(b: &u8) -> bool {
        *b == b'\t' || (*b >= 0x20 && *b != 0x7f)
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        // Eight bytes at a time: is any below 0x20, or equal to 0x7f? (Exact tests for the
        // presence of such a byte; a chunk that has one, an HTAB maybe, is checked bytewise.)
        let x = u64::from_le_bytes(c.try_into().expect("chunks of 8"));
        let y = x ^ (0x7f * ONES);
        let suspect = (x.wrapping_sub(0x20 * ONES) & !x | y.wrapping_sub(ONES) & !y) & HIGH;
        if suspect != 0 && !c.iter().all(byte_ok) {
            return false;
        }
    }
    chunks.remainder().iter().all(byte_ok)
}

/// Headers the library writes itself; the application's copies are ignored.
pub fn is_framing(n: &[u8]) -> bool {
    // By length first: most names are none of these three.
    match n.len() {
        14 => n.eq_ignore_ascii_case(b"content-length"),
        17 => n.eq_ignore_ascii_case(b"transfer-encoding"),
        10 => n.eq_ignore_ascii_case(b"connection"),
        _ => false,
    }
}

/// What an application's own framing headers ask of a response.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Asked {
    /// `Connection: close`: the connection closes after this response.
    pub close: bool,
    /// A `Content-Length` (the caller checks it against the body).
    pub length: Option<u64>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b" \t".contains(b))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b" \t".contains(b))
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// Reads the framing headers (`is_framing`) among `headers`, which the library writes itself:
/// `None` for one it cannot honour (a `Connection` option other than `close` and `keep-alive`,
/// a transfer coding other than `chunked`, a malformed `Content-Length` or two that differ).
pub fn asked_framing<'a>(headers: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Option<Asked> {
    let mut a = Asked::default();
    for (n, v) in headers {
        if !is_framing(n) {
            continue;
        }
        let v = trim(v);
        match n.len() {
            10 => {
                for t in v.split(|&b| b == b',').map(trim) {
                    if t.eq_ignore_ascii_case(b"close") {
                        a.close = true;
                    } else if !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive") {
                        return None;
                    }
                }
            }
            14 => {
                if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                if a.length.is_some_and(|m| m != n) {
                    return None;
                }
                a.length = Some(n);
            }
            _ => {
                if !v.eq_ignore_ascii_case(b"chunked") {
                    return None;
                }
                a.chunked = true;
            }
        }
    }
    Some(a)
}

/// Checks an application's headers (`valid_name`, `valid_value`) and reads what its framing
/// headers ask (they are honoured, or refused: never silently dropped). `None` for a header the
/// library cannot send or a framing header it cannot honour.
pub fn check_headers(headers: &[(&[u8], &[u8])]) -> Option<Asked> {
    if !headers.iter().all(|(n, v)| valid_name(n) && valid_value(v)) {
        return None;
    }
    asked_framing(headers.iter().copied())
}

/// How the body is framed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    Length(usize),
    Chunked,
}

/// Where `write_head` put the parts a reused head changes (offsets from where it began).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLayout {
    /// The `Date` value (None when the application gave its own).
    pub date_at: Option<usize>,
    /// Just past `Content-Length: ` (None for a chunked head).
    pub length_at: Option<usize>,
}

/// The end of a head after its `Content-Length` value: CRLF, the `Connection` line, CRLF.
pub fn head_end(close: bool, http10_keep_alive: bool) -> &'static [u8] {
    if close {
        b"\r\nConnection: close\r\n\r\n"
    } else if http10_keep_alive {
        b"\r\nConnection: keep-alive\r\n\r\n"
    } else {
        b"\r\n\r\n"
    }
}

/// Writes a response head into `out`. Headers must have been checked with `valid_name` and
/// `valid_value`. `Server` and `Date` are added unless the application gave them.
pub fn write_head<'a>(
    out: &mut Vec<u8>,
    status: u16,
    date: &[u8],
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    framing: Framing,
    close: bool,
    http10_keep_alive: bool,
) -> HeadLayout {
    let start = out.len();
    let mut has_server = false;
    let mut has_date = false;
    let mut len = 0;
    for (n, v) in headers.clone() {
        // A header's first byte tells whether it can be one of these (any case).
        match n.first().map(u8::to_ascii_lowercase) {
            Some(b's') => has_server |= n.eq_ignore_ascii_case(b"server"),
            Some(b'd') => has_date |= n.eq_ignore_ascii_case(b"date"),
            _ => {}
        }
        len += n.len() + v.len() + 4;
    }
    // One reservation for the whole head: the fixed lines are under 160 bytes.
    out.reserve(len + date.len() + 160);
    let reason = reason(status);
    out.extend_from_slice(b"HTTP/1.1 ");
    // A status has three digits (the callers check 100..=999).
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !has_server {
        out.extend_from_slice(b"Server: asyncloop\r\n");
    }
    let mut date_at = None;
    if !has_date {
        out.extend_from_slice(b"Date: ");
        date_at = Some(out.len() - start);
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    for (n, v) in headers {
        if is_framing(n) {
            continue;
        }
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            let length_at = Some(out.len() - start);
            push_decimal(out, n as u64);
            out.extend_from_slice(head_end(close, http10_keep_alive));
            HeadLayout { date_at, length_at }
        }
        Framing::Chunked => {
            out.extend_from_slice(b"Transfer-Encoding: chunked");
            out.extend_from_slice(head_end(close, http10_keep_alive));
            HeadLayout {
                date_at,
                length_at: None,
            }
        }
    }
}

/// Appends `n` in decimal (no formatting machinery: this runs for every response). Bodies
/// under 100 bytes, the common case of small answers, take one branch.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    if n < 100 {
        if n < 10 {
            out.push(b'0' + n as u8);
        } else {
            out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        }
        return;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes one chunk (nothing for empty data: an empty chunk would end the body).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Ends a chunked body.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_layout() {
        let mut out = Vec::new();
        let hs: Vec<(&[u8], &[u8])> = vec![
            (b"Content-Type", b"text/plain"),
            (b"content-length", b"999"),
        ];
        write_head(
            &mut out,
            200,
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            hs.iter().copied(),
            Framing::Length(5),
            false,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: asyncloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn application_server_and_date_replace_ours_and_framing_is_ours() {
        let mut out = Vec::new();
        let hs: Vec<(&[u8], &[u8])> = vec![
            (b"sErVeR", b"mine"),
            (b"DATE", b"yesterday"),
            (b"Connection", b"upgrade"),
            (b"Transfer-Encoding", b"gzip"),
            (b"Content-Length", b"1"),
            (b"Sec", b"1"),
        ];
        write_head(
            &mut out,
            404,
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            hs.iter().copied(),
            Framing::Length(1234),
            true,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nsErVeR: mine\r\nDATE: yesterday\r\nSec: 1\r\nContent-Length: 1234\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 99, 100, 404, 65535, 1 << 40, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn header_checks() {
        assert!(valid_name(b"X-Ok"));
        assert!(!valid_name(b"X Bad"));
        assert!(!valid_name(b"X:Bad"));
        assert!(!valid_name(b""));
        assert!(valid_name(b"!#$%&'*+-.^_`|~09azAZ"));
        for b in [
            b'(', b')', b',', b'/', b';', b'=', b'@', b'[', b'"', b'{', 0x7f, 0x80, 0,
        ] {
            assert!(!valid_name(&[b'X', b]), "{b:#x}");
        }
        assert!(valid_value(b"a\tb c"));
        assert!(!valid_value(b"a\r\nInjected: 1"));
        assert!(!valid_value(b"a\nb"));
        assert!(!valid_value(b"a\0b"));
        // Every byte in every position of a long value, against the bytewise rule.
        for b in 0..=255u8 {
            let ok = b == b'\t' || (b >= 0x20 && b != 0x7f);
            for pos in 0..20 {
                let mut v = vec![b'a'; 20];
                v[pos] = b;
                assert_eq!(valid_value(&v), ok, "byte {b:#x} at {pos}");
            }
        }
        assert!(valid_value("caf\u{e9}, \t\u{80}\u{ff}ok".as_bytes()));
    }

    #[test]
    fn framing_headers_asked_by_the_application() {
        let ask = |h: &[(&[u8], &[u8])]| asked_framing(h.iter().copied());
        assert_eq!(ask(&[(b"X-A", b"1")]), Some(Asked::default()));
        let a = ask(&[
            (b"connection", b" Keep-Alive , close"),
            (b"Content-Length", b"12 "),
        ]);
        assert_eq!(
            a,
            Some(Asked {
                close: true,
                length: Some(12),
                chunked: false
            })
        );
        assert!(!ask(&[(b"Connection", b"keep-alive")]).unwrap().close);
        assert!(ask(&[(b"Transfer-Encoding", b"Chunked")]).unwrap().chunked);
        assert_eq!(
            ask(&[(b"Content-Length", b"3"), (b"content-length", b"3")])
                .unwrap()
                .length,
            Some(3)
        );
        for bad in [
            &[(&b"Connection"[..], &b"upgrade"[..])][..],
            &[(b"Content-Length", b"")],
            &[(b"Content-Length", b"-1")],
            &[(b"Content-Length", b"1 2")],
            &[(b"Content-Length", b"99999999999999999999")],
            &[(b"Content-Length", b"3"), (b"Content-Length", b"4")],
            &[(b"Transfer-Encoding", b"gzip")],
        ] {
            assert_eq!(ask(bad), None, "{bad:?}");
        }
    }
}
