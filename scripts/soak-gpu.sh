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
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${RIGHTSIZE_BIN:-gpu-bin/rightsize}
state=${SOAK_STATE:-/tmp/rightsize-soak}
copy_to=${OUT:-results/soak-gpu}/soak

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
        # Its own session and process group, so it outlives this command and `stop` takes all of it.
        setsid nohup bash -c '"$0" soak --minutes "$1" --window-s 60 --out "$2/out" "${@:3}"; echo $? > "$2/rc"' \
            "$bin" "$minutes" "$state" "$@" > "$state/log" 2>&1 < /dev/null &
        echo $! > "$state/pid"
        echo "soak-gpu: started a $minutes-minute soak ($(date -u +%T)), pid $(cat "$state/pid")"
        wait_for
        ;;
    wait)
        [ -f "$state/pid" ] || { echo "soak-gpu: no soak was started here" >&2; exit 2; }
        wait_for
        ;;
    stop)
        if running; then
            kill -KILL -- -"$(cat "$state/pid")"
            for _ in 1 2 3 4 5 6 7 8 9 10; do running && sleep 0.5; done
            echo "soak-gpu: stopped"
        fi
        report
        ;;
    *)
        echo "usage: soak-gpu.sh start [MINUTES] [SOAK ARGS…] | wait | stop" >&2
        exit 2
        ;;
esac
