"""The PyTorch tenant's worker (rightsize/torch_worker.py) without a GPU: its request loop
counts as the harness's does, and a worker that cannot run says why in the protocol."""

import importlib.util
import json
import subprocess
import sys
import threading

import pytest

import rightsize.torch_worker as tw


class FakeClock:
    """A clock that moves only when slept on or when a request runs."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


class FakeGate:
    def __init__(self, clock, stop_after_finished=True):
        self.clock = clock
        self.stop = threading.Event()
        self.all_warm = threading.Event()
        self.all_warm.set()
        self.stop_after_finished = stop_after_finished

    def start(self):
        return self.clock()


def spec(rate=None, warmup=2, requests=5, duration_s=None):
    tenant = {"model": "gpt2", "batch": 1, "seq": 8, "new_tokens": 2}
    if rate:
        tenant["rate"] = rate
    return {"tenant": tenant, "warmup": warmup, "requests": requests, "arrival_seed": 7, "duration_s": duration_s}


def events(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_closed_loop_counts_after_its_warmup_and_issues_until_stopped(capsys):
    clock = FakeClock()
    gate = FakeGate(clock)
    issued = []

    def request():
        issued.append(clock())
        clock.sleep(0.01)
        if len(issued) == 9:  # the harness says stop a while after `finished`
            gate.stop.set()

    samples = tw.run_loop(spec(), gate, request, clock=clock, sleep=clock.sleep)
    assert len(samples) == 5 and len(issued) == 9
    for s in samples:
        assert s["due"] == s["start"] and s["end"] == pytest.approx(s["start"] + 0.01)
    assert samples[0]["start"] == pytest.approx(0.02), "two warm-up requests came first"
    got = events(capsys)
    assert [e["counted"] for e in got if e["event"] == "progress"] == [1, 2, 3, 4, 5]
    assert got[-1] == {"event": "finished"}


def test_counting_waits_until_every_worker_is_warm(capsys):
    clock = FakeClock()
    gate = FakeGate(clock)
    gate.all_warm.clear()
    issued = []

    def request():
        issued.append(clock())
        clock.sleep(0.01)
        if len(issued) == 4:  # the harness says every worker is warm
            gate.all_warm.set()
        if len(issued) == 12:
            gate.stop.set()

    samples = tw.run_loop(spec(), gate, request, clock=clock, sleep=clock.sleep)
    assert len(samples) == 5
    assert samples[0]["start"] == pytest.approx(0.04), "counted from the request after `warm`"
    got = events(capsys)
    assert got[0] == {"event": "warm"}, "said once its two warm-up requests were issued"
    assert [e["event"] for e in got].count("warm") == 1
    assert got[-1] == {"event": "finished"}


def test_an_open_loop_waits_for_poisson_arrivals_and_queues_behind_itself(capsys):
    clock = FakeClock()
    gate = FakeGate(clock)
    gate.stop.set()
    samples = tw.run_loop(spec(rate=50.0, warmup=0, requests=200), gate, lambda: clock.sleep(0.03), clock=clock, sleep=clock.sleep)
    assert len(samples) == 200
    dues = [s["due"] for s in samples]
    assert dues == sorted(dues) and 2.5 < dues[-1] < 6.0, "about 200 arrivals at 50/s"
    assert all(s["start"] >= s["due"] for s in samples)
    assert any(s["start"] > s["due"] for s in samples), "at 1.5× load some wait behind earlier ones"
    assert all(s["end"] == pytest.approx(s["start"] + 0.03) for s in samples)
    capsys.readouterr()


def test_counting_stops_at_the_duration(capsys):
    clock = FakeClock()
    gate = FakeGate(clock)
    gate.stop.set()
    samples = tw.run_loop(spec(warmup=0, requests=1000, duration_s=0.1), gate, lambda: clock.sleep(0.03), clock=clock, sleep=clock.sleep)
    assert len(samples) == 3 and all(s["end"] <= 0.1 for s in samples)
    assert events(capsys)[-1] == {"event": "finished"}


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
