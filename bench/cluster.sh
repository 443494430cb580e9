#!/usr/bin/env bash
# Many sockets over several `discuss` nodes on one broker, on this machine
# (issue 27): starts the broker, NODES discuss processes and the `cluster`
# generator (bench/src/bin/cluster.rs, which splits the sockets over
# generator processes under the per-process file limit), runs the phases
# join, deliveries, presence and failover, prints their JSON lines, and
# kills everything it started at the end, even on failure.
#
#   bench/cluster.sh                                  # small: 8 nodes x 500 sockets, nats and cluster
#   ENGINES=nats SOCKETS=100000 TOPICS=1000 ROOMS=100 BURST=10000 bench/cluster.sh   # the full run
#
# Engines: nats (nats-server -js: comments:* keep their history in
# JetStream), cluster (Redis Cluster, 3 masters; ports P and P+10000 must be
# free), redis (one redis-server).
#
# Sizes (environment): NODES=8 SOCKETS=4000 TOPICS=100 ROOMS=10 (0: no
# presence) RATE=200 (pushes per second over all topics) DURATION=10
# (deliveries window, s) BURST=1000 (presence joins measured for
# convergence) KILL=7 (the node killed in the failover phase; KILL= skips
# it) FAIL_DURATION=20 RECOVER_SHARE=0.5 (share of sockets that rejoin
# with their last position) BACK_TIMEOUT=120 (s for every client to be
# back after the kill, or the run fails) STRICT=1 (the run fails too when a
# socket that rejoined with its position lost or got twice a broadcast) PROCS (generator processes; default one per
# 12 000 sockets) CONCURRENCY=64 (joins in flight per generator process).
# NODE_EXTRA_ENV="VAR=value ..." more environment for every node.
# OUT=path keeps the JSON lines (default target/bench/cluster.jsonl).
# NO_BUILD=1 skips the build. KEEP_WORK=1 keeps the broker's and the nodes' logs.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ENGINES=${ENGINES:-nats cluster}
NODES_N=${NODES:-8}
SOCKETS=${SOCKETS:-4000}
TOPICS=${TOPICS:-100}
ROOMS=${ROOMS:-10}
RATE=${RATE:-200}
DURATION=${DURATION:-10}
BURST=${BURST:-1000}
KILL=${KILL-$((NODES_N - 1))}
FAIL_DURATION=${FAIL_DURATION:-20}
RECOVER_SHARE=${RECOVER_SHARE:-0.5}
BACK_TIMEOUT=${BACK_TIMEOUT:-120}
PROCS=${PROCS:-0}
CONCURRENCY=${CONCURRENCY:-64}
OUT=${OUT:-target/bench/cluster.jsonl}
TOKEN=bench-$$
T=target/release

# Each node and each generator process stays under this (20 000 here).
ulimit -n "$(ulimit -Hn)"
per_node=$(( (SOCKETS + BURST) / NODES_N + 1 ))
if [ -n "$KILL" ] && [ "$NODES_N" -gt 1 ]; then
    # After the kill the survivors hold the dead node's sockets too.
    per_node=$(( (SOCKETS + BURST) / (NODES_N - 1) + 1 ))
fi
if [ "$per_node" -gt $(( $(ulimit -n) - 512 )) ]; then
    echo "cluster.sh: $per_node sockets per node would pass the open-file limit $(ulimit -n); add NODES" >&2
    exit 2
fi

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --example discuss -p phx-channels >&2
    cargo build --release -p bench --bin cluster >&2
fi
mkdir -p "$(dirname "$OUT")" target/bench
: >"$OUT"
WORK=$(mktemp -d "$ROOT/target/bench/cluster.XXXXXX")

# stop_all, cleanup, free_port, wait_listening, start_broker, start_nodes
source bench/brokers.sh
trap cleanup EXIT INT TERM

# Every client address may hold many connections to one node; NODE_EXTRA_ENV
# ("VAR=value ...") adds to every node's environment (DISCUSS_MAX_CONNECTIONS=400
# makes the survivors refuse the killed node's clients: the run must then fail).
NODE_ENV=(DISCUSS_MAX_CONNECTIONS_PER_SOURCE=0)
# shellcheck disable=SC2206 # split on purpose
[ -n "${NODE_EXTRA_ENV:-}" ] && NODE_ENV+=(${NODE_EXTRA_ENV})
status=0
for engine in $ENGINES; do
    start_broker "$engine"
    start_nodes "$engine" "$NODES_N"
    echo "== cluster on $engine ($BROKER_DESC; $NODES_N nodes ${NODES[*]}; $SOCKETS sockets; load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    kill_args=()
    [ -n "$KILL" ] && kill_args=(--kill "$KILL" --fail-duration "$FAIL_DURATION" --back-timeout "$BACK_TIMEOUT")
    [ -n "$KILL" ] && [ -n "${STRICT:-}" ] && kill_args+=(--strict)
    # The generator in the background, so a signal reaches the trap at once.
    "$T/cluster" --label "$engine" --token "$TOKEN" \
        --nodes "$(IFS=,; echo "${NODES[*]}")" --pids "$(IFS=,; echo "${NODE_PIDS[*]}")" \
        --broker-pids "$(IFS=,; echo "${BROKER_PIDS[*]}")" \
        --sockets "$SOCKETS" --topics "$TOPICS" --rooms "$ROOMS" --rate "$RATE" --duration "$DURATION" \
        --burst "$BURST" --recover-share "$RECOVER_SHARE" --procs "$PROCS" --concurrency "$CONCURRENCY" \
        "${kill_args[@]}" >"$WORK/out.jsonl" &
    gen=$!
    PIDS+=("$gen")
    rc=0
    wait "$gen" || rc=$?
    tee -a "$OUT" <"$WORK/out.jsonl"
    if [ "$rc" -ne 0 ]; then
        echo "== cluster on $engine failed ($rc); node logs in the last lines:" >&2
        for f in "$WORK"/node-*.log; do tail -3 "$f" >&2; done
        status=1
    fi
    stop_all
    sleep 1
done
exit "$status"
