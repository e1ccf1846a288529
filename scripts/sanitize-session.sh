#!/usr/bin/env bash
# make test-sanitize: the examples built with AddressSanitizer+UBSan, with the library itself
# built with AddressSanitizer, driven through a scripted session of real requests on both
# backends, over plain HTTP and over TLS (an HTTPS server with an HTTPS upstream, certificates
# made here by the openssl command line); the C tests the same way; then palindrome and server
# under valgrind memcheck (plain HTTP; see the note there about TLS).
# Every run must exit 0 with no sanitizer report and no definite leak.
# Usage: scripts/sanitize-session.sh SAN_BIN_DIR BIN_DIR SAN_LIB_DIR C_TEST_DIR
set -u
san=$1
bin=$2
sanlib=$3
ctests=$4
top=$(cd "$(dirname "$0")/.." && pwd)
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok    $1"; }
bad() { failed=$((failed + 1)); echo "FAIL  $1"; [ -n "${2:-}" ] && sed 's/^/      /' "$2" | tail -n 30; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 400); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

for b in palindrome server client; do
  if ldd "$san/$b" | grep -q libasan; then ok "$b links the ASan runtime"; else bad "$b is not linked with the ASan runtime"; fi
done
if nm -D "$sanlib/libasyncloop.so.0" | grep -q __asan_report; then ok "the library is built with ASan"; else bad "$sanlib/libasyncloop.so.0 is not instrumented"; fi
if LD_LIBRARY_PATH=$sanlib ldd "$san/server" | grep -q "$sanlib/libasyncloop"; then ok "the sanitized programs load it"
else bad "the sanitized programs do not load $sanlib/libasyncloop.so.0"; fi

tmp=$(mktemp -d /tmp/asyncloop-sanitize.XXXXXX)
chmod 755 "$tmp"
pgdir="$tmp/pg"
cleanup() {
  [ -n "${up:-}" ] && kill "$up" 2>/dev/null
  [ -n "${tlsup:-}" ] && kill "$tlsup" 2>/dev/null
  "$top/scripts/pg.sh" stop "$pgdir" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
url=$("$top/scripts/pg.sh" start "$pgdir") || { bad "PostgreSQL did not start"; echo "sanitize: $passed passed, $((failed)) failed"; exit 1; }
python3 "$top/tests/helpers/upstream.py" > "$tmp/up.out" &
up=$!
for _ in $(seq 50); do grep -q listening "$tmp/up.out" && break; sleep 0.1; done
upport=$(awk '{print $3}' "$tmp/up.out")
# TLS: a CA and a certificate for localhost it signed, and an HTTPS upstream using it.
tls="$tmp/tls"
mkdir -p "$tls"
(
  cd "$tls" || exit 1
  ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  openssl req -x509 $ec -keyout ca.key -out ca.pem -subj /CN=sanitize-ca -days 2 &&
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext &&
    openssl req -new $ec -keyout server.key -out server.csr -subj /CN=localhost &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.pem
) > "$tmp/openssl.log" 2>&1 || bad "test certificates (openssl)" "$tmp/openssl.log"
python3 "$top/tests/helpers/upstream.py" --tls "$tls/server.pem" "$tls/server.key" > "$tmp/tlsup.out" &
tlsup=$!
for _ in $(seq 50); do grep -q listening "$tmp/tlsup.out" && break; sleep 0.1; done
tlsupport=$(awk '{print $3}' "$tmp/tlsup.out")

# A scripted session against palindrome and server; `run_session NAME CMD...` runs the binary,
# drives it, stops it with SIGTERM and checks its exit status and stderr.
session() {
  local name=$1 port=$2
  shift 2
  "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
  local pid=$!
  if ! wait_port "$port"; then bad "$name${label:-} did not start" "$tmp/$name.err"; kill -9 $pid 2>/dev/null; return; fi
  python3 - "$port" "$name" > "$tmp/$name.drive" 2>&1 <<'PY'
import socket, sys, json, urllib.request, urllib.error
port, name = int(sys.argv[1]), sys.argv[2]
def get(path, data=None, method=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
def raw(b):
    s = socket.create_connection(("127.0.0.1", port), timeout=5); s.sendall(b)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            out += d
    except socket.timeout:
        pass
    s.close(); return out
pal = "/x" if name == "palindrome" else "/palindrome"
assert get(pal, b"abba", "POST")[1].endswith(b"palindrome."), "palindrome"
assert get(pal, b"", "POST")[0] == 400
if name == "palindrome":
    assert get("/")[0] == 405
else:
    for path in ["/plaintext", "/json", "/db", "/queries?queries=5", "/updates?queries=3", "/fortunes", "/books",
                 "/api/hello", "/chain/api-db/hello", "/chain/db-api?id=7", "/api/slow?ms=2000"]:
        st, body = get(path)
        assert st in (200, 504), (path, st, body)
    import random
    assert get("/books", json.dumps({"id": random.randint(1000, 10**9), "title": "t"}).encode(), "POST")[0] == 201
    assert get("/books", b"{", "POST")[0] == 400
    assert get("/nope")[0] == 404
for bad in [b"GET / HTTP/1.1\r\n\r\n", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"\x16\x03\x01garbage\r\n\r\n", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"]:
    assert raw(bad).startswith(b"HTTP/1.1 4"), bad[:40]
pipelined = (b"POST " + pal.encode() + b" HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\naba") * 50 + b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
assert raw(pipelined).count(b"HTTP/1.1 ") == 51
for _ in range(20):   # clients that reset mid-request
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"POST " + pal.encode() + b" HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nab")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"); s.close()
print("session ok")
PY
  local drive=$?
  if [ "$name" = server ] && [ -x "$san/client" ]; then
    "$san/client" -n 2000 -c 8 127.0.0.1 "$port" /json > "$tmp/client.out" 2> "$tmp/client.err" \
      && ! grep -qE "AddressSanitizer|runtime error" "$tmp/client.err" \
      && ok "client (asan) load run${label:-}" || bad "client (asan) load run${label:-}" "$tmp/client.err"
  fi
  kill -TERM $pid
  wait $pid
  local rc=$?
  if [ $drive -ne 0 ]; then bad "$name${label:-}: scripted session" "$tmp/$name.drive"
  elif [ $rc -ne 0 ] || grep -qE "AddressSanitizer|LeakSanitizer|runtime error|ERROR SUMMARY: [1-9]|definitely lost: [1-9]" "$tmp/$name.err"; then
    bad "$name${label:-}: exit $rc or a report" "$tmp/$name.err"
  else ok "$name${label:-}"; fi
}

# The same over TLS: `tls_session NAME PORT CMD...` drives an HTTPS server.
tls_session() {
  local name=$1 port=$2
  shift 2
  "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
  local pid=$!
  if ! wait_port "$port"; then bad "$name${label:-} did not start" "$tmp/$name.err"; kill -9 $pid 2>/dev/null; return; fi
  python3 - "$port" "$tls/ca.pem" > "$tmp/$name.drive" 2>&1 <<'PY'
import socket, ssl, sys, urllib.request, urllib.error
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
def get(path, data=None, method=None):
    try:
        req = urllib.request.Request(f"https://localhost:{port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
def raw(b, shut=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            d = s.recv(65536)
            if not d: break
            out += d
    except (socket.timeout, ConnectionResetError):
        out = b""
    s.close(); return out
for path in ["/plaintext", "/json", "/db", "/queries?queries=5", "/api/hello", "/chain/api-db/hello", "/chain/db-api?id=7"]:
    st, body = get(path)
    assert st == 200, (path, st, body)
assert get("/palindrome", b"x" * 40000 + b"y" + b"x" * 40000, "POST")[1].endswith(b"is a palindrome.")
assert raw(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400"), "plain HTTP"
for junk in [b"\x16\x03\x01\x00\x04\x01\x00\x00\x00", b"\x16\x03\x01\x01\x00\x01\x00", bytes(range(256)) * 8]:
    raw(junk)
for _ in range(20):   # resets in the middle of a handshake
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"); s.close()
for _ in range(20):   # resets after the handshake, mid-request
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(b"POST /palindrome HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nab")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"); s.close()
print("tls session ok")
PY
  local drive=$?
  if [ -x "$san/client" ]; then
    "$san/client" --tls --cacert "$tls/ca.pem" -n 1000 -c 8 localhost "$port" /json > "$tmp/tlsclient.out" 2> "$tmp/tlsclient.err" \
      && ! grep -qE "AddressSanitizer|runtime error" "$tmp/tlsclient.err" \
      && ok "client --tls (asan) load run${label:-}" || bad "client --tls (asan) load run${label:-}" "$tmp/tlsclient.err"
  fi
  kill -TERM $pid
  wait $pid
  local rc=$?
  if [ $drive -ne 0 ]; then bad "$name${label:-}: scripted TLS session" "$tmp/$name.drive"
  elif [ $rc -ne 0 ] || grep -qE "AddressSanitizer|LeakSanitizer|runtime error|ERROR SUMMARY: [1-9]|definitely lost: [1-9]" "$tmp/$name.err"; then
    bad "$name${label:-}: exit $rc or a report" "$tmp/$name.err"
  else ok "$name${label:-}"; fi
}
# The upstream by address: a host name would be resolved on a blocking-pool thread, which
# valgrind reports at exit (a thread TLS block from pthread_create), independently of TLS.
tls_args() { echo --tls-cert "$tls/server.pem" --tls-key "$tls/server.key" --upstream "https://127.0.0.1:$tlsupport" --upstream-cacert "$tls/ca.pem"; }

export LD_LIBRARY_PATH=$sanlib
for backend in uring epoll; do
  export ASYNCLOOP_BACKEND=$backend
  label=" (ASan, library with ASan, $backend)"
  p=$(free_port); session "palindrome" "$p" "$san/palindrome" "$p"
  p=$(free_port); session "server" "$p" "$san/server" --pg "$url" --upstream "http://127.0.0.1:$upport" --upstream-timeout 500 127.0.0.1 "$p"
  # shellcheck disable=SC2046
  p=$(free_port); label=" (TLS, ASan, library with ASan, $backend)" tls_session "server-tls" "$p" "$san/server" --pg "$url" $(tls_args) 127.0.0.1 "$p"
done
unset ASYNCLOOP_BACKEND
for t in "$ctests"/*.asan; do
  n=$(basename "$t")
  ALOOP_TEST_PG="$url" "$t" > "$tmp/$n.out" 2>&1 \
    && ! grep -qE "AddressSanitizer|LeakSanitizer|runtime error" "$tmp/$n.out" && ok "$n (library with ASan)" || bad "$n (library with ASan)" "$tmp/$n.out"
done
unset LD_LIBRARY_PATH

# valgrind memcheck of the plain builds, on epoll: valgrind 3.19 does not model io_uring well
# enough (it holds its lock in io_uring_enter, and a long session on io_uring hung or crashed
# under it while the same session runs clean natively and under ASan).
vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite)
export ASYNCLOOP_BACKEND=epoll
label=" (valgrind, epoll)"
p=$(free_port); session "palindrome" "$p" "${vg[@]}" "$bin/palindrome" "$p"
p=$(free_port); session "server" "$p" "${vg[@]}" "$bin/server" --pg "$url" --upstream "http://127.0.0.1:$upport" --upstream-timeout 500 127.0.0.1 "$p"
# No TLS session under valgrind: memcheck 3.19 does not follow ring's AES-GCM assembly and
# reports its output as uninitialised (a conditional jump in ring's open_within, then the sealed
# records "uninitialised" in send), though every output buffer is zero-filled before ring
# writes it. The TLS sessions above run under ASan+UBSan with the library instrumented.
unset ASYNCLOOP_BACKEND

echo "sanitize: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
