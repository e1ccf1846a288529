"""Runs a fully static build of the palindrome example on a free port and checks one answer."""
import socket
import subprocess
import sys
import urllib.request

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
p = subprocess.Popen([sys.argv[1], str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
try:
    if "listening on" not in p.stdout.readline().decode():
        sys.exit(f"{sys.argv[1]}: no 'listening on' line")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"step on no pets", method="POST")
    body = urllib.request.urlopen(req, timeout=30).read()
    if body != b"The input is a palindrome.":
        sys.exit(f"{sys.argv[1]}: unexpected answer {body!r}")
finally:
    p.terminate()
    p.wait(30)
