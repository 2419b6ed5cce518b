"""rightsize.torch on a GPU: PyTorch's kernels in a partition block run on the partition's SMs
(a compute-bound matmul slows as the SMs shrink), give the whole device's results, and stay
ordered with the surrounding stream. Skipped without PyTorch or a GPU."""

import time

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

import rightsize  # noqa: E402
import rightsize.torch as rt  # noqa: E402


def matmul_ms(a, b, reps=20):
    """Milliseconds per a @ b on the current stream (after a warm-up)."""
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        c = a @ b
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps, c


def test_a_block_runs_on_its_partition_and_gives_the_same_results():
    torch.manual_seed(int(time.time()))
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    whole_ms, whole = matmul_ms(a, b)
    sms = rightsize.device_info()["sm_count"]
    times = {}
    for want in (16, 64):
        with rt.partition(sms=want) as p:
            ms, c = matmul_ms(a, b)
        times[p.sms] = ms
        torch.cuda.synchronize()
        same = torch.equal(c, whole)
        print(f"8192^3 fp16 matmul: {ms:.3f} ms on {p.sms} SMs, {whole_ms:.3f} ms on all {sms}; "
              f"{'bitwise equal' if same else 'max diff %g' % (c - whole).abs().max().item()}")
        assert torch.allclose(c.float(), whole.float(), rtol=1e-2, atol=1e-1)
    # A compute-bound GEMM slows with the SMs it gets: the block was confined.
    assert times[16] > 3.0 * whole_ms, (times, whole_ms)
    assert times[16] > 2.0 * times[64], times


def test_the_block_is_ordered_with_the_surrounding_stream():
    x = torch.arange(1 << 24, device="cuda", dtype=torch.float32)
    for _ in range(3):
        x = x * 1.0001  # queued work the block must wait for
    with rt.partition(sms=16):
        y = x * 2
    z = y + 1
    torch.cuda.synchronize()
    want = (torch.arange(1 << 24, dtype=torch.float32) * 1.0001 * 1.0001 * 1.0001) * 2 + 1
    assert torch.allclose(z.cpu(), want, rtol=1e-5)


def test_two_threads_share_the_gpu_on_disjoint_partitions():
    import threading

    sms = rightsize.device_info()["sm_count"]
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    results = {}

    def work(name, first_group):
        with rt.partition(sms=32, first_group=first_group):
            ms, c = matmul_ms(a, a, reps=10)
        torch.cuda.synchronize()
        results[name] = (ms, c)

    threads = [threading.Thread(target=work, args=(n, g)) for n, g in (("left", 0), ("right", 4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(results["left"][1], results["right"][1])
    print({k: round(v[0], 3) for k, v in results.items()}, f"of {sms} SMs")
