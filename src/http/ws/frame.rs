//! The frame codec of RFC 6455 section 5: opcodes, frame heads (parsed from bytes, written into
//! an output buffer), masking, close payloads and close codes. No state and no I/O: the reader
//! (`reader`) and the connection (`conn`) use it.

/// Frame opcodes (section 5.2).
pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// Close codes (section 7.4).
pub mod close_code {
    /// The purpose of the connection was fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (a server shutting down, a page navigated away).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error: bad framing, masking, opcode, control frame or close code.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message of a type the endpoint does not accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Never sent: the close frame had no code.
    pub const NO_STATUS: u16 = 1005;
    /// Never sent: the connection ended without a closing handshake.
    pub const ABNORMAL: u16 = 1006;
    /// A text message (or close reason) that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message that violates the endpoint's policy.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message larger than the endpoint takes.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// An unexpected condition on the server.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// The longest control frame payload (section 5.5).
pub(crate) const MAX_CONTROL: usize = 125;
/// The longest close reason: a control payload less the two-byte code.
pub(crate) const MAX_CLOSE_REASON: usize = MAX_CONTROL - 2;
/// The longest frame head: 2 bytes, an 8-byte length, a 4-byte mask.
pub(crate) const MAX_HEAD: usize = 14;

/// Whether `code` may travel in a close frame: the codes of section 7.4.1 an endpoint may send,
/// the IANA-registered 1012..1014, and the ranges for libraries (3000..3999) and applications
/// (4000..4999). 1004, 1005, 1006 and 1015 are reserved for reporting, never sent.
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A frame head as read from the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub fin: bool,
    /// RSV1..RSV3 (no extension is negotiated, so they must be 0).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
    /// Bytes the head took.
    pub head_len: usize,
}

/// Outcome of parsing a head from a prefix of the input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    Head(Head),
    /// At least this many bytes are needed in all.
    Need(usize),
    /// A 64-bit length with its top bit set (section 5.2 forbids it).
    BadLength,
}

/// Parses the frame head at the start of `b`.
pub(crate) fn parse_head(b: &[u8]) -> Parsed {
    if b.len() < 2 {
        return Parsed::Need(2);
    }
    let masked = b[1] & 0x80 != 0;
    let len7 = b[1] & 0x7f;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let head_len = 2 + ext + if masked { 4 } else { 0 };
    if b.len() < head_len {
        return Parsed::Need(head_len);
    }
    let len = match ext {
        0 => len7 as u64,
        2 => u16::from_be_bytes([b[2], b[3]]) as u64,
        _ => {
            let l = u64::from_be_bytes(b[2..10].try_into().unwrap());
            if l >> 63 != 0 {
                return Parsed::BadLength;
            }
            l
        }
    };
    let mask = masked.then(|| b[2 + ext..6 + ext].try_into().unwrap());
    Parsed::Head(Head {
        fin: b[0] & 0x80 != 0,
        rsv: (b[0] >> 4) & 0x7,
        opcode: b[0] & 0x0f,
        mask,
        len,
        head_len,
    })
}

/// Appends a frame head to `out`: FIN set unless `more` follows, no RSV bits, the shortest
/// length encoding, and `mask` when given (a client's frames).
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    opcode: u8,
    fin: bool,
    len: usize,
    mask: Option<[u8; 4]>,
) {
    let b0 = if fin { 0x80 } else { 0 } | opcode;
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.extend_from_slice(&[b0, m | len as u8]);
    } else if len <= u16::MAX as usize {
        out.extend_from_slice(&[b0, m | 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[b0, m | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
}

/// XORs `data` with the mask `key`, the first byte of `data` being byte `offset` of the payload
/// (a payload may arrive in pieces). Works a word at a time.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let mut k = key;
    k.rotate_left(offset & 3);
    let word = u32::from_ne_bytes(k) as u64;
    let word = word | word << 32;
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().unwrap()) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// Appends a whole frame (head and payload, masked with `mask` when given) to `out`.
pub(crate) fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.reserve(MAX_HEAD + payload.len());
    write_head(out, opcode, true, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[start..], k, 0);
    }
}

/// A close frame's payload: `code` (big-endian) then `reason`; empty for `NO_STATUS`.
pub(crate) fn close_payload(code: u16, reason: &[u8]) -> ([u8; MAX_CONTROL], usize) {
    let mut p = [0u8; MAX_CONTROL];
    if code == close_code::NO_STATUS {
        return (p, 0);
    }
    let reason = &reason[..reason.len().min(MAX_CLOSE_REASON)];
    p[..2].copy_from_slice(&code.to_be_bytes());
    p[2..2 + reason.len()].copy_from_slice(reason);
    (p, 2 + reason.len())
}

/// Why a received close payload is refused: the close code to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadClose(pub u16, pub &'static str);

/// Reads a received close payload: (code, reason). No payload is `NO_STATUS`; one byte, or a
/// code that may not be sent, is a protocol error; a reason that is not UTF-8 is invalid data.
pub(crate) fn parse_close(p: &[u8]) -> Result<(u16, &[u8]), BadClose> {
    match p.len() {
        0 => Ok((close_code::NO_STATUS, &[])),
        1 => Err(BadClose(
            close_code::PROTOCOL_ERROR,
            "close payload of one byte",
        )),
        _ => {
            let code = u16::from_be_bytes([p[0], p[1]]);
            if !valid_close_code(code) {
                return Err(BadClose(close_code::PROTOCOL_ERROR, "invalid close code"));
            }
            if std::str::from_utf8(&p[2..]).is_err() {
                return Err(BadClose(
                    close_code::INVALID_DATA,
                    "close reason is not UTF-8",
                ));
            }
            Ok((code, &p[2..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(b: &[u8]) -> Head {
        match parse_head(b) {
            Parsed::Head(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc_examples_parse() {
        // Section 5.7: a single-frame unmasked text message "Hello".
        let h = head(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            (h.fin, h.opcode, h.len, h.head_len, h.mask),
            (true, OP_TEXT, 5, 2, None)
        );
        // A masked "Hello".
        let mut f = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let h = head(&f);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.head_len, 6);
        apply_mask(&mut f[6..], h.mask.unwrap(), 0);
        assert_eq!(&f[6..], b"Hello");
        // A fragmented "Hel" + "lo".
        let h = head(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!h.fin && h.opcode == OP_TEXT);
        let h = head(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(h.fin && h.opcode == OP_CONTINUATION);
        // 256 bytes and 64 KiB binary messages: the 16- and 64-bit lengths.
        let h = head(&[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!((h.len, h.head_len), (256, 4));
        let h = head(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.len, h.head_len), (65536, 10));
    }

    #[test]
    fn short_input_asks_for_more_and_huge_lengths_are_refused() {
        assert_eq!(parse_head(&[]), Parsed::Need(2));
        assert_eq!(parse_head(&[0x82]), Parsed::Need(2));
        assert_eq!(parse_head(&[0x82, 0xFE, 0x01]), Parsed::Need(8));
        assert_eq!(parse_head(&[0x82, 0x7F, 0, 0]), Parsed::Need(10));
        assert_eq!(
            parse_head(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Parsed::BadLength
        );
        let h = head(&[0x72, 0x00]);
        assert_eq!(h.rsv, 0x7);
    }

    #[test]
    fn heads_round_trip_with_the_shortest_length() {
        for (len, want) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (1 << 33, 10),
        ] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut out = Vec::new();
                write_head(&mut out, OP_BINARY, len != 0, len, mask);
                let h = head(&out);
                let extra = if mask.is_some() { 4 } else { 0 };
                assert_eq!(out.len(), want + extra);
                assert_eq!(
                    (h.len, h.mask, h.fin, h.opcode, h.rsv, h.head_len),
                    (len as u64, mask, len != 0, OP_BINARY, 0, want + extra)
                );
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for i in 0..1000 {
            assert_eq!(whole[i], data[i] ^ key[i % 4]);
        }
        for split in [1, 3, 7, 8, 13, 500, 999] {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(pieces, whole, "split at {split}");
        }
        let mut frame = Vec::new();
        write_frame(&mut frame, OP_TEXT, &data, Some(key));
        let h = head(&frame);
        apply_mask(&mut frame[h.head_len..], key, 0);
        assert_eq!(&frame[h.head_len..], &data[..]);
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(&[]), Ok((close_code::NO_STATUS, &b""[..])));
        assert_eq!(parse_close(&[0x03]).unwrap_err().0, 1002);
        assert_eq!(
            parse_close(&[0x03, 0xe8, b'o', b'k']),
            Ok((1000, &b"ok"[..]))
        );
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let p = bad.to_be_bytes();
            assert_eq!(parse_close(&p).unwrap_err().0, 1002, "{bad}");
        }
        for good in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(parse_close(&good.to_be_bytes()).is_ok(), "{good}");
        }
        assert_eq!(parse_close(&[0x03, 0xe8, 0xff]).unwrap_err().0, 1007);
        let (p, n) = close_payload(1001, &[b'x'; 200]);
        assert_eq!(n, MAX_CONTROL);
        assert_eq!(parse_close(&p[..n]).unwrap().0, 1001);
        assert_eq!(close_payload(close_code::NO_STATUS, b"x").1, 0);
    }
}
