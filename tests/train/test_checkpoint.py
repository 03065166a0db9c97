"""Checkpoints: atomic files with normal modes, keep-last-k, latest pointer, corrupt/foreign checkpoints."""

from __future__ import annotations

import os
import random

import pytest
import torch

from bamco_fast.train.core.checkpoint import (
    CheckpointError,
    CheckpointManager,
    atomic_write_bytes,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
)
from bamco_fast.train.core.config import fingerprint


def _state(step: int, config: dict | None = None) -> dict:
    config = config or {"optim": {"lr": 0.001}}
    return {
        "config": config,
        "fingerprint": fingerprint(config),
        "step": step,
        "epoch": 0,
        "batch_in_epoch": step,
        "model": {"w": torch.full((2,), float(step))},
        "optimizer": {},
        "rng": capture_rng_state(),
        "best": {"value": None, "step": None},
    }


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_write_honours_umask_and_leaves_no_temp_files(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"abc")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").read_bytes() == b"abc"
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pt"
    atomic_write_bytes(target, b"old")

    def broken_fsync(fd):
        raise KeyboardInterrupt  # e.g. Ctrl-C while the data is being flushed

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_keep_last_and_latest_pointer(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3, 4):
        manager.save(_state(step), best=step == 2)
    names = sorted(p.name for p in manager.folder.iterdir())
    assert names == ["best.pt", "latest.json", "step_00000003.pt", "step_00000004.pt"]
    assert load_checkpoint(tmp_path)["step"] == 4
    assert load_checkpoint(manager.folder / "best.pt")["step"] == 2
    (manager.folder / "latest.json").unlink()  # the pointer is a convenience: the highest step is found
    assert latest_checkpoint(manager.folder).name == "step_00000004.pt"


def test_best_is_a_second_name_of_its_step_file_not_a_copy(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=3)
    manager.save(_state(1), best=True)
    best, step1 = manager.folder / "best.pt", manager.folder / "step_00000001.pt"
    assert best.stat().st_ino == step1.stat().st_ino and best.stat().st_nlink == 2
    manager.save(_state(2), best=True)  # a newer best replaces the name atomically
    assert best.stat().st_ino == (manager.folder / "step_00000002.pt").stat().st_ino
    assert step1.stat().st_nlink == 1
    for step in (3, 4, 5, 6):
        manager.save(_state(step))
    assert not (manager.folder / "step_00000002.pt").exists()  # pruned; the data lives on under best.pt
    assert best.stat().st_nlink == 1 and load_checkpoint(best)["step"] == 2
    assert oct(best.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_corrupt_and_truncated_checkpoints_give_clear_errors(tmp_path):
    manager = CheckpointManager(tmp_path)
    path = manager.save(_state(1))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"is corrupt or not a torch checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"is corrupt"):
        load_checkpoint(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(CheckpointError, match=r"expected format 'bamco_fast\.train\.checkpoint/1', got None"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(CheckpointError, match=r"no checkpoint found"):
        load_checkpoint(tmp_path / "empty") if (tmp_path / "empty").mkdir() is None else None


def test_checkpoint_of_another_config_is_refused_with_the_differences(tmp_path):
    CheckpointManager(tmp_path).save(_state(3, {"optim": {"lr": 0.001}, "loop": {"epochs": 3}}))
    current = {"optim": {"lr": 0.002}, "loop": {"epochs": 3}}
    with pytest.raises(CheckpointError, match=r"another configuration.*optim\.lr: 0\.001 -> 0\.002"):
        load_checkpoint(tmp_path, config=current, fingerprint=fingerprint(current))


def test_rng_round_trip():
    state = capture_rng_state()
    expected = (random.random(), torch.rand(3))
    restore_rng_state(state)
    assert random.random() == expected[0] and torch.equal(torch.rand(3), expected[1])
