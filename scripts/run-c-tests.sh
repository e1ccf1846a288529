#!/usr/bin/env bash
# Runs the C test programs built by the Makefile: each plainly, each under AddressSanitizer +
# UBSan (checking that the sanitizer runtime is really linked), and test_tcp (both backends),
# test_http, test_http_prepared, test_ws, test_cpp_stream, test_listen_fd and test_signal under valgrind memcheck. Prints one line
# per run and a closing "N passed, N failed".
#
# test_http and those after it run under valgrind on epoll only: valgrind 3.19 keeps its
# global lock while a thread sits in io_uring_enter, so another thread's post cannot run until
# the wait times out.
# Usage: scripts/run-c-tests.sh BUILD_TEST_DIR TEST...
set -u
dir=$1
shift
passed=0
failed=0
run() {
  local name=$1
  shift
  local log
  log=$(mktemp)
  if timeout 300 "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok    $name: $(grep -v '^==' "$log" | tail -n 1)"  # the test's summary, not valgrind's notes
  else
    failed=$((failed + 1))
    echo "FAIL  $name"
    sed 's/^/      /' "$log" | tail -n 40
  fi
  rm -f "$log"
}
# test_pg needs a database: a throwaway cluster for the length of the run, under /tmp (the
# postgres user may not be able to enter the checkout's folders).
here=$(cd "$(dirname "$0")" && pwd)
pgdir=$(mktemp -d /tmp/asyncloop-ctest.XXXXXX)
if ALOOP_TEST_PG=$("$here/pg.sh" start "$pgdir"); then
  export ALOOP_TEST_PG
  trap '"$here/pg.sh" stop "$pgdir" >/dev/null 2>&1' EXIT
else
  echo "FAIL  could not start a PostgreSQL cluster for test_pg"
  failed=$((failed + 1))
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for t in "$@"; do
  run "$t" "$dir/$t"
  if ldd "$dir/$t.asan" | grep -q libasan; then
    run "$t (asan+ubsan)" "$dir/$t.asan"
  else
    failed=$((failed + 1))
    echo "FAIL  $t (asan+ubsan): the sanitizer runtime is not linked"
  fi
done
if command -v valgrind >/dev/null; then
  vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite)
  run "test_tcp (valgrind)" "${vg[@]}" "$dir/test_tcp"
  run "test_http (valgrind, epoll)" env ASYNCLOOP_BACKEND=epoll "${vg[@]}" "$dir/test_http"
  run "test_http_prepared (valgrind, epoll)" env ASYNCLOOP_BACKEND=epoll "${vg[@]}" "$dir/test_http_prepared"
  run "test_ws (valgrind, epoll)" env ASYNCLOOP_BACKEND=epoll "${vg[@]}" "$dir/test_ws"
  run "test_cpp_stream (valgrind, epoll)" env ASYNCLOOP_BACKEND=epoll "${vg[@]}" "$dir/test_cpp_stream"
  run "test_listen_fd (valgrind, epoll)" env ASYNCLOOP_BACKEND=epoll "${vg[@]}" "$dir/test_listen_fd"
  run "test_signal (valgrind, epoll)" env ASYNCLOOP_BACKEND=epoll "${vg[@]}" "$dir/test_signal"
else
  failed=$((failed + 1))
  echo "FAIL  valgrind is not installed (scripts/deps.sh test installs it)"
fi
echo "c-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
