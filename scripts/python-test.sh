#!/usr/bin/env bash
# The Python package's tests: `pip install .` into a virtual environment of its own
# (target/pyenv, git-ignored), then pytest. Tests that need PyTorch or a GPU skip without them.
# With --wheel DIR, also writes the package's wheel and pytest's wheels into DIR (for a GPU
# host, which installs them offline: scripts/gpu-run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
env=target/pyenv
[ -x "$env/bin/python" ] || python3 -m venv "$env"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
"$env/bin/pip" install --quiet 'pytest>=7'
"$env/bin/pip" install --quiet --force-reinstall --no-deps .
"$env/bin/python" -m pytest -q -rs python/tests
if [ "${1:-}" = --wheel ]; then
    "$env/bin/pip" wheel --quiet --no-deps -w "$2" .
    # pytest for this Python and for 3.10 (whose pytest needs a few more wheels).
    "$env/bin/pip" download --quiet -d "$2" 'pytest>=7'
    "$env/bin/pip" download --quiet -d "$2" --python-version 3.10 --only-binary=:all: 'pytest>=7'
fi
