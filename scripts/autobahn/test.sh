#!/usr/bin/env bash
# The Autobahn|Testsuite stage of ./test.sh: installs wstest (setup.sh) if
# it is not there, then runs the fuzzingclient against the `echo` example
# (a raw transport that echoes, examples/echo.rs) in each configuration
# below, each on its own free port, and fails if any case of any run is
# not OK or INFORMATIONAL (run.sh checks each report).
#
#   scripts/autobahn/test.sh
#
# Needs the release build of the example: cargo build --release --examples.
#
# Configurations (AUTOBAHN_RUNS picks some, by name, space-separated):
#   plain   ws://, sections 1-7 and 10
#   tls     wss:// (the example's --tls: rustls, a self-signed certificate
#           made at start; the fuzzingclient does not check certificates
#           without a "hostname", so the run is about the framing and close
#           handling over TLS, the generic connection path), sections 1-7
#           and 10
#
# Environment:
#   ECHO_BIN       the example (default target/release/examples/echo)
#   AUTOBAHN_OUT   where the reports go (default tests/js/artifacts/autobahn)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${ECHO_BIN:-$ROOT/target/release/examples/echo}"
OUT="${AUTOBAHN_OUT:-$ROOT/tests/js/artifacts/autobahn}"
RUNS="${AUTOBAHN_RUNS:-plain tls}"

[ -x "$BIN" ] || { echo "autobahn: $BIN not found; run: cargo build --release --example echo" >&2; exit 1; }
"$ROOT/scripts/autobahn/setup.sh"

ECHO_PID=""
stop_echo() {
  if [ -n "$ECHO_PID" ]; then
    kill "$ECHO_PID" 2>/dev/null || true
    wait "$ECHO_PID" 2>/dev/null || true
    ECHO_PID=""
  fi
}
trap stop_echo EXIT

# start_echo NAME ARGS...: starts the example, sets ECHO_URL from the line
# it prints ("listening on URL").
start_echo() {
  local name=$1 log="$OUT/echo-$1.log"
  shift
  mkdir -p "$OUT"
  NO_COLOR=1 "$BIN" --port 0 "$@" >"$log" 2>&1 &
  ECHO_PID=$!
  for _ in $(seq 100); do
    ECHO_URL="$(sed -n 's/^listening on //p' "$log" | head -n 1)"
    [ -n "$ECHO_URL" ] && return 0
    kill -0 "$ECHO_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log" >&2
  echo "autobahn: the echo example ($name) did not start" >&2
  return 1
}

# run NAME CASES EXCLUDE ARGS...: one configuration.
run() {
  local name=$1 cases=$2 exclude=$3 status=0
  shift 3
  start_echo "$name" "$@" || return 1
  CASES="$cases" EXCLUDE="$exclude" "$ROOT/scripts/autobahn/run.sh" "$ECHO_URL" "$OUT/$name" "echo-$name" || status=$?
  kill -0 "$ECHO_PID" 2>/dev/null || { echo "autobahn: the echo example ($name) died" >&2; status=1; }
  stop_echo
  return "$status"
}

failed=0
for name in $RUNS; do
  case "$name" in
    plain) run plain '["*"]' '["9.*", "12.*", "13.*"]' || failed=1 ;;
    tls) run tls '["*"]' '["9.*", "12.*", "13.*"]' --tls || failed=1 ;;
    *) echo "autobahn: no configuration named $name" >&2; failed=1 ;;
  esac
done
exit "$failed"
