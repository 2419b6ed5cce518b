#!/usr/bin/env python3
"""Where a comparison of PyTorch tenants stands against the PyTorch issue's targets.

Run from the project's root: python3 scripts/pytorch-targets.py DIR [DIR ...]
Each DIR holds what `rightsize compare --file scenarios/pytorch.toml --out DIR` wrote (runs.csv,
tenants.csv). Each target compares krisp (MPS with the interposer following a board) with
plain MPS in the same run. Several DIRs are rounds of the same comparison (run them with the
modes' order rotated, `--modes mps,krisp` then `--modes krisp,mps`, so drift of the host falls
on each alike): each ratio is taken per round and judged on its median over the rounds, all
of them printed, and with three rounds or more the middle 90% of the medians of 2,000
resamples of the rounds (a bootstrap, seeded, so the same rounds print the same interval): where
that interval holds the target's bound, the line says the rounds do not resolve it. With few
rounds it is narrower than a 90% confidence interval (a resampled median of four rounds never
leaves their range), so it says where the rounds leave a verdict open, not where they settle it. PyTorch's Python-bound processes varied by up to 1.6x from one run to the
next on one host (docs/h100.md), more than the 2% the STP target resolves: judge it on several rounds. Exit 0
when every target it can check holds, 1 otherwise, 2 when no DIR has anything to check.

Targets:
  stp  every scenario with an STP under both: krisp's STP >= 0.98x MPS's
  lc   every scenario with a latency-critical tenant: its p99 under krisp <= 0.8x its p99
       under MPS, and every best-effort tenant's throughput under krisp >= 0.95x its
       throughput under MPS, both in the same round: judged on the median over the rounds of
       each round's worse half as a multiple of its bound (each half's own median is printed
       too, but the halves' medians may come from different rounds)
(The interposer's cost on a solo model is measured apart: scripts/preload_cost.py.)
"""
import csv
import lzma
import math
import os
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aside_ab import read_report, report_file  # noqa: E402  (this script's folder, however it is loaded)
from resample import interval  # noqa: E402

STP_FLOOR = 0.98
LC_P99_CEILING = 0.8
BE_FLOOR = 0.95


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def read(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def measures(runs, tenants):
    """What one comparison measured against each target: {("stp", scenario): (ratio,),
    ("lc", scenario, tenant): (p99 ratio, lowest best-effort throughput ratio or None)}."""
    out = {}
    stp = defaultdict(dict)
    for r in runs:
        if r.get("status", "ok") == "ok" and num(r.get("stp")) is not None:
            stp[r["scenario"]][r["mode"]] = num(r["stp"])
    for sc, m in stp.items():
        if "krisp" in m and m.get("mps"):
            out[("stp", sc)] = (m["krisp"] / m["mps"],)
    by = defaultdict(dict)
    for t in tenants:
        by[(t["scenario"], t["mode"])][t["tenant"]] = t
    for sc in {s for s, _ in by}:
        k, m = by.get((sc, "krisp"), {}), by.get((sc, "mps"), {})
        if not m:
            continue
        for i, lc in k.items():
            if lc.get("class") != "latency-critical":
                continue
            kp, mp = num(lc.get("p99_ms")), num(m.get(i, {}).get("p99_ms"))
            if kp is None or not mp:
                continue
            worst_be = None
            for j, t in k.items():
                if t.get("class") == "latency-critical":
                    continue
                kt, mt = num(t.get("throughput_rps")), num(m.get(j, {}).get("throughput_rps"))
                if kt is not None and mt:
                    worst_be = kt / mt if worst_be is None else min(worst_be, kt / mt)
            out[("lc", sc, i)] = (kp / mp, worst_be)
    return out


def digits(med, bound):
    """How to write values judged by their median `med` against `bound`: two decimals, or three
    where two would round the median onto the bound (0.947 against 0.95 would read 0.95)."""
    return (lambda v: f"{v:.3f}") if round(med, 2) == bound else (lambda v: f"{v:.2f}")


def spread(values, bound):
    """The median of `values`, and its text: with every value when there are several, written
    as [`digits`] says against `bound`, the target it is judged against."""
    med = statistics.median(values)
    f = digits(med, bound)
    if len(values) == 1:
        return med, f(med)
    text = f"{f(med)} (median of {len(values)}: {', '.join(f(v) for v in values)}"
    if len(values) >= 3:
        lo, hi = interval(values)
        text += f"; 90% of resampled medians {f(lo)}-{f(hi)}"
        if lo < bound < hi:
            text += ", not resolved"
    return med, text + ")"


def lc_margin(measure):
    """A round's latency-critical measure (p99 ratio, lowest best-effort ratio or None) as its
    worse half's multiple of its bound: at most 1 where both halves held in that round."""
    p99, be = measure
    if be is not None and be <= 0:
        return math.inf  # a best-effort tenant that got nothing done
    return max(p99 / LC_P99_CEILING, 1.0 if be is None else BE_FLOOR / be)


def check(rounds):
    """Lines to print and whether every target checked holds, judged on each measure's median
    over `rounds` (one dict of measures() per comparison)."""
    lines, ok = [], True
    for key in sorted({k for r in rounds for k in r}):
        got = [r[key] for r in rounds if key in r]
        if key[0] == "stp":
            ratio, text = spread([g[0] for g in got], STP_FLOOR)
            held = ratio >= STP_FLOOR
            lines.append(f"stp  {key[1]}: krisp / mps STP = {text} ({'met' if held else 'MISSED'}, >= {STP_FLOOR})")
        else:
            p99, p99_text = spread([g[0] for g in got], LC_P99_CEILING)
            bes = [g[1] for g in got if g[1] is not None]
            be, be_text = spread(bes, BE_FLOOR) if bes else (None, "")
            # The two halves must hold in the same round: each round's worse half, as a
            # multiple of its bound, judged on its median (at most 1 only where both halves
            # held in at least half the rounds).
            worse = [lc_margin(g) for g in got]
            both = sum(w <= 1.0 for w in worse)
            median = statistics.median(worse)
            held = median <= 1.0
            be_line = "no best-effort tenant" if be is None else f"lowest best-effort throughput / MPS's {be_text}"
            joint = "" if len(got) == 1 else (
                f"; both halves in the same round: {both} of {len(got)}, "
                f"the worse half / its bound {digits(median, 1.0)(median)} in the median")
            lines.append(f"lc   {key[1]} (tenant {key[2]}): LC p99 / MPS's {p99_text}; {be_line}{joint} "
                         f"({'met' if held else 'MISSED'}, <= {LC_P99_CEILING} and >= {BE_FLOOR} in one round)")
        ok &= held
    return lines, ok


def stood_aside(d):
    """Whether a run of results directory `d` stood aside in turn (its results.json, or
    results.json.xz, says)."""
    try:
        return any(r.get("aside") for r in read_report(report_file(d)).get("runs", []))
    except (OSError, ValueError, lzma.LZMAError):
        return False


def main():
    dirs = sys.argv[1:]
    if not dirs:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    twice = sorted({d for d in dirs if dirs.count(d) > 1})
    if twice:
        print(f"named more than once (a round counts once): {' '.join(twice)}", file=sys.stderr)
        return 2
    rounds = []
    for d in dirs:
        if stood_aside(d):
            print(f"skipped {d}: its krisp runs stood aside in turn (RIGHTSIZE_KRISP_ASIDE_MS), half of each "
                  "run as MPS; scripts/aside_ab.py reads them", file=sys.stderr)
            continue
        r = measures(read(d, "runs.csv"), read(d, "tenants.csv"))
        if r:
            rounds.append(r)
        elif all(os.path.exists(os.path.join(d, n)) for n in ("runs.csv", "tenants.csv")):
            print(f"nothing to check in {d}: neither an STP of both krisp and mps (closed-loop tenants) "
                  "nor a latency-critical tenant run under both", file=sys.stderr)
        else:
            print(f"nothing to check in {d}: no runs.csv and tenants.csv of a scenario run under both "
                  "krisp and mps (a run cut short writes only results.json)", file=sys.stderr)
    lines, ok = check(rounds)
    if not lines:
        return 2
    if len(dirs) > 1:
        print(f"judged on {len(rounds)} of {len(dirs)} directories")
    print("\n".join(lines))
    print("all met" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
