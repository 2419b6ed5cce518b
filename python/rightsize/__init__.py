"""rightsize: kernel-wise right-sizing of DNN inference tenants sharing one NVIDIA GPU.

The Python face of the Rust library and its command line:

- :func:`device_info` — what the GPU offers (SMs, memory, driver, SM partitions);
- :func:`profile` and :func:`compare` — the offline profiler and the comparison of sharing
  modes, run by the ``rightsize`` command in a child process; their results as dicts/paths;
- :class:`TextModel` — a Hugging Face checkpoint on the engine: ``embed`` and ``generate``;
- :mod:`rightsize.torch` — run a block of PyTorch code on a right-sized SM partition.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Iterable, Optional, Sequence

from . import _native
from ._native import Partition

__all__ = ["device_info", "profile", "compare", "TextModel", "Partition", "command"]


def device_info(device: int = 0) -> dict:
    """GPU ``device`` as a dict (``sm_count``, ``total_memory_bytes``, ``partitions``, …).

    Raises ``RuntimeError`` when there is no driver or no such GPU.
    """
    return json.loads(_native.device_info_json(device))


def command() -> list[str]:
    """The command that runs ``rightsize``: the installed script, or this Python with ``-m``."""
    script = Path(sysconfig.get_path("scripts")) / "rightsize"
    if script.is_file():
        return [str(script)]
    found = shutil.which("rightsize")
    return [found] if found else [sys.executable, "-m", "rightsize"]


def _run(args: Sequence[str]) -> None:
    cmd = command() + list(args)
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed with status {done.returncode} (its reason is printed above)")


def profile(
    model: str = "gpt2",
    batch: int = 8,
    seq: int = 128,
    *,
    out: Optional[os.PathLike | str] = None,
    beside: bool = True,
    extra_args: Iterable[str] = (),
) -> dict:
    """Profiles one request of ``model`` (a named model with synthetic weights: bert-base, gpt2,
    llama-3.2-1b, …) and returns the profile: every kernel's latency over SM counts and its
    knees, idle and beside a co-runner (``beside=False`` skips those). Written to ``out``
    (default: ``<model>-b<batch>-s<seq>.json`` in the current directory)."""
    out = Path(out) if out is not None else Path(f"{model}-b{batch}-s{seq}.json")
    args = ["profile", "--model", model, "--batch", str(batch), "--seq", str(seq), "--out", str(out)]
    if not beside:
        args.append("--no-beside")
    args += list(extra_args)
    _run(args)
    return json.loads(out.read_text())


def compare(
    out: Optional[os.PathLike | str] = None,
    *,
    file: Optional[os.PathLike | str] = None,
    modes: Optional[Sequence[str]] = None,
    extra_args: Iterable[str] = (),
) -> Path:
    """Runs the comparison of sharing modes (the default scenario set, or the scenarios of
    ``file``; every mode, or ``modes``) and returns its results directory, which holds
    ``results.json``, ``summary.md`` and the tables."""
    out = Path(out) if out is not None else Path("results") / "compare-python"
    args = ["compare", "--out", str(out)]
    if file is not None:
        args += ["--file", str(file)]
    if modes:
        args += ["--modes", ",".join(modes)]
    args += list(extra_args)
    _run(args)
    return out


class TextModel:
    """A Hugging Face checkpoint directory (config.json, safetensors, tokenizer.json) on GPU 0,
    run by rightsize's engine: an encoder for :meth:`embed`, a decoder for :meth:`generate`."""

    def __init__(self, path: os.PathLike | str, task: str):
        self._model = _native.TextModel(Path(path), task)
        self.task = task

    def embed(self, texts: Sequence[str], max_tokens: int = 256) -> list[list[float]]:
        """Sentence embeddings (mean pooling, L2-normalised, as sentence-transformers does)."""
        vectors, _cut = self._model.embed(list(texts), max_tokens)
        return vectors

    def generate(self, prompt: str, tokens: int = 32) -> str:
        """The text ``tokens`` greedily decoded tokens add to ``prompt``."""
        return self._model.generate(prompt, tokens)
