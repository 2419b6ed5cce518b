#!/usr/bin/env bash
# Builds and runs the probes of this folder on a GPU host; tables to $OUT (or probes-out/).
set -euo pipefail
cd "$(dirname "$0")"
out=${OUT:-probes-out}
mkdir -p "$out"
arch=("-gencode=arch=compute_90a,code=sm_90a")
nvcc -O3 -I../../kernels "${arch[@]}" -o /tmp/hbm_read hbm_read.cu -lcuda
nvcc -O3 -std=c++17 -I../../kernels "${arch[@]}" -o /tmp/decode_gemv decode_gemv.cu -lcuda
/tmp/hbm_read | tee "$out/hbm_read.txt"
/tmp/decode_gemv | tee "$out/decode_gemv.txt"
