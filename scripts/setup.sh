#!/usr/bin/env bash
# Installs what building rightsize needs, where it is missing:
#  - nvcc 13.0.x (pinned; newer PTX would not JIT on a 13.0 driver), from PyPI into the
#    project-local, git-ignored .toolchain/ — skipped when an nvcc 13.0 is already found;
#  - libclang (for bindgen), from Debian's libclang-dev — skipped when one is loadable;
#  - a TrueType font for the plots, from Debian's fonts-dejavu-core — skipped when present;
#  - python3 with venv (the Python package's tests), from Debian — skipped when present;
#  - shellcheck (`make test` lints the scripts), from Debian — skipped when present.
# Safe to run again: it does nothing when all are present.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

nvcc_ok() { "$1" --version 2>/dev/null | grep -q 'release 13\.0,'; }

find_nvcc() {
    local c
    for c in "${NVCC:-}" "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" "${CUDA_PATH:+$CUDA_PATH/bin/nvcc}" \
             "$(command -v nvcc || true)" .toolchain/nvidia/cu13/bin/nvcc /usr/local/cuda/bin/nvcc; do
        if [ -n "$c" ] && [ -x "$c" ] && nvcc_ok "$c"; then echo "$c"; return 0; fi
    done
    return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; exit 1; fi; }

apt_install() {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- nvcc -------------------------------------------------------------------------
if nvcc=$(find_nvcc); then
    say "nvcc 13.0 found: $nvcc"
else
    command -v python3 >/dev/null || apt_install python3
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    say "installing nvcc 13.0.88 from PyPI into .toolchain/ (about 300 MB)"
    rm -rf .toolchain.partial
    # PIP_BREAK_SYSTEM_PACKAGES: installing into our own --target folder touches no system package.
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
        --target .toolchain.partial \
        nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
        nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96
    rm -rf .toolchain && mv .toolchain.partial .toolchain
    nvcc_ok .toolchain/nvidia/cu13/bin/nvcc || { say "the installed nvcc does not run"; exit 1; }
    say "nvcc 13.0 installed: .toolchain/nvidia/cu13/bin/nvcc"
fi

# nvcc preprocesses with the host C++ compiler.
command -v g++ >/dev/null || { say "installing g++ (nvcc's host compiler)"; apt_install g++; }

# --- libclang ---------------------------------------------------------------------
if [ -n "${LIBCLANG_PATH:-}" ] || ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so'; then
    say "libclang found"
else
    say "installing libclang-dev from Debian"
    apt_install libclang-dev
fi

# --- a font for the plots (`rightsize report`) -------------------------------------
font_found() {
    local f
    [ -n "${RIGHTSIZE_FONT:-}" ] && return 0
    for f in /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/share/fonts/dejavu/DejaVuSans.ttf \
             /usr/share/fonts/TTF/DejaVuSans.ttf /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf; do
        [ -f "$f" ] && return 0
    done
    return 1
}
if font_found; then
    say "plot font found"
else
    say "installing fonts-dejavu-core from Debian (the plots' font)"
    apt_install fonts-dejavu-core
fi

# --- Python with venv (the Python package's tests: scripts/python-test.sh) ----------
if command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null; then
    say "python3 with venv found"
else
    say "installing python3 and python3-venv from Debian (the Python package's tests)"
    apt_install python3 python3-venv python3-pip
fi

# --- shellcheck (`make test` lints the scripts the GPU hosts run) --------------------
if command -v shellcheck >/dev/null; then
    say "shellcheck found"
else
    say "installing shellcheck from Debian (the scripts' lint)"
    apt_install shellcheck
fi
