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
    """Requests at one rate in the periods taking part and another standing aside, spread
    evenly within each period (none ends on a boundary), over the first `seconds`."""
    out = []
    for k in range(math.floor(-EPOCH / EVERY), math.ceil((seconds - EPOCH) / EVERY)):
        n = rate_part if k % 2 == 0 else rate_aside
        for i in range(round(n * EVERY)):
            end = EPOCH + k * EVERY + (i + 0.5) * EVERY / n
            start = end - 0.25 * EVERY / n
            if 0.0 <= start and end <= seconds:
                out.append({"due": start, "start": start, "end": end, "shed": False, "failed": False})
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


def test_open_loops_are_left_out_and_runs_that_cannot_be_split_say_why():
    # An open-loop tenant's throughput follows its arrivals: not in the STP.
    closed, open_loop = tenant("a", served(10, 8), 20.0), tenant("b", served(1, 100), 10.0, rate=5.0)
    pooled, _, speeds, _, _ = aside_ab.split(run(closed, open_loop))
    assert abs(pooled - 1.25) < 1e-9 and [m for m, _, _ in speeds] == ["a"]
    # A run shorter than a period of each kind: nothing to compare.
    short = [{"due": 0.0, "start": 0.0, "end": 0.5, "shed": False, "failed": False}]
    assert "no whole period" in aside_ab.split(run(tenant("a", short, 20.0)))
    no_solo = tenant("a", served(10, 8), 20.0)
    no_solo["metrics"]["relative_throughput"] = None
    assert "solo baseline" in aside_ab.split(run(no_solo))
    lost = run(tenant("a", served(10, 8), 20.0))
    lost["outages_s"] = [0.4]
    assert "context" in aside_ab.split(lost)
    # Nothing ended standing aside: said, not a division by zero.
    assert "standing aside" in aside_ab.split(run(tenant("a", served(10, 0), 20.0)))


def test_only_the_periods_in_which_every_tenant_was_counting_count():
    # b stops at 10.5 s of 20; both run at the same speed in both kinds of period.
    b = [s for s in served(5, 5) if s["end"] <= 10.5]
    pooled, pairs, _, _, _ = aside_ab.split(run(tenant("a", served(10, 10), 20.0), tenant("b", b, 10.0)))
    assert abs(pooled - 1.0) < 1e-9 and all(abs(r - 1.0) < 1e-9 for r in pairs)


def test_a_request_counts_in_the_period_it_ended_in():
    # Each request starts late in a period taking part and ends early in the next, standing aside.
    spans = []
    for j in range(0, 20, 2):
        start = EPOCH + j * EVERY + 0.75
        if start >= 0:
            spans.append({"due": start, "start": start, "end": start + 0.5, "shed": False, "failed": False})
    steady = tenant("b", served(5, 5), 10.0)
    _, _, speeds, _, _ = aside_ab.split(run(tenant("a", spans, 20.0), steady))
    model, part, aside = speeds[0]
    assert model == "a" and part == 0.0 and aside > 0.0


def test_a_results_directory_is_read_whether_its_report_is_compressed_or_not(tmp_path):
    import json
    import lzma

    report = {"runs": [run(tenant("bert-base", served(10, 10), 20.0))]}
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir()
    packed.mkdir()
    (plain / "results.json").write_text(json.dumps(report))
    with lzma.open(packed / "results.json.xz", "wt") as f:
        json.dump(report, f)
    assert aside_ab.load(str(plain)) == report == aside_ab.load(str(packed))


def test_runs_of_one_scenario_are_also_summed_up_together(tmp_path, capsys, monkeypatch):
    import json

    dirs = []
    for i, (part, aside) in enumerate([(9, 10), (10, 10)]):
        d = tmp_path / f"r{i}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"runs": [run(tenant("bert-base", served(part, aside), 20.0))]}))
        dirs.append(str(d))
    monkeypatch.setattr("sys.argv", ["aside_ab.py", *dirs])
    aside_ab.main()
    out = capsys.readouterr().out
    assert "s krisp, 2 runs: median of their" in out and "pooled 0.9000, 1.0000" in out, out


def test_a_latency_critical_tenants_latencies_are_split_by_the_period_they_fell_in(tmp_path, capsys, monkeypatch):
    import json

    # Arrivals every 0.1 s; 20 ms each taking part, 40 ms standing aside, and one that arrives
    # late in a period taking part and ends in the next (left out).
    lc = []
    for j in range(200):
        due = 0.05 + 0.1 * j
        k = math.floor((due - EPOCH) / EVERY)
        lc.append({"due": due, "start": due, "end": due + (0.02 if k % 2 == 0 else 0.04), "shed": False, "failed": False})
    k0 = math.ceil(-EPOCH / EVERY)
    boundary = EPOCH + (k0 + (k0 % 2)) * EVERY + 1.0  # the end of a period taking part
    lc.append({"due": boundary - 0.01, "start": boundary - 0.01, "end": boundary + 0.3, "shed": False, "failed": False})
    # One that waits behind the others: it arrives in a period taking part and is served, 20 ms,
    # wholly in the next (standing aside): not among the latencies, among the service times.
    queued = EPOCH + (k0 + (k0 % 2)) * EVERY + 0.98
    lc.append({"due": queued, "start": queued + 0.1, "end": queued + 0.12, "shed": False, "failed": False})
    critical = tenant("llama", lc, 50.0, rate=10.0)
    critical["spec"]["class"] = "latency-critical"
    # An open-loop best-effort tenant beside it: its latencies split too, after the critical one's.
    open_be = tenant("bert", [dict(x, end=x["due"] + 0.01) for x in lc[:200]], 50.0, rate=10.0)
    r = run(tenant("a", served(10, 10), 20.0), open_be, critical)
    [(model, kind, part, aside, sp, sa), (be, be_kind, be_part, be_aside, be_sp, be_sa)] = aside_ab.latencies(r)
    assert (model, kind, be, be_kind) == ("llama", "latency-critical", "bert", "best-effort")
    assert len(part) + len(aside) == 200 and len(be_part) + len(be_aside) == 200
    assert all(abs(x - 20.0) < 1e-6 for x in part) and all(abs(x - 40.0) < 1e-6 for x in aside)
    # The service times: the same 200 and the queued one, 20 ms, standing aside.
    assert len(sp) == len(part) and len(sa) == len(aside) + 1 and abs(sorted(sa)[0] - 20.0) < 1e-6
    assert all(abs(x - 20.0) < 1e-6 for x in sp) and sum(abs(x - 40.0) < 1e-6 for x in sa) == len(aside)
    assert all(abs(x - 10.0) < 1e-6 for x in be_part + be_aside + be_sp + be_sa) and len(be_sp) + len(be_sa) == 200
    assert aside_ab.nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0 and aside_ab.p99(list(range(1, 101))) == 99
    # Printed beside the STP, and for a run of open loops only (no STP to split) too.
    d = tmp_path / "r"
    d.mkdir()
    only_open = run(critical)
    (d / "results.json").write_text(json.dumps({"runs": [r, only_open]}))
    monkeypatch.setattr("sys.argv", ["aside_ab.py", str(d)])
    aside_ab.main()
    out = capsys.readouterr().out
    assert out.count("latency-critical, p50/p99 ms taking part 20.0/20.0") == 2, out
    assert "p99 ratio 0.500 [0.500, 0.500]" in out and "STP not split: no closed-loop tenant" in out, out
    assert "bert           best-effort, p50/p99 ms taking part 10.0/10.0" in out, out
    # 100 × 20 ms against 100 × 40 ms and the queued one's 20 ms.
    assert "served in: p50/p99 ms taking part 20.0/20.0 (100), standing aside 40.0/40.0 (101): mean ratio 0.502" in out, out
