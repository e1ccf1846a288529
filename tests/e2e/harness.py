"""Shared helpers for the end-to-end tests: start the example binaries, talk raw HTTP."""
import os
import re
import signal
import socket
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin")
BACKENDS = [b for b in os.environ.get("E2E_BACKENDS", "uring,epoll").split(",") if b]
IMF_FIXDATE = re.compile(rb"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


class Proc:
    """A running example binary; `port` is what it printed in its 'listening on' line."""

    def __init__(self, argv, env=None):
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
        line = self.p.stdout.readline().decode()
        m = re.search(r"listening on (\S+):(\d+) \(backend=(\w+), threads=(\d+)\)", line)
        if not m:
            self.p.kill()
            raise RuntimeError(f"no 'listening on' line from {argv}: {line!r} {self.p.stderr.read()!r}")
        self.line = line.strip()
        self.port = int(m.group(2))
        self.backend = m.group(3)
        self.pid = self.p.pid

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise

    def alive(self):
        return self.p.poll() is None


def server(*args, backend="uring", threads=None):
    argv = [os.path.join(BIN, "server"), "--backend", backend]
    if threads:
        argv += ["--threads", str(threads)]
    return Proc(argv + list(args) + ["127.0.0.1", "0"])


def unused_port():
    """A port below the ephemeral range that nothing is bound to right now."""
    import random
    for _ in range(100):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Reader:
    """Reads HTTP/1.1 responses from a socket, one at a time."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def response(self, head_only=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(b":", 1)
            headers.setdefault(k.strip().lower().decode(), v.strip())
        body = b""
        if head_only or status in (100, 204, 304):
            return status, headers, body
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        elif headers.get("transfer-encoding", b"").lower() == b"chunked":
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        return status, headers, body

    def closed(self, timeout=3.0):
        """True when the peer closes the connection (after any remaining bytes) in time."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True


def exchange(port, raw, head_only=False):
    """Sends raw bytes on a new connection and reads one response."""
    s = connect(port)
    s.sendall(raw)
    r = Reader(s)
    resp = r.response(head_only)
    return resp, r


def wait_until(cond, timeout=5.0, step=0.02):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()
