//! The opening handshake of RFC 6455 section 4: the server's checks of an upgrade request and
//! its 101 answer, the client's request and its checks of the answer, subprotocol selection,
//! and the `Sec-WebSocket-Accept` digest (SHA-1 and base64, written here: the handshake is
//! their only use).

use crate::http::request::RequestData;

/// The GUID of section 1.3, appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a handshake was refused: the HTTP status to answer with (400, or 426 for a version the
/// server does not speak) and a short reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// SHA-1 (FIPS 180-4) of `data`.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `key` is the base64 of 16 bytes (section 4.2.1, item 5): 22 characters of the
/// alphabet, the last carrying no stray bits, then "==".
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    if b.len() != 24 || &b[22..] != b"==" {
        return false;
    }
    let pos = |c: u8| B64.iter().position(|&x| x == c);
    b[..22].iter().all(|&c| pos(c).is_some()) && pos(b[21]).is_some_and(|v| v & 0xf == 0)
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut v = key.as_bytes().to_vec();
    v.extend_from_slice(GUID);
    base64(&sha1(&v))
}

/// Whether the comma-separated header value `list` has `token` (case-insensitive).
fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Every value of the header `name`, in order.
fn header_values<'a>(d: &'a RequestData, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    (0..d.header_count()).filter_map(move |i| {
        d.header_at(i)
            .and_then(|(n, v)| n.eq_ignore_ascii_case(name).then_some(v))
    })
}

/// Checks an upgrade request against section 4.2.1; gives its key.
pub fn check_request(d: &RequestData) -> Result<&str, Refusal> {
    if d.method() != "GET" {
        return Err(refuse(400, "a WebSocket handshake is a GET"));
    }
    if d.version_minor() < 1 {
        return Err(refuse(400, "a WebSocket handshake needs HTTP/1.1"));
    }
    if !header_values(d, "upgrade").any(|v| has_token(v, "websocket")) {
        return Err(refuse(400, "no Upgrade: websocket"));
    }
    if !header_values(d, "connection").any(|v| has_token(v, "upgrade")) || !d.is_upgrade() {
        return Err(refuse(400, "no Connection: upgrade"));
    }
    match d.header("sec-websocket-version") {
        None => return Err(refuse(400, "no Sec-WebSocket-Version")),
        Some(v) if v.trim() != "13" => {
            return Err(refuse(426, "unsupported Sec-WebSocket-Version (13 is)"))
        }
        _ => {}
    }
    let mut keys = header_values(d, "sec-websocket-key");
    match (keys.next(), keys.next()) {
        (Some(k), None) if valid_key(k.trim()) => Ok(k.trim()),
        _ => Err(refuse(400, "missing or invalid Sec-WebSocket-Key")),
    }
}

/// The subprotocol to answer with: the first of `ours` (in our order of preference) that the
/// client offered in `Sec-WebSocket-Protocol`; none when nothing matches.
pub fn select_subprotocol<'a>(d: &RequestData, ours: &'a [String]) -> Option<&'a str> {
    let offered: Vec<&str> = header_values(d, "sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    ours.iter()
        .map(String::as_str)
        .find(|p| offered.contains(p))
}

/// Writes the 101 answer: no Content-Length (section 15.2 of RFC 9110), no Date or Server.
pub fn write_switch(out: &mut Vec<u8>, key: &str, subprotocol: Option<&str>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(key).as_bytes());
    if let Some(p) = subprotocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Whether `p` may be offered or chosen as a subprotocol: a token (RFC 6455 section 4.1).
pub fn valid_subprotocol(p: &str) -> bool {
    crate::http::response::valid_name(p.as_bytes())
}

/// A client's handshake request for `target` on `host_header`, offering `protocols`, with
/// `extra` headers (checked by the caller).
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    target: &str,
    host_header: &str,
    key: &str,
    protocols: &[String],
    extra: &[(String, String)],
) {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        let _ = write!(s, "Sec-WebSocket-Protocol: {}\r\n", protocols.join(", "));
    }
    for (n, v) in extra {
        let _ = write!(s, "{n}: {v}\r\n");
    }
    s.push_str("\r\n");
    out.extend_from_slice(s.as_bytes());
}

/// The server's answer to a client's handshake, once its head is complete.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// Bytes the head took; what follows is WebSocket frames.
    pub consumed: usize,
    pub subprotocol: Option<String>,
}

/// Why a server's answer was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadAnswer {
    /// More bytes are needed (the head is not complete yet).
    Incomplete,
    /// The head is not HTTP/1.1, over the size limit, or breaks section 4.2.2.
    Refused(String),
}

/// Largest answer head a client reads.
pub(crate) const MAX_ANSWER: usize = 16 * 1024;

/// Checks the answer head at the start of `buf` for the handshake that sent `key` offering
/// `protocols` (section 4.1, the client's checks).
pub(crate) fn check_answer(
    buf: &[u8],
    key: &str,
    protocols: &[String],
) -> Result<Answer, BadAnswer> {
    let refused = |s: &str| Err(BadAnswer::Refused(s.to_string()));
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_ANSWER {
            return refused("answer head too large");
        }
        return Err(BadAnswer::Incomplete);
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return refused("answer head is not text");
    };
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") || code.len() != 3 {
        return refused("answer is not HTTP/1.1");
    }
    if code != "101" {
        return Err(BadAnswer::Refused(format!("answer status {code}, not 101")));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((n, v)) = line.split_once(':') else {
            return refused("malformed answer header");
        };
        if !crate::http::response::valid_name(n.as_bytes()) {
            return refused("malformed answer header");
        }
        headers.push((n, v.trim()));
    }
    let all = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    if !all("upgrade").any(|v| has_token(v, "websocket")) {
        return refused("answer without Upgrade: websocket");
    }
    if !all("connection").any(|v| has_token(v, "upgrade")) {
        return refused("answer without Connection: upgrade");
    }
    if all("sec-websocket-accept").next() != Some(accept_key(key).as_str()) {
        return refused("wrong Sec-WebSocket-Accept");
    }
    if all("sec-websocket-extensions").next().is_some() {
        return refused("an extension that was not offered");
    }
    let mut chosen = all("sec-websocket-protocol");
    let subprotocol = match (chosen.next(), chosen.next()) {
        (None, _) => None,
        (Some(p), None) if protocols.iter().any(|o| o == p) => Some(p.to_string()),
        _ => return refused("a subprotocol that was not offered"),
    };
    Ok(Answer {
        consumed: end + 4,
        subprotocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_and_base64_known_answers() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(&sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        assert_eq!(
            hex(&sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn rfc_accept_key() {
        // Section 1.3's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZR=="), "stray bits");
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(valid_key(&base64(&[0xff; 16])));
    }

    fn answer(extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{extra}\r\n\x01\x00"
        )
        .into_bytes()
    }

    #[test]
    fn client_checks_the_answer() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let protos = vec!["chat".to_string()];
        let a = answer("");
        assert_eq!(
            check_answer(&a, key, &protos),
            Ok(Answer {
                consumed: a.len() - 2,
                subprotocol: None
            })
        );
        let a = answer("Sec-WebSocket-Protocol: chat\r\n");
        assert_eq!(
            check_answer(&a, key, &protos)
                .unwrap()
                .subprotocol
                .as_deref(),
            Some("chat")
        );
        for bad in [
            "Sec-WebSocket-Protocol: other\r\n",
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        ] {
            assert!(
                matches!(
                    check_answer(&answer(bad), key, &protos),
                    Err(BadAnswer::Refused(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check_answer(&answer(""), "AAAAAAAAAAAAAAAAAAAAAA==", &protos),
            Err(BadAnswer::Refused(_))
        ));
        assert_eq!(
            check_answer(&answer("")[..40], key, &protos),
            Err(BadAnswer::Incomplete)
        );
        let refused = check_answer(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
            key,
            &protos,
        );
        assert_eq!(
            refused,
            Err(BadAnswer::Refused("answer status 403, not 101".into()))
        );
        assert!(matches!(
            check_answer(&vec![b'a'; MAX_ANSWER + 1], key, &protos),
            Err(BadAnswer::Refused(_))
        ));
    }

    #[test]
    fn request_and_switch_are_well_formed() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "/chat?x=1",
            "h:8080",
            "dGhlIHNhbXBsZSBub25jZQ==",
            &["a".into(), "b".into()],
            &[("Origin".into(), "http://h".into())],
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: h:8080\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Protocol: a, b\r\n"));
        assert!(text.ends_with("\r\nOrigin: http://h\r\n\r\n"));
        let mut out = Vec::new();
        write_switch(&mut out, "dGhlIHNhbXBsZSBub25jZQ==", Some("chat"));
        let a = check_answer(&out, "dGhlIHNhbXBsZSBub25jZQ==", &["chat".into()]).unwrap();
        assert_eq!(a.consumed, out.len());
        assert_eq!(a.subprotocol.as_deref(), Some("chat"));
    }
}
