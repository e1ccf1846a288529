#!/usr/bin/env bash
# Installs what building and testing asyncloop needs and the machine lacks: Debian packages
# (as root, through apt-get; otherwise prints the exact command) and llhttp's C sources.
# Usage: scripts/deps.sh [--check] [build|test|run|bench|fuzz|docs]   (default: test)
#   build  compilers, pkg-config, libpq and nlohmann-json headers
#   test   build's, plus valgrind, curl, PostgreSQL, ASan runtimes, Doxygen, Chromium, CMake,
#          Python's websockets (PyPI, pinned: the WebSocket peer of the end-to-end tests)
#   run    build's, plus curl and PostgreSQL          bench  build's, plus wrk, nginx, h2o, websockets
#   fuzz   build's, plus cargo-fuzz                   docs   build's, plus Doxygen
# --check installs nothing: it lists what is missing with the command that installs it, and
# fails. Plain `make` uses it; `make deps`, `make test`, `make run`, `make bench`, `make fuzz`
# and `make docs` install.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
check_only=0
if [ "${1:-}" = --check ]; then
  check_only=1
  shift
fi
what=${1:-test}
case "$what" in
  build|test|run|bench|fuzz|docs) ;;
  *) echo "usage: $0 [--check] [build|test|run|bench|fuzz|docs]" >&2; exit 2 ;;
esac

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
want_cmd() { have "$1" || need_pkgs+=("$2"); }

want_cmd cc gcc
want_cmd c++ g++
want_cmd make make
want_cmd python3 python3
want_cmd pkg-config pkg-config
# Headers: libpq (pq-sys links it), nlohmann-json (server.cpp parses JSON with it).
[ -f /usr/include/postgresql/libpq-fe.h ] || need_pkgs+=(libpq-dev)
[ -f /usr/include/nlohmann/json.hpp ] || need_pkgs+=(nlohmann-json3-dev)
case "$what" in
  test|run)
    want_cmd curl curl
    # TLS tests: the openssl command line makes the test certificates and is a peer
    # (s_client, s_server); nginx-light serves TLS to the client; the system's CA store.
    want_cmd openssl openssl
    want_cmd nginx nginx-light
    [ -f /etc/ssl/certs/ca-certificates.crt ] || need_pkgs+=(ca-certificates)
    # A throwaway PostgreSQL cluster needs the server binaries and runuser (util-linux).
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
    # The PgBouncer tests run a throwaway pgbouncer in front of a throwaway cluster.
    [ -x /usr/sbin/pgbouncer ] || have pgbouncer || need_pkgs+=(pgbouncer)
    ;;
esac
case "$what" in
  test)
    want_cmd valgrind valgrind
    # make test-docs: the API reference (Doxygen) rendered in headless Chromium;
    # make test-install: a consumer project built with CMake.
    want_cmd doxygen doxygen
    want_cmd chromium chromium
    want_cmd cmake cmake
    ;;
  docs)
    want_cmd doxygen doxygen
    ;;
  bench)
    want_cmd wrk wrk
    want_cmd nginx nginx
    want_cmd h2o h2o
    # New TLS handshakes per second (h2load --h1).
    want_cmd h2load nghttp2-client
    want_cmd openssl openssl
    want_cmd valgrind valgrind   # make bench-instr: callgrind
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
    ;;
esac
# AddressSanitizer/UBSan runtimes for gcc (libasan/libubsan come with gcc on Debian; check).
if [ "$what" = test ] && have cc; then
  tmp=$(mktemp -d)
  echo 'int main(void){return 0;}' > "$tmp/t.c"
  if ! cc -fsanitize=address,undefined "$tmp/t.c" -o "$tmp/t" 2>/dev/null; then
    need_pkgs+=(libasan8 libubsan1)
  fi
  rm -rf "$tmp"
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$check_only" = 1 ]; then
    echo "deps: missing Debian packages: ${need_pkgs[*]}" >&2
    if [ "$(id -u)" = 0 ]; then
      echo "deps: run  make deps  (or: apt-get install -y ${need_pkgs[*]})" >&2
    else
      echo "deps: run  sudo apt-get install -y ${need_pkgs[*]}" >&2
    fi
    exit 1
  fi
  if [ "$(id -u)" = 0 ]; then
    echo "deps: installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "deps: missing packages. Run:  sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

# Python's websockets, pinned: the other WebSocket implementation of the end-to-end tests and
# the reference echo server of the bench. Installed for the python3 that runs them.
WEBSOCKETS_VERSION=17.4
if [ "$what" = test ] || [ "$what" = bench ]; then
  have_ws=$(python3 -c 'import websockets; print(websockets.__version__)' 2>/dev/null || true)
  if [ "$have_ws" != "$WEBSOCKETS_VERSION" ]; then
    if [ "$check_only" = 1 ]; then
      echo "deps: Python's websockets $WEBSOCKETS_VERSION is missing; run  python3 -m pip install websockets==$WEBSOCKETS_VERSION" >&2
      exit 1
    fi
    echo "deps: installing websockets==$WEBSOCKETS_VERSION (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check "websockets==$WEBSOCKETS_VERSION" 2>&1 | grep -v "^WARNING: Running pip as the 'root' user" || true
    python3 -c 'import websockets' || { echo "deps: websockets did not install" >&2; exit 1; }
  fi
fi

if [ "$what" = fuzz ] && ! cargo fuzz --version >/dev/null 2>&1; then
  if [ "$check_only" = 1 ]; then
    echo "deps: cargo-fuzz is missing; run  cargo install cargo-fuzz --locked" >&2
    exit 1
  fi
  echo "deps: installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked
fi

"$here/fetch-llhttp.sh"
