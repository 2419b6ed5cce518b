#!/usr/bin/env bash
# Builds and runs the probes of this folder on a GPU host; tables to $OUT (or probes-out/).
#
#   scripts/probes/run.sh [hbm] [gemv] [kc1024] [attn] [chain] [queues] [l2evict] [timeline]   (the first five unless named)
#
# kc1024: decode_gemv once more, built against a copy of kernels/ whose streamed decode GEMM
# takes 1,024-column chunks (RS_GEMM_D_KC): a tile's copy of 32 KiB a stage instead of 16, the
# library's kernel otherwise as it is. The tree's kernels/ is not touched.
#
# timeline: kernel_timeline.c built against CUPTI (the toolkit's or the nvidia-cuda-cupti
# package's), then `RIGHTSIZE_BENCH_DECODE=1 gpu-bin/bench-engine --bench` run twice, without
# and with it loaded (CUDA_INJECTION64_PATH), and timeline.py's table of every replayed plan:
# where a decode step's time goes, kernel by kernel. Needs gpu-bin/ (scripts/gpu-build.sh with
# bench-engine packed).
set -euo pipefail
cd "$(dirname "$0")"
out=${OUT:-probes-out}
mkdir -p "$out"
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(hbm gemv kc1024 attn chain)
out=$(cd "$out" && pwd)
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
        chain)
            nvcc -O3 -std=c++17 -I../../kernels "${arch[@]}" -o /tmp/chain chain.cu -lcuda
            /tmp/chain | tee "$out/chain.txt"
            ;;
        queues)
            nvcc -O3 -std=c++17 "${arch[@]}" -o /tmp/queues queues.cu -lcuda
            for q in 8 32; do
                CUDA_DEVICE_MAX_CONNECTIONS=$q /tmp/queues
            done | tee "$out/queues.txt"
            ;;
        l2evict)
            nvcc -O3 -std=c++17 "${arch[@]}" -o /tmp/l2_evict l2_evict.cu -lcublas
            /tmp/l2_evict | tee "$out/l2_evict.txt"
            ;;
        timeline)
            # CUPTI's headers and library: the toolkit's, else the nvidia-cuda-cupti package's.
            inc="" so=""
            for d in /usr/local/cuda/extras/CUPTI /usr/local/cuda $(python3 -c 'import site; print(" ".join(p + "/nvidia/cu13 " + p + "/nvidia/cuda_cupti" for p in site.getsitepackages() + [site.getusersitepackages()]))'); do
                if [ -z "$inc" ] && [ -f "$d/include/cupti_activity.h" ]; then inc=$d/include; fi
                for f in "$d"/lib64/libcupti.so "$d"/lib64/libcupti.so.* "$d"/lib/libcupti.so "$d"/lib/libcupti.so.*; do
                    if [ -z "$so" ] && [ -e "$f" ]; then so=$f; fi
                done
            done
            if [ -z "$inc" ] || [ -z "$so" ]; then
                echo "run.sh: no CUPTI headers ($inc) or library ($so)" >&2
                exit 2
            fi
            lib=$(dirname "$so")
            nvcc_path=$(command -v nvcc) || { echo "run.sh: no nvcc on PATH (for cuda.h)" >&2; exit 2; }
            cudainc=$(dirname "$nvcc_path")/../include
            gcc -O2 -pthread -shared -fPIC -I"$inc" -I"$cudainc" -o /tmp/libkernel_timeline.so kernel_timeline.c "$so" -Wl,-rpath,"$lib"
            (
                cd ../..
                RIGHTSIZE_BENCH_DECODE=1 gpu-bin/bench-engine --bench 2>&1 | tee "$out/decode-plain.txt"
                rm -f "$out"/timeline.*.csv
                CUDA_INJECTION64_PATH=/tmp/libkernel_timeline.so RS_TIMELINE_OUT="$out/timeline" \
                    RIGHTSIZE_BENCH_DECODE=1 gpu-bin/bench-engine --bench 2>&1 | tee "$out/decode-traced.txt"
                python3 scripts/probes/timeline.py "$out"/timeline.*.csv | tee "$out/timeline.txt"
                xz -T0 "$out"/timeline.*.csv
            )
            ;;
        *) echo "run.sh: unknown probe $w (hbm, gemv, kc1024, attn, chain, queues, l2evict, timeline)" >&2; exit 2 ;;
    esac
done
