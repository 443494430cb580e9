#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too. CI runs exactly this
# (via .ci/run). Needs: the Rust toolchain, Node.js >= 20 and npm; installs the
# rest itself.
#
#   ./test.sh
#
# Stages (each one runs and reports even when an earlier one failed):
#   install      npm ci in tests/js and examples/web (+ system packages: chromium,
#                see install_system_packages)
#   fmt          cargo fmt --all -- --check
#   clippy       cargo clippy --workspace --all-targets -- -D warnings
#   cargo-test   cargo test --workspace (unit, integration and trybuild UI tests)
#   package      cargo package --workspace --exclude bench --exclude ui-tests: every published crate
#                (protocol, client, macros, runtime, phx-channels) packaged and
#                built from its .crate alone, as crates.io would get it (about a
#                minute of CPU on a warm target dir)
#   build        cargo build --release --examples (discuss; chat and relay for
#                tests/js/chat.test.mjs and tests/js/relay.test.mjs) and the
#                `cluster` generator (bench/src/bin/cluster.rs)
#   start        the example on a free port (scripts/start-discuss.sh)
#   e2e          node --test tests/js/*.test.mjs against it (phoenix.js over
#                WebSocket and LongPoll, raw frames, the demo page and the
#                dashboard in headless Chromium, a /metrics scrape, the Rust
#                client example, tsc on the generated TypeScript; screenshots
#                in tests/js/artifacts/demo*.png and dashboard.png)
#   conformance  $SHARED_DIR/conformance/run.sh against it (comments + socket suites)
#   autobahn     Autobahn|Testsuite's fuzzingclient against the `echo` example
#                (scripts/autobahn/test.sh: installs wstest on Python 2.7 from
#                pyenv, then every case must be OK or INFORMATIONAL; plain
#                ws:// and wss:// through the endpoint's own TLS, sections
#                1-7 and 10, and with compression on (--compress), sections
#                12 and 13)
#   cluster      a cluster on this machine (bench/cluster.sh): 3 discuss nodes
#                on nats-server -js, 20 000 sockets over 200 topics and 200
#                presence rooms, deliveries, 2 000 presence joins, then one
#                node killed: every one of its clients must come back within
#                120 s (about 40 s here), and those that rejoin with their
#                position must miss nothing and get nothing twice (JSON lines in
#                tests/js/artifacts/cluster.jsonl)
#
# Environment:
#   SHARED_DIR   folder holding conformance/ (default: ../shared beside the repo)
#   CONFORMANCE_TESTS  files of the conformance suite to run
#                (default: every file of the suite)
#
# Ends with the line "N passed, N failed" (stages) and exits non-zero if any failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
# One build per run: incremental caches would only double the target dir.
export CARGO_INCREMENTAL=0
SHARED_DIR="${SHARED_DIR:-$ROOT/../shared}"
CONFORMANCE_TESTS="${CONFORMANCE_TESTS:-comments.test.mjs socket.test.mjs room.test.mjs}"
ARTIFACTS="$ROOT/tests/js/artifacts" # server logs; ignored by git
mkdir -p "$ARTIFACTS"
rm -rf "$ARTIFACTS"/discuss-*.log "$ARTIFACTS"/discuss-*/ # logs; data dirs (SQLite files)

passed=0
failed=0
results=()
DISCUSS_PID=""
DISCUSS_LOG=""

section() {
  echo
  echo "==================================================================="
  echo "== $*"
  echo "==================================================================="
}

# record NAME STATUS SECONDS
record() {
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1))
    results+=("PASS  $1 (${3}s)")
  else
    failed=$((failed + 1))
    results+=("FAIL  $1 (${3}s, status $2)")
  fi
}

# stage NAME COMMAND...: runs the command with its own -e off, records the result.
stage() {
  local name="$1"
  shift
  section "$name: $*"
  local start=$SECONDS status=0
  set +e
  ("$@")
  status=$?
  set -e
  record "$name" "$status" $((SECONDS - start))
  if [ "$status" -ne 0 ]; then echo "!! stage $name FAILED (status $status)"; fi
  return 0
}

# skip NAME WHY: a stage that cannot run because an earlier one failed counts as failed.
skip() {
  section "$1: not run ($2)"
  record "$1" 1 0
}

stop_server() {
  if [ -n "$DISCUSS_PID" ]; then
    "$ROOT/scripts/stop-discuss.sh" "$DISCUSS_PID" || true
    DISCUSS_PID=""
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- install

# System packages the tests need, installed with apt when missing, as
#   "command-to-check:debian-package"
# or, for a program Debian keeps off PATH, "/path/pattern/to/check:package".
SYSTEM_PACKAGES=(
  "redis-server:redis-server"
  # tests/discuss_db.rs starts its own PostgreSQL with initdb and pg_ctl,
  # which the package keeps in /usr/lib/postgresql/VERSION/bin
  "/usr/lib/postgresql/*/bin/initdb:postgresql"
  # channels-runtime/tests/nats.rs and tests/js/multinode.test.mjs start their own nats-server
  "nats-server:nats-server"
  # tests/js/browser.test.mjs drives /usr/bin/chromium with playwright-core
  "chromium:chromium"
  # "chromedriver:chromium-driver"
)

install_system_packages() {
  local missing=() entry
  for entry in ${SYSTEM_PACKAGES[@]+"${SYSTEM_PACKAGES[@]}"}; do
    local check="${entry%%:*}"
    if [[ "$check" == */* ]]; then
      compgen -G "$check" >/dev/null || missing+=("${entry#*:}")
    else
      command -v "$check" >/dev/null 2>&1 || missing+=("${entry#*:}")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing with apt: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

install_deps() {
  local tool
  for tool in cargo node npm; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing required tool: $tool" >&2; return 1; }
  done
  echo "$(cargo --version); node $(node --version); npm $(npm --version)"
  install_system_packages || return 1
  (cd "$ROOT/tests/js" && npm ci --no-audit --no-fund) || return 1
  # phoenix.js for the example's demo page (served at /assets/phoenix.mjs)
  (cd "$ROOT/examples/web" && npm ci --no-audit --no-fund)
}

# ---------------------------------------------------------------- end to end

start_server() {
  local out
  out="$("$ROOT/scripts/start-discuss.sh")" || return 1
  eval "$out"
  echo "discuss (pid $DISCUSS_PID) listening at $DISCUSS_URL; log: $DISCUSS_LOG"
}

run_e2e() {
  cd "$ROOT/tests/js"
  DISCUSS_URL="$DISCUSS_URL" DISCUSS_ADMIN_TOKEN="$DISCUSS_ADMIN_TOKEN" DISCUSS_DASHBOARD_TOKEN="$DISCUSS_DASHBOARD_TOKEN" node --test --test-force-exit --test-concurrency=1 ./*.test.mjs
}

run_conformance() {
  local run="$SHARED_DIR/conformance/run.sh"
  if [ ! -f "$run" ]; then
    echo "conformance suite not found: $run" >&2
    echo "set SHARED_DIR to the folder holding conformance/ (default: ../shared beside the repo)" >&2
    return 1
  fi
  TESTS="$CONFORMANCE_TESTS" bash "$run" "$DISCUSS_URL"
}

# Packages every published crate and builds each from its .crate alone.
# Cargo extracts the .crates into $CARGO_HOME/registry/src once per version
# and never again: a copy left by an earlier run (same 0.1.0, older source)
# would be built instead of this one, so it goes first.
package_crates() {
  local home="${CARGO_HOME:-$HOME/.cargo}"
  rm -rf "$home"/registry/src/*/phx-channels*-[0-9]* "$home"/registry/cache/*/phx-channels*-[0-9]*.crate
  # Cargo takes a registry crate's build for immutable too: an earlier
  # run's debug build of the packaged 0.1.0 would be linked against this
  # one's sources. The workspace's own debug builds go with them (the test
  # stage is done with them; the release build is kept).
  cargo clean --profile dev -p phx-channels-protocol -p phx-channels-wire -p phx-channels-runtime \
    -p phx-channels-client -p phx-channels-macros -p phx-channels
  cargo package --workspace --exclude bench --exclude ui-tests --allow-dirty
}

# One invocation, so the examples and the generator share one build of
# the crates (two would build the runtime twice, with two feature sets).
build_release() {
  cargo build --release -p phx-channels --examples -p bench --bin cluster
}

# The smaller version of issue 27's cluster (bench/cluster.sh; the full one
# is 8 nodes and 100 000 sockets, BENCHMARKS.md).
run_cluster() {
  NO_BUILD=1 ENGINES=nats NODES=3 SOCKETS=20000 TOPICS=200 ROOMS=200 BURST=2000 RATE=200 DURATION=5 \
    KILL=2 FAIL_DURATION=15 BACK_TIMEOUT=120 STRICT=1 OUT="$ROOT/tests/js/artifacts/cluster.jsonl" \
    "$ROOT/bench/cluster.sh"
}

server_alive() {
  [ -n "$DISCUSS_PID" ] && kill -0 "$DISCUSS_PID" 2>/dev/null
}

# ---------------------------------------------------------------- stages

stage install install_deps
stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --workspace --all-targets -- -D warnings
stage cargo-test cargo test --workspace
stage package package_crates
stage build build_release
build_status="${results[-1]%% *}"

if [ -x "$ROOT/target/release/examples/discuss" ] && [ "$build_status" = "PASS" ]; then
  # not a subshell: start_server sets DISCUSS_PID/DISCUSS_URL for the stages below
  section "start: scripts/start-discuss.sh"
  start=$SECONDS
  set +e
  start_server
  status=$?
  set -e
  record start "$status" $((SECONDS - start))
  if [ "$status" -eq 0 ]; then
    stage e2e run_e2e
    server_alive || echo "!! the server died during the e2e tests"
    stage conformance run_conformance
    if ! server_alive; then
      echo "!! the server is no longer running"
      record server-alive 1 0
    fi
  else
    skip e2e "the server did not start"
    skip conformance "the server did not start"
  fi
else
  skip start "the release build of the example failed"
  skip e2e "the release build of the example failed"
  skip conformance "the release build of the example failed"
fi

if [ -n "$DISCUSS_LOG" ] && [ "$failed" -gt 0 ] && [ -s "$DISCUSS_LOG" ]; then
  section "last 50 lines of the server log ($DISCUSS_LOG)"
  tail -n 50 "$DISCUSS_LOG"
fi
stop_server

if [ "$build_status" = "PASS" ]; then
  stage autobahn "$ROOT/scripts/autobahn/test.sh"
else
  skip autobahn "the release build of the examples failed"
fi

if [ "$build_status" = "PASS" ]; then
  stage cluster run_cluster
else
  skip cluster "the release build failed"
fi

section "summary"
printf '%s\n' "${results[@]}"
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
