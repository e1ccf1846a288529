"""End to end: the server's database application routes against real PostgreSQL processes, on
each backend: POST /counter/<name> (500 concurrent increments, none lost), GET /events
(LISTEN/NOTIFY as Server-Sent Events), GET /world.csv (COPY, streamed); every database route
through a real PgBouncer in transaction mode with --pg-no-prepare; read replicas (a streaming
standby made with pg_basebackup -R) with --pg-replica, and failover to a promoted standby."""
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import http.client

from harness import BACKENDS, ROOT, Cluster, connect, get, open_fds, server, settled_fds, wait_until, Reader

PGBOUNCER = os.path.join(ROOT, "scripts", "pgbouncer.sh")
PG = os.path.join(ROOT, "scripts", "pg.sh")
UPSTREAM = os.path.join(ROOT, "tests", "helpers", "upstream.py")


class Bouncer:
    """A throwaway PgBouncer (scripts/pgbouncer.sh) in front of a cluster."""

    def __init__(self, cluster):
        self.dir = tempfile.mkdtemp(prefix="asyncloop-e2e-bouncer-")
        self.url = subprocess.run([PGBOUNCER, "start", self.dir, cluster.dir], check=True,
                                  capture_output=True, text=True).stdout.strip()
        self.session_url = subprocess.run([PGBOUNCER, "session-url", self.dir], check=True,
                                          capture_output=True, text=True).stdout.strip()

    def stop(self):
        subprocess.run([PGBOUNCER, "stop", self.dir], check=False, capture_output=True)


class Standby(Cluster):
    """A streaming replica of `primary` (scripts/pg.sh standby)."""

    def __init__(self, primary):  # noqa: super().__init__ would make a new primary
        self.dir = tempfile.mkdtemp(prefix="asyncloop-e2e-standby-")
        self.url = subprocess.run([PG, "standby", self.dir, primary.dir], check=True, capture_output=True,
                                  text=True).stdout.strip()

    def promote(self):
        subprocess.run([PG, "promote", self.dir], check=True, capture_output=True)


def reset_close(sock):
    """Closes with a reset (SO_LINGER 0): the server learns at once that the client is gone."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def port_of(url):
    return int(url.split("@127.0.0.1:")[1].split("/")[0])


def increments(port, name, n, clients=50):
    """`n` POST /counter/<name> from `clients` keep-alive connections: the values answered."""
    values, errors = [], []
    lock = threading.Lock()
    per = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]

    def run(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(k):
            c.request("POST", f"/counter/{name}", body=b"")
            r = c.getresponse()
            body = r.read()
            with lock:
                if r.status == 200:
                    values.append(json.loads(body))
                else:
                    errors.append((r.status, body))
        c.close()

    ts = [threading.Thread(target=run, args=(k,)) for k in per if k]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return values, errors


class EventStream:
    """A GET /events?channel=... client: the response head, then events as they arrive."""

    def __init__(self, port, channel):
        self.sock = connect(port, timeout=10)
        self.sock.sendall(f"GET /events?channel={channel} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.reader = Reader(self.sock)
        self.status, self.headers, _ = self.reader.response(head_only=True)
        self.text = b""

    def _chunk(self):
        r = self.reader
        while b"\r\n" not in r.buf:
            r._fill()
        size_line, r.buf = r.buf.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(r.buf) < size + 2:
            r._fill()
        data, r.buf = r.buf[:size], r.buf[size + 2:]
        return data, size == 0

    def next_event(self, timeout=5):
        """The next block up to a blank line (a comment or an event), or None at the end."""
        self.sock.settimeout(timeout)
        while b"\n\n" not in self.text:
            data, last = self._chunk()
            if last:
                return None
            self.text += data
        block, self.text = self.text.split(b"\n\n", 1)
        return block.decode()

    def close(self, reset=True):
        if reset:
            reset_close(self.sock)
        else:
            self.sock.close()


def make_tests(backend):
    class AppRoutes(unittest.TestCase):
        """Directly on PostgreSQL."""

        @classmethod
        def setUpClass(cls):
            cls.db = Cluster()
            cls.srv = server("--pg", cls.db.url, "--pool", "4", backend=backend)

        @classmethod
        def tearDownClass(cls):
            try:
                assert cls.srv.stop() == 0
            finally:
                cls.db.stop()

        def test_500_concurrent_increments_lose_nothing(self):
            name = f"e2e-{backend}"
            values, errors = increments(self.srv.port, name, 500)
            self.assertEqual(errors, [])
            self.assertEqual(sorted(v["value"] for v in values), list(range(1, 501)))
            self.assertEqual({v["name"] for v in values}, {name})
            self.assertEqual(self.db.psql(f"SELECT value FROM counters WHERE name = '{name}'"), "500")
            self.assertEqual(get(self.srv.port, f"/counter/{name}")[0], 405)
            self.assertEqual(get(self.srv.port, "/counter/", method="POST", body=b"")[0], 400)
            st, _, body = get(self.srv.port, "/counter/we%22ird", method="POST", body=b"")
            self.assertEqual((st, json.loads(body)["name"]), (200, 'we%22ird'))

        def test_a_client_gone_mid_transaction_rolls_it_back(self):
            # The row is locked by psql: the increment waits on FOR UPDATE; its client leaves;
            # once the lock is released nothing was written, and the pool is whole.
            name = f"locked-{backend}"
            self.db.psql(f"INSERT INTO counters VALUES ('{name}', 10)")
            locker = subprocess.Popen(["psql", self.db.url, "-qAt", "-c",
                                       f"BEGIN; SELECT value FROM counters WHERE name = '{name}' FOR UPDATE; "
                                       "SELECT pg_sleep(1.5); COMMIT;"], stdout=subprocess.DEVNULL)
            time.sleep(0.3)
            s = connect(self.srv.port)
            s.sendall(f"POST /counter/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            time.sleep(0.3)
            reset_close(s)
            locker.wait(10)
            time.sleep(0.3)
            self.assertEqual(self.db.psql(f"SELECT value FROM counters WHERE name = '{name}'"), "10")
            values, errors = increments(self.srv.port, name, 4, clients=4)
            self.assertEqual((sorted(v["value"] for v in values), errors), ([11, 12, 13, 14], []))

        def test_events_stream_notifications(self):
            fds0 = settled_fds(self.srv.pid)
            a = EventStream(self.srv.port, "news")
            b = EventStream(self.srv.port, "news")
            other = EventStream(self.srv.port, "sport")
            for s in (a, b, other):
                self.assertEqual(s.status, 200)
                self.assertEqual(s.headers["content-type"], b"text/event-stream")
                self.assertEqual(s.headers["transfer-encoding"], b"chunked")
                self.assertEqual(s.next_event(), ": listening")
            self.db.psql("NOTIFY news, 'x'")
            t0 = time.monotonic()
            self.assertEqual(a.next_event(), "data: x")
            took = time.monotonic() - t0
            self.assertEqual(b.next_event(), "data: x")
            # Within 100 ms as a rule; the bound here leaves room for a loaded machine.
            self.assertLess(took, 1.0, took)
            self.db.psql("SELECT pg_notify('news', E'two\\nlines')")
            self.assertEqual(a.next_event(), "data: two\ndata: lines")
            self.db.psql("NOTIFY sport, 'goal'")
            self.assertEqual(other.next_event(), "data: goal")
            # Clients going away end their streams; the others go on. A reset is noticed at once;
            # a plain close (FIN) when the stream is written to next (an event, or the
            # heartbeat comment every 15 s).
            a.close()
            other.close(reset=False)
            self.db.psql("NOTIFY news, 'still'")
            self.db.psql("NOTIFY sport, 'unheard'")
            self.db.psql("NOTIFY sport, 'unheard either'")
            self.assertEqual(b.next_event(), "data: two\ndata: lines")
            self.assertEqual(b.next_event(), "data: still")
            b.close()
            # Every stream gone: the server has closed their sockets (the listening connection
            # stays).
            self.assertTrue(wait_until(lambda: open_fds(self.srv.pid) <= fds0 + 1, 5), (open_fds(self.srv.pid), fds0))
            again = EventStream(self.srv.port, "news")
            self.assertEqual(again.next_event(), ": listening")
            self.db.psql("NOTIFY news, 'back'")
            self.assertEqual(again.next_event(), "data: back")
            again.close()
            self.assertEqual(get(self.srv.port, "/events")[0], 400)

        def test_world_csv_is_the_table(self):
            s = connect(self.srv.port)
            s.sendall(b"GET /world.csv HTTP/1.1\r\nHost: x\r\n\r\n")
            st, h, body = Reader(s).response()
            s.close()
            self.assertEqual((st, h["content-type"], h["transfer-encoding"]), (200, b"text/csv; charset=utf-8", b"chunked"))
            lines = body.decode().splitlines()
            self.assertEqual(lines[0], "id,randomnumber")
            want = self.db.psql("COPY (SELECT id, randomnumber FROM world ORDER BY id) TO STDOUT (FORMAT csv)")
            self.assertEqual(lines[1:], want.splitlines())
            self.assertEqual(len(lines), 10001)

    class ThroughPgBouncer(unittest.TestCase):
        """Every database route through PgBouncer 1.18 in transaction mode (no named prepared
        statements: --pg-no-prepare); LISTEN through its session-mode pool."""

        @classmethod
        def setUpClass(cls):
            cls.db = Cluster()
            cls.bouncer = Bouncer(cls.db)
            cls.up = subprocess.Popen(["python3", UPSTREAM], stdout=subprocess.PIPE, text=True)
            up_port = int(cls.up.stdout.readline().split()[-1])
            cls.srv = server("--pg", cls.bouncer.url, "--pg-no-prepare", "--pg-listen", cls.bouncer.session_url,
                             "--pool", "4", "--upstream", f"http://127.0.0.1:{up_port}", backend=backend)

        @classmethod
        def tearDownClass(cls):
            try:
                assert cls.srv.stop() == 0
            finally:
                cls.up.kill()
                cls.up.wait()
                cls.bouncer.stop()
                cls.db.stop()

        def test_every_database_route(self):
            port = self.srv.port
            results = []

            def hammer(path, method="GET", body=None):
                for _ in range(20):
                    results.append((path, get(port, path, method, body)[0]))

            paths = ["/db", "/queries?queries=7", "/updates?queries=5", "/fortunes", "/books",
                     "/chain/db-api?id=3", "/chain/api-db/echo"]
            ts = [threading.Thread(target=hammer, args=(p,)) for p in paths]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual({r for r in results}, {(p, 200) for p in paths})
            st, _, body = get(port, "/books", "POST", json.dumps({"id": 77, "title": "Bounced"}).encode())
            self.assertEqual(st, 201)
            self.assertIn({"id": 77, "title": "Bounced"}, json.loads(body))
            self.assertEqual(get(port, "/books", "POST", json.dumps({"id": 77, "title": "x"}).encode())[0], 409)
            values, errors = increments(port, f"bounced-{backend}", 200, clients=20)
            self.assertEqual(errors, [])
            self.assertEqual(sorted(v["value"] for v in values), list(range(1, 201)))
            st, _, body = get(port, "/world.csv")
            self.assertEqual((st, len(body.splitlines())), (200, 10001))
            ev = EventStream(port, "bounced")
            self.assertEqual(ev.next_event(), ": listening")
            subprocess.run(["psql", self.bouncer.url, "-qc", "NOTIFY bounced, 'via pgbouncer'"], check=True)
            self.assertEqual(ev.next_event(), "data: via pgbouncer")
            ev.close()

    class Replicas(unittest.TestCase):
        """--pg-replica: /db, /queries, /fortunes read from the standby; writes go to the
        primary; while the standby is down the primary answers."""

        @classmethod
        def setUpClass(cls):
            cls.db = Cluster()
            cls.standby = Standby(cls.db)
            cls.srv = server("--pg", cls.db.url, "--pg-replica", cls.standby.url, "--pool", "2", backend=backend)

        @classmethod
        def tearDownClass(cls):
            try:
                assert cls.srv.stop() == 0
            finally:
                cls.standby.stop()
                cls.db.stop()

        def commits(self, cluster):
            return int(cluster.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'asyncloop'"))

        def test_reads_on_the_standby_writes_on_the_primary(self):
            port = self.srv.port
            before = (self.commits(self.db), self.commits(self.standby))
            for path in ["/db", "/queries?queries=3", "/fortunes"] * 100:
                self.assertEqual(get(port, path)[0], 200, path)
            # Statistics reach pg_stat_database within a second or so.
            self.assertTrue(wait_until(lambda: self.commits(self.standby) - before[1] >= 300, 10),
                            (self.commits(self.standby), before))
            self.assertLess(self.commits(self.db) - before[0], 150)
            st, _, body = get(port, "/updates?queries=3")
            self.assertEqual(st, 200)
            w = json.loads(body)[0]
            # Written on the primary, streamed to the standby.
            self.assertTrue(wait_until(lambda: self.standby.psql(
                f"SELECT randomnumber FROM world WHERE id = {w['id']}") == str(w["randomNumber"]), 10))
            st, _, body = get(port, "/counter/replicated", "POST", b"")
            self.assertEqual((st, json.loads(body)["value"]), (200, 1))
            # The standby stops: reads fall back to the primary (after the pool notices).
            self.standby.pg_ctl("stop")
            self.assertTrue(wait_until(lambda: all(get(port, "/db")[0] == 200 for _ in range(5)), 10))
            self.standby.pg_ctl("start")
            time.sleep(0.2)

    class Failover(unittest.TestCase):
        """The primary stops and the standby is promoted: with both hosts in --pg and
        target_session_attrs=read-write, writes succeed again within 10 s."""

        def test_writes_come_back_after_promotion(self):
            db = Cluster()
            standby = Standby(db)
            conninfo = (f"postgresql://postgres@127.0.0.1:{port_of(db.url)},127.0.0.1:{port_of(standby.url)}"
                        "/asyncloop?sslmode=disable&target_session_attrs=read-write")
            srv = server("--pg", conninfo, "--pool", "2", "--query-timeout", "2000", backend=backend)
            try:
                self.assertEqual(get(srv.port, "/counter/failover", "POST", b"")[0], 200)
                stopped = time.monotonic()
                db.pg_ctl("stop")
                standby.promote()
                ok = wait_until(lambda: get(srv.port, "/counter/failover", "POST", b"", timeout=5)[0] == 200, 15, 0.1)
                took = time.monotonic() - stopped
                self.assertTrue(ok)
                self.assertLess(took, 10, took)
                self.assertEqual(standby.psql("SELECT value FROM counters WHERE name = 'failover'"), "2")
                self.assertEqual(srv.stop(), 0)
            finally:
                if srv.alive():
                    srv.stop()
                standby.stop()
                db.stop()

    classes = [AppRoutes, ThroughPgBouncer]
    if backend == BACKENDS[0]:
        # Replicas and failover take two clusters each; the Rust tests (tests/pg_topology.rs)
        # run them on both backends, here they run on the first.
        classes += [Replicas, Failover]
    for cls in classes:
        cls.__name__ = f"{cls.__name__}_{backend}"
        cls.__qualname__ = cls.__name__
    return classes


for _b in BACKENDS:
    for _cls in make_tests(_b):
        globals()[_cls.__name__] = _cls
del _b, _cls

if __name__ == "__main__":
    unittest.main()
