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


def peak_extra_memory_mib(module: str, function: str, kwargs: dict) -> float:
    """Extra peak resident memory (MiB) of ``module.function(**kwargs)`` measured in a fresh process.

    The child reads its ``ru_maxrss`` high-water mark after building the inputs and again after the call,
    so imports and inputs are not counted.
    """
    here = str(Path(__file__).resolve().parent)
    code = (
        f"import json, resource, sys; sys.path.insert(0, {here!r}); import {module} as m; "
        f"prep = m.{function}_prepare(**json.loads({json.dumps(kwargs)!r})); "
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        f"m.{function}(prep); after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "print((after - before) / 1024)"
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
