//! The receiving half of a WebSocket: frames parsed straight from the receive buffers as they
//! arrive, checked (RSV bits, opcodes, control frame rules, masking by role, fragmentation order,
//! the message size limit, UTF-8 of text), and handed over as messages and control frames.
//!
//! A frame that lies whole in the bytes given is unmasked in place and handed over as a slice of
//! them: no copy. Only what spans reads is kept: a frame head cut short (at most 14 bytes), and
//! the payload of a message that is fragmented or does not fit in one read, which is reassembled
//! here. That state lives in a box made when needed and dropped when the message is done, so an
//! idle reader is a few words.

use super::frame::close_code::{INVALID_DATA, MESSAGE_TOO_BIG, PROTOCOL_ERROR};
use super::frame::{self, Head, Parsed, MAX_CONTROL, MAX_HEAD};
use super::frame::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};

/// Which end reads: a server reads a client's frames (which must be masked), a client reads a
/// server's (which must not be).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Server,
    Client,
}

/// What the reader hands over; the bytes are borrowed until the callback returns.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A close frame: its code (`NO_STATUS` when it had none) and reason (UTF-8).
    Close(u16, &'a [u8]),
}

/// A protocol violation: the close code to fail the connection with, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// A frame whose payload is still arriving.
struct Frame {
    opcode: u8,
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    /// Payload bytes already received (where the mask stands).
    done: u64,
}

/// What only a frame or message in progress needs.
struct Partial {
    head: [u8; MAX_HEAD],
    head_len: usize,
    frame: Option<Frame>,
    /// The opcode of the fragmented or split message being reassembled (0: none).
    msg_op: u8,
    msg: Vec<u8>,
    /// How much of `msg` is known to be UTF-8 (a text message).
    checked: usize,
    /// The payload of a control frame split across reads.
    ctrl: Vec<u8>,
}

impl Partial {
    fn new() -> Box<Partial> {
        Box::new(Partial {
            head: [0; MAX_HEAD],
            head_len: 0,
            frame: None,
            msg_op: 0,
            msg: Vec::new(),
            checked: 0,
            ctrl: Vec::new(),
        })
    }

    fn idle(&self) -> bool {
        self.head_len == 0 && self.frame.is_none() && self.msg_op == 0
    }
}

/// The incremental frame parser of one connection.
pub(crate) struct Reader {
    role: Role,
    max_message: usize,
    partial: Option<Box<Partial>>,
}

/// Checks the UTF-8 of a text message reassembled so far: fails on a sequence that can never
/// become valid, leaves a cut-off one at the end for the next piece.
fn check_utf8(msg: &[u8], checked: &mut usize, complete: bool) -> Result<(), Violation> {
    const BAD: Violation = violation(INVALID_DATA, "text message is not UTF-8");
    match std::str::from_utf8(&msg[*checked..]) {
        Ok(_) => *checked = msg.len(),
        Err(e) if e.error_len().is_none() && !complete => *checked += e.valid_up_to(),
        Err(_) => return Err(BAD),
    }
    if complete && *checked != msg.len() {
        return Err(BAD);
    }
    Ok(())
}

impl Reader {
    /// A reader for `role` taking messages of at most `max_message` bytes (reassembled).
    pub(crate) fn new(role: Role, max_message: usize) -> Reader {
        Reader {
            role,
            max_message,
            partial: None,
        }
    }

    /// Whether a frame or a fragmented message is in progress (memory is held).
    #[cfg(test)]
    pub(crate) fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Parses `data` (unmasking it in place), calling `on` for each message and control frame.
    /// `on` returns whether to go on: after `false`, parsing stops at that frame's end and the
    /// number of bytes consumed is returned (the caller keeps the rest for later); otherwise
    /// all of `data` is consumed. A violation ends the connection: do not feed it again.
    pub(crate) fn feed(
        &mut self,
        data: &mut [u8],
        mut on: impl FnMut(Event<'_>) -> bool,
    ) -> Result<usize, Violation> {
        let mut pos = 0;
        while pos < data.len() {
            if self.partial.as_ref().is_some_and(|p| p.frame.is_some()) {
                let go;
                (pos, go) = self.continue_frame(data, pos, &mut on)?;
                if !go {
                    return Ok(pos);
                }
                continue;
            }
            let Some(head) = self.take_head(data, &mut pos)? else {
                return Ok(data.len()); // a head cut short: kept for the next read
            };
            self.check(&head)?;
            let avail = (data.len() - pos) as u64;
            if head.len > avail {
                self.start_frame(&head);
                continue; // its payload follows, in this read and later ones
            }
            let end = pos + head.len as usize;
            let payload = &mut data[pos..end];
            pos = end;
            if let Some(k) = head.mask {
                frame::apply_mask(payload, k, 0);
            }
            if !self.whole_frame(&head, payload, &mut on)? {
                return Ok(pos);
            }
        }
        Ok(data.len())
    }

    /// The next frame head: from the bytes kept from earlier reads completed with new ones, or
    /// straight from `data`. `None` when it is still incomplete (what there is was kept).
    fn take_head(&mut self, data: &[u8], pos: &mut usize) -> Result<Option<Head>, Violation> {
        const LONG: Violation = violation(PROTOCOL_ERROR, "frame length over 2^63");
        let kept = self.partial.as_ref().map_or(0, |p| p.head_len);
        if kept == 0 {
            return match frame::parse_head(&data[*pos..]) {
                Parsed::Head(h) => {
                    *pos += h.head_len;
                    Ok(Some(h))
                }
                Parsed::Need(_) => {
                    let p = self.partial.get_or_insert_with(Partial::new);
                    let rest = &data[*pos..];
                    p.head[..rest.len()].copy_from_slice(rest);
                    p.head_len = rest.len();
                    *pos = data.len();
                    Ok(None)
                }
                Parsed::BadLength => Err(LONG),
            };
        }
        let p = self.partial.as_mut().expect("kept head bytes");
        loop {
            match frame::parse_head(&p.head[..p.head_len]) {
                Parsed::Head(h) => {
                    p.head_len = 0;
                    return Ok(Some(h));
                }
                Parsed::Need(n) => {
                    let take = (n - p.head_len).min(data.len() - *pos);
                    p.head[p.head_len..p.head_len + take].copy_from_slice(&data[*pos..*pos + take]);
                    p.head_len += take;
                    *pos += take;
                    if p.head_len < n {
                        return Ok(None);
                    }
                }
                Parsed::BadLength => return Err(LONG),
            }
        }
    }

    fn message_in_progress(&self) -> u8 {
        self.partial.as_ref().map_or(0, |p| p.msg_op)
    }

    /// The rules of sections 5.2 to 5.5 for a frame head, and the size limit.
    fn check(&self, h: &Head) -> Result<(), Violation> {
        if h.rsv != 0 {
            return Err(violation(PROTOCOL_ERROR, "reserved bits set"));
        }
        match h.opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
            _ => return Err(violation(PROTOCOL_ERROR, "reserved opcode")),
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => {
                return Err(violation(PROTOCOL_ERROR, "unmasked frame from a client"))
            }
            (Role::Client, true) => {
                return Err(violation(PROTOCOL_ERROR, "masked frame from a server"))
            }
            _ => {}
        }
        if h.opcode >= OP_CLOSE {
            if !h.fin {
                return Err(violation(PROTOCOL_ERROR, "fragmented control frame"));
            }
            if h.len > MAX_CONTROL as u64 {
                return Err(violation(PROTOCOL_ERROR, "control frame over 125 bytes"));
            }
            return Ok(());
        }
        let in_progress = self.message_in_progress() != 0;
        if h.opcode == OP_CONTINUATION && !in_progress {
            return Err(violation(
                PROTOCOL_ERROR,
                "continuation frame without a message",
            ));
        }
        if h.opcode != OP_CONTINUATION && in_progress {
            return Err(violation(
                PROTOCOL_ERROR,
                "new message inside a fragmented one",
            ));
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.msg.len()) as u64;
        if so_far + h.len > self.max_message as u64 {
            return Err(violation(MESSAGE_TOO_BIG, "message too big"));
        }
        Ok(())
    }

    /// Sets up a frame whose payload did not arrive whole.
    fn start_frame(&mut self, h: &Head) {
        let p = self.partial.get_or_insert_with(Partial::new);
        if h.opcode >= OP_CLOSE {
            p.ctrl.clear();
            p.ctrl.reserve_exact(h.len as usize);
        } else {
            if h.opcode != OP_CONTINUATION {
                p.msg_op = h.opcode;
                p.checked = 0;
            }
            // The whole frame is announced: room for it at once (within the checked limit).
            p.msg.reserve(h.len as usize);
        }
        p.frame = Some(Frame {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask,
            remaining: h.len,
            done: 0,
        });
    }

    /// Takes what `data` has of the payload of the frame in progress.
    fn continue_frame(
        &mut self,
        data: &mut [u8],
        pos: usize,
        on: &mut impl FnMut(Event<'_>) -> bool,
    ) -> Result<(usize, bool), Violation> {
        let p = self.partial.as_mut().expect("a frame in progress");
        let f = p.frame.as_mut().expect("a frame in progress");
        let n = f.remaining.min((data.len() - pos) as u64) as usize;
        let chunk = &mut data[pos..pos + n];
        if let Some(k) = f.mask {
            frame::apply_mask(chunk, k, f.done as usize);
        }
        f.done += n as u64;
        f.remaining -= n as u64;
        let (opcode, fin, finished) = (f.opcode, f.fin, f.remaining == 0);
        if opcode >= OP_CLOSE {
            p.ctrl.extend_from_slice(chunk);
        } else {
            p.msg.extend_from_slice(chunk);
            if p.msg_op == OP_TEXT {
                check_utf8(&p.msg, &mut p.checked, false)?;
            }
        }
        if !finished {
            return Ok((pos + n, true));
        }
        p.frame = None;
        let go = if opcode >= OP_CLOSE {
            let ctrl = std::mem::take(&mut p.ctrl);
            self.release_if_idle();
            control(opcode, &ctrl, on)?
        } else if fin {
            self.finish_message(on)?
        } else {
            true
        };
        Ok((pos + n, go))
    }

    /// Handles a frame whose payload (unmasked) lies whole in the input.
    fn whole_frame(
        &mut self,
        h: &Head,
        payload: &[u8],
        on: &mut impl FnMut(Event<'_>) -> bool,
    ) -> Result<bool, Violation> {
        if h.opcode >= OP_CLOSE {
            return control(h.opcode, payload, on);
        }
        if h.fin && h.opcode != OP_CONTINUATION {
            // The common case: a whole message in place, no copy.
            return Ok(match h.opcode {
                OP_TEXT => match std::str::from_utf8(payload) {
                    Ok(s) => on(Event::Text(s)),
                    Err(_) => return Err(violation(INVALID_DATA, "text message is not UTF-8")),
                },
                _ => on(Event::Binary(payload)),
            });
        }
        let p = self.partial.get_or_insert_with(Partial::new);
        if h.opcode != OP_CONTINUATION {
            p.msg_op = h.opcode;
            p.checked = 0;
        }
        p.msg.extend_from_slice(payload);
        if p.msg_op == OP_TEXT {
            check_utf8(&p.msg, &mut p.checked, false)?;
        }
        if h.fin {
            self.finish_message(on)
        } else {
            Ok(true)
        }
    }

    /// Hands over the reassembled message and forgets it.
    fn finish_message(
        &mut self,
        on: &mut impl FnMut(Event<'_>) -> bool,
    ) -> Result<bool, Violation> {
        let p = self.partial.as_mut().expect("a message in progress");
        let op = std::mem::replace(&mut p.msg_op, 0);
        let msg = std::mem::take(&mut p.msg);
        if op == OP_TEXT {
            let mut checked = p.checked;
            check_utf8(&msg, &mut checked, true)?;
        }
        self.release_if_idle();
        Ok(if op == OP_TEXT {
            // SAFETY: `check_utf8` with `complete` found the whole of `msg` to be UTF-8.
            on(Event::Text(unsafe { std::str::from_utf8_unchecked(&msg) }))
        } else {
            on(Event::Binary(&msg))
        })
    }

    /// Drops the partial state once nothing is in progress (an idle reader holds no memory).
    fn release_if_idle(&mut self) {
        if self.partial.as_ref().is_some_and(|p| p.idle()) {
            self.partial = None;
        }
    }
}

/// Hands over a control frame.
fn control(
    opcode: u8,
    payload: &[u8],
    on: &mut impl FnMut(Event<'_>) -> bool,
) -> Result<bool, Violation> {
    Ok(match opcode {
        OP_PING => on(Event::Ping(payload)),
        OP_PONG => on(Event::Pong(payload)),
        _ => match frame::parse_close(payload) {
            Ok((code, reason)) => on(Event::Close(code, reason)),
            Err(frame::BadClose(code, reason)) => return Err(violation(code, reason)),
        },
    })
}

/// The fuzz harness (`ws_frame`): the first byte picks the role, the message limit and how the
/// rest of the input is cut into reads and where the reader is stopped and resumed; whatever
/// the cuts, the events and the violation must be those of reading the input whole, and every
/// event must keep the rules (UTF-8 text, control payloads of at most 125 bytes, messages
/// within the limit).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz(data: &[u8]) {
    let Some((&cfg, input)) = data.split_first() else {
        return;
    };
    let role = if cfg & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let max = [0usize, 1, 125, 4096][(cfg >> 1 & 3) as usize];
    let step = 1 + (cfg >> 3) as usize % 17;
    let stop_every = (cfg >> 5) as usize; // 0: never stop
    type Seen = Vec<(u8, Vec<u8>)>;
    let check = |e: &Event<'_>, seen: &mut Seen| {
        let (kind, bytes) = match e {
            Event::Text(t) => (1, t.as_bytes()),
            Event::Binary(b) => (2, *b),
            Event::Ping(p) => (9, *p),
            Event::Pong(p) => (10, *p),
            Event::Close(c, r) => {
                assert!(frame::valid_close_code(*c) || *c == 1005);
                assert!(std::str::from_utf8(r).is_ok());
                (8, *r)
            }
        };
        if kind >= 8 {
            assert!(bytes.len() <= MAX_CONTROL);
        } else {
            assert!(bytes.len() <= max);
        }
        seen.push((kind, bytes.to_vec()));
    };
    let mut whole = Reader::new(role, max);
    let mut want = Vec::new();
    let mut buf = input.to_vec();
    let want_end = whole.feed(&mut buf, |e| {
        check(&e, &mut want);
        true
    });
    let mut r = Reader::new(role, max);
    let mut got = Vec::new();
    let mut n = 0usize;
    let mut end = Ok(input.len());
    let mut pending: Vec<u8> = Vec::new();
    'outer: for piece in input.chunks(step) {
        pending.extend_from_slice(piece);
        loop {
            let mut b = std::mem::take(&mut pending);
            let res = r.feed(&mut b, |e| {
                check(&e, &mut got);
                n += 1;
                stop_every == 0 || n % stop_every != 0
            });
            match res {
                Ok(used) if used < b.len() => pending = b[used..].to_vec(),
                Ok(_) => break,
                Err(v) => {
                    end = Err(v);
                    break 'outer;
                }
            }
        }
    }
    assert_eq!(got, want);
    assert_eq!(end.map(|_| ()), want_end.map(|_| ()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ws::frame::write_frame;

    /// What a reader made of some input: the events (owned) and how it ended.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(u16, Vec<u8>),
    }

    fn own(e: Event<'_>) -> Got {
        match e {
            Event::Text(s) => Got::Text(s.to_string()),
            Event::Binary(b) => Got::Binary(b.to_vec()),
            Event::Ping(b) => Got::Ping(b.to_vec()),
            Event::Pong(b) => Got::Pong(b.to_vec()),
            Event::Close(c, r) => Got::Close(c, r.to_vec()),
        }
    }

    /// Feeds `input` in pieces of `step` bytes.
    fn read(
        role: Role,
        max: usize,
        input: &[u8],
        step: usize,
    ) -> (Vec<Got>, Result<(), Violation>) {
        let mut r = Reader::new(role, max);
        let mut got = Vec::new();
        for piece in input.chunks(step.max(1)) {
            let mut piece = piece.to_vec();
            match r.feed(&mut piece, |e| {
                got.push(own(e));
                true
            }) {
                Ok(n) => assert_eq!(n, piece.len()),
                Err(v) => return (got, Err(v)),
            }
        }
        (got, Ok(()))
    }

    const KEY: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

    fn frame(op: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::new();
        frame::write_head(&mut out, op, fin, payload.len(), mask);
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(k) = mask {
            frame::apply_mask(&mut out[start..], k, 0);
        }
        out
    }

    /// Every way of cutting the input gives the same events.
    fn same_in_every_split(role: Role, input: &[u8], want: &[Got]) {
        for step in [1, 2, 3, 5, 7, 13, 64, 1000, input.len()] {
            let (got, r) = read(role, 1 << 20, input, step);
            assert_eq!(r, Ok(()), "step {step}");
            assert_eq!(got, want, "step {step}");
        }
    }

    #[test]
    fn messages_in_any_split_of_the_input() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut input = Vec::new();
        input.extend(frame(OP_TEXT, true, "héllo wörld".as_bytes(), KEY));
        input.extend(frame(OP_BINARY, true, &[], KEY));
        input.extend(frame(OP_BINARY, true, &big, KEY));
        // Fragmented text, a ping between its fragments; a multi-byte character cut in two.
        let text = "añb€c".as_bytes();
        input.extend(frame(OP_TEXT, false, &text[..2], KEY));
        input.extend(frame(OP_PING, true, b"are you there", KEY));
        input.extend(frame(OP_CONTINUATION, false, &text[2..5], KEY));
        input.extend(frame(OP_CONTINUATION, true, &text[5..], KEY));
        input.extend(frame(OP_PONG, true, b"", KEY));
        input.extend(frame(OP_CLOSE, true, &[0x03, 0xe8, b'b', b'y', b'e'], KEY));
        same_in_every_split(
            Role::Server,
            &input,
            &[
                Got::Text("héllo wörld".into()),
                Got::Binary(vec![]),
                Got::Binary(big.clone()),
                Got::Ping(b"are you there".to_vec()),
                Got::Text("añb€c".into()),
                Got::Pong(vec![]),
                Got::Close(1000, b"bye".to_vec()),
            ],
        );
        // A client reads unmasked frames.
        let mut input = frame(OP_BINARY, true, &big, None);
        input.extend(frame(OP_CLOSE, true, &[], None));
        same_in_every_split(
            Role::Client,
            &input,
            &[Got::Binary(big), Got::Close(1005, vec![])],
        );
    }

    #[test]
    fn a_whole_frame_is_unmasked_in_place_and_handed_over_without_copy() {
        let mut input = frame(OP_BINARY, true, b"in place", KEY);
        let range = input.as_ptr_range();
        let mut r = Reader::new(Role::Server, 100);
        r.feed(&mut input, |e| {
            let Event::Binary(b) = e else { panic!() };
            assert_eq!(b, b"in place");
            assert!(range.contains(&b.as_ptr()), "a slice of the input");
            true
        })
        .unwrap();
        assert!(!r.in_progress(), "nothing kept");
        assert_eq!(&input[6..], b"in place");
    }

    fn violation_of(role: Role, max: usize, input: &[u8]) -> Violation {
        for step in [1, 3, input.len()] {
            let (_, r) = read(role, max, input, step);
            assert!(r.is_err(), "step {step}: {input:?}");
        }
        read(role, max, input, input.len()).1.unwrap_err()
    }

    #[test]
    fn violations_close_with_the_right_code() {
        let s = Role::Server;
        let code = |input: &[u8]| violation_of(s, 1000, input).code;
        // Unmasked frames from a client, masked ones from a server.
        assert_eq!(code(&frame(OP_TEXT, true, b"hi", None)), 1002);
        assert_eq!(
            violation_of(Role::Client, 10, &frame(OP_TEXT, true, b"hi", KEY)).code,
            1002
        );
        // RSV bits, reserved opcodes.
        let mut f = frame(OP_TEXT, true, b"hi", KEY);
        f[0] |= 0x40;
        assert_eq!(code(&f), 1002);
        for op in [3, 7, 0xB, 0xF] {
            assert_eq!(code(&frame(op, true, b"", KEY)), 1002, "opcode {op}");
        }
        // Control frames: fragmented, or over 125 bytes.
        assert_eq!(code(&frame(OP_PING, false, b"", KEY)), 1002);
        assert_eq!(code(&frame(OP_PING, true, &[0; 126], KEY)), 1002);
        assert_eq!(code(&frame(OP_CLOSE, true, &[1], KEY)), 1002);
        assert_eq!(code(&frame(OP_CLOSE, true, &[0x03, 0xed], KEY)), 1002);
        assert_eq!(code(&frame(OP_CLOSE, true, &[0x03, 0xe8, 0xc3], KEY)), 1007);
        // Fragmentation order.
        assert_eq!(code(&frame(OP_CONTINUATION, true, b"x", KEY)), 1002);
        let mut f = frame(OP_TEXT, false, b"x", KEY);
        f.extend(frame(OP_BINARY, true, b"y", KEY));
        assert_eq!(code(&f), 1002);
        // Invalid UTF-8, whole or across fragments; a character left unfinished.
        assert_eq!(code(&frame(OP_TEXT, true, &[0xff], KEY)), 1007);
        let mut f = frame(OP_TEXT, false, b"ok", KEY);
        f.extend(frame(OP_CONTINUATION, true, &[0xed, 0xa0, 0x80], KEY));
        assert_eq!(code(&f), 1007);
        let mut f = frame(OP_TEXT, false, &[0xe2, 0x82], KEY);
        f.extend(frame(OP_CONTINUATION, true, b"", KEY));
        assert_eq!(code(&f), 1007);
        // Over the size limit: one frame, or fragments adding up; said by the head alone.
        assert_eq!(code(&frame(OP_BINARY, true, &[0; 1001], KEY)), 1009);
        let mut f = frame(OP_BINARY, false, &[0; 600], KEY);
        f.extend(frame(OP_CONTINUATION, true, &[0; 401], KEY));
        assert_eq!(code(&f), 1009);
        let mut head = Vec::new();
        frame::write_head(&mut head, OP_BINARY, true, 1 << 40, KEY);
        assert_eq!(code(&head), 1009);
        let mut head = vec![0x82, 0xFF];
        head.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(code(&head), 1002);
    }

    #[test]
    fn stopping_returns_the_rest_untouched() {
        let mut input = frame(OP_TEXT, true, b"one", KEY);
        let first = input.len();
        input.extend(frame(OP_TEXT, true, b"two", KEY));
        let rest = input[first..].to_vec();
        let mut r = Reader::new(Role::Server, 100);
        let mut n = 0;
        let used = r
            .feed(&mut input, |_| {
                n += 1;
                false
            })
            .unwrap();
        assert_eq!((n, used), (1, first));
        assert_eq!(
            &input[first..],
            &rest[..],
            "still masked, for the next feed"
        );
        let mut again = rest.clone();
        let mut got = Vec::new();
        r.feed(&mut again, |e| {
            got.push(own(e));
            true
        })
        .unwrap();
        assert_eq!(got, [Got::Text("two".into())]);
    }

    #[test]
    fn write_frame_output_reads_back() {
        let mut out = Vec::new();
        write_frame(&mut out, OP_TEXT, b"abc", KEY);
        write_frame(&mut out, OP_PONG, b"p", KEY);
        let (got, r) = read(Role::Server, 10, &out, out.len());
        assert_eq!(r, Ok(()));
        assert_eq!(got, [Got::Text("abc".into()), Got::Pong(b"p".to_vec())]);
    }
}
