#!/usr/bin/env bash
# Runs every load scenario against the `discuss` example and the `floor`
# server (bare tokio-tungstenite), with the same generator and the same N, and
# prints the JSON lines and a table of ratios (discuss / floor).
#
#   bench/run.sh                    # every scenario, sizes below (a few minutes)
#   bench/run.sh idle fanout        # some scenarios only
#   IDLE_N=19000 bench/run.sh idle  # ~19 000 idle sockets (two generator processes)
#
# Sizes (environment): IDLE_N=10000 IDLE_TOPICS=100 FANOUT_N=5000 FANOUT_M=20
# RTT_N=200 RTT_S=10 CHURN_C=32 CHURN_S=20. OUT=path keeps the JSON lines
# (default target/bench/results.jsonl). Each scenario gets fresh servers.
set -euo pipefail

cd "$(dirname "$0")/.."
IDLE_N=${IDLE_N:-10000}
IDLE_TOPICS=${IDLE_TOPICS:-100}
FANOUT_N=${FANOUT_N:-5000}
FANOUT_M=${FANOUT_M:-20}
RTT_N=${RTT_N:-200}
RTT_S=${RTT_S:-10}
CHURN_C=${CHURN_C:-32}
CHURN_S=${CHURN_S:-20}
OUT=${OUT:-target/bench/results.jsonl}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(idle fanout rtt churn)

# The generator may hold ~10 000 sockets per process: raise its soft limit.
ulimit -n "$(ulimit -Hn)"

cargo build --release --example discuss -p phx-channels >&2
cargo build --release -p bench --bins >&2
T=target/release
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
LOGS=$(mktemp -d)

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# start NAME: starts the server on a free port; sets PID and PORT.
STARTS=0
start() {
    STARTS=$((STARTS + 1))
    # A log of its own per start, so an earlier server's port is never read.
    local name=$1 log=$LOGS/$1-$STARTS.log
    : >"$log"
    case $name in
        # A fresh SQLite file per start: the comments of one run are not the next's.
        discuss) DATABASE_URL="sqlite://$LOGS/discuss-$STARTS.db" RUST_LOG=${RUST_LOG:-warn} \
            "$T/examples/discuss" --port 0 >"$log" 2>&1 & ;;
        floor) "$T/floor" --port 0 >"$log" 2>&1 & ;;
    esac
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do
        PORT=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
        [ -n "$PORT" ] && return 0
        sleep 0.1
    done
    echo "$name did not start; its log:" >&2
    cat "$log" >&2
    exit 1
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
}

# run SCENARIO ARGS...: runs it against discuss, then floor, on fresh servers.
run() {
    local scenario=$1
    shift
    for server in discuss floor; do
        start "$server"
        echo "== $scenario vs $server (pid $PID, port $PORT; load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
        "$T/loadgen" --url "ws://127.0.0.1:$PORT/socket" --pid "$PID" --label "$server" \
            --scenario "$scenario" "$@" | tee -a "$OUT"
        stop
        sleep 1
    done
}

for s in "${SCENARIOS[@]}"; do
    case $s in
        idle) run idle --sockets "$IDLE_N" --topics "$IDLE_TOPICS" --procs $(((IDLE_N + 8999) / 9000)) --settle 3 ;;
        fanout) run fanout --sockets "$FANOUT_N" --messages "$FANOUT_M" ;;
        rtt) run rtt --sockets "$RTT_N" --topics "$RTT_N" --duration "$RTT_S" ;;
        churn) run churn --concurrency "$CHURN_C" --duration "$CHURN_S" --topics 100 --settle 3 ;;
        *) echo "unknown scenario $s (idle fanout rtt churn)" >&2; exit 2 ;;
    esac
done

python3 bench/ratios.py "$OUT"
