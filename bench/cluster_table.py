#!/usr/bin/env python3
"""Markdown tables from bench/cluster.sh's JSON lines (one column per run).

    python3 bench/cluster_table.py target/bench/cluster.jsonl [more.jsonl ...]

With several files, each column also names its file.
"""
import json
import os
import sys

ROWS = [
    ("join", "sockets", lambda j: j["joined"]),
    ("join", "connect + joins per s", lambda j: j["connect_join_per_s"]),
    ("join", "node CPU per connect + joins (µs, all nodes)", lambda j: j["cpu_us_per_connect_join"]),
    ("join", "node RSS per socket (B)", lambda j: j["bytes_per_socket"]),
    ("join", "every node sees every presence (s)", lambda j: j["presence_seen_everywhere_s"]),
    ("join", "broker RSS after (MiB)", lambda j: round(j["broker_rss_settled"] / 2**20, 1)),
    ("deliveries", "broadcasts acked", lambda j: j["acked"]),
    ("deliveries", "fan-out per broadcast", lambda j: j["fanout_per_broadcast"]),
    ("deliveries", "lost", lambda j: j["lost"]),
    ("deliveries", "node CPU per delivery (µs, all nodes)", lambda j: j["cpu_us_per_delivery"]),
    ("deliveries", "CPU per delivery on the last node (µs; it publishes nothing when it is the one killed)", lambda j: j["per_node"][-1]["cpu_us_per_delivery"]),
    ("deliveries", "broker CPU per broadcast (µs)", lambda j: j["broker_cpu_us_per_broadcast"]),
    ("deliveries", "broker messages per broadcast", lambda j: j["broker_msgs_per_broadcast"]),
    ("deliveries", "latency local p50 / p99 (ms)", lambda j: f'{j["latency"]["local_p50_ms"]} / {j["latency"]["local_p99_ms"]}'),
    ("deliveries", "latency cross-node p50 / p99 (ms)", lambda j: f'{j["latency"]["cross_p50_ms"]} / {j["latency"]["cross_p99_ms"]}'),
    ("presence", "presence joins", lambda j: j["burst_joined"]),
    ("presence", "every node sees them all (s)", lambda j: j["all_nodes_see_all_s"]),
    ("presence", "node CPU per presence join (µs, all nodes)", lambda j: j["cpu_us_per_presence_join"]),
    ("failover", "sockets on the killed node", lambda j: j["down_events"]),
    ("failover", "all back after the kill (s)", lambda j: j["all_back_s"]),
    ("failover", "lost, plain clients that moved", lambda j: f'{j["losses"]["plain_moved"]["lost"]} of {j["losses"]["plain_moved"]["expected"]}'),
    ("failover", "lost, clients with positions that moved", lambda j: f'{j["losses"]["recover_moved"]["lost"]} of {j["losses"]["recover_moved"]["expected"]}'),
    ("failover", "recovered rejoins / replayed", lambda j: f'{j["recovered"]} / {j["recovered_missed"]}'),
    ("failover", "duplicates", lambda j: sum(c["duplicates"] for c in j["losses"].values())),
    ("failover", "lost, clients that stayed", lambda j: j["losses"]["plain_stayed"]["lost"] + j["losses"]["recover_stayed"]["lost"]),
    ("failover", "peak CPU: all nodes / one node / broker (cores)", lambda j: f'{j["peak_all_nodes_cpu_util"]} / {j["peak_node_cpu_util"]} / {j["peak_broker_cpu_util"]}'),
]


def main():
    runs = []  # (label, {phase: line})
    for path in sys.argv[1:]:
        for line in open(path):
            j = json.loads(line)
            if j["phase"] == "join":
                label = f'{j["server"]}, {j["nodes"]}×{j["sockets"] // j["nodes"]}, {j["rooms"]} rooms'
                if len(sys.argv) > 2:
                    label += f" ({os.path.splitext(os.path.basename(path))[0]})"
                runs.append((label, {}))
            runs[-1][1][j["phase"]] = j
    print("| | " + " | ".join(r[0] for r in runs) + " |")
    print("| --- |" + " --- |" * len(runs))
    for phase, name, get in ROWS:
        cells = []
        for _, phases in runs:
            try:
                cells.append(str(get(phases[phase])))
            except (KeyError, IndexError, TypeError):
                cells.append("–")
        if any(c != "–" for c in cells):
            print(f"| {phase}: {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
