#!/usr/bin/env bash
# Whether the interposer's green contexts confine two processes' kernels under MPS: two
# PyTorch processes, each running 8192³ FP16 GEMMs for a few seconds, alone and together,
# under an MPS daemon of this script's own (private pipe and log directories, always stopped),
# first without the interposer, then each on its own SM window (groups 0–7 and 8–14). Prints
# GEMMs per second per process and case as JSON lines.
#
#   bash scripts/preload_mps.sh gpu-bin/librightsize_preload.so
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(realpath "$1")
seconds=${SECONDS_PER_RUN:-4}
dir=$(mktemp -d /tmp/rightsize-mps.XXXXXX)
export CUDA_MPS_PIPE_DIRECTORY=$dir/pipe CUDA_MPS_LOG_DIRECTORY=$dir/log
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
stop() { echo quit | nvidia-cuda-mps-control >/dev/null 2>&1 || true; sleep 1; rm -rf "$dir"; }
trap stop EXIT
nvidia-cuda-mps-control -d

loop() { # name, then environment assignments
    local name=$1; shift
    env "$@" python3 - "$name" "$seconds" <<'EOF'
import json, sys, time
import torch
name, seconds = sys.argv[1], float(sys.argv[2])
x = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
for _ in range(5):
    x @ x
torch.cuda.synchronize()
n, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    for _ in range(10):
        x @ x
    torch.cuda.synchronize()
    n += 10
print(json.dumps({"process": name, "gemms_per_s": round(n / (time.perf_counter() - start), 1)}))
EOF
}

for case in plain windows; do
    if [ "$case" = plain ]; then
        a=(A_=1) b=(B_=1)
    else
        a=(LD_PRELOAD="$lib" RIGHTSIZE_SMS=64 RIGHTSIZE_FIRST_GROUP=0)
        b=(LD_PRELOAD="$lib" RIGHTSIZE_SMS=56 RIGHTSIZE_FIRST_GROUP=8)
    fi
    echo "{\"case\": \"$case\", \"run\": \"A alone\"}"; loop A "${a[@]}"
    echo "{\"case\": \"$case\", \"run\": \"B alone\"}"; loop B "${b[@]}"
    echo "{\"case\": \"$case\", \"run\": \"A and B together\"}"
    loop A "${a[@]}" & pa=$!
    loop B "${b[@]}" & pb=$!
    wait $pa $pb
done
