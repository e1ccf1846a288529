"""End to end over TLS, on each backend: the `server` binary with --tls-cert/--tls-key against
curl --cacert, Python's ssl and openssl s_client; plain HTTP, garbage, truncated records and a
stalled handshake on the TLS port; mTLS with --tls-client-ca; the certificate replaced on
SIGHUP while connections stay open; the /api and /chain routes through an HTTPS upstream
(--upstream https://... --upstream-cacert); the `client` binary with --tls against good and
bad certificates (each failure its own code, with the reason); a TLS load run."""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import BACKENDS, BIN, ROOT, server, wait_until
from tlscerts import Certs

PG = os.path.join(ROOT, "scripts", "pg.sh")
UPSTREAM = os.path.join(ROOT, "tests", "helpers", "upstream.py")
CERTS = None


def certs():
    global CERTS
    if CERTS is None:
        CERTS = Certs()
    return CERTS


def https_upstream(name):
    c = certs()
    p = subprocess.Popen(["python3", UPSTREAM, "--tls", c.path(f"{name}.pem"), c.path(f"{name}.key")],
                         stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline().split()[-1])


def client(*args, timeout=60):
    return subprocess.run([os.path.join(BIN, "client"), *args], capture_output=True, timeout=timeout)


def context(ca="ca.pem"):
    ctx = ssl.create_default_context(cafile=certs().path(ca))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def https_get(port, path, ctx=None, timeout=10):
    conn = http.client.HTTPSConnection("localhost", port, context=ctx or context(), timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def closed_within(sock, seconds):
    """Whether the peer closes (EOF or reset) within `seconds`, discarding what it sends."""
    sock.settimeout(seconds)
    deadline = time.time() + seconds
    try:
        while time.time() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def make_tests(backend):
    class Tls(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            c = certs()
            # The server's certificate files live in a directory of their own: the SIGHUP
            # test replaces them.
            cls.tlsdir = tempfile.mkdtemp(prefix="asyncloop-e2e-srvtls-")
            for f in ("server.pem", "server.key"):
                shutil.copy(c.path(f), os.path.join(cls.tlsdir, f))
            cls.cert, cls.key = (os.path.join(cls.tlsdir, f) for f in ("server.pem", "server.key"))
            cls.up, cls.up_port = https_upstream("server")
            cls.dbdir = tempfile.mkdtemp(prefix="asyncloop-e2e-tls-")
            cls.db_url = subprocess.run([PG, "start", cls.dbdir], check=True, capture_output=True,
                                        text=True).stdout.strip()
            cls.srv = server("--pg", cls.db_url, "--tls-cert", cls.cert, "--tls-key", cls.key,
                             "--upstream", f"https://localhost:{cls.up_port}",
                             "--upstream-cacert", c.path("ca.pem"), "--header-timeout", "1000",
                             backend=backend)

        @classmethod
        def tearDownClass(cls):
            try:
                assert cls.srv.stop() == 0
            finally:
                cls.up.kill()
                cls.up.wait()
                subprocess.run([PG, "stop", cls.dbdir], capture_output=True)
                shutil.rmtree(cls.tlsdir, ignore_errors=True)

        def psql(self, sql):
            return subprocess.run(["psql", self.db_url, "-Atc", sql], check=True, capture_output=True,
                                  text=True).stdout.strip()

        # ---- real clients against the server -------------------------------------------

        def test_curl_with_cacert(self):
            for extra, version in [([], "TLSv1.3"), (["--tls-max", "1.2"], "TLSv1.2")]:
                r = subprocess.run(["curl", "-sS", "-v", "--cacert", certs().path("ca.pem"), *extra,
                                    f"https://localhost:{self.srv.port}/plaintext"],
                                   capture_output=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, b"Hello, World!")
                err = r.stderr.decode()
                self.assertIn(version, err)
                self.assertIn("ALPN: server accepted http/1.1", err)
            # Without the CA, curl refuses the certificate.
            r = subprocess.run(["curl", "-sS", f"https://localhost:{self.srv.port}/plaintext"],
                               capture_output=True, timeout=30)
            self.assertNotEqual(r.returncode, 0)

        def test_python_ssl_keep_alive(self):
            conn = http.client.HTTPSConnection("localhost", self.srv.port, context=context(), timeout=10)
            ports = set()
            for path in ["/plaintext", "/json", "/plaintext"]:
                conn.request("GET", path)
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                r.read()
                ports.add(conn.sock.getsockname()[1])
                self.assertEqual(conn.sock.version(), "TLSv1.3")
            self.assertEqual(len(ports), 1, "one kept-alive connection")
            # POST with a body larger than one TLS record.
            body = b"x" * 40000 + b"y" + b"x" * 40000
            conn.request("POST", "/palindrome", body=body)
            r = conn.getresponse()
            self.assertEqual(r.read(), b"The input is a palindrome.")
            conn.close()

        def test_openssl_s_client(self):
            req = b"GET /json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.srv.port}",
                                "-servername", "localhost", "-CAfile", certs().path("ca.pem"),
                                "-verify_return_error", "-quiet"],
                               input=req, capture_output=True, timeout=30)
            self.assertIn(b"HTTP/1.1 200 OK", r.stdout, r.stderr)
            self.assertIn(b'{"message":"Hello, World!"}', r.stdout)

        # ---- bad peers ---------------------------------------------------------------------

        def test_plain_http_on_the_tls_port_gets_400(self):
            s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
            s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            s.close()
            self.assertTrue(got.startswith(b"HTTP/1.1 400 Bad Request\r\n"), got)
            self.assertIn(b"Connection: close", got)
            self.assertIn(b"plain HTTP request was sent to HTTPS port", got)

        def test_garbage_and_truncated_records(self):
            for junk in [os.urandom(3000), b"\x16\x03\x01\x00\x30" + os.urandom(10),
                         b"\x16\x03\x01\x40\x00" + os.urandom(20000), b"\x16\x03\x01\x01\x00\x01"]:
                s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
                try:
                    s.sendall(junk)
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self.assertTrue(closed_within(s, 5), junk[:8])
                s.close()
            self.assertTrue(self.srv.alive())
            self.assertEqual(https_get(self.srv.port, "/plaintext")[0], 200)

        def test_stalled_handshake_is_closed_by_the_header_timeout(self):
            # Half a client hello, then silence: closed after the header timeout (1 s here).
            s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40)
            t0 = time.time()
            self.assertTrue(closed_within(s, 8))
            self.assertGreater(time.time() - t0, 0.5)
            s.close()
            # One that never sends anything at all: closed too.
            s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
            self.assertTrue(closed_within(s, 8))
            s.close()

        # ---- certificate replaced at run time ---------------------------------------------

        def test_sighup_replaces_the_certificate_for_new_connections(self):
            old = context()
            conn = http.client.HTTPSConnection("localhost", self.srv.port, context=old, timeout=10)
            conn.request("GET", "/plaintext")
            self.assertEqual(conn.getresponse().read(), b"Hello, World!")
            before = conn.sock.getpeercert(binary_form=True)
            try:
                shutil.copy(certs().path("rsa.pem"), self.cert)
                shutil.copy(certs().path("rsa.key"), self.key)
                self.srv.p.send_signal(signal.SIGHUP)

                def new_cert():
                    with socket.create_connection(("127.0.0.1", self.srv.port), timeout=5) as raw:
                        with context().wrap_socket(raw, server_hostname="localhost") as s:
                            return s.getpeercert(binary_form=True)

                self.assertTrue(wait_until(lambda: new_cert() != before, 5), "the new certificate")
                with open(certs().path("rsa.pem")) as f:
                    want = ssl.PEM_cert_to_DER_cert(f.read())
                self.assertEqual(new_cert(), want)
                # The connection opened before keeps its session and goes on.
                conn.request("GET", "/json")
                self.assertEqual(conn.getresponse().status, 200)
                self.assertEqual(conn.sock.getpeercert(binary_form=True), before)
            finally:
                conn.close()
                shutil.copy(certs().path("server.pem"), self.cert)
                shutil.copy(certs().path("server.key"), self.key)
                self.srv.p.send_signal(signal.SIGHUP)
            # A broken file on SIGHUP: the server says so and keeps the configuration it has.
            with open(self.key, "w") as f:
                f.write("not a key\n")
            self.srv.p.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            self.assertTrue(self.srv.alive())
            self.assertEqual(https_get(self.srv.port, "/plaintext")[0], 200)
            shutil.copy(certs().path("server.key"), self.key)

        # ---- mutual TLS ----------------------------------------------------------------------

        def test_client_certificates_required(self):
            c = certs()
            srv = server("--tls-cert", c.path("server.pem"), "--tls-key", c.path("server.key"),
                         "--tls-client-ca", c.path("ca.pem"), backend=backend)
            try:
                url = f"https://localhost:{srv.port}/plaintext"
                r = subprocess.run(["curl", "-sS", "--cacert", c.path("ca.pem"), url],
                                   capture_output=True, timeout=30)
                self.assertNotEqual(r.returncode, 0)
                r = subprocess.run(["curl", "-sS", "--cacert", c.path("ca.pem"), "--cert", c.path("client.pem"),
                                    "--key", c.path("client.key"), url], capture_output=True, timeout=30)
                self.assertEqual((r.returncode, r.stdout), (0, b"Hello, World!"), r.stderr)
            finally:
                self.assertEqual(srv.stop(), 0)

        # ---- the upstream routes through an HTTPS upstream ------------------------------------

        def test_api_and_chains_through_an_https_upstream(self):
            st, h, body = https_get(self.srv.port, "/api/hello")
            self.assertEqual((st, h["Content-Type"], body), (200, "text/plain", b"hello"))
            st, _, body = https_get(self.srv.port, "/chain/api-db/big?n=321")
            out = json.loads(body)
            self.assertEqual((st, out["upstream_status"], out["bytes"]), (200, 200, 321))
            row = self.psql(f"SELECT path, status, bytes FROM api_log WHERE id = {out['log_id']}")
            self.assertEqual(row, "/big?n=321|200|321")
            st, _, body = https_get(self.srv.port, "/chain/db-api?id=42")
            out = json.loads(body)
            rn = int(self.psql("SELECT randomnumber FROM world WHERE id = 42"))
            self.assertEqual((st, out["randomNumber"], out["upstream_status"]), (200, rn, 200))

        def test_untrusted_upstream_is_502(self):
            up, port = https_upstream("selfsigned")
            srv = server("--upstream", f"https://localhost:{port}", "--upstream-cacert",
                         certs().path("ca.pem"), backend=backend)
            try:
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                s.sendall(b"GET /api/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                got = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
                s.close()
                self.assertTrue(got.startswith(b"HTTP/1.1 502"), got)
            finally:
                self.assertEqual(srv.stop(), 0)
                up.kill()
                up.wait()

        # ---- the client binary ---------------------------------------------------------------

        def test_client_binary_over_tls(self):
            ca = certs().path("ca.pem")
            r = client("--backend", backend, "--tls", "--cacert", ca, "localhost", str(self.srv.port), "/json")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.startswith(b"HTTP/1.1 200 OK\r\n"))
            self.assertTrue(r.stdout.endswith(b'{"message":"Hello, World!"}'))
            r = client("--backend", backend, "--tls", "--cacert", ca, "-n", "2000", "-c", "16",
                       "localhost", str(self.srv.port), "/plaintext")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"ok=2000 errors=0", r.stdout)

        def test_client_binary_bad_certificates(self):
            ca = certs().path("ca.pem")
            for name, code, words in [
                ("expired", b"ALOOP_E_TLS_EXPIRED", b"expired"),
                ("selfsigned", b"ALOOP_E_TLS_SELF_SIGNED", b"self-signed"),
                ("wronghost", b"ALOOP_E_TLS_NAME_MISMATCH", b"other.example"),
                ("untrusted", b"ALOOP_E_TLS_UNTRUSTED", b"unknownissuer"),
            ]:
                up, port = https_upstream(name)
                try:
                    r = client("--backend", backend, "--tls", "--cacert", ca, "localhost", str(port), "/hello")
                    self.assertNotEqual(r.returncode, 0, name)
                    self.assertEqual(r.stdout, b"")
                    self.assertEqual(len(r.stderr.strip().split(b"\n")), 1, r.stderr)
                    self.assertIn(code, r.stderr, name)
                    self.assertIn(words, r.stderr.lower(), name)
                    if name == "selfsigned":
                        r = client("--tls", "--insecure", "localhost", str(port), "/hello")
                        self.assertEqual(r.returncode, 0, r.stderr)
                        self.assertIn(b"--insecure", r.stderr)
                finally:
                    up.kill()
                    up.wait()

    Tls.__name__ = f"Tls_{backend}"
    return Tls


for _b in BACKENDS:
    globals()[f"Tls_{_b}"] = make_tests(_b)
del _b


def tearDownModule():
    if CERTS is not None:
        CERTS.remove()


if __name__ == "__main__":
    unittest.main()
