#!/usr/bin/env bash
# `make run`: a throwaway PostgreSQL with the sample data, then the example server on
# 127.0.0.1:8080 in the foreground. Ctrl-C stops both. Extra arguments go to the server.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/asyncloop-run.XXXXXX)
cleanup() { "$top/scripts/pg.sh" stop "$dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
echo "starting a throwaway PostgreSQL in $dir ..."
url=$("$top/scripts/pg.sh" start "$dir")
echo "database: $url"
echo "server: http://127.0.0.1:8080 (try /plaintext, /json, /db, /queries?queries=5, /fortunes, /books); Ctrl-C stops"
# Not exec: the trap must run to remove the cluster when the server exits.
"$top/build/bin/server" --pg "$url" "$@" 127.0.0.1 8080 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' INT TERM
wait $server || true
wait $server 2>/dev/null || true
