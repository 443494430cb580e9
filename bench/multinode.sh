#!/usr/bin/env bash
# Runs the multi-node scenarios (bench/src/bin/multinode.rs) against several
# `discuss` nodes sharing a broker, per engine, and prints the JSON lines.
# Every scenario gets a fresh broker and fresh nodes on free ports; all of
# them are killed at the end, even on failure.
#
#   bench/multinode.sh                           # routing burst presence, every engine
#   ENGINES=redis bench/multinode.sh routing     # one engine, one scenario
#   ENGINES="before redis" bench/multinode.sh routing burst
#
# Engines: redis (redis-server), cluster (3 masters, redis-server
# --cluster-enabled yes; ports P and P+10000 must be free), nats
# (nats-server), and before: standalone Redis with the code of commit
# 867e640 (one shared Redis channel), built in the git worktree BEFORE_DIR
# (default ../wt-before; made and built on first use, with the one-line
# DISCUSS_MAX_BROADCASTS_PER_SECOND knob of the current example applied).
# The old code has no /api/stats: its inbound traffic is counted by an
# observer on Redis (PSUBSCRIBE *), as the new code's is too.
#
# Sizes (environment): ROUTING_SUBS=50 ROUTING_TOPICS=10 ROUTING_RATE=500
# ROUTING_SECS=10 ROUTING_IDLE=0 (nodes 0..N push nothing) BURST_SUBS=100
# BURST_MESSAGES=20000 BURST_WINDOW=100 BURST_STALL_MS=0 (the broker stopped
# that long mid-burst, so publishes back up while it is up)
# PRESENCE_USERS=1000,10000 PRESENCE_ROOMS=100 PRESENCE_BURST=1000
# PRESENCE_STEADY=10. OUT=path keeps the JSON lines (default
# target/bench/multinode.jsonl). NO_BUILD=1 skips the build.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ENGINES=${ENGINES:-redis cluster nats}
BEFORE_DIR=${BEFORE_DIR:-$ROOT/../wt-before}
BEFORE_COMMIT=867e640
ROUTING_SUBS=${ROUTING_SUBS:-50}
ROUTING_TOPICS=${ROUTING_TOPICS:-10}
ROUTING_RATE=${ROUTING_RATE:-500}
ROUTING_SECS=${ROUTING_SECS:-10}
ROUTING_IDLE=${ROUTING_IDLE:-0}
BURST_SUBS=${BURST_SUBS:-100}
BURST_MESSAGES=${BURST_MESSAGES:-20000}
BURST_WINDOW=${BURST_WINDOW:-100}
BURST_STALL_MS=${BURST_STALL_MS:-0}
PRESENCE_USERS=${PRESENCE_USERS:-1000,10000}
PRESENCE_ROOMS=${PRESENCE_ROOMS:-100}
PRESENCE_BURST=${PRESENCE_BURST:-1000}
PRESENCE_STEADY=${PRESENCE_STEADY:-10}
OUT=${OUT:-target/bench/multinode.jsonl}
TOKEN=bench-$$
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(routing burst presence)

# The generator holds ~11 000 sockets in the presence scenario.
ulimit -n "$(ulimit -Hn)"

T=target/release
build_before() {
    local bin=$BEFORE_DIR/target/release/examples/discuss
    [ -x "$bin" ] && return 0
    if [ ! -d "$BEFORE_DIR" ]; then
        git worktree add --detach "$BEFORE_DIR" "$BEFORE_COMMIT" >&2
    fi
    if ! grep -q DISCUSS_MAX_BROADCASTS_PER_SECOND "$BEFORE_DIR/examples/discuss/main.rs"; then
        # The knob the burst scenario needs (one client pushing faster than
        # the default 100 broadcasts/s per connection); the runtime is untouched.
        git -C "$BEFORE_DIR" apply <<'PATCH'
--- a/examples/discuss/main.rs
+++ b/examples/discuss/main.rs
@@ -204,7 +204,11 @@ async fn main() -> anyhow::Result<()> {
     let fd_limit = phx_channels::server::raise_fd_limit()?;
     tracing::debug!(fd_limit, "open-file limit");
 
-    let options = SocketOptions { longpoll: true, ..SocketOptions::default() };
+    let mut options = SocketOptions { longpoll: true, ..SocketOptions::default() };
+    // Benchmark knob, the same as on the branch multinode-bench (not part of 867e640).
+    if let Ok(n) = std::env::var("DISCUSS_MAX_BROADCASTS_PER_SECOND") {
+        options.max_broadcasts_per_second = n.parse()?;
+    }
     let admin_token = std::env::var("DISCUSS_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
     let pubsub = pubsub()?;
     let endpoint = Endpoint::with_state(App::new(pubsub.clone(), admin_token))
PATCH
    fi
    (cd "$BEFORE_DIR" && cargo build --release --example discuss >&2)
}

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --example discuss -p phx-channels >&2
    cargo build --release -p bench --bin multinode >&2
    case " $ENGINES " in *" before "*) build_before ;; esac
fi
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
WORK=$(mktemp -d "$ROOT/target/bench/multinode.XXXXXX")

# stop_all, cleanup, free_port, wait_listening, start_broker, start_nodes
source bench/brokers.sh
trap cleanup EXIT INT TERM

# run ENGINE SCENARIO NODES ARGS...
run() {
    local engine=$1 scenario=$2 n=$3
    shift 3
    start_broker "$engine"
    start_nodes "$engine" "$n"
    local observer=()
    [ -n "$REDIS_ADDR" ] && [ "$scenario" = routing ] && observer=(--redis "$REDIS_ADDR")
    echo "== $scenario on $engine ($BROKER_DESC; nodes ${NODES[*]}, pids ${NODE_PIDS[*]}; load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$T/multinode" --scenario "$scenario" --label "$engine" --token "$TOKEN" \
        --nodes "$(IFS=,; echo "${NODES[*]}")" --pids "$(IFS=,; echo "${NODE_PIDS[*]}")" \
        --broker-pids "$(IFS=,; echo "${BROKER_PIDS[*]}")" "${observer[@]}" "$@" | tee -a "$OUT"
    stop_all
    sleep 1
}

for s in "${SCENARIOS[@]}"; do
    for engine in $ENGINES; do
        case $s in
            routing) run "$engine" routing 3 --subscribers "$ROUTING_SUBS" --topics "$ROUTING_TOPICS" \
                --rate "$ROUTING_RATE" --duration "$ROUTING_SECS" --idle-nodes "$ROUTING_IDLE" ;;
            burst) run "$engine" burst 2 --subscribers "$BURST_SUBS" --messages "$BURST_MESSAGES" \
                --window "$BURST_WINDOW" --stall-broker-ms "$BURST_STALL_MS" ;;
            presence)
                if [ "$engine" = before ]; then
                    echo "== presence: skipped for before (the old presence has no batched deltas)" >&2
                    continue
                fi
                run "$engine" presence 3 --users "$PRESENCE_USERS" --rooms "$PRESENCE_ROOMS" \
                    --burst "$PRESENCE_BURST" --steady "$PRESENCE_STEADY" ;;
            *) echo "unknown scenario $s (routing burst presence)" >&2; exit 2 ;;
        esac
    done
done
