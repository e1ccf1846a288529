#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, `make run` and the benchmark.
#
#   scripts/pg.sh start DIR [PORT]   initdb in DIR, start on 127.0.0.1:PORT (default: a free
#                                    port) with its socket in DIR, create database "asyncloop"
#                                    with scripts/schema.sql; prints the conninfo URL
#   scripts/pg.sh standby DIR PRIMARY_DIR [PORT]
#                                    a streaming replica of the cluster in PRIMARY_DIR:
#                                    pg_basebackup -R into DIR, started read-only (hot standby)
#                                    on 127.0.0.1:PORT; prints its URL once it streams
#   scripts/pg.sh promote DIR        promotes a standby to a primary (pg_ctl promote, waits)
#   scripts/pg.sh url DIR            prints the URL of a started cluster
#   scripts/pg.sh stop DIR           stops it (fast) and removes DIR
#
# initdb refuses to run as root: as root the cluster belongs to the `postgres` user.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|standby|promote|url|stop DIR ..." >&2; exit 2; }

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] && command -v pg_config >/dev/null; then bindir=$(pg_config --bindir); fi
[ -x "$bindir/initdb" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

url() { echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/asyncloop?sslmode=disable"; }

# The server options every cluster here runs with (a test cluster: no durability).
server_opts() {
  echo "-p $1 -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
}

case "$cmd" in
  start)
    port=${3:-$(free_port)}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    echo "$port" > "$dir/port"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o "$(server_opts "$port")" >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bindir/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE asyncloop" >/dev/null
    as_owner "$bindir/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d asyncloop -f "$here/schema.sql" >/dev/null
    url
    ;;
  standby)
    primary=${3:-}
    [ -n "$primary" ] && [ -f "$primary/port" ] || { echo "usage: $0 standby DIR PRIMARY_DIR [PORT]" >&2; exit 2; }
    port=${4:-$(free_port)}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    # -R writes standby.signal and primary_conninfo; -X stream copies the WAL it needs.
    as_owner "$bindir/pg_basebackup" -h 127.0.0.1 -p "$(cat "$primary/port")" -U postgres -D "$dir/data" \
      -R -X stream -c fast >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; exit 1; }
    echo "$port" > "$dir/port"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o "$(server_opts "$port")" >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    # Ready once it replays from the primary (its walreceiver is streaming).
    for _ in $(seq 1 100); do
      state=$(as_owner "$bindir/psql" -qAt -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null || true)
      [ "$state" = streaming ] && break
      sleep 0.1
    done
    [ "$state" = streaming ] || { echo "pg.sh: the standby does not stream" >&2; cat "$dir/server.log" >&2; exit 1; }
    url
    ;;
  promote)
    as_owner "$bindir/pg_ctl" -D "$dir/data" -w -t 30 promote >/dev/null
    ;;
  url)
    url
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|standby|promote|url|stop DIR ..." >&2
    exit 2
    ;;
esac
