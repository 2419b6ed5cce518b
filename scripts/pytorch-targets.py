#!/usr/bin/env python3
"""Where a comparison of PyTorch tenants stands against the PyTorch issue's targets.

Run from the project's root: python3 scripts/pytorch-targets.py DIR
DIR holds what `rightsize compare --file scenarios/pytorch.toml --out DIR` wrote (runs.csv,
tenants.csv). Each target compares krisp (MPS with the interposer following a board) with
plain MPS in the same run. Exit 0 when every target it can check holds, 1 otherwise, 2 when
DIR has nothing to check.

Targets:
  stp  every scenario with an STP under both: krisp's STP >= 0.98x MPS's
  lc   every scenario with a latency-critical tenant: its p99 under krisp <= 0.8x its p99
       under MPS, and every best-effort tenant's throughput under krisp >= 0.95x its
       throughput under MPS
(The interposer's cost on a solo model is measured apart: scripts/preload_cost.py.)
"""
import csv
import os
import sys
from collections import defaultdict

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


def check(runs, tenants):
    """Lines to print and whether every target checked holds."""
    lines, ok = [], True
    stp = defaultdict(dict)
    for r in runs:
        if r.get("status", "ok") == "ok" and num(r.get("stp")) is not None:
            stp[r["scenario"]][r["mode"]] = num(r["stp"])
    for sc in sorted(stp):
        m = stp[sc]
        if "krisp" in m and m.get("mps"):
            ratio = m["krisp"] / m["mps"]
            held = ratio >= STP_FLOOR
            ok &= held
            lines.append(f"stp  {sc}: krisp {m['krisp']:.2f} / mps {m['mps']:.2f} = {ratio:.2f} "
                         f"({'met' if held else 'MISSED'}, >= {STP_FLOOR})")
    by = defaultdict(dict)
    for t in tenants:
        by[(t["scenario"], t["mode"])][t["tenant"]] = t
    for sc in sorted({s for s, _ in by}):
        k, m = by.get((sc, "krisp"), {}), by.get((sc, "mps"), {})
        critical = [i for i, t in k.items() if t.get("class") == "latency-critical"]
        if not critical or not m:
            continue
        for i in critical:
            kp, mp = num(k[i].get("p99_ms")), num(m.get(i, {}).get("p99_ms"))
            if kp is None or not mp:
                continue
            worst_be = None
            for j, t in k.items():
                if t.get("class") == "latency-critical":
                    continue
                kt, mt = num(t.get("throughput_rps")), num(m.get(j, {}).get("throughput_rps"))
                if kt is not None and mt:
                    worst_be = kt / mt if worst_be is None else min(worst_be, kt / mt)
            held = kp / mp <= LC_P99_CEILING and (worst_be is None or worst_be >= BE_FLOOR)
            ok &= held
            be = "no best-effort tenant" if worst_be is None else f"best-effort >= {worst_be:.2f}x MPS throughput"
            lines.append(f"lc   {sc}: LC p99 {kp:.1f} / {mp:.1f} ms = {kp / mp:.2f}x MPS, {be} "
                         f"({'met' if held else 'MISSED'}, <= {LC_P99_CEILING} and >= {BE_FLOOR})")
    return lines, ok


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    d = sys.argv[1]
    lines, ok = check(read(d, "runs.csv"), read(d, "tenants.csv"))
    if not lines:
        print(f"nothing to check in {d}: no scenario ran both krisp and mps")
        return 2
    print("\n".join(lines))
    print("all met" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
