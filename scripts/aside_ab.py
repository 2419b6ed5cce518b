#!/usr/bin/env python3
"""krisp against the interposer standing aside, within one run: for each run of the results
directories given whose PyTorch processes stood aside in turn (`RIGHTSIZE_KRISP_ASIDE_MS=P
rightsize compare --file scenarios/pytorch.toml --scenario S --modes krisp`; the run's
`aside` in results.json), each closed-loop tenant's throughput in the periods the interposer
took part and in those it stood aside (a request counts in the period it ended in, over the
whole periods within the run's counted requests), the STP of each against the run's solo
baselines, and their ratio: pooled over the run, and the median of the ratios of each
pair of whole periods (taking part, then standing aside) with the middle 90% of the medians
of 4,000 resamples of the pairs. Standing aside, the processes run as under MPS with the
library loaded (a call and two atomic loads a launch more than without it).

    python3 scripts/aside_ab.py RESULTS_DIR...

A period should be many times a tenant's longest request (a request that spans a boundary
counts in the period it ended in).
"""
import json
import math
import os
import random
import statistics
import sys


def clipped(lo, hi, a, b):
    """How much of [a, b) lies within [lo, hi)."""
    return max(0.0, min(b, hi) - max(a, lo))


def split(run):
    """(pooled ratio, per-pair ratios, tenants' (model, taking part, standing aside) speeds)."""
    every, epoch = run["aside"]["every_s"], run["aside"]["epoch_s"]
    tenants = [t for t in run["tenants"] if t["spec"].get("rate") is None and t["metrics"].get("relative_throughput")]
    if not tenants:
        return None
    spans = [(s["start"], s["end"]) for t in tenants for s in t["samples"] if not s.get("shed") and not s.get("failed")]
    if not spans:
        return None
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    first, last = math.floor((lo - epoch) / every), math.floor((hi - epoch) / every)
    periods = range(first, last + 1)
    length = {k: clipped(lo, hi, epoch + k * every, epoch + (k + 1) * every) for k in periods}
    counts = []  # per tenant: requests ended in each period
    for t in tenants:
        c = {k: 0 for k in periods}
        for s in t["samples"]:
            if not s.get("shed") and not s.get("failed"):
                c[math.floor((s["end"] - epoch) / every)] += 1
        counts.append(c)
    # A tenant's solo throughput: its throughput over its speed against solo.
    solo = [t["metrics"]["throughput"] / t["metrics"]["relative_throughput"] for t in tenants]

    def stp(ks):
        secs = sum(length[k] for k in ks)
        return sum(sum(c[k] for k in ks) / secs / s for c, s in zip(counts, solo)) if secs > 0 else float("nan")

    # Whole periods only: the run's first and last are cut short by its counted requests.
    whole = {k for k in periods if abs(length[k] - every) < 1e-9}
    part = [k for k in periods if k % 2 == 0 and k in whole]
    aside = [k for k in periods if k % 2 == 1 and k in whole]
    if not part or not aside:
        return None
    pairs = [stp([k]) / stp([k + 1]) for k in part if k in whole and k + 1 in whole]
    speeds = []
    for t, c, s in zip(tenants, counts, solo):
        one = lambda ks: sum(c[k] for k in ks) / sum(length[k] for k in ks) / s  # noqa: E731
        speeds.append((t["spec"]["model"], one(part), one(aside)))
    return stp(part) / stp(aside), pairs, speeds, stp(part), stp(aside)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip())
    found = 0
    for d in sys.argv[1:]:
        path = os.path.join(d, "results.json")
        try:
            report = json.load(open(path))
        except (OSError, ValueError) as e:
            sys.exit(f"aside_ab: cannot read {path}: {e}")
        for run in report.get("runs", []):
            if not run.get("aside"):
                continue
            out = split(run)
            if out is None:
                print(f"{d}: {run['scenario']} {run['mode']}: no closed-loop tenant served a request, or no whole period of each kind")
                continue
            found += 1
            pooled, pairs, speeds, part, aside = out
            line = f"{d}: {run['scenario']} {run['mode']}: STP taking part {part:.3f}, standing aside {aside:.3f}: {pooled:.4f}x pooled"
            if pairs:
                rng = random.Random(1)
                meds = sorted(statistics.median(rng.choices(pairs, k=len(pairs))) for _ in range(4000))
                line += f"; median of {len(pairs)} pairs {statistics.median(pairs):.4f} [{meds[200]:.4f}, {meds[3800]:.4f}]"
            print(line)
            for model, p, a in speeds:
                print(f"    {model:14} {p:.3f} taking part, {a:.3f} standing aside (x solo)")
    if not found:
        sys.exit("aside_ab: no run stood aside in turn (run krisp with RIGHTSIZE_KRISP_ASIDE_MS=P)")


if __name__ == "__main__":
    main()
