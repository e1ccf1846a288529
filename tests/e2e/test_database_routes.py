"""End to end: the database routes of `server` against a real throwaway PostgreSQL
(scripts/pg.sh), on each backend: TechEmpower shapes and rules, books, and 503 while the
database is down, 200 again once it is back."""
import html
import json
import time
import unittest

from harness import BACKENDS, Cluster, get, server

FORTUNES = [
    (0, "Additional fortune added at request time."),
    (1, "fortune: No such file or directory"),
    (2, "A computer scientist is someone who fixes things that aren't broken."),
    (3, "After enough decimal places, nobody gives a damn."),
    (4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"),
    (5, "A computer program does what you tell it to do, not what you want it to do."),
    (6, "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen"),
    (7, "Any program that runs right is obsolete."),
    (8, "A list is only as strong as its weakest link. — Donald Knuth"),
    (9, "Feature: A bug with seniority."),
    (10, "Computers make very fast, very accurate mistakes."),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, "フレームワークのベンチマーク"),
]


def make_tests(backend):
    class DatabaseRoutes(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.db = Cluster()
            cls.srv = server("--pg", cls.db.url, "--pool", "2", backend=backend)

        @classmethod
        def tearDownClass(cls):
            try:
                assert cls.srv.stop() == 0
            finally:
                cls.db.stop()

        def check_world(self, w):
            self.assertEqual(set(w), {"id", "randomNumber"})
            self.assertTrue(1 <= w["id"] <= 10000 and 1 <= w["randomNumber"] <= 10000, w)

        def test_db(self):
            st, h, body = get(self.srv.port, "/db")
            self.assertEqual((st, h["Content-Type"]), (200, "application/json"))
            w = json.loads(body)
            self.check_world(w)
            self.assertEqual(self.db.psql(f"SELECT randomnumber FROM world WHERE id={w['id']}"), str(w["randomNumber"]))

        def test_queries_count_and_clamping(self):
            for q, n in [("20", 20), ("1", 1), ("0", 1), ("-3", 1), ("foo", 1), ("", 1), ("501", 500), ("99999", 500)]:
                st, _, body = get(self.srv.port, f"/queries?queries={q}")
                rows = json.loads(body)
                self.assertEqual((st, len(rows)), (200, n), q)
                for w in rows:
                    self.check_world(w)
            st, _, body = get(self.srv.port, "/queries")
            self.assertEqual(len(json.loads(body)), 1)

        def test_updates_are_persisted(self):
            # 200 draws from 10,000 ids repeat one with a probability of about 86%: a repeated id
            # must report the value it ends with.
            st, _, body = get(self.srv.port, "/updates?queries=200")
            rows = json.loads(body)
            self.assertEqual((st, len(rows)), (200, 200))
            for w in rows:
                self.check_world(w)
            ids = ",".join(str(w["id"]) for w in rows)
            stored = dict(tuple(map(int, line.split("|")))
                          for line in self.db.psql(f"SELECT id, randomnumber FROM world WHERE id IN ({ids})").split())
            self.assertEqual([(w["id"], stored.get(w["id"])) for w in rows], [(w["id"], w["randomNumber"]) for w in rows])

        def test_concurrent_updates_all_commit(self):
            # Each request updates its rows in one transaction; concurrent ones must not
            # deadlock (503), and an id drawn twice in one request reports one final value.
            from concurrent.futures import ThreadPoolExecutor

            def one(_):
                st, _, body = get(self.srv.port, "/updates?queries=100", timeout=10)
                return st, json.loads(body)

            with ThreadPoolExecutor(8) as ex:
                results = list(ex.map(one, range(48)))
            self.assertEqual([st for st, _ in results], [200] * 48)
            drawn_twice = 0
            for _, rows in results:
                self.assertEqual(len(rows), 100)
                final = {}
                for w in rows:
                    self.check_world(w)
                    drawn_twice += w["id"] in final
                    self.assertEqual(final.setdefault(w["id"], w["randomNumber"]), w["randomNumber"])
            self.assertGreater(drawn_twice, 0)  # 48 x 100 draws from 10,000 ids repeat

        def test_fortunes_exact(self):
            st, h, body = get(self.srv.port, "/fortunes")
            self.assertEqual((st, h["Content-Type"]), (200, "text/html; charset=utf-8"))
            want = "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>"
            for i, m in sorted(FORTUNES, key=lambda f: f[1].encode()):
                want += f"<tr><td>{i}</td><td>{html.escape(m).replace('&#x27;', '&#39;')}</td></tr>"
            want += "</table></body></html>"
            self.assertEqual(body.decode(), want)

        def test_books(self):
            st, h, body = get(self.srv.port, "/books")
            self.assertEqual((st, h["Content-Type"]), (200, "application/json"))
            books = json.loads(body)
            self.assertEqual([b["id"] for b in books], sorted(b["id"] for b in books))
            new = {"id": 4000 + len(backend), "title": "Quotes ' and \"; DROP TABLE books; -- ünïcode"}
            st, _, body = get(self.srv.port, "/books", "POST", json.dumps(new).encode())
            self.assertEqual(st, 201)
            self.assertIn(new, json.loads(body))
            st, _, _ = get(self.srv.port, "/books", "POST", json.dumps(new).encode())
            self.assertEqual(st, 409)
            for bad in [b"not json", b"[]", b'{"id":"7","title":"x"}', b'{"id":7}', b'{"title":"x"}', b'{"id":1.5,"title":"x"}']:
                st, _, body = get(self.srv.port, "/books", "POST", bad)
                self.assertEqual(st, 400, bad)
                self.assertIn("error", json.loads(body))
            st, _, body = get(self.srv.port, "/books")
            self.assertEqual(json.loads(body)[-1], new)

        def test_503_while_the_database_is_down_then_200(self):
            self.db.pg_ctl("stop")
            try:
                for _ in range(3):
                    t0 = time.time()
                    st, h, body = get(self.srv.port, "/db", timeout=10)
                    self.assertEqual((st, h["Content-Type"]), (503, "application/json"))
                    self.assertIn("error", json.loads(body))
                    self.assertLess(time.time() - t0, 3)
            finally:
                self.db.pg_ctl("start")
            deadline = time.time() + 15
            while True:
                st, _, _ = get(self.srv.port, "/db")
                if st == 200 or time.time() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual(st, 200)

    DatabaseRoutes.__name__ = f"DatabaseRoutes_{backend}"
    return DatabaseRoutes


for _b in BACKENDS:
    globals()[f"DatabaseRoutes_{_b}"] = make_tests(_b)
del _b

if __name__ == "__main__":
    unittest.main()
