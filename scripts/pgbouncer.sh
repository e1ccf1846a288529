#!/usr/bin/env bash
# A throwaway PgBouncer in front of a throwaway PostgreSQL cluster (scripts/pg.sh), for tests
# and the benchmark.
#
#   scripts/pgbouncer.sh start DIR PG_DIR [PORT]
#                         pgbouncer on 127.0.0.1:PORT (default: a free port) in front of the
#                         cluster started in PG_DIR, with its config, log and socket in DIR.
#                         Database "asyncloop" is pooled in transaction mode (no session
#                         state: no named prepared statements, no LISTEN); "asyncloop_session"
#                         is the same database in session mode (for LISTEN). Prints the URL of
#                         the transaction-mode database.
#   scripts/pgbouncer.sh url DIR          prints that URL again
#   scripts/pgbouncer.sh session-url DIR  prints the URL of the session-mode database
#   scripts/pgbouncer.sh stop DIR         stops it and removes DIR
#
# pgbouncer refuses to run as root: as root it runs as the `postgres` user.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|url|session-url|stop DIR [PG_DIR [PORT]]" >&2; exit 2; }

bin=$(command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer)
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
url() { echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/$1?sslmode=disable"; }

case "$cmd" in
  start)
    pg=${3:-}
    [ -n "$pg" ] && [ -f "$pg/port" ] || { echo "usage: $0 start DIR PG_DIR [PORT]" >&2; exit 2; }
    [ -x "$bin" ] || { echo "pgbouncer.sh: pgbouncer not found (apt-get install pgbouncer)" >&2; exit 1; }
    port=${4:-$(free_port)}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    pgport=$(cat "$pg/port")
    echo "$port" > "$dir/port"
    echo '"postgres" ""' > "$dir/userlist.txt"
    cat > "$dir/pgbouncer.ini" <<INI
[databases]
asyncloop = host=127.0.0.1 port=$pgport dbname=asyncloop pool_mode=transaction
asyncloop_session = host=127.0.0.1 port=$pgport dbname=asyncloop pool_mode=session
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
server_lifetime = 3600
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    [ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
    as_owner "$bin" -d -q "$dir/pgbouncer.ini" || { cat "$dir/pgbouncer.log" >&2 2>/dev/null; exit 1; }
    # Ready when it answers a query through the pool.
    for _ in $(seq 1 100); do
      if as_owner psql -qAt "$(url asyncloop)" -c "SELECT 1" >/dev/null 2>&1; then
        url asyncloop
        exit 0
      fi
      sleep 0.1
    done
    echo "pgbouncer.sh: pgbouncer did not come up" >&2
    cat "$dir/pgbouncer.log" >&2 || true
    exit 1
    ;;
  url)
    url asyncloop
    ;;
  session-url)
    url asyncloop_session
    ;;
  stop)
    if [ -f "$dir/pgbouncer.pid" ]; then
      pid=$(cat "$dir/pgbouncer.pid")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|url|session-url|stop DIR [PG_DIR [PORT]]" >&2
    exit 2
    ;;
esac
