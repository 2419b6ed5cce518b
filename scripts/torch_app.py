"""An unmodified PyTorch application to profile or place: a transformers model of one of
rightsize's named architectures (random FP16 weights, as the harness's PyTorch tenants build
it), run for some requests in a plain loop.

    python3 scripts/torch_app.py gpt2 --batch 8 --seq 128 --new-tokens 64 --requests 20
    rightsize profile --app "python3 scripts/torch_app.py gpt2 --new-tokens 64"
    LD_PRELOAD=librightsize_preload.so python3 scripts/torch_app.py bert-large --seq 512 --ab 10

With ``--ab PAIRS`` (the interposer loaded) it times PAIRS pairs of blocks of ``--requests``
requests, one with the interposer taking part and one with it standing aside
(``rightsize_preload_bypass``: every call straight to the driver), in the order AB, BA, AB, …
(an even number of pairs; each path warmed by at least one request first), so that the host's
and the GPU's drift and the process's own speed fall on both alike; it prints each pair and
one JSON line (``scripts/preload_cost.py --in-process``).

The architecture comes from ``rightsize model-config NAME`` ($RIGHTSIZE_BIN, else
gpu-bin/rightsize or target/release/rightsize beside this script, else ``rightsize`` on the
PATH), and a request is the harness tenant's own (``torch_worker.torch_request``): the same
kernels and launch shapes as a ``engine = "torch"`` tenant of the same model and shape.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import importlib.util
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
# The harness's PyTorch tenant, loaded from its file (its directory holds the package's own
# torch.py, which must not stand for PyTorch).
_spec = importlib.util.spec_from_file_location("torch_worker", os.path.join(HERE, "..", "python", "rightsize", "torch_worker.py"))
torch_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(torch_worker)


def rightsize_bin():
    if os.environ.get("RIGHTSIZE_BIN"):
        return os.environ["RIGHTSIZE_BIN"]
    for rel in ("gpu-bin/rightsize", "target/release/rightsize"):
        p = os.path.join(HERE, "..", rel)
        if os.access(p, os.X_OK):
            return p
    found = shutil.which("rightsize")
    if not found:
        sys.exit("torch_app: no rightsize program (set RIGHTSIZE_BIN)")
    return found


def bypass_switch():
    """The interposer's ``rightsize_preload_bypass``, found as the process loaded it."""
    import ctypes

    try:
        f = ctypes.CDLL(None).rightsize_preload_bypass
    except AttributeError:
        sys.exit("torch_app: --ab needs the interposer loaded (LD_PRELOAD=librightsize_preload.so)")
    f.argtypes = [ctypes.c_int]
    f.restype = ctypes.c_int
    return f


def ms_per_request(request, n):
    t0 = time.perf_counter()
    for _ in range(n):
        request()
    return (time.perf_counter() - t0) * 1e3 / n


def ab(request, a, name):
    """--ab: pairs of blocks with the interposer taking part (A) and standing aside (B)."""
    bypass = bypass_switch()
    for aside in (0, 1):  # warm both paths (a placed kernel's partition is made on first use)
        bypass(aside)
        for _ in range(max(1, a.warmup)):
            request()
    part, aside_ms = [], []
    for k in range(a.ab):
        for aside in (0, 1) if k % 2 == 0 else (1, 0):
            bypass(aside)
            (aside_ms if aside else part).append(ms_per_request(request, a.requests))
        print(f"torch_app: {name} pair {k + 1}: {part[-1]:.3f} ms taking part, {aside_ms[-1]:.3f} ms standing aside", flush=True)
    bypass(0)
    ratios = [x / y for x, y in zip(part, aside_ms)]
    out = {
        "model": name,
        "requests_a_block": a.requests,
        "part_ms": part,
        "aside_ms": aside_ms,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "pooled_ratio": sum(part) / sum(aside_ms),
    }
    print(
        f"torch_app: {name}: taking part ÷ standing aside {out['pooled_ratio']:.4f} pooled, "
        f"{out['median_ratio']:.4f} the median pair ({min(ratios):.4f}–{max(ratios):.4f}, {a.ab} pairs)"
    )
    print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a named model: bert-base, bert-large, gpt2, gpt2-medium, distilgpt2, …")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=8, help="tokens a decoder generates per request")
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ab", type=int, default=0, metavar="PAIRS", help="pairs of blocks with the interposer taking part and standing aside (it must be loaded)")
    a = ap.parse_args()
    if min(a.batch, a.seq, a.new_tokens, a.requests) < 1 or a.warmup < 0 or a.ab < 0:
        sys.exit("torch_app: --batch, --seq, --new-tokens and --requests must be ≥ 1, --warmup and --ab ≥ 0")
    if a.ab % 2:
        sys.exit("torch_app: --ab takes an even number of pairs (as many AB as BA, so that order effects cancel)")
    if a.ab:
        bypass_switch()  # before the model is built: a missing interposer fails at once
    # The architecture, read with the interposer kept out of the helper process.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = subprocess.run([rightsize_bin(), "model-config", a.model], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"torch_app: {out.stderr.strip() or 'rightsize model-config failed'}")
    spec = {
        "config": json.loads(out.stdout),
        "seed": a.seed,
        "tenant": {"batch": a.batch, "seq": a.seq, "new_tokens": a.new_tokens},
    }
    request = torch_worker.torch_request(spec)
    name = f"{a.model} {a.batch}x{a.seq} +{a.new_tokens}"
    if a.ab:
        ab(request, a, name)
        return
    for _ in range(a.warmup):
        request()
    ms = ms_per_request(request, a.requests)
    print(f"torch_app: {name}: {ms:.2f} ms per request over {a.requests}")


if __name__ == "__main__":
    main()
