#!/usr/bin/env python3
"""Prints a table of discuss / floor ratios from loadgen's JSON lines.

    python3 bench/ratios.py target/bench/results.jsonl
"""
import json
import sys

METRICS = {
    "idle": ["bytes_per_socket", "cpu_us_per_op", "connect_join_per_s", "joined", "failed"],
    "fanout": [
        "cpu_us_per_op",
        "deliveries_per_s",
        "last_delivery_ms_p50",
        "last_delivery_ms_max",
        "median_delivery_ms_p50",
        "missing",
    ],
    "rtt_closed": ["cpu_us_per_op", "replies_per_s", "p50_us", "p99_us", "p999_us"],
    "rtt_open": ["target_rate", "cpu_us_per_op", "replies_per_s", "p50_us", "p99_us", "p999_us", "unanswered"],
    "churn": ["cpu_us_per_op", "joins_per_s", "failed", "rss_growth_after_first_quarter", "rss_settled"],
}


def main(path):
    runs = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                runs[(r["scenario"], r["server"])] = r
    print(f"| scenario | metric | discuss | floor | discuss/floor |")
    print(f"| --- | --- | ---: | ---: | ---: |")
    for scenario, metrics in METRICS.items():
        d, fl = runs.get((scenario, "discuss")), runs.get((scenario, "floor"))
        if not d or not fl:
            continue
        for m in metrics:
            a, b = d.get(m), fl.get(m)
            ratio = f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "-"
            print(f"| {scenario} (n={d['n']}) | {m} | {a} | {b} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/results.jsonl")
