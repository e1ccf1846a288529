"""End to end, on each backend: `server --listen-fd FD` serves on a listening socket its parent
made and bound, as socket activation hands one over (TCP, Unix, abstract Unix), on every loop of
`--threads 2`, with Python's http.client; the listening line names the socket's address; a
descriptor that is not a listening socket fails the start-up with the reason and exit 1; and
the socket stays the parent's: after the server stops it still queues connections."""
import http.client
import os
import socket
import subprocess
import tempfile
import unittest

from harness import BACKENDS, BIN, Proc, UnixHTTPConnection


def make_tests(backend):
    binary = os.path.join(BIN, "server")

    def start(fd, *extra):
        return Proc([binary, "--backend", backend, "--threads", "2", "--listen-fd", str(fd), *extra],
                    pass_fds=(fd,))

    class ListenFdTests(unittest.TestCase):
        def test_tcp_socket_from_the_parent(self):
            with socket.socket() as lsock:
                lsock.bind(("127.0.0.1", 0))
                lsock.listen(64)
                port = lsock.getsockname()[1]
                srv = start(lsock.fileno())
                try:
                    self.assertEqual(srv.port, port, srv.line)
                    self.assertIn(f"listening on 127.0.0.1:{port} (backend={backend}, threads=2)", srv.line)
                    for i in range(20):
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                        c.request("GET", f"/plaintext?n={i}")
                        r = c.getresponse()
                        self.assertEqual((r.status, r.read()), (200, b"Hello, World!"))
                        c.close()
                    # Kept alive on one connection too.
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    for _ in range(3):
                        c.request("GET", "/json")
                        r = c.getresponse()
                        self.assertEqual(r.status, 200)
                        self.assertEqual(r.read(), b'{"message":"Hello, World!"}')
                    c.close()
                finally:
                    self.assertEqual(srv.stop(), 0)
                # The parent's socket still listens: the kernel queues a new connection on it.
                socket.create_connection(("127.0.0.1", port), timeout=5).close()

        def test_unix_socket_from_the_parent(self):
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "app.sock")
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lsock:
                    lsock.bind(path)
                    lsock.listen(64)
                    srv = start(lsock.fileno())
                    try:
                        self.assertEqual(srv.unix_path, path, srv.line)
                        for _ in range(10):
                            c = UnixHTTPConnection(path)
                            c.request("GET", "/plaintext")
                            r = c.getresponse()
                            self.assertEqual((r.status, r.read()), (200, b"Hello, World!"))
                            c.close()
                    finally:
                        self.assertEqual(srv.stop(), 0)
                    # The file is the parent's: still there, and the socket still listens.
                    self.assertTrue(os.path.exists(path))
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as late:
                        late.settimeout(5)
                        late.connect(path)

        def test_abstract_unix_socket_is_named_with_an_at(self):
            name = f"aloop-listen-fd-{os.getpid()}-{backend}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lsock:
                lsock.bind("\0" + name)
                lsock.listen(8)
                srv = start(lsock.fileno())
                try:
                    self.assertEqual(srv.unix_path, "@" + name, srv.line)
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                        c.settimeout(10)
                        c.connect("\0" + name)
                        c.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        got = b""
                        while chunk := c.recv(4096):
                            got += chunk
                        self.assertTrue(got.startswith(b"HTTP/1.1 200 OK\r\n"), got)
                finally:
                    self.assertEqual(srv.stop(), 0)

        def test_not_a_listening_socket_fails_the_start(self):
            for make in (lambda: socket.socket(), lambda: socket.socket(type=socket.SOCK_DGRAM)):
                with make() as s:
                    p = subprocess.run([binary, "--backend", backend, "--listen-fd", str(s.fileno())],
                                       pass_fds=(s.fileno(),), capture_output=True, timeout=30)
                    self.assertEqual(p.returncode, 1, p.stderr)
                    self.assertIn(b"not a listening stream socket", p.stderr)
                    self.assertNotIn(b"leaked", p.stderr)
            # A descriptor the server did not inherit.
            p = subprocess.run([binary, "--backend", backend, "--listen-fd", "900"], capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(b"cannot listen on fd 900", p.stderr)

    ListenFdTests.__name__ = f"ListenFd_{backend}"
    return ListenFdTests


for _b in BACKENDS:
    globals()[f"ListenFd_{_b}"] = make_tests(_b)

if __name__ == "__main__":
    unittest.main()
