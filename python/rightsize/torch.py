"""Run blocks of PyTorch code on right-sized SM partitions.

::

    import rightsize.torch as rt
    with rt.partition(sms=64):
        y = model(x)          # every kernel PyTorch launches here runs on 64 SMs

:func:`partition` makes (once per size and place, then reuses) a green context of the GPU
with that many SMs and a stream on it, and makes that stream PyTorch's current stream for the
block: kernels PyTorch launches in the block run on the partition's SMs only, while other
streams — another thread's block on another partition, say — use the rest. The block's work
is ordered after what the surrounding stream had issued, and the surrounding stream waits for
the block's work when the block ends, so code outside sees its results as usual.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

from ._native import Partition

__all__ = ["partition", "Partition"]

_partitions: dict = {}
_lock = threading.Lock()


def _get(sms: int, device: int, first_group: int, high_priority: bool) -> Partition:
    key = (sms, device, first_group, high_priority)
    with _lock:
        p = _partitions.get(key)
        if p is None:
            p = Partition(sms, device=device, first_group=first_group, high_priority=high_priority)
            _partitions[key] = p
        return p


@contextlib.contextmanager
def partition(
    sms: int,
    *,
    device: Optional[int] = None,
    first_group: int = 0,
    high_priority: bool = False,
) -> Iterator[Partition]:
    """Runs the block's PyTorch work on ``sms`` SMs (rounded up to the GPU's groups of SMs;
    the partition's ``sms`` says how many) from group ``first_group`` of GPU ``device``
    (default: PyTorch's current device), on a stream of least priority, or the greatest with
    ``high_priority``. Yields the :class:`Partition`."""
    import torch

    if device is None:
        device = torch.cuda.current_device()
    part = _get(sms, device, first_group, high_priority)
    outer = torch.cuda.current_stream(device)
    inner = torch.cuda.ExternalStream(part.stream, device=device)
    inner.wait_stream(outer)
    with torch.cuda.stream(inner):
        yield part
    outer.wait_stream(inner)
