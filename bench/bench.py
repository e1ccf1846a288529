#!/usr/bin/env python3
"""Side-by-side benchmark (make bench): the example server beside nginx and h2o, the database
routes beside pgbench, io_uring beside epoll, and `client` beside wrk, on this machine in one
run. Servers are pinned to CPU 0 and load generators to CPU 1; each scenario runs `--rounds`
rounds with its subjects in rotated order (HTTP-only scenarios first, the database ones after),
and the medians give the ratios. Writes
bench/results/latest.md (a table) and bench/results/ratios.svg (a chart of the ratios).

TLS rows (beside nginx with the same ECDSA P-256 certificate, TLS 1.3): HTTPS /plaintext at 256
keep-alive connections (wrk), new full handshakes per second (h2load --h1 with Connection:
close), idle TLS connection memory. `BENCH_SCENARIOS=TLS make bench` runs just those.
"""
import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
U_NAME = "asyncloop-uring"
BIN = os.path.join(ROOT, "build", "bin")
RESULTS = os.path.join(ROOT, "bench", "results")
SERVER_CPU, LOAD_CPU = "0", "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Proc:
    def __init__(self, argv, port, cpu=SERVER_CPU, env=None):
        self.p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env=dict(os.environ, **(env or {})), start_new_session=True)
        self.port = port
        wait_port(port)

    def cpu_seconds(self):
        """CPU time used so far by the server's whole session (nginx's and h2o's workers too)."""
        total = 0.0
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.p.pid:  # process group: the session started with the server
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def rss_total(self):
        """Resident memory of the server's whole session (nginx's master and worker)."""
        total = 0
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[3]) != self.p.pid:
                    continue
                with open(f"/proc/{d}/status") as f:
                    total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) * 1024
            except (OSError, StopIteration):
                continue
        return total

    def rss(self):
        # The pinned process is taskset's exec target: same pid.
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()


def asyncloop_server(backend, pg_url, port, extra=()):
    argv = [os.path.join(BIN, "server"), "--backend", backend, "--threads", "1", "--pool", "4", "127.0.0.1", str(port)]
    if pg_url:
        argv[1:1] = ["--pg", pg_url]
    argv[1:1] = list(extra)
    return Proc(argv, port)


def nginx_server(tmp, port):
    d = os.path.join(tmp, f"nginx-{port}")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 65536; use epoll; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location = /plaintext {{ default_type text/plain; return 200 "Hello, World!"; }}
    location = /json {{ default_type application/json; return 200 '{{"message":"Hello, World!"}}'; }}
  }}
}}
""")
    return Proc(["nginx", "-c", conf, "-p", d], port)


def tls_files(tmp):
    """An ECDSA P-256 CA and a server certificate it signed for localhost/127.0.0.1 (openssl
    command line, in `tmp`): (ca, cert, key)."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=bench CA", "-days", "2")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext", "-out", "server.pem")
    os.chmod(d, 0o755)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)  # nginx's workers read nothing here, but be plain
    return tuple(os.path.join(d, f) for f in ("ca.pem", "server.pem", "server.key"))


def asyncloop_tls_server(backend, port, cert, key):
    return Proc([os.path.join(BIN, "server"), "--backend", backend, "--threads", "1", "--tls-cert", cert,
                 "--tls-key", key, "127.0.0.1", str(port)], port)


def nginx_tls_server(tmp, port, cert, key):
    """nginx with the same certificate, TLS 1.3, its default session handling (tickets on)."""
    d = os.path.join(tmp, f"nginx-tls-{port}")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 65536; use epoll; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{
    listen 127.0.0.1:{port} ssl reuseport backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    location = /plaintext {{ default_type text/plain; return 200 "Hello, World!"; }}
  }}
}}
""")
    return Proc(["nginx", "-c", conf, "-p", d], port)


def negotiated(port):
    """The protocol and cipher suite a default OpenSSL client (wrk's) gets from the server."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief"], input=b"",
                       capture_output=True, timeout=10)
    text = r.stderr.decode(errors="replace")
    v = re.search(r"Protocol version: (\S+)", text)
    c = re.search(r"Ciphersuite: (\S+)", text)
    return f"{v.group(1) if v else '?'} {c.group(1) if c else '?'}"


def h2load_handshakes(url, conns, duration):
    """New TLS connections per second: h2load --h1 with `Connection: close`, so every request
    is a full handshake (h2load keeps no sessions), TLS 1.3 with TLS_AES_128_GCM_SHA256 on
    both subjects. A short probe sizes the run to about `duration` seconds (h2load's own -D
    does not end when the server closes every connection)."""
    def run(n):
        argv = ["taskset", "-c", LOAD_CPU, "h2load", "--h1", "-n", str(n), "-c", str(conns), "-H", "Connection: close",
                "--tls13-ciphers", "TLS_AES_128_GCM_SHA256", url]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration * 10 + 60).stdout
        m = re.search(r"finished in ([\d.]+)(?:ms|s), ([\d.]+) req/s", out)
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
        if not m or not done:
            raise RuntimeError(f"h2load: {out[-500:]}")
        return float(m.group(2)), int(done.group(1)) - int(done.group(2))
    rate, _ = run(conns * 8)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    rps, failed = run(max(conns * 8, int(rate * duration)))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / (time.time() - t0)
    return {"rps": rps, "p99_ms": float("nan"), "non2xx": failed, "load_cpu": load_cpu}


def h2o_server(tmp, port):
    d = os.path.join(tmp, f"h2o-{port}")
    os.makedirs(os.path.join(d, "root"), exist_ok=True)
    os.chmod(d, 0o755)
    os.chmod(os.path.join(d, "root"), 0o755)
    with open(os.path.join(d, "root", "plaintext"), "w") as f:
        f.write("Hello, World!")
    with open(os.path.join(d, "root", "json"), "w") as f:
        f.write('{"message":"Hello, World!"}')
    conf = os.path.join(d, "h2o.conf")
    with open(conf, "w") as f:
        f.write(f"""num-threads: 1
listen:
  host: 127.0.0.1
  port: {port}
error-log: {d}/error.log
file.mime.addtypes:
  text/plain: .txt
hosts:
  default:
    paths:
      /:
        file.dir: {d}/root
""")
    return Proc(["h2o", "-c", conf], port)


def wrk(url, conns, duration, pipeline=0, post=False):
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", url]
    if post:
        argv[5:5] = ["-s", os.path.join(ROOT, "bench", "post.lua")]
    if pipeline:
        argv[5:5] = ["-s", os.path.join(ROOT, "bench", "pipeline.lua")]
        argv += ["--", str(pipeline)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # wrk's own CPU share (taskset execs it): near 100% means the load generator, not the
    # server, set the rate.
    load_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / duration
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": p99_ms, "non2xx": int(errors.group(1)) if errors else 0, "load_cpu": load_cpu}


def on_cpu(srv, run, duration):
    """Runs `run()` (a load against `srv`) and adds the server's CPU time and its requests per
    CPU-second: on a small machine the load generator can be the limit, and then CPU
    efficiency tells servers apart where requests/s cannot."""
    c0 = srv.cpu_seconds()
    r = run()
    cpu = srv.cpu_seconds() - c0
    r["cpu_s"] = cpu
    r["per_cpu"] = r["rps"] * duration / cpu if cpu > 0 else float("nan")
    return r


def client_load(url_host, port, path, conns, duration, rps_hint):
    n = max(1000, int(rps_hint * duration))
    argv = ["taskset", "-c", LOAD_CPU, os.path.join(BIN, "client"), "-n", str(n), "-c", str(conns), url_host, str(port), path]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration * 10 + 60).stdout
    fields = dict(kv.split("=") for kv in out.split())
    return {"rps": float(fields["rps"]), "p99_ms": float(fields["p99_ms"]), "non2xx": int(fields["errors"])}


def wsload(port, path, conns, duration, size=64):
    """WebSocket echo load (bench/wsload.c): `conns` connections, each one message of `size`
    bytes in flight at a time; messages echoed per second."""
    argv = ["taskset", "-c", LOAD_CPU, os.path.join(ROOT, "build", "bench", "wsload"), "-c", str(conns), "-d",
            str(duration), "-s", str(size), "-p", path, "127.0.0.1", str(port)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    fields = dict(kv.split("=") for kv in p.stdout.split())
    if "mps" not in fields:
        raise RuntimeError(f"wsload: {p.stdout} {p.stderr}")
    load_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / duration
    return {"rps": float(fields["mps"]), "p99_ms": float(fields["p99_ms"]), "non2xx": int(fields["errors"]),
            "load_cpu": load_cpu}


# The reference WebSocket echo servers: Python's websockets (installed by scripts/deps.sh bench),
# and uWebSockets where a binary of its echo example is found (it is not installed by anything
# here: build one locally and point BENCH_UWS_ECHO at it, see bench/README.md; the row is
# skipped without it).
PY_WS_ECHO = """import asyncio, sys, websockets
async def echo(ws):
    try:
        async for m in ws:
            await ws.send(m)
    except websockets.exceptions.ConnectionClosed:
        pass  # wsload leaves without a closing handshake: no traceback for each connection
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None, max_size=None):
        await asyncio.Future()
asyncio.run(main())
"""
UWS_ECHO = os.environ.get("BENCH_UWS_ECHO", os.path.join(ROOT, "build", "bench", "uws-echo"))


def python_ws_server(tmp, port):
    script = os.path.join(tmp, "ws_echo.py")
    with open(script, "w") as f:
        f.write(PY_WS_ECHO)
    return Proc(["python3", script, str(port)], port)


def ws_idle_bytes_per_connection(backend, n, warm=500):
    """User-space memory per idle WebSocket connection: the server's RSS growth over `n`
    connections past a warm-up of `warm`, each of which made the handshake and one echo and
    then stays open. Returns (bytes per connection, connections held)."""
    srv = asyncloop_server(backend, None, free_port())
    socks = []
    hello = bytes([0x81, 0x85, 1, 2, 3, 4]) + bytes(b ^ (1, 2, 3, 4)[i % 4] for i, b in enumerate(b"hello"))
    req = (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def open_some(k):
        new = []
        for _ in range(k):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s.sendall(req)
            new.append(s)
        for s in new:
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            s.sendall(hello)
        for s in new:
            got = b""
            while len(got) < 7:
                got += s.recv(64)
        socks.extend(new)
    try:
        open_some(warm)
        time.sleep(0.5)
        base = srv.rss()
        open_some(n - warm)
        time.sleep(1)
        return (srv.rss() - base) / (n - warm), len(socks)
    finally:
        for s in socks:
            s.close()
        srv.stop()


def pgbench(pg_url, clients, duration, script):
    argv = ["taskset", "-c", LOAD_CPU, "pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "1", "-T", str(duration),
            "-f", script, pg_url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"tps = ([\d.]+)", out.stdout)
    if not m:
        raise RuntimeError(out.stderr)
    return float(m.group(1))


# One process may hold at most this many descriptors here (the hard RLIMIT_NOFILE is 20,000 and
# cannot be raised), so 50,000 idle connections are spread over several server processes sharing
# one port (SO_REUSEPORT) and several client processes, each from its own loopback address.
FDS_PER_PROCESS = 16000
IDLE_WARMUP = 500  # per server process
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h


def listeners_on(port):
    """Listening TCP sockets on `port` (from /proc/net/tcp and tcp6)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except FileNotFoundError:
            pass
    return n


def _hold_connections(port, count, warm, local_ip, ctl, tls_ca=None):
    """Client process: opens `warm` connections, reports, waits; opens the rest, reports, waits
    until told to close. Each connection makes one request and then stays open, idle.

    The warm connections then send one more request all at once. The server's shared receive
    buffers are touched only as far as the busiest moment needs them (epoll reuses the
    most recent buffer first). So a burst in the warm-up, not a random one later, shows the
    pool's pages in the baseline, and what grows afterwards is the connections' own memory."""
    REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"
    ctx = None
    if tls_ca:
        import ssl
        ctx = ssl.create_default_context(cafile=tls_ca)
        ctx.set_alpn_protocols(["http/1.1"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def run():
        gate = asyncio.Semaphore(500)
        held = []

        async def one():
            async with gate:
                s = socket.socket()
                # The port is picked at connect time, per destination: binding port 0 first
                # would search the whole range for every socket.
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((local_ip, 0))
                s.setblocking(False)
                try:
                    await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
                except OSError:
                    s.close()
                    raise
                if ctx:
                    r, w = await asyncio.open_connection(sock=s, ssl=ctx, server_hostname="localhost")
                else:
                    r, w = await asyncio.open_connection(sock=s)
                w.write(REQUEST)
                await r.readuntil(b"Hello, World!")
            held.append((r, w))

        async def some(k):
            results = await asyncio.gather(*(one() for _ in range(k)), return_exceptions=True)
            return [repr(e) for e in results if isinstance(e, BaseException)][:3]

        errors = await some(warm)
        for _, w in held:
            w.write(REQUEST)
        burst = await asyncio.gather(*(r.readuntil(b"Hello, World!") for r, _ in held), return_exceptions=True)
        errors += [repr(e) for e in burst if isinstance(e, BaseException)][:3]
        ctl.send((len(held), errors))
        ctl.recv()
        errors = await some(count - warm)
        await asyncio.sleep(0.5)
        ctl.send((len(held), errors))
        ctl.recv()
        for _, w in held:
            # Reset rather than close: a close would leave the client ports in TIME_WAIT, and
            # the next run from this address would find them taken.
            w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.close()

    asyncio.run(run())


def idle_bytes_per_connection(backend, pg_url, n, make_server=None, tls_ca=None):
    """User-space memory per idle keep-alive connection: the servers' RSS growth over n
    connections (past a warm-up of IDLE_WARMUP) that each made one request and stay open.
    `make_server(port)` and `tls_ca` measure another server, or TLS connections (a handshake,
    one request, then idle). Returns (bytes per connection, connections held, server processes)."""
    import multiprocessing as mp
    procs = max(1, -(-n // FDS_PER_PROCESS))
    port = free_port()
    servers = []
    clients = []
    make_server = make_server or (lambda p: asyncloop_server(backend, pg_url, p))
    try:
        for _ in range(procs):
            servers.append(make_server(port))
        deadline = time.time() + 10
        while listeners_on(port) < procs and time.time() < deadline:
            time.sleep(0.05)
        ctx = mp.get_context("fork")
        share = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        # Warm-up per server process: its bounded pools (request storage, buffers) fill then.
        warm = [min(IDLE_WARMUP, k) for k in share]
        for i in range(procs):
            here, there = ctx.Pipe()
            c = ctx.Process(target=_hold_connections, args=(port, share[i], warm[i], f"127.0.0.{i + 2}", there, tls_ca))
            c.start()
            clients.append((c, here))
        warmed = [h.recv() for _, h in clients]
        base = sum(s.rss_total() for s in servers)
        for _, h in clients:
            h.send("go")
        done = [h.recv() for _, h in clients]
        grown = sum(s.rss_total() for s in servers) - base
        held = sum(k for k, _ in done)
        errors = [e for _, errs in warmed + done for e in errs]
        if errors:
            print(f"idle connections: {n - held} not held, e.g. {errors[:3]}", file=sys.stderr)
        for _, h in clients:
            h.send("close")
        return grown / max(1, held - sum(k for k, _ in warmed)), held, procs
    finally:
        for c, _ in clients:
            c.join(timeout=30)
            if c.is_alive():
                c.kill()
        for s in servers:
            s.stop()


# The rows beyond one database server (PgBouncer, a standby) and the /counter row.
# The TLS scenarios (BENCH_SCENARIOS=TLS selects them all) and their subjects.
TLS_ROWS = ["TLS https plaintext, 256 conns", "TLS new handshakes, 64 conns", "TLS idle connections"]
UT, NT = "asyncloop-uring tls", "nginx tls"

TOPOLOGY_ROWS = ["/db direct, 64 conns", "/db pgbouncer, 64 conns", "/db standby, 64 conns", "POST /counter, 64 conns"]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "10")))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--idle-connections", type=int, default=int(os.environ.get("BENCH_IDLE", "50000")))
    ap.add_argument("--ws-idle-connections", type=int, default=int(os.environ.get("BENCH_WS_IDLE", "10000")))
    ap.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS", ""),
                    help="comma-separated substrings of scenario labels to run (default: all); "
                         "'idle' selects the idle-connection memory, 'TLS' the TLS rows")
    ap.add_argument("--tls-idle-connections", type=int, default=int(os.environ.get("BENCH_TLS_IDLE", "5000")))
    a = ap.parse_args()
    only = [w.strip() for w in a.scenarios.split(",") if w.strip()]

    def want(label):
        return not only or any(w in label for w in only)
    tmp = tempfile.mkdtemp(prefix="asyncloop-bench-")
    os.chmod(tmp, 0o755)  # h2o drops to `nobody` and must read its files
    pg_dir = tempfile.mkdtemp(prefix="asyncloop-bench-pg-")  # its own: pg.sh hands it to postgres
    pg_url = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "start", pg_dir], check=True, capture_output=True,
                            text=True).stdout.strip()
    sel = os.path.join(tmp, "select.sql")
    with open(sel, "w") as f:
        f.write("\\set id random(1, 10000)\nSELECT randomnumber FROM world WHERE id = :id;\n")
    sel20 = os.path.join(tmp, "select20.sql")
    with open(sel20, "w") as f:
        f.write("\\startpipeline\n")
        for i in range(20):
            f.write(f"\\set id{i} random(1, 10000)\nSELECT randomnumber FROM world WHERE id = :id{i};\n")
        f.write("\\endpipeline\n")

    runs = {}  # (scenario, subject) -> list of results
    # Beyond one server: PgBouncer in front of the cluster, and a streaming standby of it.
    bouncer_dir = standby_dir = None
    if any(want(r) for r in TOPOLOGY_ROWS):
        bouncer_dir = tempfile.mkdtemp(prefix="asyncloop-bench-bouncer-")
        bouncer_url = subprocess.run([os.path.join(ROOT, "scripts", "pgbouncer.sh"), "start", bouncer_dir, pg_dir],
                                     check=True, capture_output=True, text=True).stdout.strip()
        standby_dir = tempfile.mkdtemp(prefix="asyncloop-bench-standby-")
        standby_url = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "standby", standby_dir, pg_dir],
                                     check=True, capture_output=True, text=True).stdout.strip()

    def record(key, run):
        """Runs `run()` and records its result, when the scenario is selected."""
        if want(key[0]):
            runs.setdefault(key, []).append(run())

    d = a.duration
    ca, cert, key = tls_files(tmp)
    suites = {}
    try:
        for rnd in range(a.rounds):
            print(f"round {rnd + 1}/{a.rounds}", flush=True)
            # HTTP scenarios: our server (both backends) beside nginx and h2o.
            subjects = {
                "asyncloop-uring": lambda p: asyncloop_server("uring", pg_url, p),
                "asyncloop-epoll": lambda p: asyncloop_server("epoll", pg_url, p),
                "nginx": lambda p: nginx_server(tmp, p),
                "h2o": lambda p: h2o_server(tmp, p),
                "nothing": lambda p: Proc([os.path.join(ROOT, "build", "bench", "nothing"), str(p)], p),
            }
            # Each round starts one subject further on, so every subject takes each place in
            # the order once in four rounds rather than leading or trailing every other round.
            names = list(subjects)
            names = names[rnd % len(names):] + names[:rnd % len(names)]
            # HTTP-only scenarios first for every subject; then the database, client and
            # 1,024-connection runs of ours. PostgreSQL keeps working for a while after
            # /updates (WAL, vacuum), and no subject's HTTP rows should share the machine with that.
            http_rows = ["plaintext pipelined 16, 256 conns", "plaintext, 256 conns", "json, 256 conns",
                         "plaintext pipelined 16, 1024 conns", "plaintext, 1024 conns", "client -c 32 vs wrk -c 32"]
            for name in names if any(want(r) for r in http_rows) else []:
                srv = subjects[name](free_port())
                try:
                    base = f"http://127.0.0.1:{srv.port}"
                    record(("plaintext pipelined 16, 256 conns", name),
                           lambda: on_cpu(srv, lambda: wrk(base + "/plaintext", 256, d, pipeline=16), d))
                    record(("plaintext, 256 conns", name), lambda: on_cpu(srv, lambda: wrk(base + "/plaintext", 256, d), d))
                    record(("json, 256 conns", name), lambda: on_cpu(srv, lambda: wrk(base + "/json", 256, d), d))
                    record(("plaintext pipelined 16, 1024 conns", name),
                           lambda: on_cpu(srv, lambda: wrk(base + "/plaintext", 1024, d, pipeline=16), d))
                    if name.startswith("asyncloop"):
                        record(("plaintext, 1024 conns", name), lambda: on_cpu(srv, lambda: wrk(base + "/plaintext", 1024, d), d))
                        if want("client -c 32 vs wrk -c 32"):
                            w = wrk(base + "/plaintext", 32, d)
                            c = client_load("127.0.0.1", srv.port, "/plaintext", 32, d, w["rps"])
                            record(("client -c 32 vs wrk -c 32", name + " client"), lambda: c)
                            record(("client -c 32 vs wrk -c 32", name + " wrk"), lambda: w)
                finally:
                    srv.stop()
            # WebSocket echo: ours beside the reference servers, the same load for each.
            ws_row = "ws echo 64 B, 256 conns"
            if want(ws_row):
                ws_subjects = {
                    "asyncloop-uring": lambda p: asyncloop_server("uring", None, p),
                    "asyncloop-epoll": lambda p: asyncloop_server("epoll", None, p),
                    "websockets": lambda p: python_ws_server(tmp, p),
                }
                if os.access(UWS_ECHO, os.X_OK):
                    ws_subjects["uwebsockets"] = lambda p: Proc([UWS_ECHO, str(p)], p)
                ws_names = list(ws_subjects)
                ws_names = ws_names[rnd % len(ws_names):] + ws_names[:rnd % len(ws_names)]
                for name in ws_names:
                    srv = ws_subjects[name](free_port())
                    try:
                        path = "/ws/echo" if name.startswith("asyncloop") else "/"
                        wsload(srv.port, path, 256, 1)  # warm: every connection open once
                        record((ws_row, name), lambda: on_cpu(srv, lambda: wsload(srv.port, path, 256, d), d))
                    finally:
                        srv.stop()
            db_rows = ["/db, 64 conns", "/queries?queries=20, 64 conns", "/fortunes, 64 conns", "/updates?queries=20, 64 conns"]
            for name in [n for n in names if n.startswith("asyncloop") and any(want(r) for r in db_rows)]:
                srv = subjects[name](free_port())
                try:
                    base = f"http://127.0.0.1:{srv.port}"
                    record(("/db, 64 conns", name), lambda: wrk(base + "/db", 64, d))
                    record(("/queries?queries=20, 64 conns", name), lambda: wrk(base + "/queries?queries=20", 64, d))
                    record(("/fortunes, 64 conns", name), lambda: wrk(base + "/fortunes", 64, d))
                    record(("/updates?queries=20, 64 conns", name), lambda: wrk(base + "/updates?queries=20", 64, d))
                finally:
                    srv.stop()
            record(("pgbench single SELECT, 64 clients", "pgbench"),
                   lambda: {"rps": pgbench(pg_url, 64, d, sel), "p99_ms": float("nan"), "non2xx": 0})
            record(("pgbench 20 SELECTs pipelined, 64 clients", "pgbench"),
                   lambda: {"rps": 20 * pgbench(pg_url, 64, d, sel20), "p99_ms": float("nan"), "non2xx": 0})
            if any(want(r) for r in TOPOLOGY_ROWS):
                # /db directly, through PgBouncer (transaction pooling, no named prepared
                # statements) and from a standby, each in its own server, in rotated order;
                # then /counter increments (one interactive transaction each, one row).
                topo = {
                    "direct": lambda p: asyncloop_server("uring", pg_url, p),
                    "pgbouncer": lambda p: asyncloop_server("uring", bouncer_url, p, ["--pg-no-prepare"]),
                    "standby": lambda p: asyncloop_server("uring", pg_url, p, ["--pg-replica", standby_url]),
                }
                order = list(topo)
                order = order[rnd % len(order):] + order[:rnd % len(order)]
                for how in order:
                    srv = topo[how](free_port())
                    try:
                        base = f"http://127.0.0.1:{srv.port}"
                        wrk(base + "/db", 64, 1)  # warm: every pool connection up
                        record((f"/db {how}, 64 conns", U_NAME), lambda: wrk(base + "/db", 64, d))
                        if how == "direct":
                            record(("POST /counter, 64 conns", U_NAME), lambda: wrk(base + f"/counter/bench{rnd}", 64, d, post=True))
                    finally:
                        srv.stop()
        nan = float("nan")
        per_conn, held, idle_procs = nan, 0, 1
        epoll_per_conn, epoll_held = nan, 0
        if want("idle"):
            per_conn, held, idle_procs = idle_bytes_per_connection("uring", pg_url, a.idle_connections)
            epoll_per_conn, epoll_held, _ = idle_bytes_per_connection("epoll", pg_url, a.idle_connections)
        # TLS: the same certificate (ECDSA P-256) on both, TLS 1.3 (BENCH_SCENARIOS=TLS runs
        # only these).
        tls_subjects = {
            UT: lambda p: asyncloop_tls_server("uring", p, cert, key),
            NT: lambda p: nginx_tls_server(tmp, p, cert, key),
        }
        for rnd in range(a.rounds if any(want(r) for r in TLS_ROWS) else 0):
            print(f"TLS round {rnd + 1}/{a.rounds}", flush=True)
            names = list(tls_subjects)
            names = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in names:
                srv = tls_subjects[name](free_port())
                try:
                    url = f"https://127.0.0.1:{srv.port}/plaintext"
                    suites[name] = negotiated(srv.port)
                    record((TLS_ROWS[0], name), lambda: on_cpu(srv, lambda: wrk(url, 256, d), d))
                    record((TLS_ROWS[1], name), lambda: on_cpu(srv, lambda: h2load_handshakes(url, 64, d), d))
                finally:
                    srv.stop()
        tls_idle = {}
        if want(TLS_ROWS[2]):
            for name, make in tls_subjects.items():
                tls_idle[name] = idle_bytes_per_connection("uring", pg_url, a.tls_idle_connections, make, ca)
        ws_idle = {}
        if want("ws idle"):
            for backend in ("uring", "epoll"):
                ws_idle[backend] = ws_idle_bytes_per_connection(backend, a.ws_idle_connections)
    finally:
        if bouncer_dir:
            subprocess.run([os.path.join(ROOT, "scripts", "pgbouncer.sh"), "stop", bouncer_dir], capture_output=True)
        if standby_dir:
            subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop", standby_dir], capture_output=True)
        subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop", pg_dir], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: {"rps": median([r["rps"] for r in v]), "p99_ms": median([r["p99_ms"] for r in v]),
               "non2xx": sum(r["non2xx"] for r in v),
               "per_cpu": median([r.get("per_cpu", float("nan")) for r in v]),
               "server_cpu": median([r.get("cpu_s", float("nan")) / d for r in v]),
               "load_cpu": median([r.get("load_cpu", float("nan")) for r in v])} for k, v in runs.items()}
    nan = float("nan")
    get = lambda s, n: med.get((s, n), {"rps": nan, "p99_ms": nan, "non2xx": 0, "per_cpu": nan, "server_cpu": nan, "load_cpu": nan})

    def busy(s, n):
        v = get(s, n)
        return f"server CPU {v['server_cpu']:.0%}, wrk CPU {v['load_cpu']:.0%}"
    U, E = "asyncloop-uring", "asyncloop-epoll"
    rows = []

    def ratio(label, num, den, target, note=""):
        r = num / den if den and den == den and num == num else float("nan")
        rows.append((label, num, den, r, target, note))

    ratio("plaintext pipelined 16, 256 conns vs nginx", get("plaintext pipelined 16, 256 conns", U)["rps"],
          get("plaintext pipelined 16, 256 conns", "nginx")["rps"], 4.0)
    ratio("plaintext, 256 conns vs nginx", get("plaintext, 256 conns", U)["rps"], get("plaintext, 256 conns", "nginx")["rps"], 1.3,
          f"ours: {busy('plaintext, 256 conns', U)}; nginx: {busy('plaintext, 256 conns', 'nginx')}")
    j_us, j_ng = get("json, 256 conns", U), get("json, 256 conns", "nginx")
    ratio("json, 256 conns vs nginx", j_us["rps"], j_ng["rps"], 1.3, f"p99 {j_us['p99_ms']:.2f} ms vs nginx {j_ng['p99_ms']:.2f} ms; "
          f"ours: {busy('json, 256 conns', U)}; nginx: {busy('json, 256 conns', 'nginx')}")
    ratio("plaintext pipelined 16, 256 conns vs h2o", get("plaintext pipelined 16, 256 conns", U)["rps"],
          get("plaintext pipelined 16, 256 conns", "h2o")["rps"], float("nan"))
    for peer in ("nginx", "h2o"):
        ratio(f"plaintext pipelined 16, 1024 conns vs {peer} (information)", get("plaintext pipelined 16, 1024 conns", U)["rps"],
              get("plaintext pipelined 16, 1024 conns", peer)["rps"], float("nan"))
    ratio("/db, 64 conns vs pgbench single SELECT", get("/db, 64 conns", U)["rps"],
          get("pgbench single SELECT, 64 clients", "pgbench")["rps"], 1.0)
    ratio("/queries?queries=20 rows/s vs pgbench pipelined 20 rows/s", 20 * get("/queries?queries=20, 64 conns", U)["rps"],
          get("pgbench 20 SELECTs pipelined, 64 clients", "pgbench")["rps"], 0.7)
    ratio("/fortunes vs our /db", get("/fortunes, 64 conns", U)["rps"], get("/db, 64 conns", U)["rps"], 0.85)
    ratio("io_uring vs epoll, plaintext, 1024 conns", get("plaintext, 1024 conns", U)["rps"],
          get("plaintext, 1024 conns", E)["rps"], 1.15,
          f"uring: {busy('plaintext, 1024 conns', U)}; epoll: {busy('plaintext, 1024 conns', E)}")
    ratio("io_uring vs epoll, plaintext pipelined 16, 1024 conns (information)", get("plaintext pipelined 16, 1024 conns", U)["rps"],
          get("plaintext pipelined 16, 1024 conns", E)["rps"], float("nan"))
    # Requests per server CPU-second (issue 19's targets): what separates servers on two CPUs,
    # where one wrk thread sets the rate.
    for label, peer, target in (("plaintext, 256 conns", "nginx", 1.3), ("json, 256 conns", "nginx", 1.3),
                                ("plaintext pipelined 16, 256 conns", "nothing", 0.7)):
        for backend, tgt in ((U, target), (E, float("nan"))):
            note = "" if backend == U else " (information)"
            ratio(f"{label} vs {peer}, requests per server CPU-second, {backend.split('-')[1]}{note}",
                  get(label, backend)["per_cpu"], get(label, peer)["per_cpu"], tgt)
    ratio("io_uring vs epoll, plaintext 1024 conns, requests per server CPU-second (information)",
          get("plaintext, 1024 conns", U)["per_cpu"], get("plaintext, 1024 conns", E)["per_cpu"], float("nan"))
    ratio("client -c 32 vs wrk -c 32", get("client -c 32 vs wrk -c 32", U + " client")["rps"],
          get("client -c 32 vs wrk -c 32", U + " wrk")["rps"], 0.8)
    ratio("/updates?queries=20 vs /db (information)", get("/updates?queries=20, 64 conns", U)["rps"], get("/db, 64 conns", U)["rps"], float("nan"))
    ratio("/db through PgBouncer vs direct, 64 conns (information)", get("/db pgbouncer, 64 conns", U)["rps"],
          get("/db direct, 64 conns", U)["rps"], float("nan"), "transaction pooling, --pg-no-prepare")
    ratio("/db from a standby vs the primary, 64 conns (information)", get("/db standby, 64 conns", U)["rps"],
          get("/db direct, 64 conns", U)["rps"], float("nan"), "--pg-replica, streaming standby on this machine")
    ws_row = "ws echo 64 B, 256 conns"
    for peer, name in (("websockets", "Python websockets"), ("uwebsockets", "uWebSockets")):
        if (ws_row, peer) not in med:
            continue  # uWebSockets: no binary here (BENCH_UWS_ECHO)
        for backend in (U, E):
            info = "" if backend == U else ", information"
            ws_us, ws_peer = get(ws_row, backend), get(ws_row, peer)
            ratio(f"{ws_row} vs {name}, messages/s, {backend.split('-')[1]}{info}", ws_us["rps"], ws_peer["rps"], float("nan"),
                  f"p99 {ws_us['p99_ms']:.2f} ms vs {ws_peer['p99_ms']:.2f} ms; ours: server CPU {ws_us['server_cpu']:.0%}, "
                  f"wsload CPU {ws_us['load_cpu']:.0%}; peer: server CPU {ws_peer['server_cpu']:.0%}")
            ratio(f"{ws_row} vs {name}, messages per server CPU-second, {backend.split('-')[1]}{info}", ws_us["per_cpu"],
                  ws_peer["per_cpu"], float("nan"))
    c = get("POST /counter, 64 conns", U)
    ratio("POST /counter increments/s, 64 conns, one row (information)", c["rps"], get("/db direct, 64 conns", U)["rps"],
          float("nan"), f"vs /db direct; p99 {c['p99_ms']:.1f} ms; each a transaction of 4 round trips on one locked row")
    ratio("https plaintext, 256 conns vs nginx (TLS 1.3)", get(TLS_ROWS[0], UT)["rps"],
          get(TLS_ROWS[0], NT)["rps"], 1.0,
          f"ours {suites.get(UT, '?')}: {busy(TLS_ROWS[0], UT)}; nginx {suites.get(NT, '?')}: "
          f"{busy(TLS_ROWS[0], NT)}")
    ratio("https plaintext, 256 conns vs nginx, requests per server CPU-second",
          get(TLS_ROWS[0], UT)["per_cpu"], get(TLS_ROWS[0], NT)["per_cpu"], 1.0)
    ratio("new TLS handshakes/s vs nginx (ECDSA P-256, h2load --h1, Connection: close)",
          get(TLS_ROWS[1], UT)["rps"], get(TLS_ROWS[1], NT)["rps"], 0.8,
          f"ours: {busy(TLS_ROWS[1], UT)}; nginx: {busy(TLS_ROWS[1], NT)} "
          f"(the load generator is h2load)")
    ratio("new TLS handshakes per server CPU-second vs nginx (information)",
          get(TLS_ROWS[1], UT)["per_cpu"], get(TLS_ROWS[1], NT)["per_cpu"], float("nan"))

    os.makedirs(RESULTS, exist_ok=True)
    lines = [f"# Benchmark results ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"One run on this machine ({os.cpu_count()} CPUs): servers on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}, "
             f"{a.rounds} rounds of {d} s, medians. Absolute numbers vary with the machine; the ratios are the result.", "",
             "| scenario | ours | peer | ratio | target | met | note |", "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for label, num, den, r, target, note in rows:
        if only and (num != num or den != den):
            continue  # not measured in this partial run
        met = "" if target != target else ("yes" if r >= target else "no")
        tgt = "" if target != target else f">= {target:g}"
        lines.append(f"| {label} | {num:,.0f} | {den:,.0f} | {r:.2f} | {tgt} | {met} | {note} |")
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if per_conn != per_conn:
        held = idle_procs = epoll_held = 0
    spread = "" if idle_procs == 1 else (f" across {idle_procs} server processes sharing the port (the hard fd limit "
                                         f"here is {fd_limit:,} per process)")
    met = "met" if per_conn <= 256 and held >= 50000 else "not met"
    idle = (f"Idle keep-alive connections: {per_conn:,.0f} bytes of user-space memory each, {held:,} held{spread} "
            f"(target <= 256 bytes with 50,000 held: {met}). The same on epoll: {epoll_per_conn:,.0f} bytes each, "
            f"{epoll_held:,} held (information)." if held else
            f"Idle keep-alive connections: not measured (BENCH_SCENARIOS={a.scenarios}).")
    lines += ["", idle]
    if tls_idle:
        (t_us, t_us_held, _), (t_ng, t_ng_held, _) = tls_idle[UT], tls_idle[NT]
        lines += ["", f"Idle TLS keep-alive connections (a TLS 1.3 handshake and one request each, then idle): ours "
                  f"{t_us:,.0f} bytes of user-space memory each ({t_us_held:,} held), nginx {t_ng:,.0f} bytes each "
                  f"({t_ng_held:,} held, master and worker): {t_us / t_ng if t_ng else float('nan'):.2f}x nginx's "
                  f"(target below nginx's: {'met' if t_us < t_ng else 'not met'})."]
    ws_idle_line = ("Idle WebSocket connections (handshake and one echo each, then silent): " + "; ".join(
        f"{b}: {v[0]:,.0f} bytes of user-space memory each, {v[1]:,} held" for b, v in ws_idle.items()) + "."
        if ws_idle else "Idle WebSocket connections: not measured.")
    lines += ["", ws_idle_line, "", "## All medians (requests/s or messages/s, p99 ms)", "",
              "| scenario | subject | req/s | p99 ms | non-2xx | req per server CPU-s | server CPU | load generator CPU |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    pct = lambda x: "" if x != x else f"{x:.0%}"
    for (s, n), v in sorted(med.items()):
        per_cpu = "" if v["per_cpu"] != v["per_cpu"] else f"{v['per_cpu']:,.0f}"
        lines.append(f"| {s} | {n} | {v['rps']:,.0f} | {v['p99_ms']:.2f} | {v['non2xx']} | {per_cpu} | "
                     f"{pct(v['server_cpu'])} | {pct(v['load_cpu'])} |")
    if only:
        # A partial run (BENCH_SCENARIOS) leaves the full run's results alone.
        with open(os.path.join(RESULTS, "partial.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
    else:
        with open(os.path.join(RESULTS, "latest.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        write_svg([(l, r, t) for l, _, _, r, t, _ in rows], os.path.join(RESULTS, "ratios.svg"))
    print("\n".join(lines))


def write_svg(rows, path):
    """A horizontal bar chart of the ratios, with each target as a tick."""
    w, bar_h, gap, left = 900, 22, 10, 430
    h = 40 + len(rows) * (bar_h + gap)
    vals = [r for _, r, _ in rows if r == r] + [t for _, _, t in rows if t == t] + [1.0]
    scale = (w - left - 40) / (max(vals) * 1.1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14">asyncloop / peer ratios (bar), targets (red tick)</text>']
    for i, (label, r, t) in enumerate(rows):
        y = 35 + i * (bar_h + gap)
        out.append(f'<text x="10" y="{y + 15}">{label}</text>')
        if r == r:
            colour = "#3a7" if (t != t or r >= t) else "#c84"
            out.append(f'<rect x="{left}" y="{y}" width="{r * scale:.1f}" height="{bar_h}" fill="{colour}"/>')
            out.append(f'<text x="{left + r * scale + 5:.1f}" y="{y + 15}">{r:.2f}</text>')
        if t == t:
            out.append(f'<line x1="{left + t * scale:.1f}" x2="{left + t * scale:.1f}" y1="{y - 3}" y2="{y + bar_h + 3}" stroke="red" stroke-width="2"/>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    sys.exit(main())
