#!/usr/bin/env python3
"""How far protecting some latency-critical requests would move its p99, from a run's samples.

    protect_replay.py RESULTS [--scenario S] [--mode M] [--protected-ms X | --protected-ratio R]
                      [--host-ms H]

RESULTS is a comparison's results directory (or its results.json). For the first tenant of
scenario S under mode M (a latency-critical tenant at batch 1, one request at a time), its
requests are replayed in order of their arrival (`due`): each starts when it is due (plus the
host's pick-up time H, by default the run's median wait) or when the one before ends, and
takes the service time (`end - start`) it took in the run, or X ms (or R times that) if it is
*protected*, i.e. runs as if nothing else used the device. Rules for which requests are
protected:

- none: as run (the replay's p99 is the run's, a check of the model);
- all: every request;
- waited θ: a request that waited more than θ ms past its arrival;
- backlog θ: that, or one whose next request arrives before it would end.

Results that mark the requests their run judged behind (samples' `behind`) also get those
requests' service against the others'. Printed per rule: the p99 ÷ the solo p99 (the run's
p99 ÷ its `p99_vs_solo`), the share of requests protected and the share of the run's time
they take. A model, not a measurement: it ignores what protection costs the other tenants
and how their work then moves.
"""

import argparse
import json
import os
import statistics


def quantile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def replay(dues, service, host, protect_ms, rule, theta):
    """The latencies of the replay and the protected requests' count and time (ms)."""
    end, lat, count, time = float("-inf"), [], 0, 0.0
    for i, (due, s) in enumerate(zip(dues, service)):
        start = max(due + host, end)
        waited = start - due > theta
        backlog = i + 1 < len(dues) and dues[i + 1] <= start + s
        p = rule == "all" or (rule == "waited" and waited) or (rule == "backlog" and (waited or backlog))
        took = protect_ms(s) if p else s
        count += p
        time += took if p else 0.0
        end = start + took
        lat.append(end - due)
    return lat, count, time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--scenario", default="lc-serving")
    ap.add_argument("--mode", default="krisp-plan")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--protected-ms", type=float, help="service time of a protected request, ms")
    g.add_argument("--protected-ratio", type=float, help="a protected request's service ÷ as run")
    ap.add_argument("--host-ms", type=float, help="pick-up time after arrival (default: the run's median wait)")
    a = ap.parse_args()
    path = a.results if a.results.endswith(".json") else os.path.join(a.results, "results.json")
    with open(path) as f:
        report = json.load(f)
    runs = [r for r in report["runs"] if r["scenario"] == a.scenario and r["mode"] == a.mode]
    if not runs:
        raise SystemExit(f"no run of {a.scenario} under {a.mode} in {path}")
    tenant = runs[0]["tenants"][0]
    samples = [s for s in tenant["samples"] if not s["shed"] and not s["failed"]]
    if len(samples) < 100:
        raise SystemExit(f"{len(samples)} samples: too few for a p99")
    dues = [s["due"] * 1e3 for s in samples]
    service = [(s["end"] - s["start"]) * 1e3 for s in samples]
    waits = [(s["start"] - s["due"]) * 1e3 for s in samples]
    solo_p99 = quantile([(s["end"] - s["due"]) * 1e3 for s in samples], 0.99) / tenant["metrics"]["p99_vs_solo"]
    host = a.host_ms if a.host_ms is not None else statistics.median(waits)
    if a.protected_ms is not None:
        protect = lambda s: a.protected_ms  # noqa: E731
    else:
        ratio = a.protected_ratio if a.protected_ratio is not None else 1.0
        protect = lambda s: s * ratio  # noqa: E731
    span = dues[-1] - dues[0]
    print(f"{a.scenario} {a.mode}: {len(samples)} requests, service p50 {statistics.median(service):.3f} ms, "
          f"solo p99 {solo_p99:.3f} ms, host {host:.3f} ms")
    marked = [sv for sv, s in zip(service, samples) if s.get("behind")]
    if marked:
        # Results since the field: the requests the run's own loop judged behind (and a
        # hushing policy protected), their service against the others'.
        rest = [sv for sv, s in zip(service, samples) if not s.get("behind")]
        others = f"; the others p50 {quantile(rest, 0.5):.3f} p90 {quantile(rest, 0.9):.3f} ms" if rest else ""
        print(f"  marked behind in the run: {len(marked) / len(samples):.2f} of requests, service p50 "
              f"{quantile(marked, 0.5):.3f} p90 {quantile(marked, 0.9):.3f} ms{others}")
    for rule, theta in [("none", 0), ("all", 0), ("waited", 0.15), ("waited", 0.3), ("backlog", 0.15), ("backlog", 0.3)]:
        lat, count, time = replay(dues, service, host, protect, rule, theta)
        print(f"  {rule:8} θ {theta:<4}: p99 ÷ solo {quantile(lat, 0.99) / solo_p99:.2f}, "
              f"protected {count / len(dues):.2f} of requests, {time / span:.3f} of the time")


if __name__ == "__main__":
    main()
