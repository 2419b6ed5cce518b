#!/usr/bin/env python3
"""Host time per PyTorch launch under the interposer's settings, to find where its per-launch
cost lies: a process issuing `t.add_(1)` on a 16-element tensor back to back (the GPU never
the bottleneck), without the interposer, with it and no settings (every launch left, no board),
on a board alone (one slot), on a board alone with the starvation watch off, and on a board of
two slots whose other slot says its process is waiting for the GPU (written by this script, a
new board for each run), so every launch is shared as under MPS. Settings alternate round by
round; prints the median µs per launch of each and its difference to the run without the
interposer.

    python3 scripts/probes/preload_host.py gpu-bin/librightsize_preload.so [--rounds 5]
"""
import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile

# The child: scripts/launch_cost.py's launches, 30,000 of them after 2,000.
CHILD = f"""
import sys
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
from launch_cost import host_us_per_launch
print(f"{{host_us_per_launch(launches=30000, warmup=2000)[0]:.4f}}")
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("library")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    lib = os.path.abspath(a.library)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSIZE_") and k != "LD_PRELOAD"}
    with tempfile.TemporaryDirectory() as tmp:
        alone, pair = os.path.join(tmp, "alone"), os.path.join(tmp, "pair")

        def fresh_boards():
            """New boards (a board lives for one run): one slot, and two whose second slot's
            process waits for the GPU for the whole run (busy, best-effort)."""
            with open(alone, "wb") as f:
                f.write(bytes(64))
            with open(pair, "wb") as f:
                f.write(bytes(64) + bytes(8) + struct.pack("<Q", 1) + bytes(48))

        pre = {**base, "LD_PRELOAD": lib}
        settings = {
            "none": base,
            "preload": pre,
            "alone": {**pre, "RIGHTSIZE_BOARD": alone, "RIGHTSIZE_SLOT": "0"},
            "alone-nowatch": {**pre, "RIGHTSIZE_BOARD": alone, "RIGHTSIZE_SLOT": "0", "RIGHTSIZE_STARVING": "0"},
            "shared": {**pre, "RIGHTSIZE_BOARD": pair, "RIGHTSIZE_SLOT": "0"},
            "shared-nowatch": {**pre, "RIGHTSIZE_BOARD": pair, "RIGHTSIZE_SLOT": "0", "RIGHTSIZE_STARVING": "0"},
        }
        us = {s: [] for s in settings}
        for _ in range(a.rounds):
            for s, env in settings.items():
                fresh_boards()
                done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"preload_host: {s} failed: {done.stderr.strip()[-1500:]}")
                us[s].append(float(done.stdout.split()[-1]))
    none = statistics.median(us["none"])
    for s, v in us.items():
        med = statistics.median(v)
        print(f"{s:15} {med:7.3f} µs per launch ({med - none:+7.3f}; runs {', '.join(f'{x:.2f}' for x in v)})")


if __name__ == "__main__":
    main()
