"""The guides' programs, compiled with the project's warnings as errors and run: each one does
what its page says it does. `make test-guides` (part of `make test`) runs this file."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
import guide_programs  # noqa: E402

ROOT = guide_programs.ROOT
OUT = os.path.join(ROOT, "build", "tests", "guides")
LIB = os.path.join(ROOT, "build", "lib")
WARN = ["-Wall", "-Wextra", "-Werror", "-pedantic"]
TIMEOUT = 60


def compile_program(name, lang):
    src = os.path.join(OUT, name)
    exe = os.path.join(OUT, os.path.splitext(name)[0])
    if lang == "c":
        cmd = [os.environ.get("CC", "cc"), "-std=c11"]
    else:
        cmd = [os.environ.get("CXX", "c++"), "-std=c++17"]
    cmd += WARN + ["-O1", "-g", "-I" + os.path.join(ROOT, "include"), src, "-o", exe,
                   "-L" + LIB, "-lasyncloop", "-Wl,-rpath," + LIB, "-lpthread"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return exe, r


class Program:
    """A guide program running in the background; `port` from its 'listening on' line."""

    def __init__(self, exe, *args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen([exe, *map(str, args)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=e)
        line = self.p.stdout.readline()
        m = re.search(r"listening on [\d.]+:(\d+)", line)
        if not m:
            self.p.kill()
            out, err = self.p.communicate()
            raise AssertionError(f"{exe}: no 'listening on' line: {line!r} {out!r} {err!r}")
        self.port = int(m.group(1))

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self, sig=signal.SIGTERM):
        """Sends `sig` and returns (exit code, rest of stdout, stderr)."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            out, err = self.p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise AssertionError(f"did not exit after signal {sig}: {out!r} {err!r}")
        return self.p.returncode, out, err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


def http(method, url, body=None, headers=None):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def start_postgres():
    """A throwaway cluster (scripts/pg.sh); returns (dir, conninfo URL)."""
    d = tempfile.mkdtemp(prefix="asyncloop-guides-")
    url = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "start", d], check=True,
                         capture_output=True, text=True).stdout.strip()
    return d, url


def stop_postgres(d):
    subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop", d], capture_output=True)


class Upstream:
    """A keep-alive HTTP/1.1 server in Python for the client guide: any path answers "upstream
    saw PATH" (404 for /missing, after 3 s for /slow); /bytes?n=N answers N bytes."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/slow":
                    time.sleep(3)
                if self.path.startswith("/bytes?n="):
                    body = bytes(i % 251 for i in range(int(self.path[len("/bytes?n="):])))
                else:
                    body = f"upstream saw {self.path}\n".encode()
                self.send_response(404 if self.path == "/missing" else 200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request, client_address):
                pass  # a client that cancels mid-body resets the connection: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class GuidePrograms(unittest.TestCase):
    programs = {}
    built = {}
    failures = {}

    @classmethod
    def setUpClass(cls):
        cls.programs, cls.errors = guide_programs.write(OUT)
        for name, (lang, _, _) in cls.programs.items():
            exe, r = compile_program(name, lang)
            if r.returncode == 0:
                cls.built[name] = exe
            else:
                cls.failures[name] = r.stderr

    def exe(self, name):
        self.assertIn(name, self.programs, f"{name}: no such program in the guides")
        self.assertNotIn(name, self.failures, f"{name} does not compile:\n{self.failures.get(name)}")
        return self.built[name]

    def test_every_block_is_a_named_program(self):
        self.assertEqual(self.errors, [])
        self.assertGreaterEqual(len(self.programs), 8)

    def test_every_program_compiles(self):
        for name in self.programs:
            with self.subTest(program=name):
                self.assertNotIn(name, self.failures, self.failures.get(name))

    def test_every_program_is_run_by_a_test(self):
        runs = {m[len("test_run_"):] for m in dir(self) if m.startswith("test_run_")}
        for name in self.programs:
            with self.subTest(program=name):
                self.assertIn(os.path.splitext(name)[0], runs | COMPILE_ONLY,
                              f"{name}: add a test_run_ method for it")

    # ---- getting-started-c.md ------------------------------------------------------------

    def test_run_hello_timer(self):
        for backend in ("uring", "epoll"):
            r = subprocess.run([self.exe("hello_timer.c")], capture_output=True, text=True,
                               timeout=TIMEOUT, env=dict(os.environ, ASYNCLOOP_BACKEND=backend))
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            self.assertRegex(lines[0], rf"^asyncloop \d+\.\d+\.\d+ on {backend}$")
            self.assertEqual([l.split(" at ")[0] for l in lines[1:]], ["tick 1", "tick 2", "tick 3"])
            times = [int(re.search(r"at (\d+) ms", l).group(1)) for l in lines[1:]]
            self.assertTrue(times[0] < times[1] < times[2], times)

    def test_run_hello_http(self):
        p = Program(self.exe("hello_http.c"), 0)
        try:
            status, headers, body = http("GET", p.url("/hello"))
            self.assertEqual((status, body), (200, b"Hello, world!\n"))
            self.assertEqual(headers["Content-Type"], "text/plain")
            self.assertEqual(headers["Server"], "asyncloop")
            self.assertIsNotNone(headers["Date"])
            self.assertEqual(http("HEAD", p.url("/hello"))[2], b"")
            self.assertEqual(http("GET", p.url("/nothing"))[0], 404)
            status, headers, _ = http("POST", p.url("/hello"), b"x")
            self.assertEqual(status, 405)
            self.assertIn("GET", headers["Allow"])
        finally:
            p.kill()

    # ---- http-server.md ------------------------------------------------------------------

    def test_run_http_server(self):
        p = Program(self.exe("http_server.c"), 0)
        try:
            self.assertEqual(http("GET", p.url("/hello?name=Ada%20Lovelace"))[2],
                             b"Hello, Ada Lovelace!\n")
            self.assertEqual(http("GET", p.url("/hello"))[2], b"Hello, world!\n")
            status, headers, body = http("POST", p.url("/echo"), b"some text",
                                         {"Content-Type": "text/x-test"})
            self.assertEqual((status, headers["Content-Type"], body), (200, "text/x-test", b"some text"))
            self.assertEqual(http("POST", p.url("/echo"), b"x" * (64 * 1024 + 1))[0], 413)
            t = time.monotonic()
            self.assertEqual(http("GET", p.url("/later"))[:3:2], (200, b"Sorry for the wait.\n"))
            self.assertGreaterEqual(time.monotonic() - t, 0.19)
            status, headers, body = http("GET", p.url("/countdown"))
            self.assertEqual((status, headers["Transfer-Encoding"], body),
                             (200, "chunked", b"3\n2\n1\nliftoff\n"))
            self.assertEqual(http("GET", p.url("/fib?n=90"))[2], b"fib(90) = 2880067194370816120\n")
            self.assertEqual(http("GET", p.url("/fib?n=91"))[0], 400)
            status, headers, body = http("GET", p.url("/ping"))
            self.assertEqual((status, headers["Content-Type"], body), (200, "text/plain", b"pong\n"))
            # A request in flight when SIGTERM arrives is still answered; then the program exits 0.
            result = {}
            t = threading.Thread(target=lambda: result.update(r=http("GET", p.url("/later"))))
            t.start()
            time.sleep(0.05)
            code, out, err = p.stop(signal.SIGTERM)
            t.join(TIMEOUT)
            self.assertEqual(result["r"][:3:2], (200, b"Sorry for the wait.\n"))
            self.assertEqual((code, out, err), (0, "stopped\n", ""))
        finally:
            p.kill()

    # ---- websocket.md --------------------------------------------------------------------

    def test_run_ws_server(self):
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect
        p = Program(self.exe("ws_server.c"), 0)
        try:
            ws_url = f"ws://127.0.0.1:{p.port}"
            with connect(ws_url + "/echo") as ws:
                ws.send("hi")
                self.assertEqual(ws.recv(timeout=10), "hi")
                ws.send(b"\x00\x01")
                self.assertEqual(ws.recv(timeout=10), b"\x00\x01")
            a, b = connect(ws_url + "/room"), connect(ws_url + "/room")
            time.sleep(0.3)  # both joined (their open callbacks ran)
            a.send("hello room")
            self.assertEqual((a.recv(timeout=10), b.recv(timeout=10)), ("hello room", "hello room"))
            a.send("x" * 5000)  # over the room's max_message
            with self.assertRaises(ConnectionClosed):
                a.recv(timeout=10)
            self.assertEqual(a.close_code, 1009)
            # SIGTERM: the client still in the room gets 1001; the program stops and exits 0.
            code, out, err = p.stop(signal.SIGTERM)
            with self.assertRaises(ConnectionClosed):
                b.recv(timeout=10)
            self.assertEqual(b.close_code, 1001)
            self.assertEqual((code, out, err), (0, "stopped\n", ""))
        finally:
            p.kill()

    def test_run_ws_client(self):
        p = Program(self.exe("ws_server.c"), 0)
        try:
            r = subprocess.run([self.exe("ws_client.cpp"), str(p.port), "one", "two words"],
                               capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual((r.returncode, r.stdout), (0, "one\ntwo words\nclosed: OK, code 1000 \n"), r.stderr)
            # Nothing listening: the close callback says why, and the exit code is 1.
            p.stop(signal.SIGTERM)
            r = subprocess.run([self.exe("ws_client.cpp"), str(p.port), "x"], capture_output=True, text=True,
                               timeout=TIMEOUT)
            self.assertEqual((r.returncode, r.stdout), (1, "closed: ECONNREFUSED, code 1006 \n"), r.stderr)
        finally:
            p.kill()

    # ---- getting-started-cpp.md ----------------------------------------------------------

    def test_run_hello(self):
        p = Program(self.exe("hello.cpp"), 0)
        try:
            self.assertEqual(http("GET", p.url("/hello?name=C%2B%2B"))[:3:2], (200, b"Hello, C++!\n"))
            self.assertEqual(http("GET", p.url("/fib?n=90"))[2], b"fib(90) = 2880067194370816120\n")
            self.assertEqual(http("GET", p.url("/fib?n=-1"))[0], 400)
            self.assertEqual(http("GET", p.url("/forgotten"))[0], 500)
            # A second server on the same port: the failure is an aloop::Error, exit 1.
            r = subprocess.run([self.exe("hello.cpp"), str(p.port)], capture_output=True,
                               text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 1)
            self.assertIn("(EADDRINUSE)", r.stderr)
            self.assertEqual(p.stop(signal.SIGINT), (0, "stopped\n", ""))
        finally:
            p.kill()

    def test_run_stream(self):
        p = Program(self.exe("stream.cpp"), 0)
        try:
            blob = bytes((i * 7) % 256 for i in range(3_000_000))
            total = 0
            for b in blob:
                total = (total * 31 + b) % 1000000007
            self.assertEqual(http("POST", p.url("/upload"), blob)[::2],
                             (200, f"3000000 bytes, sum {total}\n".encode()))
            big = b"x" * ((64 << 20) + 1)
            self.assertEqual(http("POST", p.url("/upload"), big)[0], 413)
            status, headers, body = http("GET", p.url("/count?n=100000"))
            self.assertEqual((status, headers["Transfer-Encoding"]), (200, "chunked"))
            self.assertEqual(body, "".join(f"{i}\n" for i in range(1, 100001)).encode())
        finally:
            p.kill()

    # ---- http-client.md ------------------------------------------------------------------

    def test_run_fetch(self):
        up = Upstream()
        try:
            for host in ("127.0.0.1", "localhost"):
                r = subprocess.run([self.exe("fetch.c"), f"http://{host}:{up.port}/hello?x=1"],
                                   capture_output=True, text=True, timeout=TIMEOUT)
                self.assertEqual((r.returncode, r.stderr), (0, ""))
                head, body = r.stdout.split("\n\n", 1)
                self.assertEqual(head.splitlines()[0], "200 OK")
                self.assertIn("Content-Type: text/plain", head.splitlines())
                self.assertEqual(body, "upstream saw /hello?x=1\n")
            r = subprocess.run([self.exe("fetch.c"), f"http://127.0.0.1:{up.port}/missing"],
                               capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0)  # a response arrived: any status counts
            self.assertTrue(r.stdout.startswith("404 "))
            t = time.monotonic()
            r = subprocess.run([self.exe("fetch.c"), f"http://127.0.0.1:{up.port}/slow", "300"],
                               capture_output=True, text=True, timeout=TIMEOUT)
            self.assertLess(time.monotonic() - t, 2.5)
            self.assertEqual((r.returncode, r.stdout), (1, ""))
            self.assertIn("(ALOOP_E_TIMEOUT)", r.stderr)
        finally:
            up.close()
        with socket_closed_port() as port:
            r = subprocess.run([self.exe("fetch.c"), f"http://127.0.0.1:{port}/"],
                               capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 1)
        self.assertIn("(ECONNREFUSED)", r.stderr)
        r = subprocess.run([self.exe("fetch.c"), "ftp://127.0.0.1/"], capture_output=True,
                           text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 1)
        self.assertIn("(ALOOP_E_URL)", r.stderr)

    def test_run_download(self):
        up = Upstream()
        try:
            url = f"http://127.0.0.1:{up.port}/bytes?n=3000000"
            r = subprocess.run([self.exe("download.c"), url, "100000000"], capture_output=True,
                               timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, bytes(i % 251 for i in range(3000000)))
            self.assertEqual(r.stderr, b"download: HTTP 200, 3000000 bytes\n")
            r = subprocess.run([self.exe("download.c"), url, "100000"], capture_output=True,
                               timeout=TIMEOUT)
            self.assertEqual(r.returncode, 1)
            self.assertRegex(r.stderr.decode(), r"^download: ALOOP_E_CANCELLED after \d+ bytes\n$")
            self.assertGreater(len(r.stdout), 100000)
            self.assertLess(len(r.stdout), 3000000)
            self.assertEqual(r.stdout, bytes(i % 251 for i in range(len(r.stdout))))
        finally:
            up.close()

    # ---- postgresql.md and faults.md -----------------------------------------------------

    def test_run_notes(self):
        d, url = start_postgres()
        try:
            r = subprocess.run([self.exe("notes.c"), url], capture_output=True, text=True,
                               timeout=TIMEOUT)
            self.assertEqual((r.returncode, r.stderr), (0, ""))
            self.assertEqual(r.stdout.splitlines(), [
                "added note 1", "added note 2", "added note 3",
                "batches:",
                "  statement 1: OK ", "  statement 2: OK ",
                "  statement 1: OK ", "  statement 2: ALOOP_E_PG_QUERY 23505",
                "  statement 3: ALOOP_E_PG_ABORTED ",
                # The failed batch committed nothing: its update of note 1 was rolled back.
                "1: BUY MILK", "3: write the docs",
            ])
        finally:
            stop_postgres(d)
        with socket_closed_port() as port:
            t = time.monotonic()
            r = subprocess.run([self.exe("notes.c"),
                                f"postgresql://postgres@127.0.0.1:{port}/x?sslmode=disable"],
                               capture_output=True, text=True, timeout=TIMEOUT)
        self.assertLess(time.monotonic() - t, 5)
        self.assertEqual(r.returncode, 1)
        self.assertIn("(ALOOP_E_PG_UNAVAILABLE)", r.stderr)

    def test_run_db_health(self):
        d, url = start_postgres()
        try:
            p = Program(self.exe("db_health.c"), 0, url)
            try:
                status, headers, body = http("GET", p.url("/now"))
                self.assertEqual((status, headers["Content-Type"]), (200, "application/json"))
                self.assertRegex(body.decode(), r'^\{"now":"\d{4}-\d\d-\d\d [\d:.+-]+"\}$')
                stop_postgres(d)  # the database goes away under the running server
                deadline = time.monotonic() + 10
                while True:
                    t = time.monotonic()
                    status, _, body = http("GET", p.url("/now"))
                    self.assertLess(time.monotonic() - t, 3)  # never a hang
                    if status == 503 or time.monotonic() > deadline:
                        break
                self.assertEqual(status, 503)
                self.assertIn(b'"error":"ALOOP_E_PG_', body)
            finally:
                p.kill()
        finally:
            stop_postgres(d)

    # ---- building.md ---------------------------------------------------------------------

    def test_run_version_check(self):
        r = subprocess.run([self.exe("version_check.c")], capture_output=True, text=True,
                           timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^header (\d+\.\d+\.\d+) \(0x[0-9a-f]{6}\), library \1\n$")


class socket_closed_port:
    """A loopback port that nothing listens on (bound, then closed) for a refused connect."""

    def __enter__(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc):
        return False


# Programs that are only compiled, and why they are not run here.
COMPILE_ONLY = {
    "app",  # README.md's echo server listens on the fixed port 8080, which tests never take
}

if __name__ == "__main__":
    unittest.main()
