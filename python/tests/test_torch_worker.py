"""The PyTorch tenant's worker without a GPU: the request loop it runs through the native module
(the harness's own) with stand-in requests, and a worker that cannot run says why in the
protocol (rightsize/torch_worker.py)."""

import importlib.util
import json
import subprocess
import sys

import pytest

import rightsize.torch_worker as tw
from rightsize import _native


def spec(rate=None, warmup=2, requests=5, duration_s=None, **tenant_fields):
    tenant = {"model": "gpt2", "batch": 1, "seq": 8, "new_tokens": 2, **tenant_fields}
    if rate:
        tenant["rate"] = rate
    return {
        "protocol": _native.WORKER_PROTOCOL,
        "tenant": tenant,
        "plan": False,
        "seed": 1,
        "warmup": warmup,
        "requests": requests,
        "arrival_seed": 7,
        "duration_s": duration_s,
    }


def serve(spec, request="lambda: time.sleep(0.002)", harness="go\nwarm\nstop\n"):
    """Runs the native worker loop in a Python of its own with `request` (Python source), the
    harness saying the lines `harness`; returns its exit code, the events it said and its
    stderr."""
    code = f"import sys, time\nfrom rightsize import _native\n_native.serve_worker(sys.argv[1], {request})"
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)], input=harness, capture_output=True, text=True, timeout=60
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_a_closed_loop_counts_after_its_warmup_as_every_worker_does():
    code, said, err = serve(spec())
    assert code == 0, err
    kinds = [e["event"] for e in said]
    assert kinds[0] == "ready" and kinds[-1] == "result", kinds
    assert kinds.count("warm") == 1 and kinds.count("finished") == 1
    assert [e["counted"] for e in said if e["event"] == "progress"] == [1, 2, 3, 4, 5]
    samples = said[-1]["samples"]
    assert len(samples) == 5
    for s in samples:
        assert s["due"] <= s["start"] <= s["end"] and s["end"] - s["start"] >= 0.002
    assert not any(s.get("shed") or s.get("failed") for s in samples)


def test_an_open_loop_with_a_queue_limit_sheds_what_it_cannot_serve():
    # 1000 arrivals a second at 5 ms a request: at most 2 wait, the rest are shed.
    code, said, err = serve(spec(rate=1000.0, warmup=0, requests=60, queue_limit=2), "lambda: time.sleep(0.005)")
    assert code == 0, err
    samples = said[-1]["samples"]
    assert len(samples) == 60
    assert all(s["start"] >= s["due"] for s in samples)
    shed = [s for s in samples if s.get("shed")]
    assert len(shed) > 30, "most arrivals find a full queue"
    assert all(s["start"] == s["end"] == s["due"] for s in shed), "a shed request never ran"


def test_phases_keep_requests_to_the_busy_ones():
    phases = {"busy_s": 0.05, "idle_s": 0.2}
    code, said, err = serve(spec(warmup=0, requests=1000, duration_s=0.4, phases=phases))
    assert code == 0, err
    starts = [s["start"] for s in said[-1]["samples"]]
    assert starts and all((t % 0.25) < 0.05 + 0.01 for t in starts), starts


def test_a_request_that_raises_ends_the_loop_with_its_error():
    request = "lambda: (_ for _ in ()).throw(ValueError('the model broke'))"
    code, said, err = serve(spec(), request)
    assert code == 1 and not any(e["event"] == "result" for e in said)
    assert "ValueError: the model broke" in err, err


def test_a_spec_of_another_protocol_is_refused():
    code, said, err = serve({**spec(), "protocol": 0})
    assert code == 1 and said == [], said
    assert "worker protocol 0" in err and "same sources" in err, err


def test_a_worker_that_the_harness_calls_off_stops_before_any_request():
    code, said, err = serve(spec(), "lambda: sys.exit('no request may run')", harness="stop\n")
    assert code == 1 and [e["event"] for e in said] == ["ready"]
    assert "called the run off" in err, err


class FakeLibcuda:
    """The three libcuda calls ``mps_enabled`` makes, answering that contexts are (or are
    not) shared through MPS, or failing ``failing`` with CUresult 3."""

    def __init__(self, mps, failing=None):
        self.mps, self.failing = mps, failing

    def cuInit(self, flags):
        return 3 if self.failing == "cuInit" else 0

    def cuDeviceGet(self, device, ordinal):
        device._obj.value = ordinal
        return 0

    def cuDeviceGetAttribute(self, value, attribute, device):
        assert attribute == 133 and device.value == 0, "CU_DEVICE_ATTRIBUTE_MPS_ENABLED of the worker's GPU"
        value._obj.value = int(self.mps)
        return 0


def test_the_worker_reads_whether_its_driver_shares_its_contexts_through_mps():
    assert tw.mps_enabled(0, FakeLibcuda(True)) is True
    assert tw.mps_enabled(0, FakeLibcuda(False)) is False
    with pytest.raises(RuntimeError, match="attached to MPS: cuInit returned CUresult 3"):
        tw.mps_enabled(0, FakeLibcuda(True, failing="cuInit"))


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="PyTorch is installed here")
def test_without_pytorch_the_worker_says_so_in_the_protocol():
    source = open(tw.__file__).read()
    done = subprocess.run([sys.executable, "-c", source, json.dumps(spec())], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    (line,) = done.stdout.splitlines()
    e = json.loads(line)
    assert e["event"] == "error" and "need PyTorch and transformers" in e["message"]
