"""End to end: the `server` and `palindrome` binaries over real sockets, on each backend."""
import asyncio
import http.client
import os
import socket
import time
import unittest

from harness import BACKENDS, BIN, IMF_FIXDATE, Proc, Reader, connect, exchange, server, unused_port, wait_until


def make_tests(backend):
    class HttpServerTests(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.srv = server("--max-body", "1000", backend=backend)
            assert cls.srv.backend == backend, cls.srv.line

        @classmethod
        def tearDownClass(cls):
            assert cls.srv.stop() == 0

        def test_plaintext_and_json_follow_techempower(self):
            c = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=5)
            c.request("GET", "/plaintext")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"Hello, World!"))
            self.assertEqual(r.getheader("Content-Type"), "text/plain")
            self.assertEqual(r.getheader("Server"), "asyncloop")
            self.assertRegex(r.getheader("Date").encode(), IMF_FIXDATE)
            self.assertEqual(r.getheader("Content-Length"), "13")
            c.request("GET", "/json")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b'{"message":"Hello, World!"}'))
            self.assertEqual(r.getheader("Content-Type"), "application/json")

        def test_keep_alive_reuses_one_connection(self):
            c = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=5)
            c.connect()
            local = c.sock.getsockname()
            for i in range(1, 51):
                c.request("POST", "/palindrome", body=b"ab" * i + b"ba" * i)
                r = c.getresponse()
                self.assertEqual(r.read(), b"The input is a palindrome.")
                self.assertIsNone(r.getheader("Connection"))
            self.assertEqual(c.sock.getsockname(), local)

        def test_palindrome_route(self):
            for body, want in [(b"abba", b"The input is a palindrome."), (b"abc", b"The input is not a palindrome."),
                               (b"Abba", b"The input is not a palindrome."), (b"x", b"The input is a palindrome."),
                               ("été".encode(), b"The input is not a palindrome.")]:
                (st, h, b), _ = exchange(self.srv.port, b"POST /palindrome HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                self.assertEqual((st, b, h["content-type"]), (200, want, b"text/plain"), body)
            (st, _, _), _ = exchange(self.srv.port, b"POST /palindrome HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            self.assertEqual(st, 400)

        def test_hundreds_of_pipelined_requests_answered_in_order(self):
            s = connect(self.srv.port)
            reqs, want = [], []
            for i in range(300):
                if i % 3 == 0:
                    reqs.append(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
                    want.append(b"Hello, World!")
                elif i % 3 == 1:
                    reqs.append(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
                    want.append(b'{"message":"Hello, World!"}')
                else:
                    body = b"x" * i + (b"y" if i % 2 else b"")
                    reqs.append(b"POST /palindrome HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    want.append(b"The input is not a palindrome." if i % 2 else b"The input is a palindrome.")
            s.sendall(b"".join(reqs))
            r = Reader(s)
            got = [r.response()[2] for _ in reqs]
            self.assertEqual(got, want)

        def test_request_delivered_byte_by_byte(self):
            s = connect(self.srv.port)
            for b in b"POST /palindrome HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\na\r\n0\r\n\r\n":
                s.send(bytes([b]))
                time.sleep(0.002)
            st, _, body = Reader(s).response()
            self.assertEqual((st, body), (200, b"The input is a palindrome."))

        def test_head_has_length_and_no_body(self):
            s = connect(self.srv.port)
            s.sendall(b"HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            r = Reader(s)
            st, h, body = r.response(head_only=True)
            self.assertEqual((st, h["content-length"], body), (200, b"13", b""))
            self.assertEqual(r.response()[2], b'{"message":"Hello, World!"}')

        def test_404_and_405_with_allow(self):
            (st, _, _), _ = exchange(self.srv.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(st, 404)
            (st, h, _), _ = exchange(self.srv.port, b"DELETE /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual((st, h["allow"]), (405, b"GET, HEAD"))
            (st, h, _), _ = exchange(self.srv.port, b"GET /palindrome HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual((st, h["allow"]), (405, b"POST"))

        def test_database_and_upstream_routes_answer_503_json(self):
            for path in [b"/db", b"/queries?queries=3", b"/fortunes", b"/books", b"/api/x", b"/chain/db-api?id=1"]:
                (st, h, body), _ = exchange(self.srv.port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
                self.assertEqual((st, h["content-type"]), (503, b"application/json"), path)
                self.assertTrue(body.startswith(b'{"error":'), body)

        def test_limits(self):
            (st, _, _), r = exchange(self.srv.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(st, 414)
            self.assertTrue(r.closed())
            (st, _, _), r = exchange(self.srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n")
            self.assertEqual(st, 431)
            self.assertTrue(r.closed())
            many = b"".join(b"X-%d: v\r\n" % i for i in range(150))
            (st, _, _), r = exchange(self.srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
            self.assertEqual(st, 431)
            (st, _, _), r = exchange(self.srv.port, b"POST /palindrome HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
            self.assertEqual(st, 413)
            self.assertTrue(r.closed())
            chunk = b"200\r\n" + b"a" * 512 + b"\r\n"
            (st, _, _), r = exchange(self.srv.port, b"POST /palindrome HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3)
            self.assertEqual(st, 413)
            self.assertTrue(r.closed())
            body = b"b" * 1000
            (st, _, b), _ = exchange(self.srv.port, b"POST /palindrome HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + body)
            self.assertEqual((st, b), (200, b"The input is a palindrome."))

        def test_malformed_requests_get_4xx_and_close(self):
            cases = [
                (b"GET / HTTP/1.1\r\n\r\n", 400),
                (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
                (b"POST /palindrome HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
                (b"POST /palindrome HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
                (b"POST /palindrome HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
                (b"POST /palindrome HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
                (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
                (b"GET / HTTP/1.1\nHost: a\n\n", 400),
                (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
                (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
                (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
                # No version (HTTP/0.9's form), bare LF or CRLF, empty CONNECT target (a fuzz find).
                (b"CONNECT \nHost: exaqlc:1\r\n\r\n", 400),
                (b"CONNECT \r\nHost: exaqlc:1\r\n\r\n", 400),
                (b"GET /plaintext\r\nHost: a\r\n\r\n", 400),
                # Request-target forms (RFC 9112 section 3.2).
                (b"CONNECT /plaintext HTTP/1.1\r\nHost: a\r\n\r\n", 400),
                (b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
                (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
                (b"GET /plaintext#x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
                (b"GET http://u@a/plaintext HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ]
            for raw, want in cases:
                (st, h, _), r = exchange(self.srv.port, raw)
                self.assertEqual(st, want, raw)
                self.assertEqual(h.get("connection"), b"close", raw)
                self.assertTrue(r.closed(), raw)

        def test_http10_with_transfer_encoding_is_400_and_close(self):
            """RFC 9112 section 6.1: the framing of an HTTP/1.0 request with Transfer-Encoding is
            faulty (it used to be answered 200), with or without keep-alive."""
            for raw in [
                b"POST /palindrome HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\naba\r\n0\r\n\r\n",
                b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ]:
                s = connect(self.srv.port)
                s.sendall(raw)
                r = Reader(s)
                st, h, body = r.response()
                self.assertEqual((st, h.get("connection")), (400, b"close"), raw)
                self.assertIn(b"Transfer-Encoding in an HTTP/1.0 request", body)
                self.assertTrue(r.closed(), raw)
                s.close()
            # Without it, HTTP/1.0 is served as before.
            (st, _, body), _ = exchange(self.srv.port, b"POST /palindrome HTTP/1.0\r\nContent-Length: 3\r\n\r\naba")
            self.assertEqual((st, body), (200, b"The input is a palindrome."))

        def test_error_after_pipelined_requests_comes_in_order(self):
            s = connect(self.srv.port)
            s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/9.9\r\n\r\n")
            r = Reader(s)
            self.assertEqual(r.response()[0], 200)
            self.assertEqual(r.response()[0], 200)
            self.assertEqual(r.response()[0], 505)
            self.assertTrue(r.closed())

        def test_expect_100_continue(self):
            s = connect(self.srv.port)
            s.sendall(b"POST /palindrome HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
            r = Reader(s)
            self.assertEqual(r.response()[0], 100)
            s.sendall(b"aba")
            self.assertEqual(r.response()[2], b"The input is a palindrome.")

        def test_half_close_still_answered(self):
            s = connect(self.srv.port)
            s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            r = Reader(s)
            self.assertEqual(r.response()[2], b"Hello, World!")
            st, h, body = r.response()
            self.assertEqual(body, b'{"message":"Hello, World!"}')
            self.assertTrue(r.closed())

        def test_http10_closes_unless_keep_alive(self):
            (st, h, _), r = exchange(self.srv.port, b"GET /plaintext HTTP/1.0\r\n\r\n")
            self.assertEqual((st, h.get("connection")), (200, b"close"))
            self.assertTrue(r.closed())
            s = connect(self.srv.port)
            s.sendall(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = Reader(s)
            st, h, _ = r.response()
            self.assertEqual(h.get("connection"), b"keep-alive")
            s.sendall(b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            self.assertEqual(r.response()[0], 200)

        def test_connection_close_is_honoured(self):
            s = connect(self.srv.port)
            s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            r = Reader(s)
            st, h, _ = r.response()
            self.assertEqual(h.get("connection"), b"close")
            self.assertTrue(r.closed())

        def test_date_advances(self):
            (_, h1, _), _ = exchange(self.srv.port, b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(1.1)
            (_, h2, _), _ = exchange(self.srv.port, b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertRegex(h2["date"], IMF_FIXDATE)
            self.assertNotEqual(h1["date"], h2["date"])

        def test_ten_thousand_concurrent_keep_alive_clients(self):
            n = int(os.environ.get("E2E_CLIENTS", "10000"))

            async def main():
                gate = asyncio.Semaphore(500)
                all_done = asyncio.Event()
                count = 0

                async def one():
                    nonlocal count
                    async with gate:
                        rd, wr = await asyncio.open_connection("127.0.0.1", self.srv.port)
                    for _ in range(2):
                        wr.write(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
                        head = await rd.readuntil(b"\r\n\r\n")
                        assert head.startswith(b"HTTP/1.1 200"), head
                        assert await rd.readexactly(13) == b"Hello, World!"
                    count += 1
                    if count == n:
                        all_done.set()
                    await all_done.wait()
                    wr.close()

                await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), 120)
                return count

            import resource
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            self.assertEqual(asyncio.run(main()), n)

    HttpServerTests.__name__ = f"HttpServer_{backend}"
    return HttpServerTests


def make_timeout_tests(backend):
    class TimeoutTests(unittest.TestCase):
        def test_header_timeout_sends_408_and_closes(self):
            srv = server("--header-timeout", "300", backend=backend)
            try:
                s = connect(srv.port)
                s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")  # never finished
                t0 = time.time()
                st, h, _ = Reader(s).response()
                self.assertEqual((st, h.get("connection")), (408, b"close"))
                self.assertLess(time.time() - t0, 2.0)
                self.assertTrue(Reader(s).closed())
                # A connection that sends nothing is closed without a response.
                s2 = connect(srv.port)
                t0 = time.time()
                self.assertEqual(s2.recv(100), b"")
                self.assertLess(time.time() - t0, 2.0)
                # Normal traffic is unaffected.
                (st, _, _), _ = exchange(srv.port, b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(st, 200)
            finally:
                self.assertEqual(srv.stop(), 0)

        def test_idle_timeout_closes_keep_alive_connection(self):
            srv = server("--idle-timeout", "300", backend=backend)
            try:
                s = connect(srv.port)
                s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
                r = Reader(s)
                self.assertEqual(r.response()[0], 200)
                t0 = time.time()
                self.assertTrue(r.closed(timeout=3))
                self.assertGreaterEqual(time.time() - t0, 0.25)
            finally:
                self.assertEqual(srv.stop(), 0)

        def test_sigterm_and_sigint_stop_gracefully(self):
            import signal
            for sig in (signal.SIGTERM, signal.SIGINT):
                srv = server(backend=backend, threads=2)
                s = connect(srv.port)
                s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(Reader(s).response()[0], 200)
                t0 = time.time()
                self.assertEqual(srv.stop(sig), 0)
                self.assertLess(time.time() - t0, 6)

        def test_curl_gets_its_response_while_the_server_stops(self):
            """A request in flight when SIGTERM arrives is answered in full: curl asks /api/x,
            the server relays it to an upstream that holds the answer until the server has
            begun stopping (its listener refuses connections), then answers."""
            import signal
            import subprocess
            import threading
            with socket.socket() as up:
                up.bind(("127.0.0.1", 0))
                up.listen(1)
                srv = server("--upstream", f"http://127.0.0.1:{up.getsockname()[1]}/",
                             "--upstream-timeout", "8000", backend=backend)
                curl = subprocess.Popen(
                    ["curl", "-sS", "--max-time", "20", "-D", "-", f"http://127.0.0.1:{srv.port}/api/x"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    up.settimeout(10)
                    relay, _ = up.accept()
                    with relay:
                        relay.settimeout(10)
                        head = b""
                        while b"\r\n\r\n" not in head:
                            part = relay.recv(4096)
                            self.assertTrue(part, head)
                            head += part
                        self.assertTrue(head.startswith(b"GET /x HTTP/1.1\r\n"), head)
                        # The request is with its handler: now ask the server to stop.
                        stopped = {}
                        t = threading.Thread(target=lambda: stopped.setdefault("rc", srv.stop(signal.SIGTERM)))
                        t.start()

                        def refused():
                            try:
                                socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
                                return False
                            except ConnectionRefusedError:
                                return True
                            except ConnectionResetError:
                                # The probe's handshake finished in the listen backlog just
                                # before the listener closed: the kernel resets it.
                                return True
                        self.assertTrue(wait_until(refused, timeout=5), "the listener did not close")
                        body = b"answered while stopping"
                        relay.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                                      % (len(body), body))
                        out, err = curl.communicate(timeout=20)
                        t.join(20)
                    self.assertEqual(curl.returncode, 0, err)
                    head, got = out.split(b"\r\n\r\n", 1)
                    self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
                    self.assertIn(b"\r\nConnection: close", head)
                    self.assertEqual(got, body)
                    self.assertEqual(stopped.get("rc"), 0)
                finally:
                    if curl.poll() is None:
                        curl.kill()
                        curl.wait()
                    srv.stop()

        def test_two_processes_share_a_port(self):
            a = server(backend=backend)
            b = Proc([os.path.join(BIN, "server"), "--backend", backend, "127.0.0.1", str(a.port)])
            try:
                self.assertEqual(a.port, b.port)

                def sockets(pid):
                    n = 0
                    for fd in os.listdir(f"/proc/{pid}/fd"):
                        try:
                            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
                        except OSError:
                            pass
                    return n

                base = (sockets(a.pid), sockets(b.pid))
                conns = []
                for _ in range(64):
                    s = connect(a.port)
                    s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
                    self.assertEqual(Reader(s).response()[0], 200)
                    conns.append(s)
                grown = (sockets(a.pid) - base[0], sockets(b.pid) - base[1])
                self.assertEqual(sum(grown), 64)
                self.assertGreater(grown[0], 0, "first process served nobody")
                self.assertGreater(grown[1], 0, "second process served nobody")
            finally:
                self.assertEqual(a.stop(), 0)
                self.assertEqual(b.stop(), 0)

    TimeoutTests.__name__ = f"ServerProcess_{backend}"
    return TimeoutTests


def make_palindrome_tests(backend):
    class PalindromeTests(unittest.TestCase):
        def test_palindrome_binary(self):
            port = unused_port()
            p = Proc([os.path.join(BIN, "palindrome"), str(port)], env={"ASYNCLOOP_BACKEND": backend})
            try:
                self.assertEqual(p.port, port)
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                for body, want in [(b"racecar", b"The input is a palindrome."), (b"race car", b"The input is not a palindrome.")]:
                    c.request("POST", "/anything", body=body)
                    r = c.getresponse()
                    self.assertEqual((r.status, r.read()), (200, want))
                    self.assertEqual(r.getheader("Content-Length"), str(len(want)))
                c.request("POST", "/", body=b"")
                r = c.getresponse()
                self.assertEqual(r.status, 400)
                r.read()
                c.request("GET", "/")
                r = c.getresponse()
                self.assertEqual((r.status, r.getheader("Allow")), (405, "POST"))
                r.read()
            finally:
                self.assertEqual(p.stop(), 0)

    PalindromeTests.__name__ = f"Palindrome_{backend}"
    return PalindromeTests


for _b in BACKENDS:
    globals()[f"HttpServer_{_b}"] = make_tests(_b)
    globals()[f"ServerProcess_{_b}"] = make_timeout_tests(_b)
    globals()[f"Palindrome_{_b}"] = make_palindrome_tests(_b)
del _b

if __name__ == "__main__":
    unittest.main()
