"""End to end: streamed bodies through the example binaries, on each backend. POST /upload
with curl --data-binary @file and Python's http.client (chunked, 1 GiB made on the fly),
GET /download read by Python as it streams and written by `client --output`, the server's and
the client's peak memory bounded meanwhile, --max-upload, and --unix with curl's
--unix-socket and `client --unix`."""
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import BACKENDS, BIN, server

GiB = 1 << 30
MiB = 1 << 20
PIECE = bytes(range(251)) * (MiB // 251 + 2)  # the pattern, byte i = i % 251, from any phase


def pattern(offset, n):
    """n bytes of the download pattern from `offset` (n <= 1 MiB)."""
    start = offset % 251
    return PIECE[start:start + n]


def peak_kib(pid):
    """VmHWM: the most memory process `pid` has held at once so far, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def note(text):
    sys.stderr.write(f"  [{text}]\n")


def make_tests(backend):
    class StreamingTests(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.tmp = tempfile.mkdtemp(prefix="aloop-e2e-stream-")
            cls.sock = os.path.join(cls.tmp, "server.sock")
            # max-body does not bound a streamed route: uploads far beyond it go through.
            cls.srv = server("--max-body", "1000", "--unix", cls.sock, backend=backend)
            assert cls.srv.backend == backend, cls.srv.line
            cls.small = server("--max-upload", "100000", backend=backend)

        @classmethod
        def tearDownClass(cls):
            assert cls.srv.stop() == 0
            assert cls.small.stop() == 0
            assert not os.path.exists(cls.sock), "the socket file outlived the server"
            shutil.rmtree(cls.tmp, ignore_errors=True)

        def upload(self, port, body, chunked):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            c.request("POST", "/upload", body=body, encode_chunked=chunked,
                      headers={"Content-Type": "application/octet-stream"})
            r = c.getresponse()
            data = r.read()
            c.close()
            return r.status, data

        def test_upload_with_curl_data_binary(self):
            size = 64 * MiB + 7
            path = os.path.join(self.tmp, "upload.bin")
            h = hashlib.sha256()
            with open(path, "wb") as f:
                done = 0
                while done < size:
                    b = pattern(done, min(MiB, size - done))
                    f.write(b)
                    h.update(b)
                    done += len(b)
            out = subprocess.run(["curl", "-sS", "--max-time", "120", "--data-binary", "@" + path,
                                  "-H", "Content-Type: application/octet-stream",
                                  f"http://127.0.0.1:{self.srv.port}/upload"],
                                 capture_output=True, check=True)
            self.assertEqual(json.loads(out.stdout), {"bytes": size, "sha256": h.hexdigest()})
            os.unlink(path)

        def test_one_gib_chunked_upload_keeps_server_memory_bounded(self):
            h = hashlib.sha256()

            def body():
                done = 0
                while done < GiB:
                    b = pattern(done, min(MiB, GiB - done))
                    h.update(b)
                    done += len(b)
                    yield b

            before = peak_kib(self.srv.pid)
            t = time.monotonic()
            status, data = self.upload(self.srv.port, body(), chunked=True)
            growth = peak_kib(self.srv.pid) - before
            note(f"{backend}: 1 GiB chunked upload in {time.monotonic() - t:.1f} s, server peak RSS +{growth} KiB")
            self.assertEqual(status, 200, data)
            self.assertEqual(json.loads(data), {"bytes": GiB, "sha256": h.hexdigest()})
            self.assertLess(growth, 32 * 1024, f"server peak RSS grew by {growth} KiB")

        def test_max_upload_is_413(self):
            status, data = self.upload(self.small.port, b"x" * 200000, chunked=False)
            self.assertEqual(status, 413, data)
            status, data = self.upload(self.small.port, iter([b"y" * 60000] * 4), chunked=True)
            self.assertEqual(status, 413, data)
            status, data = self.upload(self.small.port, b"z" * 100000, chunked=False)
            self.assertEqual((status, json.loads(data)["bytes"]), (200, 100000))

        def test_one_gib_download_is_produced_as_the_client_reads(self):
            before = peak_kib(self.srv.pid)
            c = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=60)
            c.request("GET", f"/download?bytes={GiB}")
            r = c.getresponse()
            self.assertEqual((r.status, r.getheader("Transfer-Encoding")), (200, "chunked"))
            got, bad = 0, 0
            while True:
                b = r.read(MiB)
                if not b:
                    break
                bad += b != pattern(got, len(b))
                got += len(b)
                if got == 64 * MiB:
                    time.sleep(1)  # a reader that stalls: the server waits, holding little
            c.close()
            growth = peak_kib(self.srv.pid) - before
            note(f"{backend}: 1 GiB download, server peak RSS +{growth} KiB")
            self.assertEqual((got, bad), (GiB, 0))
            self.assertLess(growth, 32 * 1024, f"server peak RSS grew by {growth} KiB")

        def test_download_edges(self):
            for q, want in [("bytes=0", (200, b"")), ("bytes=5", (200, bytes(range(5)))),
                            ("bytes=abc", 400), ("bytes=-1", 400), ("", 400)]:
                c = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=10)
                c.request("GET", "/download?" + q)
                r = c.getresponse()
                body = r.read()
                c.close()
                if isinstance(want, tuple):
                    self.assertEqual((r.status, body), want, q)
                else:
                    self.assertEqual(r.status, want, q)

        def test_client_output_streams_to_a_file(self):
            size = GiB
            path = os.path.join(self.tmp, "download.bin")
            p = subprocess.Popen([os.path.join(BIN, "client"), "--backend", backend, "--timeout", "120000",
                                  "--output", path, "127.0.0.1", str(self.srv.port), f"/download?bytes={size}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            peak = 0
            while p.poll() is None:
                try:
                    peak = max(peak, peak_kib(p.pid))
                except (FileNotFoundError, ProcessLookupError):
                    break
                time.sleep(0.05)
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
            self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out)
            self.assertTrue(out.endswith(b"\r\n\r\n"), out)  # the body went to the file
            self.assertEqual(os.path.getsize(path), size)
            bad, done = 0, 0
            with open(path, "rb") as f:
                while True:
                    b = f.read(MiB)
                    if not b:
                        break
                    bad += b != pattern(done, len(b))
                    done += len(b)
            os.unlink(path)
            self.assertEqual(bad, 0)
            note(f"{backend}: client --output 1 GiB, client peak RSS {peak} KiB")
            self.assertLess(peak, 48 * 1024, f"the client's peak RSS was {peak} KiB")

        def test_unix_socket_with_curl_and_the_client(self):
            out = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", self.sock,
                                  "http://localhost/plaintext"], capture_output=True, check=True)
            self.assertEqual(out.stdout, b"Hello, World!")
            out = subprocess.run(["curl", "-sS", "--max-time", "30", "--unix-socket", self.sock,
                                  "--data-binary", "@-", "http://localhost/upload"],
                                 input=b"abc" * 1000, capture_output=True, check=True)
            self.assertEqual(json.loads(out.stdout),
                             {"bytes": 3000, "sha256": hashlib.sha256(b"abc" * 1000).hexdigest()})
            out = subprocess.run([os.path.join(BIN, "client"), "--backend", backend, "--unix", self.sock,
                                  "localhost", "80", "/json"], capture_output=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(b"\r\n\r\n{\"message\":\"Hello, World!\"}", out.stdout)

    StreamingTests.__name__ = f"Streaming_{backend}"
    return StreamingTests


for _b in BACKENDS:
    globals()[f"Streaming_{_b}"] = make_tests(_b)

if __name__ == "__main__":
    unittest.main()
