#!/usr/bin/env bash
# Measures again, on a GPU host, the model profiles the default comparison reads that were
# measured with other kernels than this build's or on another GPU model: the profiles of
# profiles/nvidia-h200/ (or of FROM) that `rightsize profile --stale` names (every one with
# --all; on another GPU than an H200 that is every one, then `--from profiles/<that GPU>`
# measures only its stale ones), each by `rightsize profile` with its model, batch and sequence
# length. An edit that changes what a kernel
# compiles to changes the hash of the profiles whose requests launch it (kernels/image_hash.rs),
# and the comparison and CI then refuse those until they are measured again (about two minutes
# for all of the H200's fourteen).
# From the repository's root, after scripts/gpu-build.sh:
#
#   scripts/reprofile.sh [--dry-run] [--all] [--from FROM]
#
# Each profile is written where `rightsize profile` puts it by default,
# profiles/<this GPU>/<model>-b<batch>-s<seq>.json: on an H200 over the committed ones, on
# another GPU beside them. Application profiles (app-*.json, `rightsize profile --app`) are
# left as they are: they time PyTorch's kernels, not these. --dry-run prints the commands.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
from=profiles/nvidia-h200 dry=0 all=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --all) all=1 ;;
        --from) from=${2:?--from needs a directory}; shift ;;
        *) echo "reprofile: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ -d "$from" ] || { echo "reprofile: no directory $from" >&2; exit 2; }
# The stale ones, by this build's `rightsize` (gpu-bin's, else target/release's; without a GPU,
# as --dry-run may be, by their kernels only).
only=""
if [ "$all" = 0 ]; then
    rs=gpu-bin/rightsize
    [ -x "$rs" ] || rs=target/release/rightsize
    [ -x "$rs" ] || { echo "reprofile: no rightsize to tell the stale profiles (scripts/gpu-build.sh first, or --all)" >&2; exit 2; }
    only=$("$rs" profile --stale "$from") || { echo "reprofile: $rs profile --stale $from failed" >&2; exit 2; }
    if [ -z "$only" ]; then
        echo "reprofile: every profile of $from is of this build's kernels (--all measures them again anyway)"
        exit 0
    fi
fi
# One line per model profile to measure: model, batch, sequence length (the batch and length
# from the file name, which `rightsize profile` makes; the model from the profile, as the name
# sanitizes it).
list=$(ONLY="$only" python3 - "$from" <<'PY'
import json, os, pathlib, re, sys
only = {pathlib.Path(p).name for p in os.environ["ONLY"].split("\n") if p}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    if p.name.startswith("app-") or (only and p.name not in only):
        continue
    m = re.fullmatch(r".+-b(\d+)-s(\d+)\.json", p.name)
    if not m:
        sys.exit(f"reprofile: {p}: not a <model>-b<batch>-s<seq>.json name")
    model = json.loads(p.read_text()).get("model")
    if not isinstance(model, str) or not model or " " in model:
        sys.exit(f"reprofile: {p}: no model name in it")
    print(model, m.group(1), m.group(2))
PY
) || exit 2
[ -n "$list" ] || { echo "reprofile: no model profiles in $from" >&2; exit 2; }
n=$(wc -l <<<"$list")
if [ "$dry" = 0 ]; then
    # shellcheck source=scripts/gpu-bin.sh
    source scripts/gpu-bin.sh
    gpu_bin_ready reprofile || exit 2
fi
i=0
while read -r -u 3 model batch seq; do
    i=$((i + 1))
    cmd=(gpu-bin/rightsize profile --model "$model" --batch "$batch" --seq "$seq")
    echo "reprofile [$i/$n]: ${cmd[*]}"
    [ "$dry" = 1 ] && continue
    start=$(date +%s)
    "${cmd[@]}" </dev/null >/dev/null || { echo "reprofile: $model b$batch s$seq failed; the profiles after it were not measured" >&2; exit 1; }
    echo "reprofile [$i/$n]: done in $(($(date +%s) - start)) s"
done 3<<<"$list"
