# Sourced by the scripts that run gpu-bin/ on a GPU host: unpacks gpu-bin.tar.xz (what
# scripts/gpu-build.sh packed, for a host call that cannot carry gpu-bin/ itself) into
# gpu-bin/ when gpu-bin/ has no rightsize, from the repository's root.
# shellcheck shell=bash
if [ ! -x gpu-bin/rightsize ] && [ -f gpu-bin.tar.xz ]; then
    mkdir -p gpu-bin
    if command -v xz >/dev/null; then
        tar -xJf gpu-bin.tar.xz -C gpu-bin
    else
        # No xz on the host: Python's tarfile reads it (keeping the executables' modes).
        python3 -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
t.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))' gpu-bin.tar.xz gpu-bin
    fi
fi
