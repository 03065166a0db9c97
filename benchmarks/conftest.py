"""Shared benchmark helpers: device facts, a synchronising timer, and peak-memory probes."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

HAS_CUDA = torch.cuda.is_available()


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_extra_memory_mib(module: str, function: str, kwargs: dict, warmup: dict | None = None) -> float:
    """Extra peak resident memory (MiB) of ``module.function(prep)`` measured in a fresh process.

    The child first runs the call once on ``function_prepare(**{**kwargs, **warmup})`` (a small case:
    loads the compiled extension and starts the thread pools without leaving large freed blocks in the
    heap), builds its inputs with ``module.function_prepare(**kwargs)``, resets its peak RSS
    (:mod:`memory`), runs the call and reports the peak minus the RSS before the call, so imports,
    one-time initialisation and inputs are not counted. NaN if the child fails or the peak cannot be reset.
    """
    here = str(Path(__file__).resolve().parent)
    fn = f"m.{function}"
    code = "\n".join(
        [
            "import json, sys",
            f"sys.path.insert(0, {here!r})",
            f"import {module} as m",
            "from memory import peak_extra_rss",
            f"{fn}({fn}_prepare(**json.loads({json.dumps({**kwargs, **warmup})!r})))" if warmup else "",
            f"prep = {fn}_prepare(**json.loads({json.dumps(kwargs)!r}))",
            "with peak_extra_rss() as peak:",
            f"    {fn}(prep)",
            "print(peak['bytes'] / 2**20)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def record(benchmark):
    """Add the machine facts to a benchmark's extra_info and return the dict for more fields."""

    def _record(device: str, **fields):
        benchmark.extra_info.update(
            device=device_name(device), torch=torch.__version__, threads=torch.get_num_threads(), **fields
        )
        return benchmark.extra_info

    return _record
