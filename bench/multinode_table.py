#!/usr/bin/env python3
"""Markdown tables of bench/multinode.sh's JSON lines (one or more files).

    python3 bench/multinode_table.py target/bench/multinode.jsonl
"""
import json
import sys


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{digits}f}".replace(",", " ")
    if isinstance(x, int):
        return f"{x:,}".replace(",", " ")
    return str(x)


def routing(rows):
    print("| engine | rate/node | idle nodes | node | pushes acked | missing | broker msgs received (from others) | Redis → node connection (observer) | published | node CPU s | CPU µs/push | load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for d in rows:
        for n in d["per_node"]:
            received = n["received"]
            if received is None:
                received = n.get("observed_inbound_from_others")
                received = f"{fmt(received)} (observed)" if received is not None else None
            print(
                f"| {d['server']} | {fmt(d['rate_per_node'], 0)} | {d.get('idle_nodes', 0)} | {n['node']} | {fmt(n['acked'])} "
                f"| {fmt(n['missing'])} | {fmt(received)} | {fmt(n.get('observed_inbound'))} | {fmt(n['published'])} "
                f"| {fmt(n['cpu_s'])} | {fmt(n['cpu_us_per_push'], 1) if n['acked'] else '–'} | {fmt(d['loadavg'])} |"
            )


def burst(rows):
    print("| engine | pushed | acked | refused (broker busy) | other errors | acked/s | delivered on B | missing on B | node A CPU s | node B CPU s | broker CPU s | load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for d in rows:
        errors = dict(d["errors"])
        busy = errors.pop("broker busy", 0)
        other = ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0"
        a, b = d["per_node"][0], d["per_node"][1]
        print(
            f"| {d['server']} | {fmt(d['messages'])} | {fmt(d['acked'])} | {fmt(busy)} | {other} | {fmt(d['acked_per_s'], 0)} "
            f"| {fmt(d['received_on_b'])} | {fmt(d['missing_on_b'])} | {fmt(a['cpu_s'])} | {fmt(b['cpu_s'])} "
            f"| {fmt(d.get('broker_cpu_s'))} | {fmt(d['loadavg'])} |"
        )


def presence(rows):
    print("| engine | users | joins took s | broker msgs/s per node (published + received) | node CPU s over the window |")
    print("| --- | ---: | ---: | --- | --- |")
    for d in rows:
        for s in d["sizes"]:
            nodes = s["steady"]["per_node"]
            rates = " / ".join(fmt(n["messages_per_s"]) for n in nodes)
            split = " / ".join(f"{fmt(n['published'])}+{fmt(n['received'])}" for n in nodes)
            cpu = " / ".join(fmt(n["cpu_s"]) for n in nodes)
            print(f"| {d['server']} | {fmt(s['users'])} | {fmt(s['join_s'])} | {rates} ({split} in {fmt(s['steady']['wall_s'], 1)} s) | {cpu} |")
    print()
    print("| engine | burst joins | all acked s | every node's watchers see all s | by node s | killed node's presences | all gone s (others) | by node s | load |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |")
    for d in rows:
        c, k = d["convergence"], d["dead_node"]
        by = " / ".join(f"{n}: {fmt(t)}" for n, t in sorted(c["seen_s_by_node"].items()))
        gone = " / ".join(f"{n}: {fmt(t)}" for n, t in sorted(k["gone_s_by_node"].items()))
        print(
            f"| {d['server']} | {fmt(c['burst'])} | {fmt(c['all_joins_acked_s'])} | {fmt(c['all_nodes_see_all_s'])} | {by} "
            f"| {fmt(k['presences_held'])} | {fmt(k['all_gone_s'])} | {gone} | {fmt(d['loadavg'])} |"
        )


def main():
    rows = []
    for path in sys.argv[1:]:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    for name, table in (("routing", routing), ("burst", burst), ("presence", presence)):
        these = [r for r in rows if r["scenario"] == name]
        if these:
            print(f"\n### {name}\n")
            table(these)


if __name__ == "__main__":
    main()
