#!/usr/bin/env python3
"""A small real HTTP/1.1 upstream for client and relay tests (Python's http.server).

usage: upstream.py [PORT] [--tls CERT KEY]   prints "listening on PORT" and serves until killed;
       with --tls, over TLS (HTTPS) with that certificate and key.

  GET  /hello            200 text/plain "hello" (Content-Length)
  GET  /port             200 the client's source port (tells connection reuse)
  GET  /chunked          200 chunked "abc" + "defg"
  GET  /close            200 body delimited by closing the connection
  GET  /slow?ms=N        waits N ms, then 200 "slow"
  GET  /big?n=N          200 N bytes of 'x'
  GET  /status/N         status N, JSON body {"status": N}
  GET  /world/N          200 JSON {"world": N}
  POST /echo             200 the request body, same Content-Type
  HEAD /hello            200 with Content-Length 5, no body
Keep-alive connections idle for more than 150 ms are closed by the server.
"""
import json
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 0.15  # idle keep-alive connections are closed after this
    # The head and the body go out in separate writes: without TCP_NODELAY the body waits
    # for the client's delayed ACK (40 ms per request).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if u.path == "/hello":
            self.send(200, b"hello")
        elif u.path == "/port":
            self.send(200, str(self.client_address[1]).encode())
        elif u.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"abc", b"defg"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif u.path == "/close":
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the end")
        elif u.path == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000)
            self.send(200, b"slow")
        elif u.path == "/big":
            self.send(200, b"x" * int(q.get("n", ["1000"])[0]))
        elif u.path.startswith("/status/"):
            n = int(u.path.rsplit("/", 1)[1])
            self.send(n, json.dumps({"status": n}).encode(), "application/json")
        elif u.path.startswith("/world/"):
            self.send(200, json.dumps({"world": u.path.rsplit("/", 1)[1]}).encode(), "application/json")
        else:
            self.send(404, b"not found")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.send(200, body, self.headers.get("Content-Type", "application/octet-stream"))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # Clients that reset (tests and the soak run do it on purpose) are not errors here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    args = sys.argv[1:]
    tls = None
    if "--tls" in args:
        i = args.index("--tls")
        tls = args[i + 1:i + 3]
        del args[i:i + 3]
    port = int(args[0]) if args else 0
    srv = Server(("127.0.0.1", port), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        ctx.set_alpn_protocols(["http/1.1"])
        # The handshake runs in each connection's thread, not in accept, with a timeout of its
        # own (a client under valgrind is slow); the handler's idle timeout applies after it.
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        plain_finish = srv.finish_request

        def finish_request(request, client_address):
            request.settimeout(30)
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError):
                return
            plain_finish(request, client_address)
        srv.finish_request = finish_request
    print(f"listening on {srv.server_address[1]}", flush=True)
    srv.serve_forever()
