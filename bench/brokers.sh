# Starting brokers and discuss nodes on free loopback ports, for
# bench/multinode.sh, bench/cluster.sh and bench/recovery.sh (sourced, after
# the caller made WORK, its scratch directory). Every process started is
# appended to PIDS; stop_all kills them, cleanup (the caller's trap) also
# removes WORK. start_nodes also needs TOKEN (the nodes' admin token) and T
# (the release target directory), and takes NODE_ENV (an array of
# VAR=value more for every node) and BEFORE_DIR (the `before` engine's
# worktree, multinode.sh only).

PIDS=()
# Kills every process started so far (one by one, by pid).
stop_all() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
# KEEP_WORK=1 keeps WORK (the brokers' and nodes' logs) and says where.
cleanup() {
    stop_all
    if [ -n "${KEEP_WORK:-}" ]; then
        echo "logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

listening() { [ -n "$(ss -Htln "sport = :$1")" ]; }

# A port P with P and P+10000 free (the cluster bus needs both).
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 20000))
        if ! listening "$p" && ! listening $((p + 10000)); then
            echo "$p"
            return 0
        fi
    done
    echo "no free port" >&2
    exit 1
}

# listening_port LOG WHAT: the port of the line `listening on
# http://127.0.0.1:PORT` a node writes to LOG when it is up (10 s at most).
listening_port() {
    local port
    for _ in $(seq 100); do
        port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" | head -1)
        [ -n "$port" ] && echo "$port" && return 0
        sleep 0.1
    done
    echo "$2 did not start; its log:" >&2
    cat "$1" >&2
    exit 1
}

wait_listening() {
    for _ in $(seq 100); do
        listening "$1" && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

# start_broker ENGINE: starts it; sets BROKER_ENV (for the nodes),
# BROKER_PIDS, REDIS_ADDR (an observer's, for Redis), REDIS_PORTS (every
# Redis server's), NATS_MONITOR (nats-server's monitoring port) and
# BROKER_DESC.
start_broker() {
    local engine=$1 p
    REDIS_ADDR=
    REDIS_PORTS=()
    NATS_MONITOR=
    BROKER_PIDS=()
    case $engine in
        redis | before)
            p=$(free_port)
            redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
                >"$WORK/redis-$p.log" 2>&1 &
            PIDS+=($!)
            BROKER_PIDS+=($!)
            wait_listening "$p"
            BROKER_ENV=("REDIS_URL=redis://127.0.0.1:$p")
            REDIS_ADDR=127.0.0.1:$p
            REDIS_PORTS=("$p")
            BROKER_DESC="redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') :$p"
            ;;
        cluster)
            local ports=() urls=() seeds=()
            for _ in 1 2 3; do
                p=$(free_port)
                while [[ " ${ports[*]} " == *" $p "* ]]; do p=$(free_port); done
                mkdir -p "$WORK/cluster-$p"
                redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
                    --cluster-config-file "$WORK/cluster-$p/nodes.conf" --dir "$WORK/cluster-$p" \
                    --save '' --appendonly no >"$WORK/cluster-$p.log" 2>&1 &
                PIDS+=($!)
                BROKER_PIDS+=($!)
                ports+=("$p")
                urls+=("redis://127.0.0.1:$p")
                seeds+=("127.0.0.1:$p")
            done
            for p in "${ports[@]}"; do wait_listening "$p"; done
            redis-cli --cluster create "${seeds[@]}" --cluster-yes >"$WORK/cluster-create.log" 2>&1
            for p in "${ports[@]}"; do
                for _ in $(seq 100); do
                    redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
                    sleep 0.1
                done
            done
            REDIS_PORTS=("${ports[@]}")
            BROKER_ENV=("REDIS_CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")")
            BROKER_DESC="redis cluster, 3 masters :${ports[*]}"
            ;;
        nats)
            p=$(free_port)
            # -js: discuss's comments:* keep history, in JetStream on NATS
            NATS_MONITOR=$(free_port)
            nats-server -a 127.0.0.1 -p "$p" -m "$NATS_MONITOR" -js -sd "$WORK/js-$p" >"$WORK/nats-$p.log" 2>&1 &
            PIDS+=($!)
            BROKER_PIDS+=($!)
            wait_listening "$p"
            BROKER_ENV=("NATS_URL=nats://127.0.0.1:$p")
            BROKER_DESC="nats-server $(nats-server --version 2>&1 | head -1) :$p"
            ;;
        *) echo "unknown engine $engine (redis cluster nats before)" >&2; exit 2 ;;
    esac
}

# start_nodes ENGINE N: N discuss nodes on the broker; sets NODES, NODE_PIDS.
start_nodes() {
    local engine=$1 n=$2 bin=$T/examples/discuss i log port
    [ "$engine" = before ] && bin=$BEFORE_DIR/target/release/examples/discuss
    NODES=()
    NODE_PIDS=()
    for i in $(seq 0 $((n - 1))); do
        log=$WORK/node-$engine-$i-$RANDOM.log
        # Made before the node starts: the redirection below runs in the
        # background job, maybe after the first read of the log.
        : >"$log"
        # Each node keeps its comments in a SQLite file of its own (the
        # scenarios measure broadcasts, not a shared database).
        env "${BROKER_ENV[@]}" ${NODE_ENV[@]+"${NODE_ENV[@]}"} NODE_NAME="n$i" DISCUSS_ADMIN_TOKEN="$TOKEN" \
            DISCUSS_MAX_BROADCASTS_PER_SECOND=0 RUST_LOG="${RUST_LOG:-warn}" \
            DATABASE_URL="sqlite://${log%.log}.db" "$bin" --port 0 >"$log" 2>&1 &
        PIDS+=($!)
        NODE_PIDS+=($!)
        port=$(listening_port "$log" "node $i ($engine)")
        NODES+=("127.0.0.1:$port")
    done
    # Let the nodes find each other (first heartbeats).
    sleep 1
}
