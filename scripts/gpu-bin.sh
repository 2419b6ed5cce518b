# Sourced by the scripts that run gpu-bin/ on a GPU host: unpacks gpu-bin.tar.gz (what
# scripts/gpu-build.sh packed, for a host call that cannot carry gpu-bin/ itself) into
# gpu-bin/ when gpu-bin/ has no rightsize, from the repository's root.
# shellcheck shell=bash
if [ ! -x gpu-bin/rightsize ] && [ -f gpu-bin.tar.gz ]; then
    mkdir -p gpu-bin && tar -xzf gpu-bin.tar.gz -C gpu-bin
fi
