#!/usr/bin/env python3
"""Soak run: the example server under mixed load for N minutes, with random client
disconnects and PostgreSQL restarts, reporting RSS and fd counts.

usage: scripts/soak.py [--minutes 10] [--backend uring|epoll] [--threads 1] [--report FILE]
       (make soak SOAK_MINUTES=10)

The load: 16 client threads, each with one connection at a time, on every route (TechEmpower
routes, palindrome, books, the upstream relay and both chains); one request in 20 is abandoned
(closed or reset mid-request, or sent half). Every 90 s PostgreSQL is restarted, alternating a
fast shutdown and a SIGKILL of all its processes. After a warm-up (the first fifth, at least one
minute), the load pauses, the pool is refilled and the server's RSS and fd count are taken; the
same at the end. Passes (exit 0) when RSS grew under 5% and the fd count is unchanged.
"""
import argparse
import http.client
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from harness import ROOT, Cluster, fill_pool, open_fds, rss_kib, server, settled_fds  # noqa: E402

ROUTES = [
    ("GET", "/plaintext", None), ("GET", "/json", None), ("GET", "/db", None),
    ("GET", "/queries?queries=10", None), ("GET", "/updates?queries=5", None), ("GET", "/fortunes", None),
    ("POST", "/palindrome", b"never odd or even"), ("GET", "/books", None),
    ("GET", "/api/hello", None), ("GET", "/api/big?n=20000", None),
    ("GET", "/chain/api-db/hello", None), ("GET", "/chain/db-api?id=42", None),
]


class Load:
    """Client threads running mixed requests until stopped; `paused` holds them between requests."""

    def __init__(self, port, threads=16):
        self.port = port
        self.stop = threading.Event()
        self.run = threading.Event()
        self.run.set()
        self.idle = threading.Semaphore(0)
        self.counts = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def worker(self, seed):
        rng = random.Random(seed)
        conn = None
        while not self.stop.is_set():
            if not self.run.is_set():
                if conn:
                    conn.close()
                    conn = None
                self.idle.release()
                self.run.wait()
                continue
            method, path, body = rng.choice(ROUTES)
            if rng.random() < 0.05:
                self.abandon(rng, method, path, body)
                self.count("abandoned")
                continue
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                conn.request(method, path, body=body)
                r = conn.getresponse()
                r.read()
                self.count(r.status)
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.count(type(e).__name__)
                if conn:
                    conn.close()
                conn = None

    def abandon(self, rng, method, path, body):
        """A client that goes away: after a half-sent request, or right after sending, with a
        FIN or a reset."""
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            req = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body or b'')}\r\n\r\n".encode()
            req += body or b""
            s.sendall(req[: rng.randrange(1, len(req))] if rng.random() < 0.5 else req)
            time.sleep(rng.random() * 0.02)
            if rng.random() < 0.5:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        except OSError:
            pass

    def pause(self):
        self.run.clear()
        for _ in self.threads:
            self.idle.acquire()

    def resume(self):
        self.run.set()

    def finish(self):
        self.stop.set()
        self.run.set()
        for t in self.threads:
            t.join(timeout=30)


def snapshot(srv, db, load, pool):
    load.pause()
    ok = fill_pool(srv.port, db, pool, timeout=30)
    fds = settled_fds(srv.pid, quiet=1.0, timeout=15)
    rss = rss_kib(srv.pid)
    load.resume()
    return ok, rss, fds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--backend", default="uring")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", default=os.path.join(ROOT, "build", "soak", "report.md"))
    args = ap.parse_args()
    pool = 4

    db = Cluster()
    up = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "helpers", "upstream.py"), "0"],
                          stdout=subprocess.PIPE, text=True)
    up_port = int(up.stdout.readline().split()[-1])
    srv = server("--pg", db.url, "--pool", str(pool), "--threads", str(args.threads),
                 "--upstream", f"http://127.0.0.1:{up_port}", "--query-timeout", "5000", backend=args.backend)
    samples = []
    try:
        load = Load(srv.port)
        total = args.minutes * 60
        warmup = max(60.0, total / 5) if total >= 120 else total / 5
        t0 = time.time()
        next_restart, restarts, kill = t0 + 90, 0, False
        base = None
        while time.time() - t0 < total:
            now = time.time()
            if base is None and now - t0 >= warmup:
                base = snapshot(srv, db, load, pool)
                print(f"[{now - t0:6.0f} s] after warm-up: RSS {base[1]} KiB, {base[2]} fds", flush=True)
            if now >= next_restart:
                if kill:
                    db.kill9()
                    db.pg_ctl("start")
                else:
                    db.pg_ctl("restart")
                restarts += 1
                print(f"[{now - t0:6.0f} s] PostgreSQL {'killed (SIGKILL)' if kill else 'restarted'} and started",
                      flush=True)
                kill = not kill
                next_restart = now + 90
            if not srv.alive():
                raise SystemExit("the server died")
            samples.append((now - t0, rss_kib(srv.pid), open_fds(srv.pid)))
            time.sleep(5)
        end = snapshot(srv, db, load, pool)
        load.finish()
    finally:
        code = srv.stop()
        up.kill()
        db.stop()

    growth = (end[1] - base[1]) / base[1] * 100
    ok = end[0] and base[0] and growth < 5 and end[2] == base[2] and code == 0
    counts = dict(sorted(load.counts.items(), key=lambda kv: str(kv[0])))
    lines = [
        f"# Soak: {args.minutes:g} min, backend {srv.backend}, {args.threads} thread(s)",
        "",
        f"- requests: {json.dumps({str(k): v for k, v in counts.items()})}",
        f"- PostgreSQL restarts: {restarts} (alternating fast shutdown and SIGKILL)",
        f"- RSS after warm-up {base[1]} KiB, at the end {end[1]} KiB: {growth:+.1f}% (limit +5%)",
        f"- fds after warm-up {base[2]}, at the end {end[2]}",
        f"- server exit code after SIGTERM: {code}",
        f"- result: {'PASS' if ok else 'FAIL'}",
        "",
        "| t (s) | RSS (KiB) | fds |",
        "| ---: | ---: | ---: |",
    ] + [f"| {t:.0f} | {r} | {f} |" for t, r, f in samples[:: max(1, len(samples) // 40)]]
    os.makedirs(os.path.dirname(args.report), exist_ok=True)
    with open(args.report, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[:9]))
    print(f"report: {args.report}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
