#!/usr/bin/env bash
# Runs, on a GPU host, what scripts/gpu-build.sh built: `rightsize info`, the GPU tests
# (every ignored test included, one at a time), optionally compute-sanitizer over them, and
# the benches. Writes logs to $OUT (or gpu-results/) and exits non-zero if a test fails.
#
#   scripts/gpu-run.sh [--sanitize [memcheck|racecheck|synccheck]] [--no-bench] [--tests FILTER]
#
# --tests takes the test binary's own words, split at spaces: filters, `--skip NAME`s, `--exact`
# (e.g. --tests "--skip engine:: --skip claims::" resumes a suite a call's limit cut short).
# --sanitize runs the GPU tests once more under compute-sanitizer's tool (memcheck unless
# named): every kernel against its reference at several grid sizes, the engine, the runtime.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
bin=gpu-bin
out=${OUT:-gpu-results}
mkdir -p "$out"
sanitize="" bench=1 filter=()
while [ $# -gt 0 ]; do
    case "$1" in
        --sanitize)
            sanitize=memcheck
            case "${2:-}" in memcheck | racecheck | synccheck) sanitize=$2; shift ;; esac
            ;;
        --no-bench) bench=0 ;;
        --tests) [ $# -ge 2 ] || { echo "gpu-run: --tests needs a filter" >&2; exit 2; }; read -ra filter <<<"$2"; shift ;;
        *) echo "gpu-run: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
# shellcheck source=scripts/gpu-bin.sh
source scripts/gpu-bin.sh
gpu_bin_ready gpu-run || exit 2

# cuBLASLt (the GEMM baseline) comes with the CUDA toolkit or PyTorch's wheels; make it findable.
if ! ldconfig -p 2>/dev/null | grep -q 'libcublasLt\.so\.13'; then
    lib=$(find /usr/local /opt /usr/lib -name 'libcublasLt.so.13*' 2>/dev/null | head -1)
    [ -n "$lib" ] && LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" && export LD_LIBRARY_PATH
fi

status=0
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } | tee "$out/host.txt"
"$bin/rightsize" info | tee "$out/info.txt" || status=1
"$bin/rightsize" info --json >"$out/info.json" || status=1

# The real-checkpoint check needs the MiniLM directory, which scripts/minilm.sh fetches and a
# host without network may lack: then that one test is skipped, and said so.
skip=()
minilm=${RIGHTSIZE_MINILM:-models/all-MiniLM-L6-v2}
if [ ! -f "$minilm/model.safetensors" ]; then
    echo "gpu-run: SKIPPED engine::minilm_real_checkpoint: no $minilm/model.safetensors (bash scripts/minilm.sh fetches it)" |
        tee "$out/skipped.txt"
    skip=(--skip engine::minilm_real_checkpoint)
fi

# The Python package (scripts/gpu-bin.sh), with pytest, first: PyTorch tenants' workers (the
# GPU tests' and pytest's) run their request loop through it.
py=""
if [ -d "$bin/wheels" ]; then
    if gpu_python_package rightsize pytest; then
        py=$GPU_PYTHON_DIR
    else
        echo "gpu-run: the Python package did not install; PyTorch tenants cannot run" >&2
        status=1
    fi
fi

# Each test's line starts with the time (UTC) it was complete: its test's start for a test that
# prints (the line ends with its first output), its end for one that prints nothing. So a suite
# that a call's limit cut short says roughly what each test took and where to resume (--tests
# "--skip …"). A last line without its newline (a test that crashed) is kept.
stamp_tests() {
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line == "test "* && $line != "test result:"* ]] && TZ=UTC printf '[%(%T)T] ' -1
        printf '%s\n' "$line"
    done
}
echo "== GPU tests"
"$bin/gpu-tests" --include-ignored --test-threads=1 --nocapture "${skip[@]}" "${filter[@]}" 2>&1 | stamp_tests | tee "$out/gpu-tests.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

for example in "$bin"/rightsize-c-*; do
    # An archive packed with GPU_BIN_PACK may hold none.
    [ -x "$example" ] || continue
    echo "== C ABI: $(basename "$example")"
    "$example" 2>&1 | tee "$out/$(basename "$example").txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
done

if [ -n "$py" ]; then
    echo "== Python package (pytest; PyTorch from the host's Python)"
    (cd python/tests && PATH="$py/bin:$PATH" python3 -m pytest -q -rs -s -p no:cacheprovider . 2>&1) | tee "$out/pytest.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

if [ -f "$bin/librightsize_preload.so" ]; then
    echo "== interposer on PyTorch models (scripts/preload_check.py)"
    python3 scripts/preload_check.py "$bin/librightsize_preload.so" 2>&1 | tee "$out/preload.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    if command -v nvidia-cuda-mps-control >/dev/null; then
        echo "== interposer windows under MPS (scripts/preload_mps.sh)"
        bash scripts/preload_mps.sh "$bin/librightsize_preload.so" 2>&1 | tee "$out/preload-mps.txt"
    fi
fi

if [ -n "$sanitize" ]; then
    echo "== compute-sanitizer $sanitize"
    compute-sanitizer --tool "$sanitize" --error-exitcode 3 "$bin/gpu-tests" --include-ignored --test-threads=1 "${skip[@]}" "${filter[@]}" \
        2>&1 | tee "$out/$sanitize.txt" | tail -5
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi

if [ "$bench" = 1 ]; then
    for b in "$bin"/bench-*; do
        [ -x "$b" ] || continue
        echo "== $(basename "$b")"
        CRITERION_HOME=/tmp/criterion RIGHTSIZE_BENCH_TABLE="$out/$(basename "$b")-table.md" "$b" --bench 2>&1 | tee "$out/$(basename "$b").txt" || status=1
    done
fi
exit $status
