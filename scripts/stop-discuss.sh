#!/usr/bin/env bash
# Stops a server started by start-discuss.sh: SIGTERM, then SIGKILL after 5 s.
#   scripts/stop-discuss.sh PID
set -uo pipefail
PID="${1:?usage: stop-discuss.sh PID}"
kill -0 "$PID" 2>/dev/null || exit 0
kill "$PID" 2>/dev/null || true
for _ in $(seq 50); do
  kill -0 "$PID" 2>/dev/null || exit 0
  sleep 0.1
done
echo "stop-discuss: $PID did not exit on SIGTERM within 5s, killing it" >&2
kill -9 "$PID" 2>/dev/null || true
