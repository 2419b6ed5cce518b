#!/usr/bin/env bash
# Builds and runs the probes of this folder on a GPU host; tables to $OUT (or probes-out/).
#
#   scripts/probes/run.sh [hbm] [gemv] [kc1024] [attn]   (all four unless named)
#
# kc1024: decode_gemv once more, built against a copy of kernels/ whose streamed decode GEMM
# takes 1,024-column chunks (RS_GEMM_D_KC): a tile's copy of 32 KiB a stage instead of 16, the
# library's kernel otherwise as it is. The tree's kernels/ is not touched.
set -euo pipefail
cd "$(dirname "$0")"
out=${OUT:-probes-out}
mkdir -p "$out"
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(hbm gemv kc1024 attn)
arch=("-gencode=arch=compute_90a,code=sm_90a")
for w in "${want[@]}"; do
    case "$w" in
        hbm)
            nvcc -O3 -I../../kernels "${arch[@]}" -o /tmp/hbm_read hbm_read.cu -lcuda
            /tmp/hbm_read | tee "$out/hbm_read.txt"
            ;;
        gemv)
            nvcc -O3 -std=c++17 -I../../kernels "${arch[@]}" -o /tmp/decode_gemv decode_gemv.cu -lcuda
            /tmp/decode_gemv | tee "$out/decode_gemv.txt"
            ;;
        kc1024)
            kc=$(mktemp -d)
            trap 'rm -rf "$kc"' EXIT
            cp -r ../../kernels "$kc/"
            sed -i 's/^#define RS_GEMM_D_KC 512$/#define RS_GEMM_D_KC 1024/' "$kc/kernels/abi.h"
            grep -q '^#define RS_GEMM_D_KC 1024$' "$kc/kernels/abi.h" || { echo "run.sh: RS_GEMM_D_KC not found" >&2; exit 2; }
            nvcc -O3 -std=c++17 -I"$kc/kernels" "${arch[@]}" -o /tmp/decode_gemv_kc1024 decode_gemv.cu -lcuda
            { echo "decode_gemv built against kernels/ with RS_GEMM_D_KC 1024"; /tmp/decode_gemv_kc1024; } |
                tee "$out/decode_gemv_kc1024.txt"
            ;;
        attn)
            nvcc -O3 -std=c++17 -I../../kernels "${arch[@]}" -o /tmp/decode_attn decode_attn.cu -lcuda
            /tmp/decode_attn | tee "$out/decode_attn.txt"
            ;;
        *) echo "run.sh: unknown probe $w (hbm, gemv, kc1024, attn)" >&2; exit 2 ;;
    esac
done
