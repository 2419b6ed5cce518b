"""The host time of one PyTorch launch, as an application issues it: `t.add_(1)` on a
16-element tensor back to back, so the GPU is never the bottleneck (scripts/preload_check.py,
scripts/probes/preload_host.py)."""
import time


def host_us_per_launch(device="cuda", launches=20000, warmup=1000):
    """Microseconds of host time per launch over `launches` launches after `warmup`, and the
    tensor (which counts every launch)."""
    import torch

    t = torch.zeros(16, device=device)
    for _ in range(warmup):
        t.add_(1)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(launches):
        t.add_(1)
    us = (time.perf_counter() - start) / launches * 1e6
    torch.cuda.synchronize()
    return us, t
