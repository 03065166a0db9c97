"""The shared loop: schedule, weight decay groups, validation-only selection, exact resume, Ctrl-C."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from toy_task import ToyTask

from bamco_fast.train.core.checkpoint import load_checkpoint
from bamco_fast.train.core.config import LoopConfig, OptimConfig, config_to_dict
from bamco_fast.train.core.loop import train
from bamco_fast.train.core.metrics_log import read_metrics
from bamco_fast.train.core.optim import build_optimizer, lr_factor
from bamco_fast.train.core.runtime import Runtime

CPU = Runtime(device=torch.device("cpu"))
EPOCHS, BATCH = 3, 12  # 4 steps per epoch, 12 steps


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(run_dir: Path, *, resume=None, plot=False, interrupt_at=None, signal_at=None, **loop_kw):
    loop = LoopConfig(
        epochs=EPOCHS, batch_size=BATCH, progress=False, tensorboard=False, plot=plot, **loop_kw
    )
    optim = OptimConfig(lr=1e-2, warmup_steps=2)
    task = ToyTask(CPU, BATCH, interrupt_at=interrupt_at)
    task.signal_at = signal_at
    cfg = {"loop": config_to_dict(loop), "optim": config_to_dict(optim)}
    result = train(task, loop, optim, run_dir, config_dict=cfg, runtime=CPU, resume=resume)
    return task, result


def _weights(task) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in task.model.state_dict().items()}


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key}: max |diff| {(a[key] - b[key]).abs().max():.3e}"


def test_lr_schedule_warmup_then_cosine():
    factors = [lr_factor(s, warmup_steps=5, total_steps=25) for s in range(26)]
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factors[5] == pytest.approx(1.0)
    assert factors[15] == pytest.approx(0.5)
    assert factors[25] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))
    assert lr_factor(25, warmup_steps=5, total_steps=25, min_ratio=0.1) == pytest.approx(0.1)


def test_weight_decay_only_on_matrices():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    model[1].weight.requires_grad_(False)
    opt = build_optimizer(model, OptimConfig(weight_decay=0.2))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.2 and [p.shape for p in decay["params"]] == [(4, 3)]
    assert no_decay["weight_decay"] == 0.0 and [p.shape for p in no_decay["params"]] == [(4,), (4,)]


def test_full_run_writes_metrics_plot_and_selects_best_on_validation(tmp_path):
    _task, result = _run(tmp_path, plot=True, log_every_steps=1)
    assert result.step == EPOCHS * 4 and not result.interrupted
    rows = read_metrics(tmp_path / "metrics.jsonl")
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in train_rows] == list(range(1, 13))
    assert all(r["samples_per_s"] > 0 and "mse_loss" in r and "lr" in r for r in train_rows)
    assert all(r["mem_peak_mib"] >= r["mem_now_mib"] > 0 for r in train_rows)  # the window's peak memory
    assert [r["step"] for r in val_rows] == [4, 8, 12]
    best = min(val_rows, key=lambda r: r["val_mse"])
    assert result.best_step == best["step"] and result.best_value == pytest.approx(best["val_mse"])
    saved = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert saved["step"] == best["step"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt"))
    assert kept == ["step_00000004.pt", "step_00000008.pt", "step_00000012.pt"]
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["step"] == 12
    assert math.isfinite(result.best_value)


@pytest.mark.parametrize("stop_at", [5, 8])  # inside an epoch / at an epoch end (after validation)
def test_stop_and_resume_is_bit_identical(tmp_path, stop_at):
    ref_task, _ = _run(tmp_path / "ref")
    _, first = _run(tmp_path / "run", stop_at_step=stop_at, keep_last=1)
    assert first.stopped_early and first.step == stop_at
    task, result = _run(tmp_path / "run", resume=tmp_path / "run")
    assert result.step == EPOCHS * 4
    _assert_identical(_weights(ref_task), _weights(task))
    assert _untimed(tmp_path / "ref") == _untimed(tmp_path / "run")


def _untimed(run_dir: Path) -> list[dict]:
    """The metrics without the measured ones (speed and memory differ between any two runs)."""
    return [
        {k: v for k, v in r.items() if k != "samples_per_s" and not k.startswith("mem_")}
        for r in read_metrics(run_dir / "metrics.jsonl")
    ]


def test_sigint_writes_resumable_checkpoint(tmp_path):
    ref_task, _ = _run(tmp_path / "ref")
    _, first = _run(tmp_path / "run", signal_at=6)  # SIGINT arrives while step 6 runs
    assert first.interrupted and first.step == 6
    task, _ = _run(tmp_path / "run", resume=tmp_path / "run")
    _assert_identical(_weights(ref_task), _weights(task))


def test_keyboard_interrupt_before_update_keeps_step_start_state(tmp_path):
    ref_task, _ = _run(tmp_path / "ref")
    _, first = _run(tmp_path / "run", interrupt_at=(1, 2))  # raised when global step 7's batch is drawn
    assert first.interrupted and first.step == 6
    assert load_checkpoint(tmp_path / "run")["step"] == 6
    task, _ = _run(tmp_path / "run", resume=tmp_path / "run")
    _assert_identical(_weights(ref_task), _weights(task))


def test_resume_with_other_config_is_refused(tmp_path):
    _run(tmp_path, stop_at_step=2)
    loop = LoopConfig(epochs=EPOCHS, batch_size=BATCH, progress=False, tensorboard=False, plot=False)
    optim = OptimConfig(lr=5e-3, warmup_steps=2)
    cfg = {"loop": config_to_dict(loop), "optim": config_to_dict(optim)}
    with pytest.raises(RuntimeError, match=r"another configuration.*optim\.lr: 0\.01 -> 0\.005"):
        train(ToyTask(CPU, BATCH), loop, optim, tmp_path, config_dict=cfg, runtime=CPU, resume=tmp_path)


def test_max_steps_ends_training_with_a_final_validation(tmp_path):
    _, result = _run(tmp_path, max_steps=6)
    assert result.step == 6 and not result.stopped_early
    val_steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "val"]
    assert val_steps == [4, 6]
    assert load_checkpoint(tmp_path)["scheduler"]["last_epoch"] == 6
