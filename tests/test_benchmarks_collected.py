"""The documented benchmark command, ``pytest benchmarks/ --benchmark-only``, collects every suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


class _Collected:
    def __init__(self) -> None:
        self.files: set[str] = set()

    def pytest_collection_modifyitems(self, items) -> None:
        self.files.update(Path(str(item.path)).name for item in items)


def test_benchmark_folder_collects_every_bench_suite():
    """Collect-only run of the command, in this process (torch is already imported: about a second)."""
    pytest.importorskip("pytest_benchmark", reason="the benchmark command needs pytest-benchmark (dev extra)")
    suites = sorted(p.name for p in (REPO_ROOT / "benchmarks").glob("bench_*.py"))
    assert suites, "no benchmarks/bench_*.py found"
    collected = _Collected()
    args = [
        str(REPO_ROOT / "benchmarks"),
        "--benchmark-only",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    args += ["--rootdir", str(REPO_ROOT), "-c", str(REPO_ROOT / "pyproject.toml")]
    path, modules = list(sys.path), set(sys.modules)
    try:
        code = pytest.main(args, plugins=[collected])
    finally:  # the suites put benchmarks/ on sys.path and import its helpers by plain names
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(
                str(REPO_ROOT / "benchmarks")
            ):
                del sys.modules[name]
    assert code == pytest.ExitCode.OK
    assert sorted(collected.files) == suites
