"""scripts/pytorch-targets.py's judgement of rounds, on made-up measures (no GPU)."""

import importlib.util
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "pytorch-targets.py"
spec = importlib.util.spec_from_file_location("pytorch_targets", SCRIPT)
targets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(targets)

LC = ("lc", "s", "0")


def judge(*measures):
    lines, ok = targets.check([{LC: m} for m in measures])
    return lines[0], ok


def test_a_round_meets_the_latency_target_only_with_both_halves():
    assert targets.lc_margin((0.6, 0.97)) <= 1.0
    assert targets.lc_margin((0.6, 0.90)) > 1.0  # the best-effort half missed
    assert targets.lc_margin((0.9, 1.00)) > 1.0  # the p99 half missed
    assert targets.lc_margin((0.8, None)) == 1.0  # no best-effort tenant: the p99 alone
    assert targets.lc_margin((0.6, 0.0)) == float("inf")  # one that got nothing done


def test_halves_met_in_different_rounds_do_not_meet_the_target():
    # Each half's median holds (p99 0.75, best effort 0.96), but no round held both.
    line, ok = judge((0.5, 0.90), (0.6, 0.92), (0.9, 1.00), (1.0, 1.00))
    assert "LC p99 / MPS's 0.75" in line and "MPS's 0.96" in line
    assert "both halves in the same round: 0 of 4" in line
    assert not ok and "MISSED" in line


def test_both_halves_in_most_rounds_meet_it():
    line, ok = judge((0.60, 0.97), (0.70, 0.96), (0.90, 1.00))
    assert ok
    assert "both halves in the same round: 2 of 3" in line


def test_stp_is_judged_on_the_median_ratio():
    lines, ok = targets.check([{("stp", "s"): (r,)} for r in (0.97, 0.99, 1.05)])
    assert ok and "median of 3" in lines[0]
    lines, ok = targets.check([{("stp", "s"): (r,)} for r in (0.90, 0.97, 1.05)])
    assert not ok


def test_a_worse_half_near_its_bound_is_printed_to_three_decimals():
    line, ok = judge((0.8032, 1.0), (0.8032, 1.0))
    assert not ok and "the worse half / its bound 1.004 in the median" in line


def test_runs_that_stood_aside_are_known_by_their_report_compressed_or_not(tmp_path):
    import json
    import lzma

    report = {"runs": [{"mode": "krisp", "aside": {"every_s": 2.0, "epoch_s": -1.0}}]}
    plain, packed, rounds, empty = (tmp_path / n for n in ("plain", "packed", "rounds", "empty"))
    for d in (plain, packed, rounds, empty):
        d.mkdir()
    (plain / "results.json").write_text(json.dumps(report))
    with lzma.open(packed / "results.json.xz", "wt") as f:
        json.dump(report, f)
    (rounds / "results.json").write_text(json.dumps({"runs": [{"mode": "mps"}]}))
    assert targets.stood_aside(str(plain)) and targets.stood_aside(str(packed))
    assert not targets.stood_aside(str(rounds)) and not targets.stood_aside(str(empty))
