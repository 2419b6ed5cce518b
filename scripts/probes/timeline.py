#!/usr/bin/env python3
"""Where a replayed plan's time goes, kernel by kernel, from kernel_timeline.c's CSV.

    timeline.py FILE.csv... [--min-nodes N] [--skip N]

For every CUDA graph of at least N kernels (a plan: a decode step, a request), the graph's
launches are cut from its kernels in start order (as many kernels a launch as the graph has
nodes) and the first --skip launches dropped as warm-up. Each kernel (by its place in a
repeating layer, or in the launch, its name and grid) gets: how many of it a launch runs, its
mean duration, the mean gap from the previous kernel's end to its start (negative: it started
before that end, as PDL lets it), and what it adds to the launch's span, how far its end lies
past every earlier kernel's end (the sum over a launch is the span). Kernels outside graphs
(eager launches) get their mean duration only.
"""

import argparse
import collections
import csv
import statistics
import sys


def read(paths):
    """Every kernel of the files as (start, end, graph, node, grid, name); a graph is named by
    its file (one process) and its CUPTI graph id, 0 outside graphs."""
    rows = []
    for n, path in enumerate(paths):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                graph = (n, int(r["graph"])) if int(r["graph"]) else 0
                rows.append(
                    (int(r["start_ns"]), int(r["end_ns"]), graph, int(r["graph_node"]), int(r["grid"]), r["name"]))
    return rows


def launches(kernels, nodes):
    """The graph's kernels in start order, cut into launches of `nodes` kernels; a cut whose
    kernels are not every node once (a record lost) ends the list there."""
    kernels.sort()
    out = []
    for i in range(0, len(kernels) // nodes * nodes, nodes):
        run = kernels[i:i + nodes]
        if len({k[3] for k in run}) != nodes:
            print(f"timeline.py: a launch of {nodes} kernels lacks a node after {len(out)} launches; "
                  "the rest of this graph is left out", file=sys.stderr)
            break
        out.append(run)
    return out


def short(name, width=44):
    return name if len(name) <= width else name[: width - 1] + "…"


def layer_slots(names):
    """A key for each kernel of a launch: its place in a repeating layer (the shortest period
    most kernels repeat at, over the longest stretch that repeats), or its own index outside."""
    n = len(names)
    for p in range(2, n // 2 + 1):
        same = [names[i] == names[i + p] for i in range(n - p)]
        if sum(same) < 0.8 * (n - p):
            continue
        best, start, a, b = 0, 0, 0, 0
        for i, ok in enumerate(same + [False]):
            if not ok:
                if i - start > best:
                    best, a, b = i - start, start, i + p
                start = i + 1
        b = a + (b - a) // p * p  # whole layers: a last kernel like a layer's first stays out
        return [f"layer[{(i - a) % p}]" if a <= i < b else f"#{i}" for i in range(n)], p
    return [f"#{i}" for i in range(n)], 0


def report_graph(gid, runs):
    spans = [max(k[1] for k in r) - r[0][0] for r in runs]
    nodes = len(runs[0])
    slots, period = layer_slots([k[5] for k in runs[0]])
    print(f"\ngraph {gid}: {nodes} kernels a launch ({f'layers of {period}' if period else 'no layers'}), "
          f"{len(runs)} launches, span mean {statistics.mean(spans) / 1e3:.1f} us, "
          f"median {statistics.median(spans) / 1e3:.1f} us")
    by = collections.OrderedDict()
    for run in runs:
        prev_end = None
        for slot, (start, end, _, _, grid, name) in zip(slots, run):
            s = by.setdefault((slot, name, grid), {"n": 0, "dur": 0, "gap": 0, "add": 0, "gaps": 0})
            s["n"] += 1
            s["dur"] += end - start
            if prev_end is None:
                s["add"] += end - start
            else:
                s["gap"] += start - prev_end
                s["gaps"] += 1
                s["add"] += max(0, end - prev_end)
            prev_end = end if prev_end is None else max(prev_end, end)
    span = statistics.mean(spans)
    print(f"{'place':9s} {'kernel':44s} {'grid':>6s} {'a launch':>8s} {'dur us':>8s} {'gap us':>8s} "
          f"{'adds us':>8s} {'adds/launch':>11s} {'% span':>6s}")
    total_add = 0.0
    for (slot, name, grid), s in by.items():
        per = s["n"] / len(runs)
        dur = s["dur"] / s["n"] / 1e3
        gap = s["gap"] / s["gaps"] / 1e3 if s["gaps"] else 0.0
        add = s["add"] / s["n"] / 1e3
        total_add += add * per
        print(f"{slot:9s} {short(name):44s} {grid:6d} {per:8.2f} {dur:8.2f} {gap:8.2f} {add:8.2f} "
              f"{add * per:11.1f} {100 * add * per * 1e3 / span:6.1f}")
    print(f"{'':9s} {'sum of adds':44s} {'':6s} {'':8s} {'':8s} {'':8s} {'':8s} {total_add:11.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--min-nodes", type=int, default=20, help="graphs of fewer kernels are not reported")
    ap.add_argument("--skip", type=int, default=3, help="first launches of each graph dropped")
    args = ap.parse_args()
    rows = read(args.csv)
    if not rows:
        sys.exit("timeline.py: no kernels in " + ", ".join(args.csv))
    graphs = collections.defaultdict(list)
    eager = collections.defaultdict(list)
    for row in rows:
        if row[2]:
            graphs[row[2]].append(row)
        else:
            eager[(row[5], row[4])].append(row[1] - row[0])
    for gid, kernels in sorted(graphs.items()):
        gid = f"{gid[1]} of {args.csv[gid[0]]}" if len(args.csv) > 1 else gid[1]
        nodes = len({k[3] for k in kernels})
        if nodes < args.min_nodes:
            continue
        runs = launches(kernels, nodes)[args.skip:]
        if runs:
            report_graph(gid, runs)
    if eager:
        print("\neager kernels (outside graphs): mean duration")
        for (name, grid), durs in sorted(eager.items(), key=lambda kv: -sum(kv[1])):
            print(f"{short(name):44s} {grid:6d} {len(durs):8d} {statistics.mean(durs) / 1e3:8.2f} us")


if __name__ == "__main__":
    main()
