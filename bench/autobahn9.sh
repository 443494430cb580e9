#!/usr/bin/env bash
# Autobahn|Testsuite's section 9 (performance: messages of 64 KiB to 16 MiB,
# whole, fragmented and chopped into small writes, and 1 000-message round
# trips) as a benchmark (issue 25): the `echo` example (a raw transport on
# the framework's own framing, examples/echo.rs) against the floor, a bare
# tokio-tungstenite echo (bench/src/bin/echo_floor.rs), alternated ROUNDS
# times in one run. Every case must still be OK (scripts/autobahn/run.sh
# checks each report). Prints, per target and round, the server's CPU time
# over the section (utime + stime from /proc) and wstest's wall time per
# case, then a table of ratios to the floor (bench/autobahn9_table.py).
#
#   bench/autobahn9.sh                  # ROUNDS=2, targets floor echo echo-tls
#   TARGETS="floor echo" ROUNDS=3 bench/autobahn9.sh
#
# Targets: floor, echo (ws://), echo-tls (wss://, the example's --tls),
# echo-deflate (--compress: section 9 offers no compression, so this is the
# cost of the extension being on and not agreed).
# The client is wstest (Python 2.7, with wsaccel's C masking and UTF-8
# validation): its wall time bounds what the cases show, so the server's
# CPU time is the figure that compares the servers.
# OUT=path keeps the JSON lines (default target/bench/autobahn9.jsonl).
# NO_BUILD=1 skips the build.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-2}
TARGETS=${TARGETS:-floor echo echo-tls}
OUT=${OUT:-target/bench/autobahn9.jsonl}
T=target/release

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --example echo -p phx-channels >&2
    cargo build --release -p bench --bin echo_floor >&2
fi
scripts/autobahn/setup.sh >&2
mkdir -p "$(dirname "$OUT")" target/bench
: >"$OUT"
WORK=$(mktemp -d "$ROOT/target/bench/autobahn9.XXXXXX")

PID=""
stop() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=""
    fi
}
trap stop EXIT INT TERM

# cpu_ticks PID: utime + stime of the process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# start NAME: starts the target, sets PID and URL.
start() {
    local log="$WORK/$1.log" base
    case "$1" in
        floor) "$T/echo_floor" >"$log" 2>&1 & ;;
        echo) "$T/examples/echo" --port 0 >"$log" 2>&1 & ;;
        echo-tls) "$T/examples/echo" --port 0 --tls >"$log" 2>&1 & ;;
        echo-deflate) "$T/examples/echo" --port 0 --compress >"$log" 2>&1 & ;;
        *) echo "autobahn9.sh: no target $1" >&2; exit 2 ;;
    esac
    PID=$!
    for _ in $(seq 100); do
        base=$(sed -n 's/^listening on //p' "$log" | head -n 1)
        if [ -n "$base" ]; then
            URL=$base
            return 0
        fi
        sleep 0.1
    done
    cat "$log" >&2
    echo "autobahn9.sh: $1 did not start" >&2
    exit 1
}

hz=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
    for target in $TARGETS; do
        start "$target"
        before=$(cpu_ticks "$PID")
        started=$EPOCHREALTIME
        CASES='["9.*"]' EXCLUDE='[]' scripts/autobahn/run.sh "$URL" "$WORK/$target-$round" "$target" >"$WORK/$target-$round.check" 2>&1 || {
            cat "$WORK/$target-$round.check" >&2
            echo "autobahn9.sh: $target: a case of section 9 is not OK" >&2
            exit 1
        }
        wall=$(awk "BEGIN { printf \"%.2f\", $EPOCHREALTIME - $started }")
        after=$(cpu_ticks "$PID")
        stop
        python3 - "$WORK/$target-$round/index.json" "$target" "$round" "$(( after - before ))" "$hz" "$wall" >>"$OUT" <<'PY'
import json, sys
index, target, round_, ticks, hz, wall = sys.argv[1:]
cases = json.load(open(index))[target]
print(json.dumps({"target": target, "round": int(round_), "cpu_s": int(ticks) / float(hz), "wall_s": float(wall),
                  "cases_ms": {c: v["duration"] for c, v in cases.items()}}))
PY
        echo "autobahn9.sh: $target round $round: cpu $(( (after - before) * 1000 / hz )) ms, wall ${wall}s" >&2
    done
done
cat "$OUT"
python3 bench/autobahn9_table.py "$OUT"
