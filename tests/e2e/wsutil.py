"""WebSocket helpers for the end-to-end tests: a raw client (the handshake, frames built and
read by hand, so a test can send what no library would) and FNV-1a, the checksum `client --ws`
prints for large messages."""
import base64
import hashlib
import os
import struct

from harness import Reader, connect

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(op, payload=b"", mask=True, fin=True, rsv=0, length=None):
    """One frame; `length` overrides the announced payload length (for oversize heads)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWs:
    """A WebSocket client with no rules of its own: handshake, then any bytes."""

    def __init__(self, port, path="/ws/echo", extra=b"", timeout=10.0):
        self.sock = connect(port, timeout=timeout)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                          b"\r\nSec-WebSocket-Version: 13\r\n\r\n" + extra)
        self.reader = Reader(self.sock)
        self.status, self.headers, _ = self.reader.response(head_only=True)
        if self.status == 101:
            assert self.headers["sec-websocket-accept"] == accept_of(key), self.headers

    def send(self, data):
        self.sock.sendall(data)

    def _need(self, n):
        while len(self.reader.buf) < n:
            self.reader._fill()

    def read_frame(self):
        """(fin, opcode, payload) of the next frame (server frames are never masked)."""
        self._need(2)
        b0, b1 = self.reader.buf[0], self.reader.buf[1]
        assert b1 & 0x80 == 0, "a masked frame from the server"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack(">H", self.reader.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack(">Q", self.reader.buf[2:10])[0], 10
        self._need(off + n)
        payload = self.reader.buf[off:off + n]
        self.reader.buf = self.reader.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def close_code(self):
        """The code of the server's close frame (skipping other frames), then whether the
        server ended the TCP connection too."""
        while True:
            _, op, payload = self.read_frame()
            if op == 0x8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:], self.reader.closed(5)

    def close(self):
        self.sock.close()


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def pattern(n):
    """`client --ws-bytes N`'s message: byte i = i % 251."""
    one = bytes(range(251))
    return (one * (n // 251 + 1))[:n]


def text_pattern(n):
    """`client --ws-text N`'s message: byte i = 'a' + i % 26."""
    one = bytes(range(ord("a"), ord("a") + 26))
    return (one * (n // 26 + 1))[:n]
