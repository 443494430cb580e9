#!/usr/bin/env bash
# The history benchmarks of issue 24: recbench (the generator) against
# recnode (a node of one `comments:*` channel, history off or on) and the
# floor server, on one node in memory and on real brokers started here on
# free loopback ports (Redis, a 3-master Redis Cluster, nats-server -js).
# Prints the JSON lines, then the tables (bench/recovery_table.py).
#
#   bench/recovery.sh                       # criterion cpu recover storm memory (~12 minutes)
#   bench/recovery.sh cpu                   # some scenarios only
#   ENGINES="memory redis" bench/recovery.sh recover
#
# Scenarios:
#   criterion  the criterion benches of a broadcast without history
#            (CRITERION_FILTER) of MAIN_REF and of this tree, alternated,
#            CRITERION_ROUNDS times
#   cpu      CPU per broadcast (1 subscriber) and per delivery (100
#            subscribers), ROUNDS times over the targets in turn: floor,
#            main (recnode built from MAIN_REF, which has no history),
#            off, memory (subscribers not asking for positions), memory+pos,
#            and per broker engine off and on+pos
#   recover  time to recover RECOVER_MISSED missed broadcasts on a rejoin,
#            RECOVER_RUNS times, per engine (memory redis cluster nats); on
#            a broker also rejoining on a second node new to the topic
#   storm    STORM_CLIENTS clients rejoining at once with positions
#            against one node (memory), against the same storm without
#            positions and against the floor, STORM_ROUNDS times, with each
#            listen backlog of STORM_BACKLOGS (1024 is tokio's default)
#   memory   what FILL_TOPICS topics keeping FILL_KEPT broadcasts of 200 B
#            cost, per engine: node RSS (memory, against history off),
#            Redis INFO used_memory and MEMORY USAGE of the keys, JetStream's
#            stream bytes, and the brokers' RSS
#
# Sizes (environment): ROUNDS=3 CPU_M1=20000 CPU_M100=2000 RECOVER_RUNS=200
# RECOVER_MISSED=100 STORM_CLIENTS=2000 STORM_TOPICS=20 STORM_MISSED=10
# STORM_ROUNDS=2
# STORM_BACKLOGS="1024 4096" FILL_TOPICS=1000 FILL_KEPT=100 BYTES=200. ENGINES="memory
# redis cluster nats". MAIN_REF=main: `main` is exported (git archive) to
# target/bench/main-src with this branch's recnode, bench/src/lib.rs and
# bench/Cargo.toml laid over it, and built without the `history` feature into target/main.
# CRITERION_ROUNDS=6 CRITERION_FILTER='broadcast/pubsub_no_subscribers|fanout/json_60B'.
# OUT=path keeps the JSON lines (default target/bench/recovery.jsonl).
# NO_BUILD=1 skips the builds.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
CPU_M1=${CPU_M1:-20000}
CPU_M100=${CPU_M100:-2000}
RECOVER_RUNS=${RECOVER_RUNS:-200}
RECOVER_MISSED=${RECOVER_MISSED:-100}
STORM_CLIENTS=${STORM_CLIENTS:-2000}
STORM_TOPICS=${STORM_TOPICS:-20}
STORM_MISSED=${STORM_MISSED:-10}
STORM_ROUNDS=${STORM_ROUNDS:-2}
STORM_BACKLOGS=${STORM_BACKLOGS:-1024 4096}
FILL_TOPICS=${FILL_TOPICS:-1000}
FILL_KEPT=${FILL_KEPT:-100}
BYTES=${BYTES:-200}
ENGINES=${ENGINES:-memory redis cluster nats}
CRITERION_ROUNDS=${CRITERION_ROUNDS:-6}
CRITERION_FILTER=${CRITERION_FILTER:-broadcast/pubsub_no_subscribers|fanout/json_60B}
MAIN_REF=${MAIN_REF:-main}
OUT=${OUT:-target/bench/recovery.jsonl}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(criterion cpu recover storm memory)

ulimit -n "$(ulimit -Hn)"
T=$ROOT/target/release
MAIN_BIN=$ROOT/target/main/release/recnode

build_main() {
    local src=$ROOT/target/bench/main-src
    rm -rf "$src"
    mkdir -p "$src"
    git archive "$MAIN_REF" | tar -x -C "$src"
    cp bench/Cargo.toml "$src/bench/Cargo.toml"
    cp bench/src/bin/recnode.rs "$src/bench/src/bin/recnode.rs"
    cp bench/src/lib.rs "$src/bench/src/lib.rs"
    (cd "$src" && CARGO_TARGET_DIR=$ROOT/target/main cargo build --release -p bench --no-default-features --bin recnode >&2)
    case " ${SCENARIOS[*]} " in
        *" criterion "*)
            (cd "$src" && CARGO_TARGET_DIR=$ROOT/target/main cargo bench -p bench --no-default-features --bench protocol --no-run >&2)
            cargo bench -p bench --bench protocol --no-run >&2
            ;;
    esac
}

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -p bench --bin recnode --bin recbench --bin floor >&2
    case " ${SCENARIOS[*]} " in *" cpu "* | *" criterion "*) build_main ;; esac
fi
mkdir -p "$ROOT/target/bench"
: >"$OUT"
WORK=$(mktemp -d "$ROOT/target/bench/recovery.XXXXXX")

# PIDS, stop_all, listening, free_port, wait_listening, start_broker
# (shared with multinode.sh); every process started is killed on exit.
. "$ROOT/bench/brokers.sh"
trap cleanup EXIT INT TERM

# start_node BIN ARGS...: a node (recnode or floor) on a free port, on the
# broker of BROKER_ENV; sets NODE_PID and NODE_URL.
start_node() {
    local bin=$1 log
    shift
    log=$WORK/node-$RANDOM$RANDOM.log
    : >"$log"
    env "${BROKER_ENV[@]}" "$bin" --port 0 "$@" >"$log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    local port
    port=$(listening_port "$log" "$bin $*")
    NODE_URL=ws://127.0.0.1:$port/socket
}

# gen LABEL ARGS...: runs the generator against the node started last.
gen() {
    local label=$1
    shift
    echo "== $label: $* (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$T/recbench" --url "$NODE_URL" --pid "$NODE_PID" --broker-pids "$(IFS=,; echo "${BROKER_PIDS[*]}")" \
        --label "$label" --bytes "$BYTES" "$@" | tee -a "$OUT"
}

no_broker() {
    BROKER_ENV=()
    BROKER_PIDS=()
}

# cpu_pair LABEL [--positions]: both sizes against the node started last.
cpu_pair() {
    local label=$1
    shift
    gen "$label" --scenario fanout --subscribers 1 --messages "$CPU_M1" "$@"
    gen "$label" --scenario fanout --subscribers 100 --messages "$CPU_M100" "$@"
}

cpu() {
    for round in $(seq "$ROUNDS"); do
        echo "== cpu round $round" >&2
        no_broker
        start_node "$T/floor"; cpu_pair floor; stop_all
        start_node "$MAIN_BIN" --history off; cpu_pair main-off; stop_all
        start_node "$T/recnode" --history off; cpu_pair off; stop_all
        start_node "$T/recnode" --history on; cpu_pair memory; stop_all
        start_node "$T/recnode" --history on; cpu_pair memory+pos --positions; stop_all
        for engine in $ENGINES; do
            [ "$engine" = memory ] && continue
            start_broker "$engine"
            start_node "$T/recnode" --history off; cpu_pair "$engine-off"
            kill -9 "$NODE_PID"
            wait "$NODE_PID" 2>/dev/null || true
            start_node "$T/recnode" --history on; cpu_pair "$engine+pos" --positions
            stop_all
        done
    done
}

recover() {
    local a_url
    for engine in $ENGINES; do
        if [ "$engine" = memory ]; then no_broker; else start_broker "$engine"; fi
        start_node "$T/recnode" --history on
        gen "$engine" --scenario recover --runs "$RECOVER_RUNS" --missed "$RECOVER_MISSED"
        if [ "$engine" != memory ]; then
            # Rejoining on a second node, which does not follow the topic:
            # it reads the broker's stream (its CPU is the one measured).
            a_url=$NODE_URL
            start_node "$T/recnode" --history on
            local b_url=$NODE_URL
            NODE_URL=$a_url
            gen "$engine/other node" --scenario recover --runs "$RECOVER_RUNS" --missed "$RECOVER_MISSED" \
                --rejoin-url "$b_url"
        fi
        stop_all
    done
}

storm() {
    no_broker
    local b args
    for round in $(seq "$STORM_ROUNDS"); do
        for b in $STORM_BACKLOGS; do
            args=(--scenario storm --clients "$STORM_CLIENTS" --topics "$STORM_TOPICS" --missed "$STORM_MISSED")
            start_node "$T/recnode" --history on --backlog "$b"
            gen "memory/backlog $b" "${args[@]}"
            stop_all
            start_node "$T/recnode" --history on --backlog "$b"
            gen "memory-plain/backlog $b" "${args[@]}" --plain
            stop_all
            start_node "$T/floor" --backlog "$b"
            gen "floor/backlog $b" "${args[@]}" --plain
            stop_all
        done
    done
}

# The criterion benches a broadcast without history goes through, main's
# and this branch's, alternated (which runs first swaps every round).
criterion() {
    local main branch round side bin order
    main=$(ls -t "$ROOT"/target/main/release/deps/protocol-* | grep -v '\.d$' | head -1)
    branch=$(ls -t "$ROOT"/target/release/deps/protocol-* | grep -v '\.d$' | head -1)
    for round in $(seq "$CRITERION_ROUNDS"); do
        order="main branch"
        [ $((round % 2)) = 0 ] && order="branch main"
        for side in $order; do
            bin=$main
            [ "$side" = branch ] && bin=$branch
            echo "== criterion round $round: $side (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
            "$bin" --bench "$CRITERION_FILTER" --warm-up-time 1 --measurement-time 3 --noplot 2>&1 |
                python3 bench/recovery_table.py --criterion "$side" "$round" | tee -a "$OUT"
        done
    done
}

# redis_memory LABEL: INFO used_memory and MEMORY USAGE of the history's
# keys (streams `…:h:comments:…`, their meta hashes `…:hm:comments:…`),
# summed over REDIS_PORTS, as one JSON line.
redis_memory() {
    local label=$1 used=0 streams=0 metas=0 nstreams=0 p u
    for p in "${REDIS_PORTS[@]}"; do
        u=$(redis-cli -p "$p" info memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)/\1/p')
        used=$((used + u))
        redis-cli -p "$p" --scan --pattern '*:h:comments:*' >"$WORK/keys"
        nstreams=$((nstreams + $(wc -l <"$WORK/keys")))
        u=$(sed 's/^/MEMORY USAGE /; s/$/ SAMPLES 0/' "$WORK/keys" | redis-cli -p "$p" | awk '{s += $1} END {print s + 0}')
        streams=$((streams + u))
        u=$(redis-cli -p "$p" --scan --pattern '*:hm:comments:*' | sed 's/^/MEMORY USAGE /; s/$/ SAMPLES 0/' |
            redis-cli -p "$p" | awk '{s += $1} END {print s + 0}')
        metas=$((metas + u))
    done
    echo "{\"scenario\":\"broker_memory\",\"label\":\"$label\",\"used_memory\":$used,\"streams\":$nstreams,\"stream_bytes\":$streams,\"meta_bytes\":$metas}"
}

# nats_memory LABEL: JetStream's account of its streams, as one JSON line.
nats_memory() {
    curl -s "http://127.0.0.1:$NATS_MONITOR/jsz?streams=true" |
        jq -c --arg name "$1" '{"scenario": "broker_memory", "label": $name, "streams": .streams,
            "messages": .messages, "stream_bytes": .bytes, "memory": .memory, "storage": .storage}'
}

memory() {
    for engine in $ENGINES; do
        if [ "$engine" = memory ]; then
            no_broker
            start_node "$T/recnode" --history off
            gen memory-off --scenario fill --topics "$FILL_TOPICS" --missed "$FILL_KEPT"
            stop_all
            start_node "$T/recnode" --history on
            gen memory --scenario fill --topics "$FILL_TOPICS" --missed "$FILL_KEPT"
            stop_all
            continue
        fi
        start_broker "$engine"
        case $engine in
            redis | cluster) redis_memory "$engine-before" | tee -a "$OUT" ;;
            nats) nats_memory "$engine-before" | tee -a "$OUT" ;;
        esac
        start_node "$T/recnode" --history on --size "$FILL_KEPT"
        gen "$engine" --scenario fill --topics "$FILL_TOPICS" --missed "$FILL_KEPT"
        case $engine in
            redis | cluster) redis_memory "$engine-after" | tee -a "$OUT" ;;
            nats) nats_memory "$engine-after" | tee -a "$OUT" ;;
        esac
        stop_all
    done
}

for s in "${SCENARIOS[@]}"; do
    case $s in
        cpu | recover | storm | memory | criterion) "$s" ;;
        *) echo "unknown scenario $s (cpu recover storm memory criterion)" >&2; exit 2 ;;
    esac
done

python3 bench/recovery_table.py "$OUT"
