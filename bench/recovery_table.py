#!/usr/bin/env python3
"""The tables of BENCHMARKS.md's history section from bench/recovery.sh's JSON lines.

    python3 bench/recovery_table.py target/bench/recovery.jsonl
    CRITERION_OUTPUT | python3 bench/recovery_table.py --criterion main|branch ROUND   # JSON lines

Every figure is the median over the rounds of the same run (min-max beside
it), and the ratio is to the floor named in the table, from the same run.
"""
import json
import re
import statistics
import sys
from collections import defaultdict


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def span(xs):
    return f"{med(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})" if xs else "-"


def criterion_lines(side, rnd):
    """Criterion's output on stdin: one JSON line per bench (its median estimate, ns)."""
    bench = None
    units = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6}
    for line in sys.stdin:
        s = line.strip()
        if re.fullmatch(r"[a-z_0-9]+/\S+", s):
            bench = s
            continue
        m = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if m and bench and m.group(2) in units:
            ns = float(m.group(1)) * units[m.group(2)]
            print(json.dumps({"scenario": "criterion", "label": side, "round": int(rnd), "bench": bench, "ns": round(ns, 1)}))
            bench = None


def main(path):
    lines = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    crit = defaultdict(lambda: defaultdict(list))
    for l in (l for l in lines if l["scenario"] == "criterion"):
        crit[l["bench"]][l["label"]].append(l["ns"])
    if crit:
        print("### Criterion, a broadcast without history: main against this branch (ns, median of rounds (min-max))\n")
        print("| bench | main | branch | branch / main |")
        print("| --- | ---: | ---: | ---: |")
        for bench, sides in crit.items():
            m, b = sides.get("main", []), sides.get("branch", [])
            fmt = lambda xs: f"{med(xs):.0f} ({min(xs):.0f}-{max(xs):.0f})" if xs else "-"
            print(f"| {bench} | {fmt(m)} | {fmt(b)} | {ratio(med(b), med(m))} |")
        print()
    fan = defaultdict(list)
    for l in (l for l in lines if l["scenario"] == "fanout"):
        fan[(l["label"], l["subscribers"])].append(l)

    if fan:
        print("### CPU per broadcast and per delivery (node; µs, median of rounds (min-max))\n")
        print("| target | 1 subscriber: µs/broadcast | ratio to floor | ratio to off | 100 subscribers: µs/delivery | ratio to floor | ratio to off | broker µs/broadcast (1 / 100) | missing |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        floor1 = med([l["cpu_us_per_broadcast"] for l in fan[("floor", 1)]])
        floor100 = med([l["cpu_us_per_delivery"] for l in fan[("floor", 100)]])
        labels = []
        for (label, _n) in fan:
            if label not in labels:
                labels.append(label)
        for label in labels:
            one = [l["cpu_us_per_broadcast"] for l in fan[(label, 1)]]
            hundred = [l["cpu_us_per_delivery"] for l in fan[(label, 100)]]
            engine = label.split("+")[0].split("-")[0]
            off = f"{engine}-off" if engine in ("redis", "cluster", "nats") else "off"
            off1 = med([l["cpu_us_per_broadcast"] for l in fan[(off, 1)]])
            off100 = med([l["cpu_us_per_delivery"] for l in fan[(off, 100)]])
            b1 = med([l["broker_cpu_us_per_broadcast"] for l in fan[(label, 1)]])
            b100 = med([l["broker_cpu_us_per_broadcast"] for l in fan[(label, 100)]])
            missing = sum(l["missing"] for l in fan[(label, 1)] + fan[(label, 100)])
            print(
                f"| {label} | {span(one)} | {ratio(med(one), floor1)} | {ratio(med(one), off1)} ({off}) "
                f"| {span(hundred)} | {ratio(med(hundred), floor100)} | {ratio(med(hundred), off100)} "
                f"| {b1:.0f} / {b100:.0f} | {missing} |"
            )
        print()

    rec = [l for l in lines if l["scenario"] == "recover"]
    if rec:
        print("### Time to recover missed broadcasts on a rejoin (connect + join + all of them; µs)\n")
        print("| engine | runs | missed | not recovered | plain connect+join p50 / p99 | recovered p50 / p99 / max | ratio p50 | join reply (recovering) p50 / p99 | node CPU µs per recovery |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for l in rec:
            p, r, j = l["plain_join_us"], l["recover_all_us"], l["recover_reply_us"]
            print(
                f"| {l['label']} | {l['runs']} | {l['missed']} | {l['not_recovered']} | {p['p50']:.0f} / {p['p99']:.0f} "
                f"| {r['p50']:.0f} / {r['p99']:.0f} / {r['max']:.0f} | {l['ratio_p50']:.2f}x | {j['p50']:.0f} / {j['p99']:.0f} "
                f"| {l['node_cpu_us_per_recovery']:.0f} |"
            )
        print()

    storm = [l for l in lines if l["scenario"] == "storm"]
    if storm:
        print("### Reconnect storm against one node (memory history)\n")
        print("| target | clients | missed each | failed | not recovered | all done s | connected p50 / p99 ms | join (+ recovery) after connect p50 / p99 / max ms | node CPU s | µs per client | RSS before / peak / after MiB |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        mib = 1 << 20
        for l in storm:
            c, j = l["connected_ms"], l["join_after_connect_ms"]
            print(
                f"| {l['label']} | {l['clients']} | {l['missed']} | {l['failed']} | {l['not_recovered']} | {l['all_done_s']:.3f} "
                f"| {c['p50']} / {c['p99']} | {j['p50']} / {j['p99']} / {j['max']} | {l['node_cpu_s']:.2f} | {l['node_cpu_us_per_client']:.0f} "
                f"| {l['rss_before'] / mib:.1f} / {l['rss_peak'] / mib:.1f} / {l['rss_after'] / mib:.1f} |"
            )
        print()

    fill = {l["label"]: l for l in lines if l["scenario"] == "fill"}
    bm = {l["label"]: l for l in lines if l["scenario"] == "broker_memory"}
    if fill:
        print("### Memory per topic keeping 100 broadcasts of 200 B (bytes per topic; the payloads alone are 20 000)\n")
        print("| engine | topics | measure | bytes per topic | ratio to payloads | broker RSS per topic | node RSS per topic |")
        print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
        for label, l in fill.items():
            t, k, b = l["topics"], l["kept"], l["bytes"]
            payload = k * b
            rows = []
            if label == "memory" and "memory-off" in fill:
                off = fill["memory-off"]
                delta = (l["node_rss_after"] - l["node_rss_before"]) - (off["node_rss_after"] - off["node_rss_before"])
                rows.append(("node RSS, history on less off", delta / t))
            elif label == "memory-off":
                continue
            after, before = bm.get(f"{label}-after"), bm.get(f"{label}-before")
            if after and before and "used_memory" in after:
                rows.append(("INFO used_memory delta", (after["used_memory"] - before["used_memory"]) / t))
                rows.append(("MEMORY USAGE stream + meta", (after["stream_bytes"] + after["meta_bytes"]) / max(after["streams"], 1)))
            if after and before and "storage" in after:
                rows.append(("JetStream stream bytes", (after["stream_bytes"] - before["stream_bytes"]) / t))
                rows.append(("JetStream storage (file)", (after["storage"] - before["storage"]) / t))
            for what, per in rows:
                print(
                    f"| {label} | {t} | {what} | {per:.0f} | {per / payload:.2f}x "
                    f"| {l['broker_rss_per_topic']:.0f} | {l['node_rss_per_topic']:.0f} |"
                )
        print()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--criterion":
        criterion_lines(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/recovery.jsonl")
