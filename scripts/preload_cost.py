#!/usr/bin/env python3
"""The interposer's cost on a solo PyTorch model, measured on the host as the application sees
it: `scripts/torch_app.py` (bert-base 8x128 and gpt2-medium 8x128 generating 8 tokens, eager and
bound by Python's launches, and bert-large 16x512, bound by the GPU; distilgpt2 8x128 generating
8 tokens, Python-bound, where --models names it) run as its own process
without the interposer, under it on a krisp board where the process is alone (every kernel
left where PyTorch put it: what a tenant pays while no other is busy), and under it with every
kernel placed on a window of the whole device (RIGHTSIZE_SMS, the rest of the SMs included:
what a tenant pays while its kernels are confined); and, asked for (`--settings shared`), on a
board beside a process that is always busy (its slot says a thread of it waits for the GPU) and
keeps nothing free: every launch takes the path of a tenant sharing the device with another
busy one, left where PyTorch put it (counted `shared`). The settings alternate round by round, so
drift of the host or the GPU falls on each alike; prints each setting's median ms per request
and its ratio to the median without the interposer, the spread of the rounds' own ratios (each
round against that round's run without it), then one JSON line.

    python3 scripts/preload_cost.py gpu-bin/librightsize_preload.so [--rounds 3] [--models a,b]
        [--settings none,alone,window,shared] [--longer N | --in-process PAIRS [--block N]]

--longer N runs N times as many requests a measurement (a GPU-bound model's 150 requests take
about 2 s).

Processes run one after another differ by more than 1% (the same model and setting spread 8–10%
from one process to the next on an H200, docs/pytorch-h200.md), so --in-process PAIRS measures
within each process instead: `torch_app.py --ab PAIRS` under each setting, blocks of --block
requests (default a fifth of a measurement's) with the interposer taking part and standing
aside (every call straight to the driver) in turn, AB, BA, …; prints, per model and setting,
each process's pooled ratio (its blocks taking part over its blocks standing aside), the
median over all pairs with the middle 90% of the medians of 4,000 resamples of the pairs, and
the spread of the processes' ratios, then one JSON line. What standing aside still costs over
no interposer at all is a call and two atomic loads per launch, cuBLAS call and wait.

    python3 scripts/preload_cost.py gpu-bin/librightsize_preload.so --in-process 10 --models bert-large
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

from resample import interval

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {
    "bert-base": ["--batch", "8", "--seq", "128", "--requests", "500", "--warmup", "20"],
    "gpt2-medium": ["--batch", "8", "--seq", "128", "--new-tokens", "8", "--requests", "40", "--warmup", "3"],
    "bert-large": ["--batch", "16", "--seq", "512", "--requests", "150", "--warmup", "10"],
    "distilgpt2": ["--batch", "8", "--seq", "128", "--new-tokens", "8", "--requests", "100", "--warmup", "5"],
}


def ms_per_request(model, env, longer=1):
    args = list(MODELS[model])
    i = args.index("--requests") + 1
    args[i] = str(int(args[i]) * longer)
    cmd = [sys.executable, os.path.join(HERE, "torch_app.py"), model, *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    m = re.search(r"([0-9.]+) ms per request", done.stdout)
    if done.returncode != 0 or not m:
        raise SystemExit(f"preload_cost: {model} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return float(m.group(1))


def ab_in_process(model, env, pairs, block):
    """`torch_app.py --ab`: its JSON line (pairs of blocks taking part and standing aside)."""
    args = list(MODELS[model])
    args[args.index("--requests") + 1] = str(block)
    cmd = [sys.executable, os.path.join(HERE, "torch_app.py"), model, *args, "--ab", str(pairs)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = next((ln for ln in reversed(done.stdout.splitlines()) if ln.startswith("{")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"preload_cost: {model} --ab failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(line)


def in_process(a, models, settings):
    """--in-process: each setting's cost measured within each process, `a.rounds` processes."""
    result = {}
    for r in range(a.rounds):
        for model in models:
            requests = int(MODELS[model][MODELS[model].index("--requests") + 1])
            block = a.block or max(1, requests // 5)
            for name, env in settings.items():
                out = ab_in_process(model, env, a.in_process, block)
                result.setdefault(model, {}).setdefault(name, []).append(out)
                load = os.getloadavg()[0]
                print(f"round {r + 1} {model} {name}: pooled {out['pooled_ratio']:.4f}, median pair "
                      f"{out['median_ratio']:.4f} ({block} requests a block, load {load:.2f})", flush=True)
        print(f"preload_cost: round {r + 1} of {a.rounds} done", file=sys.stderr, flush=True)
    summary = {}
    for model, by in result.items():
        summary[model] = {}
        for name, runs in by.items():
            pooled = [x["pooled_ratio"] for x in runs]
            pairs = [q for x in runs for q in x["ratios"]]
            med = statistics.median(pairs)
            # How far the median resolves: the middle 90% of the medians of resampled pairs.
            lo, hi = interval(pairs, 4000, 1)
            summary[model][name] = {"median_pair_ratio": med, "middle_90": [lo, hi], "process_pooled_ratios": pooled, "runs": runs}
            print(f"{model:12} {name:7} taking part ÷ standing aside: median pair {med:.4f} [{lo:.4f}, {hi:.4f}] over "
                  f"{len(pairs)} pairs; processes pooled {min(pooled):.4f}–{max(pooled):.4f} ({', '.join(f'{x:.4f}' for x in pooled)})")
    print(json.dumps(summary))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("library", help="librightsize_preload.so")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--longer", type=int, default=1, help="times as many requests a measurement (default 1)")
    ap.add_argument("--window-sms", type=int, default=120, help="the window's SMs before the rest is added")
    ap.add_argument("--models", default="bert-base,gpt2-medium,bert-large",
                    help=f"which of {', '.join(MODELS)} (default: all but distilgpt2)")
    ap.add_argument("--in-process", type=int, default=0, metavar="PAIRS",
                    help="measure within each process: PAIRS pairs of blocks taking part and standing aside")
    ap.add_argument("--block", type=int, default=0, help="requests a block with --in-process (default: a fifth of a measurement's)")
    ap.add_argument("--settings", default="none,alone,window",
                    help="which of none (without the interposer), alone (on a board), window (every kernel placed) and shared (on a board beside a busy process) to measure (default: the first three; --in-process measures those but none)")
    a = ap.parse_args()
    if a.in_process < 0 or a.block < 0:
        sys.exit("preload_cost: --in-process and --block must be >= 0")
    if a.in_process % 2:
        sys.exit("preload_cost: --in-process takes an even number of pairs (as many AB as BA)")
    if a.in_process and a.longer != 1:
        sys.exit("preload_cost: --longer is for processes one after another; with --in-process, --block sets a block's requests")
    if a.block and not a.in_process:
        sys.exit("preload_cost: --block is for --in-process")
    if a.rounds < 1:
        sys.exit("preload_cost: --rounds must be >= 1")
    if a.longer < 1:
        sys.exit("preload_cost: --longer must be >= 1")
    models = [m for m in a.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        sys.exit(f"preload_cost: --models takes some of {', '.join(MODELS)}, not {a.models!r}")
    lib = os.path.abspath(a.library)
    if not os.path.isfile(lib):
        sys.exit(f"preload_cost: no interposer at {lib}")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSIZE_") and k != "LD_PRELOAD"}
    with tempfile.TemporaryDirectory() as tmp:
        board = os.path.join(tmp, "board")
        with open(board, "wb") as f:
            f.write(bytes(64))
        # Two slots; the second's `waiting` (its second word, preload/board.rs) is 1 for good.
        beside = os.path.join(tmp, "board-beside")
        with open(beside, "wb") as f:
            f.write(bytes(64) + bytes(8) + (1).to_bytes(8, "little") + bytes(48))
        settings = {
            "none": base,
            "alone": {**base, "LD_PRELOAD": lib, "RIGHTSIZE_BOARD": board, "RIGHTSIZE_SLOT": "0"},
            "window": {**base, "LD_PRELOAD": lib, "RIGHTSIZE_SMS": str(a.window_sms), "RIGHTSIZE_REST": "1"},
            "shared": {**base, "LD_PRELOAD": lib, "RIGHTSIZE_BOARD": beside, "RIGHTSIZE_SLOT": "0"},
        }
        wanted = [x for x in a.settings.split(",") if x]
        if not wanted or any(x not in settings for x in wanted):
            sys.exit(f"preload_cost: --settings takes some of {', '.join(settings)}, not {a.settings!r}")
        settings = {k: v for k, v in settings.items() if k in wanted}
        if a.in_process:
            settings.pop("none", None)
            if not settings:
                sys.exit("preload_cost: --in-process measures alone, window and shared (none has no interposer to stand aside)")
            return in_process(a, models, settings)
        if "none" not in settings:
            sys.exit("preload_cost: --settings needs none (each ratio is to the run without the interposer)")
        ms = {m: {s: [] for s in settings} for m in models}
        for r in range(a.rounds):
            for model in models:
                for name, env in settings.items():
                    ms[model][name].append(ms_per_request(model, env, a.longer))
                    # The host's load: a process beside the measurement shows up here.
                    load = os.getloadavg()[0]
                    print(f"round {r + 1} {model} {name} {ms[model][name][-1]:.3f} ms (load {load:.2f})", flush=True)
            print(f"preload_cost: round {r + 1} of {a.rounds} done", file=sys.stderr, flush=True)
    result = {}
    for model, by in ms.items():
        none = statistics.median(by["none"])
        result[model] = {}
        for name, xs in by.items():
            med = statistics.median(xs)
            # Each round's ratio to that round's run without the interposer: the spread.
            per_round = [x / n for x, n in zip(xs, by["none"])]
            result[model][name] = {"ms": xs, "median_ms": med, "ratio": med / none, "round_ratios": per_round}
            print(
                f"{model:12} {name:7} median {med:8.3f} ms  {med / none:5.3f}x  "
                f"(rounds: {', '.join(f'{x:.3f}' for x in xs)}; round ratios {min(per_round):.3f}–{max(per_round):.3f})"
            )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
