"""``rightsize`` / ``python -m rightsize``: the command line, run by the native module."""

import os
import sys
from pathlib import Path

from . import _native


def main() -> int:
    argv = ["rightsize"] + sys.argv[1:]
    # Worker processes (the multi-process modes) run this same command.
    if "RIGHTSIZE_WORKER_EXE" not in os.environ:
        from . import command

        worker = command()
        if len(worker) == 1 and Path(worker[0]).is_file():
            os.environ["RIGHTSIZE_WORKER_EXE"] = worker[0]
    return _native.main(argv)


if __name__ == "__main__":
    sys.exit(main())
