"""End to end: the `client` binary (single and load mode) and the server's upstream routes
(/api relay, API -> DB and DB -> API chains) against a real upstream (Python's http.server)
and a real PostgreSQL, on each backend."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from harness import BACKENDS, BIN, ROOT, server

PG = os.path.join(ROOT, "scripts", "pg.sh")
UPSTREAM = os.path.join(ROOT, "tests", "helpers", "upstream.py")


def start_upstream():
    p = subprocess.Popen(["python3", UPSTREAM], stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline().split()[-1])
    return p, port


def get(port, path, timeout=10):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def client(*args, timeout=60):
    return subprocess.run([os.path.join(BIN, "client"), *args], capture_output=True, timeout=timeout)


def make_tests(backend):
    class ClientAndUpstream(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.up, cls.up_port = start_upstream()
            cls.dbdir = tempfile.mkdtemp(prefix="asyncloop-e2e-up-")
            cls.db_url = subprocess.run([PG, "start", cls.dbdir], check=True, capture_output=True, text=True).stdout.strip()
            cls.srv = server("--pg", cls.db_url, "--upstream", f"http://127.0.0.1:{cls.up_port}/",
                             "--upstream-timeout", "500", backend=backend)

        @classmethod
        def tearDownClass(cls):
            try:
                assert cls.srv.stop() == 0
            finally:
                cls.up.kill()
                cls.up.wait()
                subprocess.run([PG, "stop", cls.dbdir], capture_output=True)

        def psql(self, sql):
            return subprocess.run(["psql", self.db_url, "-Atc", sql], check=True, capture_output=True, text=True).stdout.strip()

        # ---- client binary ---------------------------------------------------------------

        def test_client_single_request_prints_status_headers_body(self):
            r = client("--backend", backend, "127.0.0.1", str(self.srv.port), "/json")
            self.assertEqual(r.returncode, 0, r.stderr)
            head, body = r.stdout.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
            self.assertIn(b"Content-Type: application/json", lines)
            self.assertEqual(body, b'{"message":"Hello, World!"}')
            # Any status is a response: exit 0. A host name works too.
            r = client("localhost", str(self.srv.port), "nope")
            self.assertEqual((r.returncode, r.stdout.split(b"\r\n")[0]), (0, b"HTTP/1.1 404 Not Found"))
            r = client("-X", "POST", "-d", "level", "-H", "X-Test: 1", "127.0.0.1", str(self.srv.port), "/palindrome")
            self.assertTrue(r.stdout.endswith(b"The input is a palindrome."), r.stdout)

        def test_client_failures_exit_non_zero_with_a_reason(self):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                closed_port = s.getsockname()[1]
            for args, word in [
                (["127.0.0.1", str(closed_port)], b"refused"),
                (["no-such-host.invalid", "80"], b"resolve"),
                (["--timeout", "300", "127.0.0.1", str(self.up_port), "/slow?ms=3000"], b"timed out"),
            ]:
                r = client(*args)
                self.assertNotEqual(r.returncode, 0, args)
                self.assertEqual(r.stdout, b"")
                self.assertEqual(len(r.stderr.strip().split(b"\n")), 1, r.stderr)
                self.assertIn(word, r.stderr.lower(), r.stderr)

        def test_client_load_mode_summary(self):
            r = client("--backend", backend, "-n", "2000", "-c", "16", "127.0.0.1", str(self.srv.port), "/plaintext")
            self.assertEqual(r.returncode, 0, r.stderr)
            # Its pooled connections close with the client: nothing is left open at the end.
            self.assertEqual(r.stderr, b"")
            line = r.stdout.decode().strip()
            fields = dict(kv.split("=") for kv in line.split())
            self.assertEqual(list(fields), ["requests", "ok", "errors", "rps", "p50_ms", "p99_ms"])
            self.assertEqual((fields["requests"], fields["ok"], fields["errors"]), ("2000", "2000", "0"))
            self.assertGreater(float(fields["rps"]), 0)
            self.assertLessEqual(float(fields["p50_ms"]), float(fields["p99_ms"]))
            # Errors make it exit non-zero.
            r = client("-n", "10", "-c", "2", "127.0.0.1", str(self.srv.port), "/nope")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("errors=10", r.stdout.decode())

        # ---- upstream routes ---------------------------------------------------------------

        def test_api_relay(self):
            st, h, body = get(self.srv.port, "/api/hello")
            self.assertEqual((st, h["Content-Type"], body), (200, "text/plain", b"hello"))
            st, h, body = get(self.srv.port, "/api/status/418")
            self.assertEqual((st, h["Content-Type"], json.loads(body)), (418, "application/json", {"status": 418}))
            st, _, body = get(self.srv.port, "/api/big?n=5000")
            self.assertEqual((st, len(body)), (200, 5000))

        def test_api_slow_is_504_and_unreachable_is_502(self):
            t0 = time.time()
            st, _, body = get(self.srv.port, "/api/slow?ms=3000")
            self.assertEqual(st, 504)
            self.assertLess(time.time() - t0, 2.5)
            self.assertIn("error", json.loads(body))
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                dead = s.getsockname()[1]
            srv2 = server("--upstream", f"http://127.0.0.1:{dead}", backend=backend)
            try:
                st, _, body = get(srv2.port, "/api/hello")
                self.assertEqual(st, 502)
                self.assertIn("error", json.loads(body))
            finally:
                self.assertEqual(srv2.stop(), 0)

        def test_chain_api_then_db(self):
            st, h, body = get(self.srv.port, "/chain/api-db/big?n=321")
            self.assertEqual((st, h["Content-Type"]), (200, "application/json"))
            out = json.loads(body)
            self.assertEqual((out["upstream_status"], out["bytes"]), (200, 321))
            row = self.psql(f"SELECT path, status, bytes FROM api_log WHERE id = {out['log_id']}")
            self.assertEqual(row, "/big?n=321|200|321")

        def test_chain_db_then_api(self):
            st, _, body = get(self.srv.port, "/chain/db-api?id=42")
            out = json.loads(body)
            rn = int(self.psql("SELECT randomnumber FROM world WHERE id = 42"))
            self.assertEqual(st, 200)
            self.assertEqual((out["id"], out["randomNumber"], out["upstream_status"]), (42, rn, 200))
            self.assertEqual(json.loads(out["upstream_body"]), {"world": str(rn)})
            self.assertEqual(get(self.srv.port, "/chain/db-api?id=abc")[0], 400)

        def test_client_disconnecting_mid_chain(self):
            # Clients that leave while the upstream is slow: no crash, and the server goes on.
            for _ in range(10):
                s = socket.create_connection(("127.0.0.1", self.srv.port))
                s.sendall(b"GET /api/slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            time.sleep(0.6)
            self.assertTrue(self.srv.alive())
            self.assertEqual(get(self.srv.port, "/api/hello")[0], 200)

    ClientAndUpstream.__name__ = f"ClientAndUpstream_{backend}"
    return ClientAndUpstream


for _b in BACKENDS:
    globals()[f"ClientAndUpstream_{_b}"] = make_tests(_b)
del _b

if __name__ == "__main__":
    unittest.main()
