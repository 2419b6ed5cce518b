#!/usr/bin/env bash
# The decode issue's measurements on a GPU host, in one go, from what scripts/gpu-build.sh
# built (only bench-kernels, bench-engine and rightsize are needed from gpu-bin/): the probes
# of scripts/probes/ (HBM reads by SM count; the decode GEMM three ways), bench-kernels' decode
# GEMM table, bench-engine's decode steps against their floors, and the profiles of the two
# Llama-family decoders at batch 8. Writes at most 8 files to $OUT (or gpu-results/decode/).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
# shellcheck source=scripts/gpu-bin.sh
source scripts/gpu-bin.sh
bin=${BIN:-gpu-bin}
out=${OUT:-gpu-results/decode}
mkdir -p "$out"
status=0
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee "$out/log.txt"
OUT="$out" bash scripts/probes/run.sh >>"$out/log.txt" 2>&1 || status=1
RIGHTSIZE_BENCH_GEMMS=decode RIGHTSIZE_BENCH_TABLE="$out/decode-gemms.md" "$bin/bench-kernels" --bench >>"$out/log.txt" 2>&1 || status=1
RIGHTSIZE_BENCH_DECODE=1 RIGHTSIZE_BENCH_TABLE="$out/decode-steps.md" "$bin/bench-engine" --bench >>"$out/log.txt" 2>&1 || status=1
for model in mistral-7b llama-3.2-1b; do
    "$bin/rightsize" profile --model "$model" --batch 8 --seq 128 --out "$out/$model-b8-s128.json" >>"$out/log.txt" 2>&1 || status=1
done
tail -n 40 "$out/log.txt"
exit $status
