#!/usr/bin/env bash
# Builds, on this machine, everything a GPU host runs: the CLI, the GPU integration-test
# binary and every criterion bench, stripped, into gpu-bin/, and the same packed into
# gpu-bin.tar.xz (both git-ignored). Copy the repository with gpu-bin/ (or, where that is too
# large to send beside the repository, gpu-bin.tar.xz) to the GPU host and run
# scripts/gpu-run.sh there, which unpacks the archive when gpu-bin/ is missing; the GPU host
# needs the NVIDIA driver, not Rust or CUDA's toolkit (libcuda is loaded at run time).
#
# GPU_BIN_PACK="NAME…" packs only those entries of gpu-bin/ (and its build stamp) into the
# archive, for a call that needs a few of them where the whole archive does not fit beside the
# repository: e.g. GPU_BIN_PACK="rightsize librightsize_preload.so wheels" for PyTorch rounds,
# or "rightsize gpu-tests bench-kernels bench-engine" for kernel work. gpu-bin/ here holds
# everything either way. `scripts/gpu-build.sh --repack` packs the gpu-bin/ built last again
# (with another GPU_BIN_PACK, say) without building it again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-bin
case "${1:-}" in
    --repack) [ -f "$out/.build" ] || { echo "gpu-build: nothing to pack again: build $out/ first" >&2; exit 2; } ;;
    "") build=1 ;;
    *) echo "gpu-build: unknown argument $1 (only --repack)" >&2; exit 2 ;;
esac
if [ -n "${build:-}" ]; then
bash scripts/setup.sh >/dev/null
rm -rf "$out" && mkdir -p "$out"

# `cargo … --no-run` prints "Executable <source> (<path>)" for each test or bench binary.
executables() { sed -n 's/^ *Executable .*(\(.*\))$/\1/p'; }

cargo build --release --bin rightsize
cp target/release/rightsize "$out/rightsize"

gpu_test=$(cargo test --release --test gpu --no-run 2>&1 | tee /dev/stderr | executables)
cp "$gpu_test" "$out/gpu-tests"

{ cargo bench --no-run 2>&1; cargo bench -p rightsize-preload --no-run 2>&1; } | tee /dev/stderr | executables | while read -r bench; do
    name=$(basename "$bench"); name=${name%-*}
    cp "$bench" "$out/bench-$name"
done

# The C ABI's examples (capi/examples/*.c), linked against librightsize_c.so beside them.
cargo test --release -p rightsize-c --test c_abi the_c_examples_compile 2>&1 | tail -3
cp target/release/c-example/rightsize-c-* target/release/c-example/librightsize_c.so "$out/"

# The interposer for unmodified applications (LD_PRELOAD), checked by scripts/preload_check.py.
cargo build --release -p rightsize-preload
cp target/release/librightsize_preload.so "$out/"

strip "$out"/rightsize "$out"/gpu-tests "$out"/bench-* "$out"/rightsize-c-* "$out"/*.so

# The Python package's wheel and pytest's, for an offline install on the GPU host.
bash scripts/python-test.sh --wheel "$out/wheels" | tail -3
fi
# The pack's time, by which scripts/gpu-bin.sh tells a newer archive from an older gpu-bin/ (a
# warm host that unpacked an earlier pack of the same build unpacks this one too).
date +%s%N >"$out/.build"
pack=(.)
if [ -n "${GPU_BIN_PACK:-}" ]; then
    pack=(./.build)
    for name in $GPU_BIN_PACK; do
        if [ ! -e "$out/$name" ]; then
            echo "gpu-build: GPU_BIN_PACK names $name, which $out/ does not have (it has: $(cd "$out" && printf "%s " *))" >&2
            exit 2
        fi
        pack+=("./$name")
    done
fi
tar -cJf gpu-bin.tar.xz -C "$out" "${pack[@]}"
ls -l "$out" gpu-bin.tar.xz
# A GPU host call sends the repository's tracked files with what it carries, 64 MiB together.
limit=$((64 * 1024 * 1024))
tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1 || true)
tracked=${tracked:-0}
size=$(du -cb "$out" | tail -1 | cut -f1)
packed=$(du -b gpu-bin.tar.xz | cut -f1)
mib() { echo "$(($1 / 1024 / 1024)) MiB"; }
if [ -z "${GPU_BIN_PACK:-}" ] && [ $((tracked + size)) -le "$limit" ]; then
    echo "gpu-build: $out ready ($(mib "$size"); with the repository's $(mib "$tracked"), within the 64 MiB a call sends)"
elif [ $((tracked + packed)) -le "$limit" ]; then
    echo "gpu-build: carry gpu-bin.tar.xz ($(mib "$packed"): ${GPU_BIN_PACK:-all of $out/, $(mib "$size") unpacked}) beside the repository's $(mib "$tracked"); scripts/gpu-run.sh unpacks it"
else
    echo "gpu-build: gpu-bin.tar.xz ($(mib "$packed")) is too large beside the repository's $(mib "$tracked") for a call's 64 MiB; pack only what the call runs, GPU_BIN_PACK=\"NAME…\" of:" >&2
    (cd "$out" && du -b -- * | sort -rn | awk '{ printf "  %s (%d MiB)\n", $2, $1 / 1048576 }') >&2
    exit 1
fi
