"""End to end: WebSocket, on each backend, against another implementation (Python's
`websockets`) both ways. Its client against `server`'s /ws/echo: text and binary messages from
0 bytes to 16 MiB, fragmented messages, ping/pong, closing handshakes from either side (the
server's shutdown says 1001); raw frames no library would send (unmasked, invalid UTF-8,
oversize, reserved bits and opcodes, bad control frames and close codes) closed with the right
code; clients that vanish (killed, or stopped with keep-alive pings on): the server frees
everything; 10,000 idle connections and their memory. /ws/events against a real PostgreSQL:
NOTIFY payloads as text messages. And `client --ws` against a `websockets` server (echo,
fragments, pings, a server's close) and against a raw server that breaks the rules."""
import asyncio
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

import websockets
from websockets.sync.client import connect as ws_connect

from harness import BACKENDS, BIN, Cluster, connect, exchange, open_fds, rss_kib, server, settled_fds, wait_until
from wsutil import RawWs, fnv1a, frame, pattern, text_pattern

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]


def url(srv, path="/ws/echo"):
    return f"ws://127.0.0.1:{srv.port}{path}"


def make_server_tests(backend):
    class WsServer(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.srv = server(backend=backend)

        @classmethod
        def tearDownClass(cls):
            assert cls.srv.stop() == 0

        def setUp(self):
            self.fds = settled_fds(self.srv.pid)

        def tearDown(self):
            # Every test ends with the server's fd count back where it started.
            self.assertTrue(wait_until(lambda: open_fds(self.srv.pid) == self.fds, 10),
                            f"fds {open_fds(self.srv.pid)} != {self.fds}")

        def test_echo_text_and_binary_from_0_bytes_to_16_mib(self):
            with ws_connect(url(self.srv), max_size=None, close_timeout=10) as ws:
                for n in SIZES:
                    data = pattern(n)
                    ws.send(data)
                    self.assertEqual(ws.recv(timeout=30), data, n)
                    text = ("añ€" * (n // 6 + 1))[: n // 2]
                    ws.send(text)
                    self.assertEqual(ws.recv(timeout=30), text, n)

        def test_fragmented_messages_are_reassembled(self):
            with ws_connect(url(self.srv), max_size=None) as ws:
                ws.send(["frag", "men", "ted", ""])
                self.assertEqual(ws.recv(timeout=10), "fragmented")
                big = [pattern(100_000)] * 40
                ws.send(big)
                self.assertEqual(ws.recv(timeout=30), b"".join(big))
                # A multi-byte character cut between two fragments.
                ws.send(["a\u00f1"[:1], "\u00f1b"])
                self.assertEqual(ws.recv(timeout=10), "a\u00f1b")

        def test_ping_pong_and_pings_from_the_server_are_answered(self):
            with ws_connect(url(self.srv)) as ws:
                for payload in [b"", b"x", b"p" * 125]:
                    self.assertTrue(ws.ping(payload).wait(10), payload)
                ws.send("after pings")
                self.assertEqual(ws.recv(timeout=10), "after pings")

        def test_client_close_handshake(self):
            ws = ws_connect(url(self.srv))
            ws.send("one")
            self.assertEqual(ws.recv(timeout=10), "one")
            ws.close(4001, "client done")
            self.assertEqual(ws.close_code, 4001)  # the server echoed the code
            self.assertEqual(ws.protocol.close_rcvd.code, 4001)

        def test_handshake_refusals(self):
            base = (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
            (st, h, _), r = exchange(self.srv.port, base + b"Sec-WebSocket-Version: 8\r\n\r\n")
            self.assertEqual((st, h.get("sec-websocket-version")), (426, b"13"))
            self.assertTrue(r.closed())
            for bad in [base + b"\r\n",
                        base.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"tooshort") + b"Sec-WebSocket-Version: 13\r\n\r\n",
                        base.replace(b"Upgrade: websocket", b"Upgrade: h2c") + b"Sec-WebSocket-Version: 13\r\n\r\n",
                        base.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Sec-WebSocket-Version: 13\r\n\r\n"]:
                (st, _, body), r = exchange(self.srv.port, bad)
                self.assertEqual(st, 400, (bad, body))
                self.assertTrue(r.closed())
            (st, h, _), _ = exchange(self.srv.port, base.replace(b"GET", b"POST") + b"\r\n")
            self.assertEqual(st, 405)
            # A client that sends frames right behind its request: read after the switch.
            ws = RawWs(self.srv.port, extra=frame(0x1, b"eager") + frame(0x8, b"\x03\xe8"))
            self.assertEqual(ws.status, 101)
            self.assertEqual(ws.read_frame(), (True, 0x1, b"eager"))
            self.assertEqual(ws.close_code()[0], 1000)
            ws.close()

        def test_protocol_violations_close_with_their_code(self):
            cases = [
                (frame(0x1, b"unmasked", mask=False), 1002),
                (frame(0x1, b"\xc3\x28"), 1007),
                (frame(0x1, b"ok", fin=False) + frame(0x0, b"\xed\xa0\x80"), 1007),
                (frame(0x1, b"\xe2\x82", fin=False) + frame(0x0, b""), 1007),
                (frame(0x2, length=(16 << 20) + 1), 1009),
                (frame(0x2, b"x" * 600_000, fin=False) + frame(0x0, length=16 << 20), 1009),
                (frame(0x1, b"rsv", rsv=4), 1002),
                (frame(0x3), 1002),
                (frame(0xB), 1002),
                (frame(0x9, b"p" * 126), 1002),
                (frame(0x9, b"", fin=False), 1002),
                (frame(0x0, b"orphan"), 1002),
                (frame(0x1, b"a", fin=False) + frame(0x2, b"b"), 1002),
                (frame(0x8, b"\x03"), 1002),
                (frame(0x8, struct.pack(">H", 1005)), 1002),
                (frame(0x8, struct.pack(">H", 1000) + b"\xff"), 1007),
            ]
            for data, want in cases:
                ws = RawWs(self.srv.port)
                ws.send(data)
                code, _, closed = ws.close_code()
                self.assertEqual(code, want, data[:16])
                self.assertTrue(closed, "the server ends the TCP connection")
                ws.close()

        def test_a_killed_client_is_noticed_and_freed(self):
            code = ("import sys, time; from websockets.sync.client import connect\n"
                    "with connect(sys.argv[1]) as ws:\n"
                    "    ws.send('hi'); ws.recv(); print('open', flush=True); time.sleep(60)")
            before = open_fds(self.srv.pid)
            p = subprocess.Popen(["python3", "-c", code, url(self.srv)], stdout=subprocess.PIPE)
            self.assertEqual(p.stdout.readline().strip(), b"open")
            self.assertTrue(wait_until(lambda: open_fds(self.srv.pid) == before + 1, 5))
            p.kill()
            p.wait()
            self.assertTrue(wait_until(lambda: open_fds(self.srv.pid) == before, 10))

    WsServer.__name__ = f"WsServer_{backend}"
    return WsServer


def make_lifecycle_tests(backend):
    class WsLifecycle(unittest.TestCase):
        def test_shutdown_says_1001_and_exits_0(self):
            srv = server(backend=backend)
            try:
                ws = ws_connect(url(srv))
                ws.send("x")
                self.assertEqual(ws.recv(timeout=10), "x")
                srv.p.send_signal(signal.SIGTERM)
                with self.assertRaises(websockets.exceptions.ConnectionClosedOK):
                    ws.recv(timeout=10)
                self.assertEqual(ws.close_code, 1001)
                self.assertEqual(srv.p.wait(timeout=10), 0)
            finally:
                srv.stop()

        def test_a_stopped_client_is_dropped_by_keep_alive(self):
            srv = server("--ws-ping", "300", backend=backend)
            try:
                base = settled_fds(srv.pid)
                code = ("import sys, socket, base64, os, time\n"
                        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
                        "s.sendall(b'GET /ws/echo HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
                        "Connection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
                        "Sec-WebSocket-Version: 13\\r\\n\\r\\n')\n"
                        "s.recv(1000); print('open', flush=True); time.sleep(60)")
                p = subprocess.Popen(["python3", "-c", code, str(srv.port)], stdout=subprocess.PIPE)
                self.assertEqual(p.stdout.readline().strip(), b"open")
                os.kill(p.pid, signal.SIGSTOP)  # alive, silent: no FIN, no pong
                try:
                    self.assertTrue(wait_until(lambda: open_fds(srv.pid) == base + 1, 5))
                    t0 = time.time()
                    self.assertTrue(wait_until(lambda: open_fds(srv.pid) == base, 10), "never dropped")
                    self.assertGreaterEqual(time.time() - t0, 0.3)
                finally:
                    p.kill()
                    p.wait()
                # A live client answers the pings and stays.
                with ws_connect(url(srv)) as ws:
                    time.sleep(1.5)
                    ws.send("still here")
                    self.assertEqual(ws.recv(timeout=10), "still here")
            finally:
                self.assertEqual(srv.stop(), 0)

        def test_10000_idle_connections_and_their_memory(self):
            n, warm = 10_000, 500
            srv = server(backend=backend)
            socks = []
            try:
                def open_some(k):
                    new = []
                    for _ in range(k):
                        s = socket.socket()
                        s.connect(("127.0.0.1", srv.port))
                        s.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                        new.append(s)
                    for s in new:
                        s.settimeout(30)
                        head = b""
                        while b"\r\n\r\n" not in head:
                            head += s.recv(4096)
                        assert head.startswith(b"HTTP/1.1 101 "), head
                    # One echo each, then idle.
                    for s in new:
                        s.sendall(frame(0x1, b"hello"))
                    for s in new:
                        got = b""
                        while len(got) < 7:
                            got += s.recv(64)
                        assert got == b"\x81\x05hello", got
                    socks.extend(new)
                open_some(warm)
                time.sleep(0.5)
                base = rss_kib(srv.pid)
                open_some(n - warm)
                time.sleep(1)
                grown = rss_kib(srv.pid) - base
                per_conn = grown * 1024 / (n - warm)
                print(f"\n  {backend}: {n} idle WebSocket connections, {per_conn:.0f} bytes each "
                      f"(server RSS {base} -> {base + grown} KiB)", flush=True)
                self.assertEqual(len(socks), n)
                self.assertLess(per_conn, 2048)
                # Still answering, all of them.
                for s in socks[::500]:
                    s.sendall(frame(0x2, b"\x00\x01"))
                    self.assertEqual(s.recv(64), b"\x82\x02\x00\x01")
            finally:
                for s in socks:
                    s.close()
                self.assertEqual(srv.stop(), 0)

    WsLifecycle.__name__ = f"WsLifecycle_{backend}"
    return WsLifecycle


def make_events_tests(backend):
    class WsEvents(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.db = Cluster()
            cls.srv = server("--pg", cls.db.url, "--pool", "1", backend=backend)

        @classmethod
        def tearDownClass(cls):
            try:
                assert cls.srv.stop() == 0
            finally:
                cls.db.stop()

        def test_notifications_arrive_as_text_messages(self):
            # The handshake completes once the channel is listened to: nothing sent after it
            # is missed.
            with ws_connect(url(self.srv, "/ws/events?channel=wsch")) as a, \
                    ws_connect(url(self.srv, "/ws/events?channel=wsch")) as b, \
                    ws_connect(url(self.srv, "/ws/events?channel=other")) as c:
                self.db.psql("NOTIFY wsch, 'hello'")
                self.db.psql("SELECT pg_notify('wsch', 'wörld with\nnewline')")
                self.db.psql("NOTIFY other, 'elsewhere'")
                for ws in (a, b):
                    self.assertEqual(ws.recv(timeout=10), "hello")
                    self.assertEqual(ws.recv(timeout=10), "wörld with\nnewline")
                self.assertEqual(c.recv(timeout=10), "elsewhere")
            (st, _, _), _ = exchange(self.srv.port, b"GET /ws/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                     b"Sec-WebSocket-Version: 13\r\n\r\n")
            self.assertEqual(st, 400)

    WsEvents.__name__ = f"WsEvents_{backend}"
    return WsEvents


class PeerServer:
    """A `websockets` server on a thread of its own, whose behaviour depends on the path."""

    def __init__(self):
        self.port = None
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    async def handler(self, ws):
        try:
            await self.behave(ws)
        except websockets.exceptions.ConnectionClosed:
            pass  # a close with a code of the client's choosing is no failure here

    async def behave(self, ws):
        path = ws.request.path
        if path == "/close":
            await ws.recv()
            await ws.close(4002, "server bye")
            return
        if path == "/ping":
            await (await ws.ping(b"are you there"))
            await ws.send("pong received")
        async for m in ws:
            if path == "/frag" and len(m) > 3:
                third = len(m) // 3
                await ws.send([m[:third], m[third:2 * third], m[2 * third:]])
            else:
                await ws.send(m)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await websockets.serve(self.handler, "127.0.0.1", 0, max_size=None)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            await self.server.wait_closed()
        self.loop.run_until_complete(main())

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.thread.join(10)


class RawPeer:
    """A server that answers the handshake (or not) and then sends `frames`, on a thread."""

    def __init__(self, frames, answer=None):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.frames, self.answer = frames, answer
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        from wsutil import accept_of
        c, _ = self.listener.accept()
        c.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.recv(4096)
        key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:")][0]
        c.sendall(self.answer or (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_of(key) + b"\r\n\r\n"))
        c.sendall(self.frames)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                self.received += d
        except OSError:
            pass
        c.close()
        self.listener.close()


def client(port, *args, path="/echo", backend="uring", timeout=60):
    argv = [os.path.join(BIN, "client"), "--ws", "--backend", backend, *args, "127.0.0.1", str(port), path]
    p = subprocess.run(argv, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace").splitlines(), p.stderr.decode()


_fnv_cache = {}


def fnv_of(kind, n):
    if (kind, n) not in _fnv_cache:
        _fnv_cache[(kind, n)] = fnv1a(pattern(n) if kind == "binary" else text_pattern(n))
    return _fnv_cache[(kind, n)]


def make_client_tests(backend):
    class WsClient(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.peer = PeerServer()

        @classmethod
        def tearDownClass(cls):
            cls.peer.stop()

        def test_echo_of_every_size(self):
            args = ["-d", "héllo"]
            for n in SIZES:
                args += ["--ws-bytes", str(n), "--ws-text", str(n)]
            rc, out, err = client(self.peer.port, *args, backend=backend)
            self.assertEqual(rc, 0, err)
            want = ["text 6 héllo"]
            for n in SIZES:
                want.append(f"binary {n} {fnv_of('binary', n)}")
                want.append(f"text {n} {text_pattern(n).decode()}" if n <= 200 else f"text {n} {fnv_of('text', n)}")
            self.assertEqual(out[:-1], want)
            self.assertEqual(out[-1], "close OK 1000 ")

        def test_fragments_pings_and_the_servers_close(self):
            rc, out, err = client(self.peer.port, "--ws-bytes", "300000", "-d", "fragmented text", path="/frag",
                                  backend=backend)
            self.assertEqual(rc, 0, err)
            self.assertEqual(out, [f"binary 300000 {fnv_of('binary', 300000)}", "text 15 fragmented text",
                                   "close OK 1000 "])
            rc, out, err = client(self.peer.port, "-d", "x", "-n", "2", path="/ping", backend=backend)
            self.assertEqual((rc, out), (0, ["text 13 pong received", "text 1 x", "close OK 1000 "]), err)
            rc, out, err = client(self.peer.port, "-d", "x", "-n", "5", path="/close", backend=backend)
            self.assertEqual((rc, out), (0, ["close OK 4002 server bye"]), err)
            rc, out, err = client(self.peer.port, "-n", "0", "--close", "4999", backend=backend)
            self.assertEqual((rc, out), (0, ["close OK 4999 "]), err)

        def test_a_server_that_breaks_the_rules(self):
            cases = [
                (frame(0x1, b"masked", mask=True), [], "ALOOP_E_WS_PROTOCOL 1002"),
                (frame(0x1, b"\xff\xfe", mask=False), [], "ALOOP_E_WS_PROTOCOL 1007"),
                (frame(0x2, b"x" * 101, mask=False), ["--max-message", "100"], "ALOOP_E_WS_PROTOCOL 1009"),
                (frame(0x9, b"p" * 126, mask=False), [], "ALOOP_E_WS_PROTOCOL 1002"),
                (b"", [], "ALOOP_E_EOF 1006"),
            ]
            for frames, args, want in cases:
                peer = RawPeer(frames)
                rc, out, err = client(peer.port, "-n", "1", *args, backend=backend, timeout=30)
                peer.thread.join(10)
                self.assertEqual(rc, 1, (want, out, err))
                self.assertTrue(out[-1].startswith("close " + want), (want, out))
                if want.endswith("1002") or want.endswith("1007") or want.endswith("1009"):
                    # The client said so in a masked close frame before it hung up.
                    code = want.split()[-1]
                    self.assertIn(bytes([0x88]), peer.received[:1], (want, peer.received[:8]))
                    payload = bytes(b ^ peer.received[2 + i % 4] for i, b in enumerate(peer.received[6:8]))
                    self.assertEqual(struct.unpack(">H", payload)[0], int(code))
            for answer, reason in [
                (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "answer status 403, not 101"),
                (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n", "wrong Sec-WebSocket-Accept"),
            ]:
                peer = RawPeer(b"", answer=answer)
                rc, out, err = client(peer.port, "-n", "1", backend=backend, timeout=30)
                self.assertEqual((rc, out), (1, [f"close ALOOP_E_WS_HANDSHAKE 1006 {reason}"]), err)
            # Nothing listening.
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                dead = s.getsockname()[1]
            rc, out, _ = client(dead, "-n", "1", backend=backend)
            self.assertEqual((rc, out), (1, ["close ECONNREFUSED 1006 "]))

    WsClient.__name__ = f"WsClient_{backend}"
    return WsClient


for _b in BACKENDS:
    globals()[f"WsServer_{_b}"] = make_server_tests(_b)
    globals()[f"WsLifecycle_{_b}"] = make_lifecycle_tests(_b)
    globals()[f"WsEvents_{_b}"] = make_events_tests(_b)
    globals()[f"WsClient_{_b}"] = make_client_tests(_b)
del _b

if __name__ == "__main__":
    unittest.main()
