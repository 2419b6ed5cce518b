#!/usr/bin/env bash
# krisp against MPS on PyTorch scenarios, in rounds with the two modes' order alternated, judged
# by scripts/pytorch-targets.py on the median of the rounds (one run of Python-bound processes
# varies more than the 2% the STP target resolves: docs/h100.md). On a GPU host, from the
# repository's root, after scripts/gpu-build.sh:
#
#   scripts/pytorch-rounds.sh [--rounds N] [--deadline SECONDS] [--solos DIR] SCENARIO...
#
# Round r runs `--modes mps,krisp` when r is odd and `--modes krisp,mps` when it is even, into
# $OUT/<scenario>-<r> (or pytorch-rounds/ without $OUT); rounds after the first take round 1's
# solo baselines instead of measuring them again. With --solos DIR every round takes them from
# DIR/<scenario>-1 where that holds a comparison (an earlier call's rounds on the same GPU kind,
# e.g. docs/compare-pytorch-h200), so no round measures them. A round is not started once fewer than
# a tenth of --deadline's seconds (default 560: one device call) are left, and a round still
# running at the deadline is stopped; pytorch-targets.py then judges the rounds that finished.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
rounds=4 deadline=560 earlier='' scenarios=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --deadline) deadline=${2:?--deadline needs seconds}; shift ;;
        --solos) earlier=${2:?--solos needs a directory}; shift ;;
        -*) echo "pytorch-rounds: unknown option $1" >&2; exit 2 ;;
        *) scenarios+=("$1") ;;
    esac
    shift
done
[ ${#scenarios[@]} -gt 0 ] || { echo "pytorch-rounds: name at least one scenario of scenarios/pytorch.toml" >&2; exit 2; }
# shellcheck source=scripts/gpu-bin.sh
source scripts/gpu-bin.sh
gpu_bin_ready pytorch-rounds || exit 2
gpu_python_package rightsize || { echo "pytorch-rounds: the Python package did not install" >&2; exit 2; }
out=${OUT:-pytorch-rounds}
mkdir -p "$out"
start=$(date +%s)
dirs=()
for s in "${scenarios[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
        left=$((deadline - ($(date +%s) - start)))
        if [ $((left * 10)) -lt "$deadline" ]; then
            echo "pytorch-rounds: $s round $r not started: ${left} s left of ${deadline}" >&2
            break 2
        fi
        order=mps,krisp
        [ $((r % 2)) -eq 0 ] && order=krisp,mps
        dir="$out/$s-$r"
        # Rounds after the first take its solo baselines (`--solos`): a round's ratios do not
        # depend on when the baselines ran, and it then costs its two shared runs only.
        solos=()
        if [ -n "$earlier" ] && [ -f "$earlier/$s-1/results.json" ]; then
            solos=(--solos "$earlier/$s-1")
        elif [ "$r" -gt 1 ] && [ -f "$out/$s-1/results.json" ]; then
            solos=(--solos "$out/$s-1")
        fi
        timeout "$left" gpu-bin/rightsize compare --file scenarios/pytorch.toml --scenario "$s" --modes "$order" \
            "${solos[@]}" --out "$dir" >"$dir.log" 2>&1
        rc=$?
        echo "pytorch-rounds: $s round $r ($order): exit $rc at $(($(date +%s) - start)) s"
        dirs+=("$dir")
        if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
            # Not the deadline: the next rounds would fail alike.
            tail -5 "$dir.log" >&2
            break 2
        fi
    done
done
[ ${#dirs[@]} -gt 0 ] || exit 2
python3 scripts/pytorch-targets.py "${dirs[@]}"
