"""The package without a GPU: the command line, clear errors, and what needs a GPU skipped."""

import json
import subprocess
import sys

import pytest

import rightsize


def gpu_count() -> int:
    try:
        return 1 if rightsize.device_info(0)["sm_count"] > 0 else 0
    except RuntimeError:
        return 0


needs_gpu = pytest.mark.skipif(gpu_count() == 0, reason="needs a CUDA GPU")


def test_the_command_line_runs_from_python():
    done = subprocess.run(rightsize.command() + ["--version"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rightsize ")
    done = subprocess.run([sys.executable, "-m", "rightsize", "no-such-command"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "unrecognized subcommand" in done.stderr


def test_a_bad_scenario_file_is_refused_with_its_reason(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[scenario]]\nname = 3\n")
    with pytest.raises(RuntimeError, match="failed with status 1"):
        rightsize.compare(tmp_path / "out", file=bad)


def test_without_a_gpu_device_info_says_why():
    if gpu_count():
        info = rightsize.device_info()
        assert info["sm_count"] > 0 and "partitions" in info
        return
    with pytest.raises(RuntimeError, match="driver|device"):
        rightsize.device_info()


def test_a_missing_checkpoint_is_refused_with_the_path(tmp_path):
    with pytest.raises(RuntimeError, match="no-model"):
        rightsize.TextModel(tmp_path / "no-model", "embed")
    with pytest.raises(ValueError, match="embed"):
        rightsize.TextModel(tmp_path, "summarize")


def test_a_partition_needs_sms_the_gpu_has():
    with pytest.raises((ValueError, RuntimeError)):
        rightsize.Partition(0)


@needs_gpu
def test_a_partition_has_the_sms_asked_rounded_up_to_groups():
    info = rightsize.device_info()
    granularity = info["partitions"]["granularity"]
    p = rightsize.Partition(granularity + 1)
    assert p.sms == 2 * granularity
    assert p.stream != 0
    p.synchronize()
    with pytest.raises(ValueError, match="groups"):
        rightsize.Partition(10 * info["sm_count"])


@needs_gpu
def test_a_profile_comes_back_as_a_dict(tmp_path):
    prof = rightsize.profile("gpt2", batch=1, seq=16, out=tmp_path / "p.json", beside=False)
    assert prof["kernels"], json.dumps(prof)[:200]
