#!/usr/bin/env bash
# krisp against MPS on PyTorch scenarios, in rounds with the two modes' order alternated, judged
# by scripts/pytorch-targets.py on the median of the rounds (one run of Python-bound processes
# varies more than the 2% the STP target resolves: docs/h100.md). On a GPU host, from the
# repository's root, after scripts/gpu-build.sh:
#
#   scripts/pytorch-rounds.sh [--rounds N] [--deadline SECONDS] [--solos DIR] [--with VAR=VALUE]
#                             [--file SCENARIOS.toml] SCENARIO...
#
# Round r runs `--modes mps,krisp` when r is odd and `--modes krisp,mps` when it is even, into
# $OUT/<scenario>-<r> (or pytorch-rounds/ without $OUT); rounds after the first take round 1's
# solo baselines instead of measuring them again. With --solos DIR round 1 takes them from
# DIR/<scenario>-1 where that holds a comparison (an earlier call's rounds on the same GPU kind,
# e.g. docs/compare-pytorch-h200) and measures only those it lacks. A round is not started once fewer than
# a tenth of --deadline's seconds (default 560: one device call) are left, and a round still
# running at the deadline is stopped; pytorch-targets.py then judges the rounds that finished.
# With --with VAR=VALUE every round runs twice, as it is and with the environment variable set
# (into $OUT/with/<scenario>-<r>, the setting written to $OUT/with/SETTING), which of the two
# first alternating from round to round, so an A/B of a setting shares the host's drift; each
# set is judged on its own. --file takes the scenarios from another file than scenarios/pytorch.toml
# (a path from the repository's root, or absolute; e.g. a variant of one of them, which keeps its
# name so --solos still finds its baselines).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
rounds=4 deadline=560 earlier='' with='' file=scenarios/pytorch.toml scenarios=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --deadline) deadline=${2:?--deadline needs seconds}; shift ;;
        --solos) earlier=${2:?--solos needs a directory}; shift ;;
        --with) with=${2:?--with needs VAR=VALUE}; shift ;;
        --file) file=${2:?--file needs a scenario file}; shift ;;
        -*) echo "pytorch-rounds: unknown option $1" >&2; exit 2 ;;
        *) scenarios+=("$1") ;;
    esac
    shift
done
[ ${#scenarios[@]} -gt 0 ] || { echo "pytorch-rounds: name at least one scenario of $file" >&2; exit 2; }
[ -f "$file" ] || { echo "pytorch-rounds: no scenario file $file" >&2; exit 2; }
if [ -n "$with" ] && ! [[ "$with" =~ ^[A-Za-z_][A-Za-z0-9_]*=.*$ ]]; then
    echo "pytorch-rounds: --with takes VAR=VALUE, not $with" >&2
    exit 2
fi
# shellcheck source=scripts/gpu-bin.sh
source scripts/gpu-bin.sh
gpu_bin_ready pytorch-rounds || exit 2
gpu_python_package rightsize || { echo "pytorch-rounds: the Python package did not install" >&2; exit 2; }
out=${OUT:-pytorch-rounds}
mkdir -p "$out"
variants=(plain)
if [ -n "$with" ]; then
    variants=(plain with)
    mkdir -p "$out/with"
    echo "$with" >"$out/with/SETTING"
fi
start=$(date +%s)
dirs=() with_dirs=()
for s in "${scenarios[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
        order=mps,krisp
        [ $((r % 2)) -eq 0 ] && order=krisp,mps
        these=("${variants[@]}")
        [ $((r % 2)) -eq 0 ] && [ -n "$with" ] && these=(with plain)
        for v in "${these[@]}"; do
            left=$((deadline - ($(date +%s) - start)))
            if [ $((left * 10)) -lt "$deadline" ]; then
                echo "pytorch-rounds: $s round $r ($v) not started: ${left} s left of ${deadline}" >&2
                break 3
            fi
            base=$out env=()
            if [ "$v" = with ]; then
                base=$out/with env=("$with")
            fi
            dir="$base/$s-$r"
            # Rounds after the first take its solo baselines (`--solos`): a round's ratios do
            # not depend on when the baselines ran, and it then costs its two shared runs only.
            # Round 1's hold those it took from --solos DIR and those DIR lacked (an open
            # loop's of another length, say), so no baseline is measured twice.
            solos=()
            if [ "$r" -gt 1 ] && [ -f "$base/$s-1/results.json" ]; then
                solos=(--solos "$base/$s-1")
            elif [ -n "$earlier" ] && [ -f "$earlier/$s-1/results.json" ]; then
                solos=(--solos "$earlier/$s-1")
            fi
            env "${env[@]}" timeout "$left" gpu-bin/rightsize compare --file "$file" --scenario "$s" \
                --modes "$order" "${solos[@]}" --out "$dir" >"$dir.log" 2>&1
            rc=$?
            echo "pytorch-rounds: $s round $r ($order${env[*]:+, ${env[*]}}): exit $rc at $(($(date +%s) - start)) s"
            if [ "$v" = with ]; then with_dirs+=("$dir"); else dirs+=("$dir"); fi
            if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
                # Not the deadline: the next rounds would fail alike.
                tail -5 "$dir.log" >&2
                break 3
            fi
        done
    done
done
[ ${#dirs[@]} -gt 0 ] || [ ${#with_dirs[@]} -gt 0 ] || exit 2
status=0
if [ ${#dirs[@]} -gt 0 ]; then
    [ -n "$with" ] && echo "as it is:"
    python3 scripts/pytorch-targets.py "${dirs[@]}" || status=$?
fi
if [ ${#with_dirs[@]} -gt 0 ]; then
    echo "with $with:"
    python3 scripts/pytorch-targets.py "${with_dirs[@]}" || status=$?
fi
exit "$status"
