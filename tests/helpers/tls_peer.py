#!/usr/bin/env python3
"""A TLS peer on Python's ssl module (OpenSSL), for tests of the library's TLS.

usage:
  tls_peer.py server CERT KEY [--tls12] [--client-ca CA]
      An echo server on 127.0.0.1: prints "listening on PORT", then echoes every byte of each
      connection back until the peer closes; serves until killed. --tls12 caps it at TLS 1.2;
      --client-ca requires client certificates signed by CA.
  tls_peer.py client PORT CAFILE [--tls12] [--cert C --key K] [--host NAME] [--bytes N]
      Connects to 127.0.0.1:PORT (NAME, default localhost, for SNI and verification), sends N
      bytes (default 1000), reads them back, prints one JSON line with the version, cipher,
      ALPN protocol and whether the echo matched; exits 1 with the error on stderr otherwise.
"""
import json
import socket
import ssl
import sys
import threading


def arg(flag, default=None):
    if flag in sys.argv:
        return sys.argv[sys.argv.index(flag) + 1]
    return default


def serve(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    if "--tls12" in sys.argv:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ca = arg("--client-ca")
    if ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ca)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print("listening on", srv.getsockname()[1], flush=True)

    def one(conn):
        try:
            with ctx.wrap_socket(conn, server_side=True) as s:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    s.sendall(d)
        except (OSError, ssl.SSLError):
            pass

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=one, args=(conn,), daemon=True).start()


def client(port, cafile):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    if "--tls12" in sys.argv:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if arg("--cert"):
        ctx.load_cert_chain(arg("--cert"), arg("--key"))
    n = int(arg("--bytes", "1000"))
    data = bytes(i % 251 for i in range(n))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname=arg("--host", "localhost")) as s:
                s.sendall(data)
                got = b""
                while len(got) < n:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
                print(json.dumps({
                    "version": s.version(),
                    "cipher": s.cipher()[0],
                    "alpn": s.selected_alpn_protocol(),
                    "echo_ok": got == data,
                }), flush=True)
    except (OSError, ssl.SSLError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], sys.argv[3])
    else:
        client(int(sys.argv[2]), sys.argv[3])
