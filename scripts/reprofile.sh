#!/usr/bin/env bash
# Measures again, on a GPU host, every model profile the default comparison reads: the
# profiles of profiles/nvidia-h200/ (or of FROM), each by `rightsize profile` with its model,
# batch and sequence length. An edit that changes what a kernel compiles to changes the hash
# of the profiles whose requests launch it (kernels/image_hash.rs), and the comparison and CI
# then refuse those until they are measured again (about two minutes for the H200's fourteen).
# From the repository's root, after scripts/gpu-build.sh:
#
#   scripts/reprofile.sh [--dry-run] [--from FROM]
#
# Each profile is written where `rightsize profile` puts it by default,
# profiles/<this GPU>/<model>-b<batch>-s<seq>.json: on an H200 over the committed ones, on
# another GPU beside them. Application profiles (app-*.json, `rightsize profile --app`) are
# left as they are: they time PyTorch's kernels, not these. --dry-run prints the commands.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
from=profiles/nvidia-h200 dry=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --from) from=${2:?--from needs a directory}; shift ;;
        *) echo "reprofile: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ -d "$from" ] || { echo "reprofile: no directory $from" >&2; exit 2; }
# One line per model profile: model, batch, sequence length (the batch and length from the file
# name, which `rightsize profile` makes; the model from the profile, as the name sanitizes it).
list=$(python3 - "$from" <<'PY'
import json, pathlib, re, sys
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    if p.name.startswith("app-"):
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
