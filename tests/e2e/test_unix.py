"""End to end over Unix stream sockets, on each backend: `server --unix PATH --threads N`
spreads the socket's connections over every loop; nginx proxying to the socket
(`proxy_pass http://unix:PATH:` and an upstream block with keep-alive); Python's http.client
over AF_UNIX; a stale socket file replaced and a live one refused."""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import BACKENDS, Proc, UnixHTTPConnection, server, unix_connect, wait_until

MiB = 1 << 20


def note(text):
    sys.stderr.write(f"  [{text}]\n")


def thread_cpu_ns(pid):
    """CPU time each thread of process `pid` has run so far (ns, from schedstat), by tid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except OSError:
            pass  # a thread that ended meanwhile
    return out


def connected_server_sockets(path):
    """Inodes of the connected sockets bound to `path` (the server's ends of its
    connections), from /proc/net/unix."""
    out = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            # Num RefCount Protocol Flags Type St Inode Path; St 03: connected.
            if len(fields) >= 8 and fields[7] == path and fields[5] == "03":
                out.add(int(fields[6]))
    return out


class Nginx:
    """nginx (one process, no daemon) under a prefix of its own, proxying to `sock`:
    /direct/ with `proxy_pass http://unix:SOCK:/`, everything else through an upstream block
    that keeps connections alive."""

    def __init__(self, tmp, sock):
        self.prefix = os.path.join(tmp, "nginx")
        os.makedirs(os.path.join(self.prefix, "logs"), exist_ok=True)
        os.makedirs(os.path.join(self.prefix, "tmp"), exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        p = self.prefix
        conf = f"""daemon off; master_process off; pid {p}/nginx.pid; error_log {p}/logs/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {p}/tmp; proxy_temp_path {p}/tmp; fastcgi_temp_path {p}/tmp;
  uwsgi_temp_path {p}/tmp; scgi_temp_path {p}/tmp;
  upstream app {{ server unix:{sock}; keepalive 4; }}
  server {{
    listen 127.0.0.1:{self.port};
    client_max_body_size 0;
    location /direct/ {{ proxy_pass http://unix:{sock}:/; }}
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
        with open(os.path.join(p, "nginx.conf"), "w") as f:
            f.write(conf)
        self.p = subprocess.Popen(["nginx", "-p", p, "-c", os.path.join(p, "nginx.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        if not wait_until(up, 20):
            self.stop()
            raise RuntimeError(f"nginx did not start: {self.log()}")

    def log(self):
        try:
            with open(os.path.join(self.prefix, "logs", "error.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=10)


def make_tests(backend):
    class UnixTests(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.tmp = tempfile.mkdtemp(prefix="aloop-e2e-unix-")
            cls.sock = os.path.join(cls.tmp, "server.sock")
            cls.srv = server("--unix", cls.sock, backend=backend, threads=2)
            assert cls.srv.backend == backend, cls.srv.line
            cls.nginx = Nginx(cls.tmp, cls.sock)

        @classmethod
        def tearDownClass(cls):
            cls.nginx.stop()
            assert cls.srv.stop() == 0
            assert not os.path.exists(cls.sock), "the socket file outlived the server"
            shutil.rmtree(cls.tmp, ignore_errors=True)

        def test_every_loop_serves_the_socket(self):
            # Connections over the socket, 8 at a time: each loop's thread must do a share of
            # the work (measured as the CPU time of each of the server's threads).
            def hit(n):
                for _ in range(n):
                    s = unix_connect(self.sock)
                    s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    got = b""
                    while True:
                        b = s.recv(4096)
                        if not b:
                            break
                        got += b
                    s.close()
                    assert got.endswith(b"Hello, World!"), got
            before = thread_cpu_ns(self.srv.pid)
            ts = [threading.Thread(target=hit, args=(250,)) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            after = thread_cpu_ns(self.srv.pid)
            spent = sorted((after[t] - before.get(t, 0) for t in after), reverse=True)
            total = sum(spent)
            shares = [round(100 * s / total, 1) for s in spent]
            note(f"{backend}: 2,000 connections, CPU share of each server thread (%): {shares}")
            # Two loops: the less busy one does at least a sixth of the work (with one loop
            # serving the socket it was under 1%).
            self.assertGreater(spent[1], total / 6, f"thread shares {shares}")

        def test_python_http_client(self):
            c = UnixHTTPConnection(self.sock)
            c.request("GET", "/plaintext")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"Hello, World!"))
            first = c.sock
            c.request("GET", "/json")
            r = c.getresponse()
            self.assertEqual(json.loads(r.read()), {"message": "Hello, World!"})
            self.assertIs(c.sock, first, "the connection was not kept alive")
            body = os.urandom(3 * MiB + 5)
            for chunked in (False, True):
                c.request("POST", "/upload", body=body, encode_chunked=chunked,
                          headers={"Content-Type": "application/octet-stream"})
                r = c.getresponse()
                self.assertEqual(r.status, 200)
                self.assertEqual(json.loads(r.read()),
                                 {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
            self.assertIs(c.sock, first)
            c.close()

        def curl(self, *args):
            out = subprocess.run(["curl", "-sS", "--max-time", "30", *args],
                                 capture_output=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            return out.stdout

        def test_nginx_proxy_pass_unix(self):
            base = f"http://127.0.0.1:{self.nginx.port}"
            self.assertEqual(self.curl(f"{base}/direct/plaintext"), b"Hello, World!",
                             self.nginx.log())
            self.assertEqual(json.loads(self.curl(f"{base}/direct/json")),
                             {"message": "Hello, World!"})
            self.assertEqual(self.curl(f"{base}/plaintext"), b"Hello, World!", self.nginx.log())
            self.assertEqual(json.loads(self.curl(f"{base}/json")), {"message": "Hello, World!"})
            path = os.path.join(self.tmp, "upload.bin")
            body = os.urandom(5 * MiB + 3)
            with open(path, "wb") as f:
                f.write(body)
            want = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            for prefix in ("/direct", ""):
                got = self.curl("--data-binary", f"@{path}", "-H", "Content-Type: application/octet-stream",
                                f"{base}{prefix}/upload")
                self.assertEqual(json.loads(got), want, f"{prefix}/upload: {got[:200]!r}")
            os.unlink(path)

        def test_nginx_keeps_upstream_connections_alive(self):
            # One request at a time through the upstream block: nginx takes the same
            # connection to the socket every time, and the server keeps it open.
            base = f"http://127.0.0.1:{self.nginx.port}"
            self.assertEqual(self.curl(f"{base}/plaintext"), b"Hello, World!")
            seen = connected_server_sockets(self.sock)
            self.assertTrue(seen, "no connection from nginx stays open")
            for _ in range(10):
                self.assertEqual(self.curl(f"{base}/plaintext"), b"Hello, World!")
            self.assertEqual(connected_server_sockets(self.sock), seen,
                             "nginx opened new connections to the socket")

        def test_live_socket_is_not_replaced_and_a_stale_one_is(self):
            # A second server on the live socket refuses to start; the first keeps serving.
            other = os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin", "server")
            p = subprocess.run([other, "--backend", backend, "--unix", self.sock, "127.0.0.1", "0"],
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 1)
            self.assertIn(b"a server is listening on the Unix socket", p.stderr)
            # What start-up had made is torn down, not abandoned.
            self.assertNotIn(b"leaked", p.stderr)
            self.assertEqual(self.curl("--unix-socket", self.sock, "http://x/plaintext"), b"Hello, World!")
            # A socket file nobody listens on (its server died) is replaced.
            stale = os.path.join(self.tmp, "stale.sock")
            s = socket.socket(socket.AF_UNIX)
            s.bind(stale)
            s.close()
            self.assertTrue(os.path.exists(stale))
            srv = server("--unix", stale, backend=backend)
            try:
                self.assertEqual(self.curl("--unix-socket", stale, "http://x/plaintext"), b"Hello, World!")
            finally:
                self.assertEqual(srv.stop(), 0)
            self.assertFalse(os.path.exists(stale))

        def test_unix_socket_only(self):
            # `server --unix PATH` without an address and port serves the socket alone: it says
            # so, answers there, and has no TCP socket at all.
            path = os.path.join(self.tmp, "only.sock")
            binary = os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin", "server")
            srv = Proc([binary, "--backend", backend, "--threads", "2", "--unix", path])
            try:
                self.assertEqual(srv.unix_path, path, srv.line)
                self.assertIsNone(srv.port)
                self.assertEqual(self.curl("--unix-socket", path, "http://x/plaintext"), b"Hello, World!")
                inodes = set()
                for fd in os.listdir(f"/proc/{srv.pid}/fd"):
                    try:
                        target = os.readlink(f"/proc/{srv.pid}/fd/{fd}")
                    except OSError:
                        continue
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
                tcp = set()
                for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                    with open(table) as f:
                        next(f)
                        tcp.update(line.split()[9] for line in f)
                self.assertTrue(inodes, "the server holds its Unix socket")
                self.assertFalse(inodes & tcp, "a Unix-only server has a TCP socket")
            finally:
                self.assertEqual(srv.stop(), 0)
            self.assertFalse(os.path.exists(path))
            # Neither an address nor --unix: a usage error.
            p = subprocess.run([binary], capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 2)
            self.assertIn(b"expected <listen_address> <listen_port>", p.stderr)

        def test_tcp_port_taken_fails_cleanly(self):
            # A TCP port held by a socket without SO_REUSEPORT: the server exits 1 saying why,
            # after tearing down what it had made (here its Unix socket file, too).
            path = os.path.join(self.tmp, "tcpfail.sock")
            binary = os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin", "server")
            with socket.socket() as held:
                held.bind(("127.0.0.1", 0))
                held.listen()
                port = held.getsockname()[1]
                p = subprocess.run([binary, "--backend", backend, "--threads", "2", "--unix", path,
                                    "127.0.0.1", str(port)], capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(b"cannot listen on 127.0.0.1", p.stderr)
            self.assertNotIn(b"leaked", p.stderr)
            self.assertFalse(os.path.exists(path))

    UnixTests.__name__ = f"Unix_{backend}"
    return UnixTests


for _b in BACKENDS:
    globals()[f"Unix_{_b}"] = make_tests(_b)

if __name__ == "__main__":
    unittest.main()
