# Sourced by the scripts that run gpu-bin/ on a GPU host, from the repository's root: unpacks
# gpu-bin.tar.xz (what scripts/gpu-build.sh packed, for a host call that cannot carry gpu-bin/
# itself) into gpu-bin/ when the archive's build is newer than gpu-bin/'s (a warm host keeps
# gpu-bin/ and an earlier archive between calls: the newer pack wins). Each build or repack stamps
# gpu-bin/.build with its time.
# shellcheck shell=bash
if [ -f gpu-bin.tar.xz ]; then
    if command -v xz >/dev/null; then
        packed=$(tar -xJOf gpu-bin.tar.xz ./.build 2>/dev/null)
    else
        # No xz on the host: Python's tarfile reads it.
        packed=$(python3 -c 'import sys, tarfile
print(tarfile.open(sys.argv[1]).extractfile("./.build").read().decode().strip())' gpu-bin.tar.xz 2>/dev/null)
    fi
    have=$(cat gpu-bin/.build 2>/dev/null)
    if [ "${packed:-0}" -gt "${have:-0}" ]; then
        rm -rf gpu-bin && mkdir -p gpu-bin
        if command -v xz >/dev/null; then
            tar -xJf gpu-bin.tar.xz -C gpu-bin
        else
            # Python's tarfile keeps the executables' modes.
            python3 -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
t.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))' gpu-bin.tar.xz gpu-bin
        fi
    fi
fi

# gpu_bin_ready WHO: fails, saying so in WHO's name, where gpu-bin/ has no rightsize (no build
# of scripts/gpu-build.sh was carried or unpacked).
gpu_bin_ready() {
    [ -x gpu-bin/rightsize ] && return 0
    echo "$1: no gpu-bin/rightsize; run scripts/gpu-build.sh first" >&2
    return 1
}

# Where gpu_python_package installs.
GPU_PYTHON_DIR=/tmp/rightsize-python

# gpu_python_package PACKAGE...: the PACKAGEs (the Python package `rightsize`, pytest) from
# gpu-bin/wheels, installed beside the host Python's own packages (PyTorch may be in its user site, which a
# virtual environment would hide) into a folder of its own (GPU_PYTHON_DIR), put first on
# PYTHONPATH: PyTorch tenants' workers run their request loop through it. Fails (status 1) if
# it did not install; succeeds with nothing done where gpu-bin/ has no wheels.
gpu_python_package() {
    [ -d gpu-bin/wheels ] || return 0
    rm -rf "$GPU_PYTHON_DIR"
    python3 -m pip install --quiet --no-index --find-links gpu-bin/wheels --target "$GPU_PYTHON_DIR" "$@" || return 1
    export PYTHONPATH="$GPU_PYTHON_DIR${PYTHONPATH:+:$PYTHONPATH}"
}
