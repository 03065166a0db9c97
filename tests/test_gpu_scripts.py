"""The GPU benchmark scripts plan their runs without a GPU (``--dry-run``) and refuse to time without one.

A borrowed GPU is short-lived: a script that fails on an argument or an unknown tuning key must fail
here first.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, os.path.join(BENCH, script), *args], capture_output=True, text=True, timeout=120
    )


def test_gpu_table_dry_run_lists_every_row():
    out = _run("gpu_table.py", "--dry-run", "--batches", "48", "32768", "--dtypes", "bfloat16")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("  ")]
    # The reference is planned only up to --max-reference-batch (4096).
    assert rows == [
        ["triton", "B=48", "bfloat16"],
        ["reference", "B=48", "bfloat16"],
        ["triton", "B=32768", "bfloat16"],
    ]


def test_gpu_tune_dry_run_plans_each_candidate(monkeypatch):
    pytest.importorskip(
        "triton", reason="the tile candidates are checked against the Triton loss's LaunchSettings"
    )
    monkeypatch.syspath_prepend(BENCH)
    import gpu_tune

    out = _run("gpu_tune.py", "--dry-run", "--batches", "48")
    assert out.returncode == 0, out.stderr
    planned = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("  B=48")]
    assert planned == list(gpu_tune.CANDIDATES)
    assert planned[0] == "default"


def test_gpu_tune_rejects_unknown_tuning_keys(monkeypatch):
    pytest.importorskip(
        "triton", reason="the tile candidates are checked against the Triton loss's LaunchSettings"
    )
    monkeypatch.syspath_prepend(BENCH)
    import gpu_tune

    monkeypatch.setitem(gpu_tune.CANDIDATES, "typo", {"block_dd": 64})
    with pytest.raises(KeyError, match="block_dd"):
        gpu_tune.check_candidates(["default", "typo"])
    gpu_tune.check_candidates(list(gpu_tune.CANDIDATES)[:-1])  # the shipped ones are all valid


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
@pytest.mark.parametrize("script", ["gpu_table.py", "gpu_tune.py"])
def test_gpu_scripts_refuse_without_cuda(script):
    if script == "gpu_tune.py":
        pytest.importorskip(
            "triton", reason="gpu_tune checks its candidates against the Triton kernels first"
        )
    out = _run(script)
    assert out.returncode == 2
    assert "no CUDA device" in out.stderr
