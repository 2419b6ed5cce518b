#!/usr/bin/env python3
"""What the other tenants' kernels do to one plan's launches, from kernel_timeline.c's CSV.

    overlap.py FILE.csv [--nodes N] [--first NAME] [--grid G] [--skip S] [--alone FILE.csv]

The plan is every CUDA graph of N kernels (node ids) whose launches start with kernel NAME of
grid G (by default: BERT-base's batch-1 request, 86 kernels from `embedding_f16` of 128 blocks).
Its launches are cut in start order and the first S dropped. Every other kernel of the file is
another tenant's (or its own outside plans). Printed:

- the plan's launches split by how much of their span other kernels ran (any of them, more
  than half of it, or less): count and median span, and with --alone (the same plan's
  timeline run alone) the medians against the alone one;
- the sum over the plan's kernels (by graph node) of their median duration, and of what each
  adds to the launch's span past every earlier kernel's end, each beside the alone run's;
- per other kernel (name, grid), its median duration while it overlaps one of the plan's
  launches and while it does not.
"""

import argparse
import bisect
import collections
import csv
import statistics


def read(path):
    """Every kernel as (start, end, graph, node, name, grid), in start order."""
    with open(path, newline="") as f:
        rows = [(int(r["start_ns"]), int(r["end_ns"]), int(r["graph"]), int(r["graph_node"]), r["name"], int(r["grid"]))
                for r in csv.DictReader(f)]
    rows.sort()
    return rows


def launches(rows, nodes, first, grid, skip):
    """The plan's launches (each its kernels in start order), and the set of their kernels."""
    by_graph = collections.defaultdict(list)
    for r in rows:
        if r[2]:
            by_graph[r[2]].append(r)
    out = []
    for ks in by_graph.values():
        if len({k[3] for k in ks}) != nodes or not any(k[4] == first and k[5] == grid for k in ks):
            continue
        # A launch starts at each kernel of the graph's first node (a record lost spoils one
        # launch, not every one after it); kept when it holds every node once.
        head = ks[0][3]
        one = []
        for k in ks + [None]:
            if k is None or (k[3] == head and one):
                if len(one) == nodes and len({x[3] for x in one}) == nodes:
                    out.append(one)
                one = []
            if k is not None:
                one.append(k)
    out.sort()
    out = out[skip:]
    return out, {k for one in out for k in one}


def span(one):
    return (max(k[1] for k in one) - one[0][0]) / 1e3


def covered(one, others, starts, longest):
    """The share of the launch's span during which some other kernel ran."""
    s0, e = one[0][0], max(k[1] for k in one)
    segs = []
    for r in others[bisect.bisect_left(starts, s0 - longest):]:
        if r[0] > e:
            break
        if r[1] > s0:
            segs.append((max(r[0], s0), min(r[1], e)))
    total, cur = 0, None
    for a, b in sorted(segs):
        if cur and a <= cur[1]:
            cur[1] = max(cur[1], b)
        else:
            if cur:
                total += cur[1] - cur[0]
            cur = [a, b]
    if cur:
        total += cur[1] - cur[0]
    return total / max(e - s0, 1)


def per_kernel(plan):
    """Sums over the plan's kernels (by graph node) of the median duration and of the median of
    what each adds to the launch's span past every earlier kernel's end (µs): per captured
    graph, then their mean weighted by launches (a plan set has a graph per window)."""
    by_graph = collections.defaultdict(list)
    for one in plan:
        by_graph[one[0][2]].append(one)
    med, total, sums = statistics.median, 0, [0.0, 0.0]
    for launches_of in by_graph.values():
        durations, adds = collections.defaultdict(list), collections.defaultdict(list)
        for one in launches_of:
            end = one[0][0]
            for k in one:
                durations[k[3]].append((k[1] - k[0]) / 1e3)
                adds[k[3]].append(max(k[1] - end, 0) / 1e3)
                end = max(end, k[1])
        n = len(launches_of)
        sums[0] += n * sum(med(v) for v in durations.values())
        sums[1] += n * sum(med(v) for v in adds.values())
        total += n
    return sums[0] / total, sums[1] / total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--nodes", type=int, default=86)
    ap.add_argument("--first", default="embedding_f16")
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--skip", type=int, default=20)
    ap.add_argument("--alone")
    a = ap.parse_args()
    rows = read(a.csv)
    plan, mine = launches(rows, a.nodes, a.first, a.grid, a.skip)
    if not plan:
        raise SystemExit(f"{a.csv}: no graph of {a.nodes} kernels from {a.first} (grid {a.grid})")
    alone = None
    if a.alone:
        alone, _ = launches(read(a.alone), a.nodes, a.first, a.grid, a.skip)
        if not alone:
            raise SystemExit(f"{a.alone}: no graph of {a.nodes} kernels from {a.first} (grid {a.grid})")
    others = [r for r in rows if r not in mine]
    starts = [r[0] for r in others]
    longest = max((r[1] - r[0] for r in others), default=0)
    med = statistics.median
    base = med([span(one) for one in alone]) if alone else None
    groups = {"all": [], "others > half": [], "others ≤ half": []}
    for one in plan:
        groups["all"].append(span(one))
        groups["others > half" if covered(one, others, starts, longest) > 0.5 else "others ≤ half"].append(span(one))
    print(f"{a.csv}: {len(plan)} launches of the plan ({a.nodes} kernels)")
    if base:
        print(f"  alone ({a.alone}): median span {base:.1f} µs")
    for name, spans in groups.items():
        if spans:
            ratio = f" ({med(spans) / base:.2f}× alone)" if base else ""
            print(f"  {name}: {len(spans)} launches, median span {med(spans):.1f} µs{ratio}")
    dur, add = per_kernel(plan)
    line = f"  its kernels: durations {dur:.1f} µs, added to the span {add:.1f} µs (sums of medians)"
    if alone:
        dur0, add0 = per_kernel(alone)
        line += f"; alone {dur0:.1f} and {add0:.1f}"
    print(line)
    spans = sorted((one[0][0], max(k[1] for k in one)) for one in plan)
    first_starts = [s for s, _ in spans]
    durations = collections.defaultdict(lambda: ([], []))
    for r in others:
        i = bisect.bisect_right(first_starts, r[1]) - 1
        inside = i >= 0 and spans[i][1] > r[0]
        durations[(r[4], r[5])][0 if inside else 1].append((r[1] - r[0]) / 1e3)
    print("  other kernels (most time first): median µs while overlapping the plan's launches | not")
    for (name, grid), (inside, outside) in sorted(durations.items(), key=lambda kv: -sum(kv[1][0] + kv[1][1]))[:10]:
        if inside and outside:
            print(f"    {name[:36]:36s} grid {grid:6d}: {med(inside):8.1f} ({len(inside)}) | {med(outside):8.1f} ({len(outside)})")


if __name__ == "__main__":
    main()
