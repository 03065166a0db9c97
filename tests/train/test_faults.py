"""Faults during training lose nothing: a full disk and ``kill -9`` while a checkpoint is being written leave
every earlier checkpoint loadable, and the run resumes from them.

The runs are tiny pretraining runs on a slice of the packaged demo data (towers built once, outside the
run folder), started as real processes. The full disk is a small tmpfs (skipped with the reason where it
cannot be mounted).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pretrain_demo import demo_slice, pretrain_sets

from bamco_fast.train.core.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return demo_slice(tmp_path_factory.mktemp("fault_data"), 32, 16)


def _command(data: dict[str, Path], out: Path, *sets: str) -> list[str]:
    """A real process: 50 epochs, a checkpoint every step and all of them kept; then ``sets``."""
    every_step = ("loop.epochs=50", "loop.checkpoint_every_steps=1", "loop.keep_last=1000", "loop.plot=false")
    module = [sys.executable, "-m", "bamco_fast.train", "pretrain"]
    return [*module, "--out", str(out), *pretrain_sets(data, *every_step, *sets)]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _all_checkpoints_load(run: Path) -> list[int]:
    """Every checkpoint file of ``run`` loads; ``latest.json`` (when present) names one; the steps found."""
    folder = run / "checkpoints"
    steps = sorted(int(load_checkpoint(p)["step"]) for p in folder.glob("step_*.pt"))
    latest = folder / "latest.json"
    if latest.is_file():
        assert load_checkpoint(folder / json.loads(latest.read_text())["file"])["step"] == max(steps)
    assert load_checkpoint(run)["step"] == max(steps)  # what --resume RUN takes
    return steps


@pytest.fixture
def small_disk(tmp_path):
    target = tmp_path / "disk"
    target.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(target)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here: {mounted.stderr.decode().strip()}")
    yield target
    subprocess.run(["umount", str(target)], capture_output=True)


def test_a_full_disk_is_one_line_and_every_earlier_checkpoint_loads(data, small_disk, tmp_path):
    run = small_disk / "run"
    proc = subprocess.run(
        _command(data, run, "loop.max_steps=8"), capture_output=True, text=True, env=_env(), timeout=600
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no space left on the device")
    steps = _all_checkpoints_load(run)
    assert len(steps) >= 2 and steps == list(range(1, len(steps) + 1))
    assert not [p for p in run.rglob("*.tmp")]  # no half-written file is left behind
    moved = shutil.copytree(
        run, tmp_path / "moved"
    )  # room again: the copy continues from its last checkpoint
    shutil.rmtree(run)
    resumed = subprocess.run(
        [sys.executable, "-m", "bamco_fast.train", "pretrain", "--resume", str(moved)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(moved)["step"] == 8


def _kill_while_writing(proc: subprocess.Popen, folder: Path, timeout: float = 120) -> bool:
    """SIGKILL ``proc`` as soon as a checkpoint's temporary file appears (True), or at ``timeout`` (False)."""
    end = time.monotonic() + timeout
    seen_step = False
    while time.monotonic() < end and proc.poll() is None:
        if folder.is_dir():
            names = os.listdir(folder)
            seen_step = seen_step or any(n.startswith("step_") for n in names)
            if seen_step and any(n.startswith(".step_") and n.endswith(".tmp") for n in names):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
        time.sleep(0.0005)
    proc.kill()
    proc.wait()
    return False


def test_kill_9_while_a_checkpoint_is_written_keeps_every_earlier_one(data, tmp_path):
    run = tmp_path / "run"
    hits = 0
    command = _command(data, run, "loop.max_steps=12")
    for _ in range(2):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
        hits += _kill_while_writing(proc, run / "checkpoints")
        steps = _all_checkpoints_load(run)
        assert steps == list(range(1, len(steps) + 1))
        command = [sys.executable, "-m", "bamco_fast.train", "pretrain", "--resume", str(run)]
    assert hits >= 1  # a kill landed inside a checkpoint write
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(run)["step"] == 12
