#!/usr/bin/env python3
"""krisp against the interposer standing aside, within one run: for each run of the results
directories given whose PyTorch processes stood aside in turn (`RIGHTSIZE_KRISP_ASIDE_MS=P
rightsize compare --file scenarios/pytorch.toml --scenario S --modes krisp`; the run's
`aside` in results.json), each closed-loop tenant's throughput in the periods the interposer
took part and in those it stood aside (a request counts in the period it ended in, over the
whole periods in which every tenant was counting), the STP of each against the run's solo
baselines (throughput-based: not the run's own STP), and their ratio: pooled over the run,
and the median of the ratios of each two neighbouring whole periods with the middle 90% of
the medians of 4,000 resamples of the pairs. Standing aside, the processes run as under MPS
with the library loaded and reading the clock at each launch (and beside a latency-critical
process the best-effort ones keep MPS's lower client priority). Open-loop tenants are left
out of the STP (their throughput follows their arrivals), and the STP of a run that lost its
GPU context is not split (its served requests' latencies still are).

A latency-critical or open-loop tenant's latency (from its request's arrival to its end) is
compared the same way: its served requests that arrived and ended within one period, those of
the periods taking part against those standing aside: each kind's p50 and p99 (nearest rank, as
the harness's), the p99s' ratio with the middle 90% of the ratios of 4,000 resamples of each
kind's requests. Both kinds of period keep the MPS client priorities the harness gives a krisp
run's processes beside a latency-critical one (the best-effort ones lower), so that ratio is
what the library's placement adds to those priorities, not the PyTorch issue's latency-critical
target (≤ 0.8× plain MPS's p99, which only runs of each mode over the same arrivals read).
Where the best-effort tenants are open loops too (their throughput is their arrivals'), their
latencies are what the library's taking part costs them. A p99 wants some hundreds of requests
of each kind: a long run at the tenant's rate; and where a burst of arrivals queues requests
behind each other, one burst can make a kind's p99 (the requests that cross a period's end,
the longest, are left out), so each tenant's service times (start to end, within one period)
are printed too: what the library's taking part does to a request itself.

    python3 scripts/aside_ab.py RESULTS_DIR...

(Each directory's results.json, or its results.json.xz.) Where several runs of one scenario and
mode are given, it also prints the median of all their pairs, with its interval.

A period should be many times a tenant's longest request (a request that spans a boundary
counts in the period it ended in).
"""
import json
import lzma
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resample import interval, ratio_interval  # noqa: E402  (this script's folder, however it is loaded)


def clipped(lo, hi, a, b):
    """How much of [a, b) lies within [lo, hi)."""
    return max(0.0, min(b, hi) - max(a, lo))


def split(run):
    """(pooled ratio, pair ratios, tenants' (model, taking part, standing aside) speeds, STP
    taking part, STP standing aside), or a str saying why the run cannot be split."""
    every, epoch = run["aside"]["every_s"], run["aside"]["epoch_s"]
    closed = [t for t in run["tenants"] if t["spec"].get("rate") is None]
    if any(not t["metrics"].get("relative_throughput") for t in closed):
        return "a closed-loop tenant has no solo baseline to weigh its throughput by"
    if run.get("outages_s"):
        return "the run lost its GPU context: the periods of the outage would count as served"
    if not closed:
        return "no closed-loop tenant (an open loop's throughput is its arrivals')"
    served = [[s for s in t["samples"] if not s.get("shed") and not s.get("failed")] for t in closed]
    if any(not s for s in served):
        return "a closed-loop tenant served no request"
    # Where every tenant was counting: from the last first start to the first last end.
    lo = max(min(s["start"] for s in ss) for ss in served)
    hi = min(max(s["end"] for s in ss) for ss in served)
    periods = range(math.floor((lo - epoch) / every), math.floor((hi - epoch) / every) + 1)
    length = {k: clipped(lo, hi, epoch + k * every, epoch + (k + 1) * every) for k in periods}
    # Whole periods only: the first and last are cut short where the tenants were counting.
    whole = {k for k in periods if abs(length[k] - every) < 1e-9}
    part = [k for k in sorted(whole) if k % 2 == 0]
    aside = [k for k in sorted(whole) if k % 2 == 1]
    if not part or not aside:
        return f"no whole period of each kind between {lo:.2f} and {hi:.2f} s (periods of {every:g} s)"
    counts = []  # per tenant: its requests that ended in each whole period
    for ss in served:
        c = {k: 0 for k in whole}
        for s in ss:
            k = math.floor((s["end"] - epoch) / every)
            if k in c:
                c[k] += 1
        counts.append(c)
    # A tenant's solo throughput: its throughput over its speed against solo.
    solo = [t["metrics"]["throughput"] / t["metrics"]["relative_throughput"] for t in closed]

    def speed(c, s, ks):
        return sum(c[k] for k in ks) / (len(ks) * every) / s

    def stp(ks):
        return sum(speed(c, s, ks) for c, s in zip(counts, solo))

    # Each neighbouring pair of whole periods, either order, so that a drift cancels.
    pairs = []
    for k in sorted(whole):
        if k + 1 in whole:
            p, a = (k, k + 1) if k % 2 == 0 else (k + 1, k)
            if stp([a]) > 0:
                pairs.append(stp([p]) / stp([a]))
    speeds = [(t["spec"]["model"], speed(c, s, part), speed(c, s, aside)) for t, c, s in zip(closed, counts, solo)]
    if stp(aside) == 0:
        return "no request ended in the periods standing aside"
    return stp(part) / stp(aside), pairs, speeds, stp(part), stp(aside)


def nearest_rank(values, q):
    """The harness's percentile (harness/metrics.rs): the value at rank ceil(q·n)."""
    v = sorted(values)
    return v[min(max(math.ceil(q * len(v)), 1), len(v)) - 1]


def latencies(run):
    """Each latency-critical or open-loop tenant's (model, class, latencies taking part,
    latencies standing aside, service times taking part, standing aside), in ms: its served
    requests that arrived and ended within one period (from arrival to end), and those that
    started and ended within one period (from start to end: the request's own time, without the
    wait behind its tenant's earlier requests that a burst of arrivals makes). Latency-critical
    tenants first."""
    every, epoch = run["aside"]["every_s"], run["aside"]["epoch_s"]
    out = []
    timed = [t for t in run["tenants"] if t["spec"].get("class") == "latency-critical" or t["spec"].get("rate") is not None]
    for t in sorted(timed, key=lambda t: t["spec"].get("class") != "latency-critical"):
        kinds, served = ([], []), ([], [])
        for s in t["samples"]:
            if s.get("shed") or s.get("failed"):
                continue
            end = math.floor((s["end"] - epoch) / every)
            k = math.floor((s["due"] - epoch) / every)
            if end == k:
                kinds[k % 2].append((s["end"] - s["due"]) * 1e3)
            k = math.floor((s["start"] - epoch) / every)
            if end == k:
                served[k % 2].append((s["end"] - s["start"]) * 1e3)
        out.append((t["spec"]["model"], t["spec"].get("class") or "best-effort", *kinds, *served))
    return out


def p99(values):
    return nearest_rank(values, 0.99)


def kinds_line(part, aside, what=""):
    """Each kind of period's p50 and p99 (ms) and how many they are of (`what`, after the first)."""
    return (f"p50/p99 ms taking part {nearest_rank(part, 0.5):.1f}/{p99(part):.1f} ({len(part)}{what}), "
            f"standing aside {nearest_rank(aside, 0.5):.1f}/{p99(aside):.1f} ({len(aside)})")


def latency_line(part, aside):
    """What a tenant's latencies (ms) of each kind of period say."""
    if not part or not aside:
        return "no request within a period of each kind"
    lo, hi = ratio_interval(part, aside, p99, 4000, 1)
    return f"{kinds_line(part, aside, ' requests')}: p99 ratio {p99(part) / p99(aside):.3f} [{lo:.3f}, {hi:.3f}]"


def report_file(d):
    """Results directory `d`'s report: its results.json, or results.json.xz (as
    docs/compare-pytorch-h200/ keeps long runs' reports)."""
    path = os.path.join(d, "results.json")
    return path + ".xz" if not os.path.exists(path) and os.path.exists(path + ".xz") else path


def read_report(path):
    """The report at `path` (plain or xz); raises OSError, ValueError or lzma.LZMAError."""
    with (lzma.open if path.endswith(".xz") else open)(path, "rt") as f:
        return json.load(f)


def load(d):
    """The report of results directory `d` ([`report_file`]), or the script's exit saying why not."""
    path = report_file(d)
    try:
        return read_report(path)
    except (OSError, ValueError, lzma.LZMAError) as e:
        sys.exit(f"aside_ab: cannot read {path}: {e}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip())
    found = 0
    by_scenario = {}
    for d in sys.argv[1:]:
        report = load(d)
        for run in report.get("runs", []):
            if not run.get("aside"):
                continue
            out, timed = split(run), latencies(run)
            if isinstance(out, str) and not timed:
                print(f"{d}: {run['scenario']} {run['mode']}: not split: {out}")
                continue
            found += 1
            if isinstance(out, str):
                print(f"{d}: {run['scenario']} {run['mode']}: STP not split: {out}")
            else:
                pooled, pairs, speeds, part, aside = out
                runs = by_scenario.setdefault((run["scenario"], run["mode"]), ([], []))
                runs[0].append(pooled)
                runs[1].extend(pairs)
                line = f"{d}: {run['scenario']} {run['mode']}: STP taking part {part:.3f}, standing aside {aside:.3f}: {pooled:.4f}x pooled"
                if pairs:
                    lo, hi = interval(pairs, 4000, 1)
                    line += f"; median of {len(pairs)} pairs {statistics.median(pairs):.4f} [{lo:.4f}, {hi:.4f}]"
                print(line)
                for model, p, a in speeds:
                    print(f"    {model:14} {p:.3f} taking part, {a:.3f} standing aside (x solo)")
            for model, kind, p, a, sp, sa in timed:
                print(f"    {model:14} {kind}, {latency_line(p, a)}")
                if sp and sa:
                    print(f"    {'':14} served in: {kinds_line(sp, sa)}: mean ratio {statistics.mean(sp) / statistics.mean(sa):.3f}")
    if not found:
        sys.exit("aside_ab: no run stood aside in turn (run krisp with RIGHTSIZE_KRISP_ASIDE_MS=P)")
    for (scenario, mode), (pooled, pairs) in by_scenario.items():
        if len(pooled) < 2 or not pairs:
            continue
        pairs = sorted(pairs)  # the same interval whatever order the directories came in
        lo, hi = interval(pairs, 4000, 1)
        print(f"{scenario} {mode}, {len(pooled)} runs: median of their {len(pairs)} pairs {statistics.median(pairs):.4f} "
              f"[{lo:.4f}, {hi:.4f}]; pooled {', '.join(f'{x:.4f}' for x in pooled)}")


if __name__ == "__main__":
    main()
