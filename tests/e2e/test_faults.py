"""End to end: what `server` survives, on each backend, against a real PostgreSQL.

Each test injects one fault and then checks the same three things: the process is alive, a
normal request is answered, and its file descriptors are back where they started (no leak).

- fd exhaustion (EMFILE under a low RLIMIT_NOFILE): no busy loop, serving again once fds free up;
- PostgreSQL SIGKILLed under load and restarted: 503s come quickly, 200s again within 10 s;
- clients that vanish while their query waits on a locked table: nothing is written to the
  connections that reuse their fd numbers;
- the query timeout: a query stuck behind a lock gets a 503, not a hang;
- clients resetting in the middle of large responses;
- a client that sends and never reads: output stays bounded, the write timeout closes it;
- 1,000 slowloris connections beside normal traffic, which stays fast, until the header timeout;
- thousands of randomly mutated requests: each connection ends, none hangs, the server lives;
- over TLS: 1,000 concurrent handshakes beside a TLS load run, which stays error-free; resets
  in the middle of handshakes and of large responses; mutated client hellos.
"""
import os
import random
import re
import resource
import socket
import struct
import subprocess
import threading
import time
import unittest

from harness import (BACKENDS, BIN, Cluster, Reader, connect, cpu_seconds, fill_pool, get, open_fds, rss_kib,
                     server, settled_fds, wait_until)

# The slowloris test holds 1,000 sockets here and the server as many: raise the soft limit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))

HEADER_TIMEOUT_MS = 2000
WRITE_TIMEOUT_MS = 1000
QUERY_TIMEOUT_MS = 3000


def reset(sock):
    """Closes with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def plaintext_ok(port):
    st, _, body = get(port, "/plaintext", timeout=5)
    return st == 200 and body == b"Hello, World!"


class Locker:
    """A psql session holding ACCESS EXCLUSIVE on `world` until `release`."""

    def __init__(self, db):
        self.db = db
        self.p = subprocess.Popen(["psql", "-q", db.url], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, text=True)
        self.p.stdin.write("BEGIN; LOCK TABLE world IN ACCESS EXCLUSIVE MODE;\n")
        self.p.stdin.flush()
        ok = wait_until(lambda: db.psql("SELECT count(*) FROM pg_locks WHERE relation = 'world'::regclass "
                                        "AND mode = 'AccessExclusiveLock' AND granted") == "1", 10)
        assert ok, "the lock was not taken"

    def waiters(self):
        return int(self.db.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("COMMIT;\n")
            self.p.stdin.close()
            self.p.wait(timeout=10)


def make_tests(backend):
    class Faults(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.db = Cluster()
            cls.srv = server("--pg", cls.db.url, "--pool", "4", "--header-timeout", str(HEADER_TIMEOUT_MS),
                             "--write-timeout", str(WRITE_TIMEOUT_MS), "--query-timeout", str(QUERY_TIMEOUT_MS),
                             backend=backend)

        @classmethod
        def tearDownClass(cls):
            try:
                assert cls.srv.stop() == 0
            finally:
                cls.db.stop()

        def setUp(self):
            self.assertTrue(self.srv.alive())
            # Every pool connection up, then the idle fd count: each test must return to it.
            self.fill_pool()
            self.fds = self.settled_fds()

        def tearDown(self):
            self.assertTrue(self.srv.alive(), "the server died")
            self.assertTrue(plaintext_ok(self.srv.port))
            self.fill_pool()
            fds = self.settled_fds()
            self.assertEqual(fds, self.fds, "file descriptors leaked")

        def fill_pool(self):
            self.assertTrue(fill_pool(self.srv.port, self.db, 4), "the pool did not get its 4 connections")

        def settled_fds(self):
            return settled_fds(self.srv.pid)

        def test_fd_exhaustion_pauses_accepting_then_serves_again(self):
            def low_limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (48, _hard))
            srv = server("--pg", self.db.url, "--pool", "1", backend=backend, preexec_fn=low_limit)
            try:
                self.assertTrue(wait_until(lambda: get(srv.port, "/db")[0] == 200, 10))
                # More connections than fds: the kernel completes them all, the server cannot
                # accept them all.
                conns = [connect(srv.port) for _ in range(70)]
                time.sleep(0.3)
                self.assertGreaterEqual(open_fds(srv.pid), 45, "the fd limit was not reached")
                cpu0 = cpu_seconds(srv.pid)
                time.sleep(1.0)
                busy = cpu_seconds(srv.pid) - cpu0
                self.assertLess(busy, 0.3, f"{busy:.2f} s of CPU in 1 s at the fd limit: a busy loop")
                # Free fds: the connections that waited in the backlog are served.
                for s in conns[:40]:
                    s.close()
                for s in conns[40:]:
                    s.settimeout(5)
                    s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
                    self.assertEqual(Reader(s).response()[2], b"Hello, World!")
                    s.close()
                self.assertTrue(plaintext_ok(srv.port))
                self.assertEqual(get(srv.port, "/db")[0], 200)
            finally:
                self.assertEqual(srv.stop(), 0)

        def test_postgres_sigkill_under_load(self):
            stop = threading.Event()
            results = []  # (time sent, status or exception name, seconds taken)

            def load():
                while not stop.is_set():
                    t0 = time.time()
                    try:
                        st = get(self.srv.port, "/db", timeout=10)[0]
                    except Exception as e:  # noqa: BLE001 - any failure is a result to report
                        st = type(e).__name__
                    results.append((t0, st, time.time() - t0))

            threads = [threading.Thread(target=load) for _ in range(8)]
            for t in threads:
                t.start()
            try:
                time.sleep(0.5)
                killed = time.time()
                self.db.kill9()
                time.sleep(1.0)
                restarted = time.time()
                self.db.pg_ctl("start")
                recovered = wait_until(lambda: any(t0 > restarted and st == 200 for t0, st, _ in results), 10, 0.05)
            finally:
                stop.set()
                for t in threads:
                    t.join()
            self.assertTrue(recovered, "no 200 within 10 s of the restart")
            self.assertTrue(all(st in (200, 503) for _, st, _ in results), {st for _, st, _ in results})
            down = [took for t0, st, took in results if killed + 0.2 < t0 < restarted and st == 503]
            self.assertGreater(len(down), 10, "requests while the database was down got 503")
            self.assertLess(max(down), 2.0, "a 503 took too long")
            first_ok = min(t0 for t0, st, _ in results if t0 > restarted and st == 200)
            self.assertLess(first_ok - restarted, 10)

        def test_query_stuck_behind_a_lock_gets_503_not_a_hang(self):
            locker = Locker(self.db)
            try:
                t0 = time.time()
                st, _, body = get(self.srv.port, "/db", timeout=QUERY_TIMEOUT_MS / 1000 + 10)
                took = time.time() - t0
            finally:
                locker.release()
            self.assertEqual(st, 503, body)
            self.assertIn(b"error", body)
            self.assertGreater(took, QUERY_TIMEOUT_MS / 1000 * 0.8)
            self.assertLess(took, QUERY_TIMEOUT_MS / 1000 + 3)
            self.assertEqual(get(self.srv.port, "/db")[0], 200)

        def test_clients_vanish_while_their_queries_wait(self):
            locker = Locker(self.db)
            try:
                gone = []
                for i in range(40):
                    s = connect(self.srv.port)
                    s.sendall(b"GET /queries?queries=3 HTTP/1.1\r\nHost: x\r\n\r\n")
                    gone.append(s)
                self.assertTrue(wait_until(lambda: locker.waiters() >= 1, 5), "no query waits on the lock")
                for i, s in enumerate(gone):
                    reset(s) if i % 2 else s.close()
                # New connections take the freed fd numbers in the server.
                time.sleep(0.3)
                fresh = [connect(self.srv.port) for _ in range(40)]
                readers = [Reader(s) for s in fresh]
                for s, r in zip(fresh, readers):
                    s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
                    self.assertEqual(r.response()[2], b"Hello, World!")
            finally:
                locker.release()
            # The abandoned queries now finish; their answers must go nowhere.
            time.sleep(1.0)
            for s, r in zip(fresh, readers):
                s.settimeout(0.05)
                try:
                    extra = s.recv(65536)
                except (socket.timeout, TimeoutError):
                    extra = b""
                self.assertEqual(extra + r.buf, b"", "bytes meant for a vanished client")
                s.settimeout(5)
                s.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(r.response()[2], b'{"message":"Hello, World!"}')
                s.close()

        def test_reset_in_the_middle_of_large_responses(self):
            for i in range(20):
                s = connect(self.srv.port)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                path = b"/fortunes" if i % 2 else b"/json"
                s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n" * (300 if i % 2 else 3000))
                got = s.recv(4096)
                self.assertTrue(got.startswith(b"HTTP/1.1 200 "), got[:40])
                reset(s)
            self.assertTrue(plaintext_ok(self.srv.port))

        def test_reader_that_never_reads(self):
            s = connect(self.srv.port)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            rss0 = rss_kib(self.srv.pid)
            peak = [rss0]
            req = b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
            sent = [0]

            def writer():
                s2 = s.dup()
                s2.settimeout(WRITE_TIMEOUT_MS / 1000 + 5)
                try:
                    for _ in range(300):  # 300,000 requests, 9 MB: 45 MB of answers if all were read
                        s2.sendall(req)
                        sent[0] += len(req)
                except OSError:
                    pass
                finally:
                    s2.close()

            w = threading.Thread(target=writer)
            w.start()
            t0 = time.time()
            while time.time() - t0 < WRITE_TIMEOUT_MS / 1000 + 1.5:
                peak[0] = max(peak[0], rss_kib(self.srv.pid))
                time.sleep(0.05)
            # The server gave up on it: what was sent drains, then the connection ends.
            s.settimeout(5)
            received = 0
            try:
                while True:
                    data = s.recv(1 << 16)
                    if not data:
                        break
                    received += len(data)
            except ConnectionResetError:
                pass
            w.join()
            s.close()
            self.assertLess(received, 8 << 20, f"output was not bounded ({sent[0]} request bytes sent)")
            self.assertLess(peak[0] - rss0, 16 * 1024, f"RSS grew from {rss0} to {peak[0]} KiB")

        def test_slowloris_beside_normal_traffic(self):
            port = self.srv.port
            slow = []
            for _ in range(1000):
                s = socket.socket()
                s.connect(("127.0.0.1", port))
                s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                slow.append(s)
            opened = time.time()
            stop = threading.Event()

            def trickle():
                while not stop.is_set():
                    for s in slow:
                        try:
                            s.send(b"a")
                        except OSError:
                            pass
                    stop.wait(0.25)

            t = threading.Thread(target=trickle)
            t.start()
            try:
                out = subprocess.run([os.path.join(BIN, "client"), "-n", "3000", "-c", "16", "127.0.0.1", str(port),
                                      "/plaintext"], capture_output=True, text=True, timeout=60)
                self.assertEqual(out.returncode, 0, out.stderr)
                m = re.search(r"requests=(\d+) ok=(\d+) errors=(\d+) rps=\S+ p50_ms=\S+ p99_ms=(\S+)", out.stdout)
                self.assertTrue(m, out.stdout)
                self.assertEqual((m.group(2), m.group(3)), ("3000", "0"))
                self.assertLess(float(m.group(4)), 500, f"normal traffic slowed down: {out.stdout}")

                # The header timeout ends every slow connection, trickling or not.
                def all_closed():
                    for s in slow:
                        s.setblocking(False)
                        try:
                            while True:
                                d = s.recv(4096)
                                if not d:
                                    break
                        except BlockingIOError:
                            return False
                        except ConnectionResetError:
                            pass
                    return True
                closed = wait_until(all_closed, HEADER_TIMEOUT_MS / 1000 + 5, 0.2)
                self.assertTrue(closed, "slowloris connections outlived the header timeout")
                self.assertGreater(time.time() - opened, HEADER_TIMEOUT_MS / 1000 * 0.8)
            finally:
                stop.set()
                t.join()
                for s in slow:
                    s.close()

        def test_mutated_requests_storm(self):
            seed = int(os.environ.get("E2E_SEED", time.time()))
            rng = random.Random(seed)
            port = self.srv.port
            hangs, bad = [], []
            lock = threading.Lock()
            cases = [mutate(rng) for _ in range(3000)]

            def worker(chunk):
                for raw in chunk:
                    try:
                        s = connect(port)
                    except OSError as e:
                        with lock:
                            bad.append(("connect", repr(e)))
                        continue
                    s.settimeout(5)
                    try:
                        s.sendall(raw)
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    out = b""
                    try:
                        while True:
                            d = s.recv(65536)
                            if not d:
                                break
                            out += d
                    except (socket.timeout, TimeoutError):
                        with lock:
                            hangs.append(raw)
                    except ConnectionResetError:
                        pass
                    s.close()
                    if out and not out.startswith(b"HTTP/1.1 "):
                        with lock:
                            bad.append((raw, out[:80]))

            chunks = [cases[i::32] for i in range(32)]
            ts = [threading.Thread(target=worker, args=(c,)) for c in chunks]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(hangs[:3], [], f"connections that never ended (E2E_SEED={seed})")
            self.assertEqual(bad[:3], [], f"E2E_SEED={seed}")

    Faults.__name__ = f"Faults_{backend}"
    return Faults


SEEDS = [
    b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /json HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"GET /db HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /queries?queries=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"POST /palindrome HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcba",
    b"POST /palindrome HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nba\r\n0\r\n\r\n",
    b"POST /books HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n"
    b'{"id":999999,"title":"abc"}',
    b"HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /palindrome HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\naa",
    b"GET /plaintext HTTP/1.0\r\n\r\n",
    b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n",
]
TOKENS = [b"\r\n", b"\n", b"\r", b":", b" ", b"\t", b"\x00", b"\xff", b"chunked", b"0", b"-1", b"99999999999",
          b"Content-Length: 10\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: y\r\n", b"\r\n\r\n", b"%",
          b"HTTP/1.1", b"HTTP/2.0", b";", b",", b"GET ", b"/" * 300]


def mutate(rng):
    """A seed request with one to four random edits: flips, inserts, deletes, duplicates,
    splices with another seed, truncation."""
    data = bytearray(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(i, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[i:i] = rng.choice(TOKENS)
        elif op == 2:
            del data[i:i + rng.randint(1, 8)]
        elif op == 3:
            j = rng.randrange(len(data) + 1)
            data[i:i] = data[min(i, j):max(i, j)][:64]
        elif op == 4:
            data += rng.choice(SEEDS)
        else:
            data = data[:i]
    return bytes(data)


def make_tls_tests(backend):
    class TlsFaults(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            from tlscerts import Certs
            cls.certs = Certs()
            # A thousand handshakes at once take a while on two CPUs: the default header timeout.
            cls.srv = server("--tls-cert", cls.certs.path("server.pem"), "--tls-key", cls.certs.path("server.key"),
                             "--write-timeout", str(WRITE_TIMEOUT_MS), backend=backend)

        @classmethod
        def tearDownClass(cls):
            try:
                assert cls.srv.stop() == 0
            finally:
                cls.certs.remove()

        def context(self):
            import ssl
            return ssl.create_default_context(cafile=self.certs.path("ca.pem"))

        def https_ok(self):
            import http.client
            c = http.client.HTTPSConnection("localhost", self.srv.port, context=self.context(), timeout=10)
            try:
                c.request("GET", "/plaintext")
                return c.getresponse().read() == b"Hello, World!"
            finally:
                c.close()

        def setUp(self):
            self.assertTrue(self.srv.alive())
            self.assertTrue(self.https_ok())
            self.fds = settled_fds(self.srv.pid)

        def tearDown(self):
            self.assertTrue(self.srv.alive(), "the server died")
            self.assertTrue(self.https_ok())
            self.assertEqual(settled_fds(self.srv.pid), self.fds, "file descriptors leaked")

        def client_load(self, n, c):
            return subprocess.run([os.path.join(BIN, "client"), "--tls", "--cacert", self.certs.path("ca.pem"), "-n",
                                   str(n), "-c", str(c), "localhost", str(self.srv.port), "/plaintext"],
                                  capture_output=True, text=True, timeout=120)

        def test_thousand_concurrent_handshakes_beside_a_tls_load(self):
            import asyncio
            import ssl
            ctx = self.context()
            port = self.srv.port
            results = {}

            async def one(gate):
                async with gate:
                    r, w = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 60)
                w.write(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                body = await asyncio.wait_for(r.read(), 60)
                w.close()
                return body.endswith(b"Hello, World!")

            async def storm():
                gate = asyncio.Semaphore(1000)  # all at once
                out = await asyncio.gather(*(one(gate) for _ in range(1000)), return_exceptions=True)
                results["ok"] = sum(1 for x in out if x is True)
                results["errors"] = [repr(x) for x in out if x is not True][:3]

            t = threading.Thread(target=lambda: asyncio.run(storm()))
            t.start()
            try:
                out = self.client_load(3000, 16)
            finally:
                t.join(timeout=180)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("ok=3000 errors=0", out.stdout)
            self.assertEqual(results.get("ok"), 1000, results.get("errors"))

        def test_resets_mid_handshake_and_mid_response(self):
            import ssl
            ctx = self.context()
            for _ in range(50):
                s = socket.create_connection(("127.0.0.1", self.srv.port))
                s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(30))
                reset(s)
            for _ in range(30):
                s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.srv.port)), server_hostname="localhost")
                # Pipelined requests whose answers fill the socket, then a reset.
                s.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
                s.recv(100)
                reset(s)

        def test_mutated_client_hellos(self):
            import ssl
            # A real client hello, captured from Python's ssl module, then mutated.
            ls = socket.socket()
            ls.bind(("127.0.0.1", 0))
            ls.listen(1)

            def hello():
                try:
                    ctx = self.context()
                    ctx.wrap_socket(socket.create_connection(ls.getsockname(), timeout=2), server_hostname="localhost")
                except (OSError, ssl.SSLError):
                    pass
            t = threading.Thread(target=hello)
            t.start()
            c, _ = ls.accept()
            c.settimeout(2)
            seed_hello = c.recv(65536)
            c.close()
            ls.close()
            t.join()
            self.assertEqual(seed_hello[0], 0x16)
            rng = random.Random(int(os.environ.get("E2E_SEED", time.time())))
            for _ in range(300):
                data = bytearray(seed_hello)
                for _ in range(rng.randint(1, 8)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
                if rng.random() < 0.3:
                    data = data[:rng.randrange(len(data))]
                s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
                try:
                    s.sendall(bytes(data))
                    s.shutdown(socket.SHUT_WR)
                    while s.recv(65536):
                        pass
                except (socket.timeout, ConnectionResetError, BrokenPipeError):
                    pass
                finally:
                    s.close()

    TlsFaults.__name__ = f"TlsFaults_{backend}"
    return TlsFaults


for _b in BACKENDS:
    globals()[f"Faults_{_b}"] = make_tests(_b)
    globals()[f"TlsFaults_{_b}"] = make_tls_tests(_b)
del _b

if __name__ == "__main__":
    unittest.main()
