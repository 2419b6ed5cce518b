#!/usr/bin/env bash
# The soak's eight tenants under compute-sanitizer (on a GPU host, from the repo root):
#
#   bash scripts/soak-sanitize.sh TOOL [MODE] [MINUTES] [OUT]
#
# TOOL is memcheck, racecheck or synccheck; MODE a one-process mode (default krisp); MINUTES
# the soak's length (default 2); SOAK_FILE a scenario file instead of the embedded soak
# (scenarios/soak-sanitize.toml: the same tenants at lower rates); SANITIZER_ARGS more options
# for compute-sanitizer (e.g. "--launch-skip 30000", which let loading and warm-up of
# soak-sanitize.toml's eight models run unchecked at full speed, checking the serving loop).
# Launches are forced blocking, so the sanitizer tracks one launch at a time: with eight
# tenants launching at once, racecheck's and synccheck's tracking ran out of memory (the
# GPU's for synccheck, the host's 128 GiB for racecheck). A watchdog stops the run before
# the host's out-of-memory killer would (LIMIT_GIB, default 100 GiB resident), or once
# TIME_LIMIT_S seconds have passed (default: none), and says so. Writes OUT/sanitizer.log
# (the tool's report), OUT/rss.txt (peak resident memory) and the soak's own files; exits
# with the tool's status (3: errors). The soak's log names, every 30 s, each tenant's
# launches so far and its last (`--launches`): a launch the tool takes long over shows there.
set -uo pipefail
tool=${1:?usage: soak-sanitize.sh memcheck|racecheck|synccheck [MODE] [MINUTES] [OUT]}
mode=${2:-krisp}
minutes=${3:-2}
out=${4:-results/sanitize-$tool-$mode}
bin=${RIGHTSIZE_BIN:-gpu-bin/rightsize}
limit_kib=$((${LIMIT_GIB:-100} * 1024 * 1024))
deadline=$((SECONDS + ${TIME_LIMIT_S:-1000000000}))
mkdir -p "$out"
compute-sanitizer --version | tail -1 > "$out/sanitizer.log"
# In a process group of its own, so a stop takes the tool and the soak it runs together.
# shellcheck disable=SC2086 # SANITIZER_ARGS is split into options on purpose
setsid compute-sanitizer --tool "$tool" --force-blocking-launches --error-exitcode 3 --print-limit 200 ${SANITIZER_ARGS:-} \
    "$bin" soak --minutes "$minutes" --window-s 30 --launches --mode "$mode" --out "$out" ${SOAK_FILE:+--file "$SOAK_FILE"} >> "$out/sanitizer.log" 2>&1 &
sanitizer=$!
# A stop from outside (scripts/soak-gpu.sh stop) takes the tool and the soak with this script.
trap 'kill -KILL -- -"$sanitizer" 2>/dev/null; exit 143' TERM INT
peak=0
while kill -0 "$sanitizer" 2>/dev/null; do
    rss=$(ps -o rss= -C rightsize | awk '{s += $1} END {print s + 0}')
    ((rss > peak)) && peak=$rss
    if ((rss > limit_kib)); then
        echo "soak-sanitize: stopped at $((rss / 1048576)) GiB resident (limit ${LIMIT_GIB:-100} GiB)" | tee -a "$out/sanitizer.log"
        kill -KILL -- -"$sanitizer" 2>/dev/null || true
    fi
    if ((SECONDS > deadline)); then
        echo "soak-sanitize: stopped after ${TIME_LIMIT_S} s" | tee -a "$out/sanitizer.log"
        kill -KILL -- -"$sanitizer" 2>/dev/null || true
        deadline=$((SECONDS + 1000000000))
    fi
    sleep 1
done
wait "$sanitizer"
status=$?
echo "peak resident memory: $((peak / 1024)) MiB" > "$out/rss.txt"
echo "soak-sanitize: $tool under $mode: exit $status, $(cat "$out/rss.txt")" | tee -a "$out/sanitizer.log"
exit "$status"
