#!/usr/bin/env python3
"""Table of bench/autobahn9.sh's JSON lines: per target, the server's CPU
time over Autobahn's section 9 (median of the rounds) and its ratio to the
floor's, then wstest's wall time per subsection (9.1 ... 9.8, the sum of its
cases, median of the rounds) and its ratio to the floor's.

    python3 bench/autobahn9_table.py target/bench/autobahn9.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
targets = list(dict.fromkeys(r["target"] for r in rows))
cpu = defaultdict(list)
sub = defaultdict(lambda: defaultdict(list))
for r in rows:
    cpu[r["target"]].append(r["cpu_s"])
    sums = defaultdict(float)
    for case, ms in r["cases_ms"].items():
        sums[".".join(case.split(".")[:2])] += ms
    for s, ms in sums.items():
        sub[r["target"]][s].append(ms)

floor = statistics.median(cpu["floor"]) if cpu["floor"] else None
print("server CPU over section 9 (median of %d rounds)" % max(len(v) for v in cpu.values()))
print("%-14s %10s %8s" % ("target", "cpu s", "ratio"))
for t in targets:
    c = statistics.median(cpu[t])
    print("%-14s %10.2f %8s" % (t, c, "%.2f" % (c / floor) if floor else "-"))

subsections = sorted({s for t in targets for s in sub[t]}, key=lambda s: [int(x) for x in s.split(".")])
print()
print("wstest wall time per subsection, ms (ratio to the floor)")
print("%-8s" % "case" + "".join("%22s" % t for t in targets))
for s in subsections:
    base = statistics.median(sub["floor"][s]) if sub["floor"][s] else None
    cells = []
    for t in targets:
        ms = statistics.median(sub[t][s]) if sub[t][s] else None
        if ms is None:
            cells.append("%22s" % "-")
        elif base:
            cells.append("%22s" % ("%d (%.2f)" % (ms, ms / base)))
        else:
            cells.append("%22d" % ms)
    print("%-8s" % s + "".join(cells))
