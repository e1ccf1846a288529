#!/usr/bin/env python3
"""Instructions per request (make bench-instr): each server runs under callgrind twice, once
answering W + N requests and once W + 3N, sent by bench/loadgen over one keep-alive connection;
the difference of the two totals over 2N is the user-space cost of one request, with start-up,
warm-up and shutdown cancelled out. Callgrind counts the user-space instructions of the server
process only (the load generator is not traced), the same for the same binary and input however
busy the machine is. Subjects: our example server on epoll and on io_uring, nginx (one process,
`return 200`) and bench/nothing.c (answers a fixed response for every blank line it reads).
Prints a table and writes bench/results/instr.md; the callgrind dumps (`*.3n.out.1` for the W + 3N
runs) stay in build/bench/callgrind/ for callgrind_annotate.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, "build", "bin")
TOOLS = os.path.join(ROOT, "build", "bench")
PROFILES = os.path.join(TOOLS, "callgrind")
RESULTS = os.path.join(ROOT, "bench", "results")

# The headers TechEmpower's wrk runs add to each request (beside Host).
TFB_HEADERS = ["Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7",
               "Connection: keep-alive"]
# (label, path, pipeline depth, extra headers). Requests carry only Host, as wrk's in make bench,
# unless the label says "TFB headers".
SCENARIOS = [
    ("plaintext pipelined 16", "/plaintext", 16, []),
    ("json pipelined 16", "/json", 16, []),
    ("plaintext, one per round trip", "/plaintext", 1, []),
    ("json, one per round trip", "/json", 1, []),
    ("plaintext pipelined 16, TFB headers", "/plaintext", 16, TFB_HEADERS),
    ("plaintext, one per round trip, TFB headers", "/plaintext", 1, TFB_HEADERS),
]
SUBJECTS = ["asyncloop-epoll", "asyncloop-uring", "nginx", "nothing"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def nginx_conf(tmp, port):
    d = os.path.join(tmp, f"nginx-{port}")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        # One process doing a worker's job (master_process off): what callgrind traces is
        # exactly nginx's request path, as with `worker_processes 1` in make bench.
        f.write(f"""master_process off;
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 1024; use epoll; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{
    listen 127.0.0.1:{port};
    location = /plaintext {{ default_type text/plain; return 200 "Hello, World!"; }}
    location = /json {{ default_type application/json; return 200 '{{"message":"Hello, World!"}}'; }}
  }}
}}
""")
    return ["nginx", "-c", conf, "-p", d]


def subject_argv(subject, port, tmp, pg_url):
    if subject.startswith("asyncloop-"):
        backend = subject.split("-", 1)[1]
        argv = [os.path.join(BIN, "server"), "--backend", backend, "--threads", "1", "--pool", "1"]
        if pg_url:
            argv += ["--pg", pg_url]
        return argv + ["127.0.0.1", str(port)]
    if subject == "nginx":
        return nginx_conf(tmp, port)
    if subject == "nothing":
        return [os.path.join(TOOLS, "nothing"), str(port)]
    raise ValueError(subject)


def callgrind_run(subject, path, depth, headers, requests, tmp, pg_url, out_file):
    """Total user-space instructions of `subject` serving `requests` requests, or an error text."""
    port = free_port()
    for stale in (out_file, out_file + ".1"):
        if os.path.exists(stale):
            os.unlink(stale)
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "--dump-instr=no",
            "--trace-children=no"] + subject_argv(subject, port, tmp, pg_url)
    log = open(out_file + ".log", "w")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_port(port, p):
            return None, f"did not start under valgrind (see {os.path.relpath(out_file, ROOT)}.log)"
        load = subprocess.run([os.path.join(TOOLS, "loadgen"), "-c", "1", "-n", str(requests), "-d", str(depth),
                               "-p", path] + [x for h in headers for x in ("-H", h)] + ["127.0.0.1", str(port)],
                              capture_output=True, text=True, timeout=1800)
        if load.returncode != 0:
            return None, f"load failed: {load.stdout.strip()} {load.stderr.strip()}"
        # Dump the counts now (callgrind_control reaches the process even while every thread
        # sits in a system call), then kill it: shutdown is not part of the figure, and under
        # valgrind 3.19 an io_uring loop blocked in io_uring_enter keeps valgrind's thread lock,
        # so a graceful stop could wait forever for the main thread to run.
        dump = subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True, text=True, timeout=300)
        if dump.returncode != 0:
            return None, f"callgrind_control failed: {dump.stdout.strip()} {dump.stderr.strip()}"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        log.close()
    try:
        with open(out_file + ".1") as f:
            text = f.read()
    except FileNotFoundError:
        return None, "no callgrind dump"
    m = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    return (int(m.group(1)), None) if m else (None, "no totals in the callgrind dump")


def git_describe():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=int(os.environ.get("INSTR_N", "2000")), help="N (runs of W+N and W+3N)")
    ap.add_argument("-w", type=int, default=int(os.environ.get("INSTR_WARMUP", "1000")), help="warm-up requests W")
    ap.add_argument("--subjects", default=os.environ.get("INSTR_SUBJECTS", ",".join(SUBJECTS)))
    ap.add_argument("--scenarios", default=os.environ.get("INSTR_SCENARIOS", ""),
                    help="semicolon-separated substrings of scenario labels (default: all)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results/instr.md alone")
    a = ap.parse_args()
    subjects = [s for s in a.subjects.split(",") if s]
    wanted = [w.strip() for w in a.scenarios.split(";") if w.strip()]
    scenarios = [s for s in SCENARIOS if not wanted or any(w in s[0] for w in wanted)]
    os.makedirs(PROFILES, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="asyncloop-instr-")
    pg_dir, pg_url = None, None
    if any(s.startswith("asyncloop") for s in subjects):
        # The example server's PostgreSQL pool connects at start and then stays idle: with no
        # database it would retry on a jittered backoff, and that would add noise.
        pg_dir = tempfile.mkdtemp(prefix="asyncloop-instr-pg-")
        pg_url = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "start", pg_dir], check=True,
                                capture_output=True, text=True).stdout.strip()
    results = {}  # (scenario label, subject) -> instructions per request, or an error text
    try:
        for label, path, depth, headers in scenarios:
            for subject in subjects:
                slug = re.sub(r"[^a-z0-9]+", "-", f"{subject} {label}".lower()).strip("-")
                totals = []
                for k, count in (("n", a.w + a.n), ("3n", a.w + 3 * a.n)):
                    out = os.path.join(PROFILES, f"{slug}.{k}.out")
                    total, err = callgrind_run(subject, path, depth, headers, count, tmp, pg_url, out)
                    if err:
                        totals = err
                        break
                    totals.append(total)
                if isinstance(totals, str):
                    results[(label, subject)] = totals
                    print(f"{label:32} {subject:16} {totals}", flush=True)
                else:
                    per = (totals[1] - totals[0]) / (2 * a.n)
                    results[(label, subject)] = per
                    print(f"{label:32} {subject:16} {per:10,.1f} instructions/request  "
                          f"(totals {totals[0]:,} and {totals[1]:,})", flush=True)
    finally:
        if pg_dir:
            subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop", pg_dir], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def cell(v):
        return v if isinstance(v, str) else f"{v:,.0f}"

    lines = [f"# Instructions per request ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {git_describe()})", "",
             f"User-space instructions of the server process per request (callgrind), one keep-alive connection, "
             f"difference of a run of {a.w + 3 * a.n:,} requests and one of {a.w + a.n:,} over {2 * a.n:,}. "
             f"Requests carry only `Host` (as wrk's in make bench) unless the row says TFB headers "
             f"(`{TFB_HEADERS[0]}`, `{TFB_HEADERS[1]}`). `make bench-instr`; see bench/README.md.", "",
             "| scenario | " + " | ".join(subjects) + " |",
             "| --- | " + " | ".join("---:" for _ in subjects) + " |"]
    for label, _, _, _ in scenarios:
        lines.append(f"| {label} | " + " | ".join(cell(results.get((label, s), "")) for s in subjects) + " |")
    errors = {v for v in results.values() if isinstance(v, str)}
    if errors:
        lines += [""] + [f"- {e}" for e in sorted(errors)]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if not a.no_write:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "instr.md"), "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
