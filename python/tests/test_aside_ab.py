"""scripts/aside_ab.py's split of a run's requests by the periods its processes stood aside,
on made-up samples (no GPU)."""

import importlib.util
import math
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "aside_ab.py"
spec = importlib.util.spec_from_file_location("aside_ab", SCRIPT)
aside_ab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(aside_ab)

EVERY, EPOCH = 1.0, -3.3  # periods of 1 s, the first 3.3 s before the common start


def served(rate_part, rate_aside, seconds=20.0):
    """Back-to-back requests at one rate in the periods taking part, another standing aside."""
    out, t = [], 0.0
    while t < seconds:
        period = math.floor((t - EPOCH) / EVERY)
        step = 1.0 / (rate_part if period % 2 == 0 else rate_aside)
        out.append({"due": t, "start": t, "end": t + step, "shed": False, "failed": False})
        t += step
    return out


def tenant(model, samples, solo, rate=None):
    throughput = len(samples) / 20.0
    metrics = {"throughput": throughput, "relative_throughput": throughput / solo}
    return {"spec": {"model": model, "rate": rate}, "samples": samples, "metrics": metrics}


def run(*tenants):
    return {"scenario": "s", "mode": "krisp", "aside": {"every_s": EVERY, "epoch_s": EPOCH}, "tenants": list(tenants)}


def test_each_kind_of_period_gets_its_own_speeds_and_stp():
    # a: 10/s taking part, 8/s standing aside (solo 20/s); b: 5/s throughout (solo 10/s).
    pooled, pairs, speeds, part, aside = aside_ab.split(run(tenant("a", served(10, 8), 20.0), tenant("b", served(5, 5), 10.0)))
    assert abs(part - 1.0) < 1e-9 and abs(aside - 0.9) < 1e-9
    assert abs(pooled - 1.0 / 0.9) < 1e-9
    assert pairs and all(abs(r - 1.0 / 0.9) < 1e-9 for r in pairs)
    assert [(m, round(p, 6), round(a, 6)) for m, p, a in speeds] == [("a", 0.5, 0.4), ("b", 0.5, 0.5)]


def test_open_loops_and_runs_without_whole_periods_are_left_out():
    # An open-loop tenant's throughput follows its arrivals: not in the STP.
    closed, open_loop = tenant("a", served(10, 8), 20.0), tenant("b", served(1, 100), 10.0, rate=5.0)
    pooled, _, speeds, _, _ = aside_ab.split(run(closed, open_loop))
    assert abs(pooled - 1.25) < 1e-9 and [m for m, _, _ in speeds] == ["a"]
    # A run shorter than a period of each kind: nothing to compare.
    short = [{"due": 0.0, "start": 0.0, "end": 0.5, "shed": False, "failed": False}]
    assert aside_ab.split(run(tenant("a", short, 20.0))) is None
