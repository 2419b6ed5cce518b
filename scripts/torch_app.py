"""An unmodified PyTorch application to profile or place: a transformers model of one of
rightsize's named architectures (random FP16 weights, as the harness's PyTorch tenants build
it), run for some requests in a plain loop.

    python3 scripts/torch_app.py gpt2 --batch 8 --seq 128 --new-tokens 64 --requests 20
    rightsize profile --app "python3 scripts/torch_app.py gpt2 --new-tokens 64"

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a named model: bert-base, bert-large, gpt2, gpt2-medium, distilgpt2, …")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=8, help="tokens a decoder generates per request")
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if min(a.batch, a.seq, a.new_tokens, a.requests) < 1 or a.warmup < 0:
        sys.exit("torch_app: --batch, --seq, --new-tokens and --requests must be ≥ 1, --warmup ≥ 0")
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
    for _ in range(a.warmup):
        request()
    t0 = time.perf_counter()
    for _ in range(a.requests):
        request()
    ms = (time.perf_counter() - t0) * 1e3 / a.requests
    print(f"torch_app: {a.model} {a.batch}x{a.seq} +{a.new_tokens}: {ms:.2f} ms per request over {a.requests}")


if __name__ == "__main__":
    main()
