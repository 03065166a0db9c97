"""The C++ kernels at each SIMD level (AVX-512, AVX2, baseline) and thread count, against float64.

The row kernels are compiled once per x86 SIMD level and the best one the CPU runs is used unless
``BAMCO_FAST_CPU_ISA`` or :func:`bamco_fast._cpp.set_cpu_isa` picks a lower one; so every level this
machine can execute is checked here, and a level it cannot execute is skipped with the reason. The same
checks also run in fresh processes with ``OMP_NUM_THREADS=1`` and with the default thread count, so a
result never depends on which of the two the suite happens to run with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cpu_paths import level_failures

from bamco_fast import _cpp

pytestmark = pytest.mark.skipif(not _cpp.available(), reason=f"bamco_fast._C not built ({_cpp.load_error()})")


@pytest.mark.parametrize("level", _cpp.CPU_ISA_LEVELS)
def test_every_simd_level_matches_float64(level):
    levels = _cpp.cpu_isa_levels()
    if level not in levels:
        pytest.skip(f"this CPU cannot execute the {level} kernels (it runs {', '.join(levels)})")
    failures = level_failures(level)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("threads", ["1", "default"])
def test_fresh_process_thread_counts(threads):
    """Every level in a fresh process: ``OMP_NUM_THREADS=1`` (starting at the baseline level, chosen by the
    environment variable) and the default thread count (starting at the best level)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", _cpp.CPU_ISA_ENV)}
    if threads == "1":
        env.update(OMP_NUM_THREADS="1", **{_cpp.CPU_ISA_ENV: "default"})
    script = Path(__file__).with_name("cpu_paths.py")
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    start = "default" if threads == "1" else _cpp.cpu_isa_levels()[-1]
    assert f"start_level={start} " in run.stdout, run.stdout
    if threads == "1":
        assert "threads=1 " in run.stdout, run.stdout


def test_unknown_or_unsupported_level_is_refused():
    before = _cpp.cpu_isa()
    with pytest.raises(RuntimeError, match="must be one of auto, default, avx2, avx512, got 'sse4'"):
        _cpp.set_cpu_isa("sse4")
    if "avx512" not in _cpp.cpu_isa_levels():
        with pytest.raises(RuntimeError, match="asks for the 'avx512' CPU kernels, but this CPU runs only"):
            _cpp.set_cpu_isa("avx512")
    assert _cpp.cpu_isa() == before
    with _cpp.forced_cpu_isa("default"):
        assert _cpp.cpu_isa() == "default"
    assert _cpp.cpu_isa() == before
