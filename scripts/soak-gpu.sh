#!/usr/bin/env bash
# The soak on a GPU host whose commands are cut at ten minutes: started in the background in
# one command, waited for in the next ones (issued back to back, so the host stays up).
#
#   bash scripts/soak-gpu.sh start [MINUTES] [SOAK ARGS…]   # starts it (default 30), then waits
#   bash scripts/soak-gpu.sh wait                          # waits on
#   bash scripts/soak-gpu.sh stop                          # stops it (and what it started)
#
# A wait lasts until the soak ends or WAIT_S seconds (default 570) have passed; each start and
# wait copies what the soak has written so far (soak.csv, summary.md, its log) to
# $OUT/soak (or results/soak-gpu). Exits 0 when the soak ended with 0, 3 while it still runs,
# and the soak's status when it failed.
#
# SETTLE_S=N waits N seconds before starting (within the start command, before its WAIT_S)
# and logs the host CPU busy and stolen by its hypervisor meanwhile (/proc/stat): on a machine
# just started, steal of 0.1 core lasted about two minutes and showed in every tenant's p99
# (docs/reliability.md). E.g. SETTLE_S=150 WAIT_S=430 start 30, then WAIT_S 585, 480, 590.
#
# SANITIZE=TOOL (memcheck, racecheck, synccheck) runs scripts/soak-sanitize.sh TOOL instead
# (MINUTES its soak's length, MODE its mode, default krisp; SOAK_FILE, SANITIZER_ARGS,
# TIME_LIMIT_S and LIMIT_GIB passed on), for a run under the tool that outlasts one command.
#
# A command still running when its machine's time is up runs to its end, so the last `wait`
# must start before then: a machine held 30 minutes, a start of about a minute and a soak
# loading for ~20 s take four calls for 30 minutes (e.g. WAIT_S 585, 585, 480, then 590).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
bin=${RIGHTSIZE_BIN:-gpu-bin/rightsize}
state=${SOAK_STATE:-/tmp/rightsize-soak}
copy_to=${OUT:-results/soak-gpu}/soak

# The host's busy and stolen CPU time since boot, in clock ticks.
host_cpu() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }

# Waits SETTLE_S seconds and says how busy the host was and what its hypervisor took.
settle() {
    local s=${SETTLE_S:-0} b0 s0 b1 s1
    ((s > 0)) || return 0
    read -r b0 s0 < <(host_cpu)
    sleep "$s"
    read -r b1 s1 < <(host_cpu)
    awk -v s="$s" -v hz="$(getconf CLK_TCK)" -v b=$((b1 - b0)) -v st=$((s1 - s0)) \
        'BEGIN { printf "soak-gpu: settled %d s: host CPU busy %.3f cores, stolen %.3f cores\n", s, b / hz / s, st / hz / s }'
}

running() { [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }

report() {
    mkdir -p "$copy_to"
    cp -r "$state/out/." "$copy_to/" 2>/dev/null
    cp "$state/log" "$copy_to/soak.log" 2>/dev/null
    tail -n 5 "$state/log" 2>/dev/null
    if running; then
        echo "soak-gpu: running ($(date -u +%T)); call 'wait' again"
        return 3
    fi
    local rc
    rc=$(cat "$state/rc" 2>/dev/null || echo 1)
    echo "soak-gpu: ended with status $rc ($(date -u +%T))"
    return "$rc"
}

wait_for() {
    local until=$((SECONDS + ${WAIT_S:-570}))
    while running && ((SECONDS < until)); do sleep 5; done
    report
}

case "${1:-}" in
    start)
        shift
        minutes=${1:-30}
        [ $# -gt 0 ] && shift
        if running; then
            echo "soak-gpu: a soak is already running (pid $(cat "$state/pid")); 'wait' or 'stop' it" >&2
            exit 2
        fi
        [ -x "$bin" ] || { echo "soak-gpu: no $bin; run scripts/gpu-build.sh first" >&2; exit 2; }
        rm -rf "$state" && mkdir -p "$state"
        settle | tee "$state/log"
        if [ -n "${SANITIZE:-}" ]; then
            if [ $# -gt 0 ]; then
                echo "soak-gpu: under SANITIZE the soak takes no arguments ($*); use SOAK_FILE, MODE, SANITIZER_ARGS" >&2
                exit 2
            fi
            run=(bash scripts/soak-sanitize.sh "$SANITIZE" "${MODE:-krisp}" "$minutes" "$state/out")
        else
            run=("$bin" soak --minutes "$minutes" --window-s 60 --out "$state/out" "$@")
        fi
        # Its own session and process group, so it outlives this command and `stop` takes all of it.
        # shellcheck disable=SC2016 # the inner shell expands its own arguments
        setsid nohup bash -c '"${@:2}"; echo $? > "$1/rc"' _ "$state" "${run[@]}" >> "$state/log" 2>&1 < /dev/null &
        echo $! > "$state/pid"
        echo "soak-gpu: started a $minutes-minute soak${SANITIZE:+ under $SANITIZE} ($(date -u +%T)), pid $(cat "$state/pid")"
        wait_for
        ;;
    wait)
        [ -f "$state/pid" ] || { echo "soak-gpu: no soak was started here" >&2; exit 2; }
        wait_for
        ;;
    stop)
        if running; then
            # TERM first, so that soak-sanitize.sh stops the tool it started in a group of its own.
            kill -TERM -- -"$(cat "$state/pid")"
            for _ in 1 2 3 4 5 6 7 8 9 10; do running && sleep 0.5; done
            running && kill -KILL -- -"$(cat "$state/pid")"
            echo "soak-gpu: stopped"
        fi
        report
        ;;
    *)
        echo "usage: soak-gpu.sh start [MINUTES] [SOAK ARGS…] | wait | stop" >&2
        exit 2
        ;;
esac
