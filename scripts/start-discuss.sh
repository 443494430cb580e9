#!/usr/bin/env bash
# Starts the already built `discuss` example in the background and waits until
# it accepts connections. Builds nothing: run
#   cargo build --release --example discuss
# first.
#
#   scripts/start-discuss.sh [PORT]
#
# PORT defaults to a free port picked by the OS. Environment:
#   DISCUSS_BIN            binary (default target/release/examples/discuss)
#   DISCUSS_LOG            log file (default tests/js/artifacts/discuss-PORT.log)
#   DISCUSS_ADMIN_TOKEN    token of POST /api/disconnect (default test-admin-token)
#   DISCUSS_DASHBOARD_TOKEN  token of GET /dashboard (default test-dashboard-token)
#   DISCUSS_START_TIMEOUT  seconds to wait for the "listening on" line (default 30)
#   DISCUSS_DATA           the server's working directory, emptied first
#                          (default tests/js/artifacts/discuss-PORT): without
#                          DATABASE_URL the server keeps its comments in
#                          discuss.db there, so every start has none yet (the
#                          tests expect an empty topic to replay nothing)
#   DATABASE_URL           passed on when set (sqlite:... or postgres://...)
#
# On success prints, as shell assignments (use `eval "$(scripts/start-discuss.sh)"`):
#   DISCUSS_PID=<pid>
#   DISCUSS_PORT=<port>
#   DISCUSS_URL=ws://127.0.0.1:<port>/socket
#   DISCUSS_LOG=<log file>
#   DISCUSS_ADMIN_TOKEN=<token>, DISCUSS_DASHBOARD_TOKEN=<token>
# and leaves the server running: stop it with `kill "$DISCUSS_PID"`
# (scripts/stop-discuss.sh PID does that with a deadline).
# On failure (no binary, the server exits, or no "listening on" line in time)
# it prints the log to stderr, kills the server and exits 1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${DISCUSS_BIN:-$ROOT/target/release/examples/discuss}"
TIMEOUT="${DISCUSS_START_TIMEOUT:-30}"

if [ ! -x "$BIN" ]; then
  echo "start-discuss: $BIN not found; run: cargo build --release --example discuss" >&2
  exit 1
fi
# Absolute: the server runs in its data directory.
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

PORT="${1:-$("$ROOT/scripts/free-port.sh")}"
LOG="${DISCUSS_LOG:-$ROOT/tests/js/artifacts/discuss-$PORT.log}"
mkdir -p "$(dirname "$LOG")"
: >"$LOG"
DATA="${DISCUSS_DATA:-$ROOT/tests/js/artifacts/discuss-$PORT}"
rm -rf "$DATA"
mkdir -p "$DATA"

# The server's output goes to the log only, so a caller capturing our stdout
# with $(...) does not wait for the server to exit.
# NO_COLOR keeps tracing's ANSI colours out of the log file.
# The admin route (POST /api/disconnect) is closed without a token; the
# tests use this one.
# So is the dashboard (GET /dashboard?token=...).
ADMIN_TOKEN="${DISCUSS_ADMIN_TOKEN:-test-admin-token}"
DASHBOARD_TOKEN="${DISCUSS_DASHBOARD_TOKEN:-test-dashboard-token}"
(cd "$DATA" && NO_COLOR=1 DISCUSS_ADMIN_TOKEN="$ADMIN_TOKEN" DISCUSS_DASHBOARD_TOKEN="$DASHBOARD_TOKEN" \
  exec "$BIN" --port "$PORT" </dev/null >>"$LOG" 2>&1) &
PID=$!

started=0
fail() {
  echo "start-discuss: $1" >&2
  echo "----- $LOG -----" >&2
  cat "$LOG" >&2 || true
  echo "----- end of log -----" >&2
  exit 1
}
# Kill the server on every exit path except success.
on_exit() {
  if [ "$started" != 1 ]; then
    kill "$PID" 2>/dev/null || true
    sleep 0.2
    kill -9 "$PID" 2>/dev/null || true
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

deadline=$((SECONDS + TIMEOUT))
while :; do
  if line=$(grep -m1 -E '^listening on http://[^ ]+:[0-9]+$' "$LOG"); then
    [ "${line##*:}" = "$PORT" ] || fail "server says '$line' but was asked for port $PORT"
    break
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    wait "$PID" && code=0 || code=$?
    fail "the server exited (status $code) before printing 'listening on http://HOST:$PORT'"
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "no 'listening on http://HOST:$PORT' line within ${TIMEOUT}s"
  sleep 0.1
done

started=1
echo "DISCUSS_PID=$PID"
echo "DISCUSS_PORT=$PORT"
echo "DISCUSS_URL=ws://127.0.0.1:$PORT/socket"
echo "DISCUSS_LOG=$LOG"
echo "DISCUSS_ADMIN_TOKEN=$ADMIN_TOKEN"
echo "DISCUSS_DASHBOARD_TOKEN=$DASHBOARD_TOKEN"
