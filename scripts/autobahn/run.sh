#!/usr/bin/env bash
# Runs Autobahn|Testsuite's fuzzingclient against one WebSocket echo server
# and checks its report: every case OK or INFORMATIONAL, none FAILED,
# NON-STRICT or UNIMPLEMENTED, or this fails.
#
#   scripts/autobahn/run.sh URL OUTDIR AGENT
#
# URL     ws://HOST:PORT/path or wss://… (the server echoes text and binary)
# OUTDIR  where the reports go: OUTDIR/index.json (all cases), one JSON per
#         case; OUTDIR/spec.json is the configuration used
# AGENT   the server's name in the reports
#
# Environment:
#   WSTEST   wstest to run (default target/autobahn/py27/bin/wstest, from setup.sh)
#   CASES    JSON list of case patterns      (default ["*"])
#   EXCLUDE  JSON list of excluded patterns  (default ["9.*", "12.*", "13.*"]: performance
#            is a benchmark's business, compression is asked for explicitly)
#   OPTIONS  JSON object of wstest's protocol options (default {})
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 URL OUTDIR AGENT" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
url=$1
outdir=$(mkdir -p "$2" && cd "$2" && pwd)
agent=$3
wstest=${WSTEST:-$ROOT/target/autobahn/py27/bin/wstest}
[ -x "$wstest" ] || { echo "autobahn: no wstest at $wstest (run scripts/autobahn/setup.sh)" >&2; exit 1; }

cases=${CASES:-'["*"]'}
exclude=${EXCLUDE:-'["9.*", "12.*", "13.*"]'}
options=${OPTIONS:-'{}'}

rm -f "$outdir"/*.json "$outdir"/*.html
cat >"$outdir/spec.json" <<JSON
{
  "outdir": "$outdir",
  "options": $options,
  "servers": [{"agent": "$agent", "url": "$url"}],
  "cases": $cases,
  "exclude-cases": $exclude,
  "exclude-agent-cases": {}
}
JSON

start=$SECONDS
# Python 2 warnings (cryptography's deprecation, service_identity missing)
# are noise; wstest's own output is one line per case.
(cd "$outdir" && PYTHONWARNINGS=ignore "$wstest" -m fuzzingclient -s "$outdir/spec.json") >"$outdir/wstest.log" 2>&1 || {
  tail -n 30 "$outdir/wstest.log" >&2
  echo "autobahn: wstest failed (log: $outdir/wstest.log)" >&2
  exit 1
}
echo "autobahn: $agent: wstest finished in $((SECONDS - start)) s; reports in $outdir"
"$(dirname "$wstest")/python" "$ROOT/scripts/autobahn/check.py" "$outdir" "$agent"
