"""Shared helpers for the end-to-end tests: start the example binaries, talk raw HTTP."""
import http.client
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin")
BACKENDS = [b for b in os.environ.get("E2E_BACKENDS", "uring,epoll").split(",") if b]
IMF_FIXDATE = re.compile(rb"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


class Proc:
    """A running example binary; `port` is what it printed in its 'listening on' line."""

    def __init__(self, argv, env=None, preexec_fn=None, pass_fds=()):
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                                  preexec_fn=preexec_fn, pass_fds=pass_fds)
        line = self.p.stdout.readline().decode()
        # "ADDR:PORT", or "unix:PATH" for a server on a Unix socket only (port None).
        m = re.search(r"listening on (?:unix:(\S+)|(\S+):(\d+)) \(backend=(\w+), threads=(\d+)\)", line)
        if not m:
            self.p.kill()
            raise RuntimeError(f"no 'listening on' line from {argv}: {line!r} {self.p.stderr.read()!r}")
        self.line = line.strip()
        self.unix_path = m.group(1)
        self.port = int(m.group(3)) if m.group(3) else None
        self.backend = m.group(4)
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


def server(*args, backend="uring", threads=None, preexec_fn=None):
    argv = [os.path.join(BIN, "server"), "--backend", backend]
    if threads:
        argv += ["--threads", str(threads)]
    return Proc(argv + list(args) + ["127.0.0.1", "0"], preexec_fn=preexec_fn)


def unix_connect(path, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix stream socket: the host only names the Host header."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = unix_connect(self.path, self.timeout)


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


PG = os.path.join(ROOT, "scripts", "pg.sh")


class Cluster:
    """A throwaway PostgreSQL cluster (scripts/pg.sh) with the example schema."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="asyncloop-e2e-pg-")
        self.url = subprocess.run([PG, "start", self.dir], check=True, capture_output=True, text=True).stdout.strip()

    def psql(self, sql):
        out = subprocess.run(["psql", self.url, "-Atc", sql], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def pg_ctl(self, action):
        bindir = subprocess.run("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1", shell=True,
                                capture_output=True, text=True).stdout.strip()
        port = open(os.path.join(self.dir, "port")).read().strip()
        cmd = [f"{bindir}/pg_ctl", "-D", os.path.join(self.dir, "data"), "-w", "-m", "fast",
               "-l", os.path.join(self.dir, "server.log")]
        if action == "start":
            # As scripts/pg.sh starts it (a standby needs max_connections as high as its primary's).
            cmd += ["-o", f"-p {port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off"]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd + [action], check=True, capture_output=True)

    def kill9(self):
        """SIGKILL to the postmaster and every backend: a crash, not a shutdown."""
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            pm = int(f.readline())
        for pid in [pm] + children_of(pm):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not os.path.exists(f"/proc/{pm}"), 5)

    def stop(self):
        subprocess.run([PG, "stop", self.dir], check=False, capture_output=True)


def get(port, path, method="GET", body=None, timeout=10):
    """One request through urllib: (status, headers, body), error statuses included."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def children_of(pid):
    """The pids whose parent is `pid` (from /proc, so no procps is needed)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def open_fds(pid):
    """How many file descriptors process `pid` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    """User plus system CPU time process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    """Resident set size of process `pid`, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fill_pool(port, db, size, timeout=15):
    """Runs /db from 8 clients at once until all succeed and the server's pool has all `size`
    of its connections (it opens them as load needs them, and reopens them after a failure)."""
    import threading

    def burst():
        out = []
        ts = [threading.Thread(target=lambda: out.append(get(port, "/db")[0])) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return out == [200] * 8 and db.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'asyncloop' "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()") == str(size)
    return wait_until(burst, timeout, 0.2)


def settled_fds(pid, quiet=0.5, timeout=10):
    """Process `pid`'s fd count once it has not changed for `quiet` seconds."""
    last, since = -1, time.time()
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = open_fds(pid)
        if n != last:
            last, since = n, time.time()
        elif time.time() - since >= quiet:
            break
        time.sleep(0.05)
    return last
