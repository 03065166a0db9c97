"""The training loop shared by both stages.

A stage supplies a :class:`Task` (the model, its batches, ``step_loss`` and a validation ``evaluate``);
:func:`train` runs AdamW (weight decay on matrices only) with a per-step linear warm-up then half-cosine
schedule, bf16 autocast on CUDA, DDP under ``torchrun``, a tqdm bar with loss and samples/s,
``metrics.jsonl`` (+ TensorBoard), validation-only model selection, atomic checkpoints and exact resume.

Exact resume: the checkpoint holds the trainable weights, the optimiser and scheduler, the position in
the data order (epoch, batch index, plus the task's own ``data_state``) and every RNG state. Evaluation
runs between a saved RNG state and its restoration, so it never shifts the training randomness. A run
stopped at step ``n`` (``loop.stop_at_step``, Ctrl-C, or a crash after a checkpoint) and resumed ends with
the same weights, bit for bit, as a run that never stopped.

Ctrl-C: the first SIGINT sets a flag; the current step finishes, a resumable checkpoint is written and
:func:`train` returns with ``interrupted=True`` (a second SIGINT raises at once). A ``KeyboardInterrupt``
raised inside a step before the parameter update (e.g. from the data) writes the checkpoint of the step's
start state; one raised during the update writes nothing new (the last checkpoint stays valid).
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import CheckpointManager, capture_rng_state, load_checkpoint, restore_rng_state
from .config import LoopConfig, OptimConfig, fingerprint
from .metrics_log import MetricsLog
from .runtime import Runtime, broadcast_object

__all__ = [
    "Task",
    "TrainResult",
    "build_optimizer",
    "lr_factor",
    "seed_everything",
    "train",
    "trainable_state",
]


class Task(Protocol):
    """What a stage gives the loop.

    Attributes:
        model: the module to train (only parameters with ``requires_grad`` are optimised and saved).
        selection_metric: key of :meth:`evaluate`'s result used to pick ``best.pt``.
        selection_mode: ``"max"`` or ``"min"``.

    Optional attributes/methods: ``find_unused_parameters`` (bool, passed to DDP), ``plot_keys``
    (validation keys drawn in ``curves.png``), ``plot_title``, ``data_state()`` / ``load_data_state(state)``
    (data-order state beyond (epoch, batch index), stored in checkpoints; called between steps).
    """

    model: nn.Module
    selection_metric: str
    selection_mode: str

    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (global batches; identical on every rank)."""

    def train_batches(self, epoch: int, start: int) -> Iterator[Any]:
        """This rank's share of global batches ``start, start + 1, ...`` of ``epoch``, on the device."""

    def step_loss(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Forward through ``model`` (possibly DDP-wrapped); ``"loss"`` is optimised, other scalars logged."""

    def batch_size(self, batch: Any) -> int:
        """Samples of ``batch`` on this rank."""

    def evaluate(self) -> dict[str, float]:
        """Validation metrics (called on rank 0 only, in eval mode, without gradients)."""


@dataclass
class TrainResult:
    """What :func:`train` did: final step, best metric (and its step), checkpoint paths, interruption."""

    step: int
    epoch: int
    best_value: float | None
    best_step: int | None
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    interrupted: bool = False
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base lr at 0-based ``step``: linear warm-up ``(step+1)/warmup`` then half-cosine.

    ``f = (step + 1) / W`` for ``step < W``, else ``r + (1 - r) * 0.5 * (1 + cos(pi * (step - W) / (T - W)))``
    with ``r = min_lr / lr``; clamped at ``r`` past ``T``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: ``weight_decay`` on tensors with ``ndim >= 2``, 0 on the rest."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    if not decay and not no_decay:
        raise ValueError("train: the model has no trainable parameters (every requires_grad is False)")
    groups = [
        {"params": decay, "weight_decay": optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters and all buffers, detached on CPU (what a checkpoint stores)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in trainable | buffers}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    expected = set(trainable_state(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise RuntimeError(
            f"{where}: the checkpoint's weights do not fit the model (missing {missing[:8]}, "
            f"unexpected {unexpected[:8]})"
        )
    model.load_state_dict(state, strict=False)


class _Interrupt:
    """First SIGINT -> flag (checked between steps); second SIGINT -> KeyboardInterrupt."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _any_rank(flag: bool, runtime: Runtime) -> bool:
    if not runtime.distributed:
        return flag
    value = torch.tensor(
        [1 if flag else 0], device=runtime.device if runtime.device.type == "cuda" else "cpu"
    )
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy (when installed) and torch (CPU and CUDA)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


def _restore_rank_rng(rng: dict[str, Any], runtime: Runtime) -> None:
    if "per_rank" not in rng:
        restore_rng_state(rng)
        return
    states = rng["per_rank"]
    if len(states) != runtime.world_size:
        raise RuntimeError(
            f"--resume: the checkpoint was written by {len(states)} processes, this run has "
            f"{runtime.world_size}; an exact resume needs the same number of processes"
        )
    restore_rng_state(states[runtime.rank])


def _autocast(config: LoopConfig, device: torch.device):
    if device.type == "cuda" and config.precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if mode == "max" else value < best


def train(
    task: Task,
    loop: LoopConfig,
    optim: OptimConfig,
    run_dir: Path,
    *,
    config_dict: dict[str, Any],
    runtime: Runtime,
    resume: Path | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``task.model``; write checkpoints, metrics and the plot into ``run_dir``.

    Args:
        task: the stage (see :class:`Task`).
        loop, optim: loop and optimiser settings.
        run_dir: the run folder (created).
        config_dict: the whole resolved config (stored in checkpoints; its fingerprint guards resumes).
        runtime: device and process group (:func:`bamco_fast.train.runtime.init_runtime`).
        resume: a checkpoint file or run folder to continue from.
        on_eval: called on rank 0 with ``(step, metrics)`` after each validation.
    """
    if task.selection_mode not in ("max", "min"):
        raise ValueError(f"task.selection_mode: expected 'max' or 'min', got {task.selection_mode!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = int(task.steps_per_epoch())
    if steps_per_epoch < 1:
        raise ValueError(
            f"train: an epoch has no full batch (steps_per_epoch = {steps_per_epoch}); lower loop.batch_size "
            f"({loop.batch_size}) or use more training samples"
        )
    total_steps = steps_per_epoch * loop.epochs
    if loop.max_steps:
        total_steps = min(total_steps, loop.max_steps)
    model = task.model
    optimizer = build_optimizer(model, optim)
    min_ratio = optim.min_lr / optim.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, warmup_steps=optim.warmup_steps, total_steps=total_steps, min_ratio=min_ratio),
    )
    fp = fingerprint(config_dict)
    step = epoch = batch_in_epoch = 0
    best_value: float | None = None
    best_step: int | None = None
    pending_eval = False
    metrics = MetricsLog(run_dir, enabled=runtime.is_main, tensorboard=loop.tensorboard)
    if resume is not None:
        state = load_checkpoint(resume, config=config_dict, fingerprint=fp)
        load_trainable_state(model, state["model"], f"--resume {resume}")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "data" in state and hasattr(task, "load_data_state"):
            task.load_data_state(state["data"])
        step, epoch, batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        best_value, best_step = state["best"]["value"], state["best"]["step"]
        pending_eval = bool(state.get("pending_eval", False))
        _restore_rank_rng(state["rng"], runtime)
        metrics.truncate_after(step)
    else:
        seed_everything(loop.seed + runtime.rank)
        metrics.truncate_after(0)
    ddp_model: nn.Module = model
    if runtime.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        unused = bool(getattr(task, "find_unused_parameters", False))
        ddp_model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)
    manager = CheckpointManager(run_dir, keep_last=loop.keep_last) if runtime.is_main else None
    result = TrainResult(step, epoch, best_value, best_step, None, None)

    def snapshot(rng: dict[str, Any], *, pending: bool, data: dict | None) -> dict[str, Any]:
        if data is None:
            data = task.data_state() if hasattr(task, "data_state") else {}
        return {
            "config": config_dict,
            "fingerprint": fp,
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "model": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "data": data,
            "rng": rng,
            "best": {"value": best_value, "step": best_step, "metric": task.selection_metric},
            "pending_eval": pending,
        }

    def save(
        rng: dict[str, Any], *, best: bool = False, pending: bool = False, data: dict | None = None
    ) -> None:
        if runtime.distributed:  # every rank's RNG goes into rank 0's checkpoint
            states: list[Any] = [None] * runtime.world_size
            dist.all_gather_object(states, rng)
            rng = {"per_rank": states}
        if manager is not None:
            result.last_checkpoint = manager.save(snapshot(rng, pending=pending, data=data), best=best)
            if best:
                result.best_checkpoint = manager.folder / "best.pt"

    def run_eval() -> bool:
        """Validate on rank 0 (RNG restored afterwards); returns whether this is the new best."""
        nonlocal best_value, best_step
        rng = capture_rng_state()
        values = None
        if runtime.is_main:
            model.eval()
            with torch.no_grad(), _autocast(loop, runtime.device):
                values = {k: float(v) for k, v in task.evaluate().items()}
            model.train()
        restore_rng_state(rng)
        values = broadcast_object(values, runtime)
        if task.selection_metric not in values:
            raise KeyError(
                f"task.evaluate() returned {sorted(values)}; the selection metric "
                f"{task.selection_metric!r} is not among them"
            )
        metrics.log(step, epoch, "val", values)
        result.history.append({"step": step, **values})
        if on_eval is not None and runtime.is_main:
            on_eval(step, values)
        improved = _better(values[task.selection_metric], best_value, task.selection_mode)
        if improved:
            best_value, best_step = values[task.selection_metric], step
        return improved

    from tqdm.auto import tqdm

    bar = tqdm(
        total=total_steps,
        initial=step,
        disable=not (loop.progress and runtime.is_main),
        dynamic_ncols=True,
        desc="train",
    )
    model.train()
    phase = "idle"
    step_rng: dict[str, Any] | None = None
    post_rng: dict[str, Any] | None = None
    step_data: dict[str, Any] | None = None
    window_samples, window_start = 0, time.perf_counter()
    last_loss = float("nan")
    try:
        with _Interrupt() as interrupt:
            if pending_eval:
                phase = "eval"
                is_best = run_eval()
                pending_eval = False
                phase = "idle"
                save(capture_rng_state(), best=is_best)
            stop = step >= total_steps
            while not stop and epoch < loop.epochs:
                batches = task.train_batches(epoch, batch_in_epoch)
                while batch_in_epoch < steps_per_epoch:
                    step_rng = capture_rng_state()
                    step_data = task.data_state() if hasattr(task, "data_state") else {}
                    phase = "compute"
                    batch = next(batches)
                    with _autocast(loop, runtime.device):
                        out = task.step_loss(ddp_model, batch)
                    loss = out["loss"]
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    phase = "update"
                    if optim.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(
                            [p for p in model.parameters() if p.requires_grad], optim.grad_clip
                        )
                    lr = optimizer.param_groups[0]["lr"]
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    batch_in_epoch += 1
                    phase = "idle"
                    window_samples += task.batch_size(batch) * runtime.world_size
                    last_loss = float(loss.detach())
                    if step % loop.log_every_steps == 0 or step == 1:
                        elapsed = max(time.perf_counter() - window_start, 1e-9)
                        values = {k: float(v.detach()) for k, v in out.items() if torch.is_tensor(v)}
                        values.update(lr=lr, samples_per_s=window_samples / elapsed)
                        metrics.log(step, epoch, "train", values)
                        bar.set_postfix(loss=f"{last_loss:.4f}", samples_s=f"{window_samples / elapsed:.1f}")
                        window_samples, window_start = 0, time.perf_counter()
                    bar.update(1)
                    epoch_end = batch_in_epoch == steps_per_epoch
                    if epoch_end:
                        epoch += 1
                        batch_in_epoch = 0
                    is_best = False
                    final = step == total_steps
                    if final or (epoch_end and epoch % loop.eval_every_epochs == 0):
                        post_rng = capture_rng_state()
                        phase = "eval"
                        pending_eval = True
                        is_best = run_eval()
                        pending_eval = False
                        phase = "idle"
                    stop = _any_rank(interrupt.requested, runtime)
                    stopped_early = bool(loop.stop_at_step) and step >= loop.stop_at_step
                    periodic = bool(loop.checkpoint_every_steps) and step % loop.checkpoint_every_steps == 0
                    if epoch_end or periodic or stop or stopped_early or step == total_steps:
                        save(capture_rng_state(), best=is_best)
                    if final:
                        stop = True
                        break
                    if stop or stopped_early:
                        result.interrupted = stop
                        result.stopped_early = stopped_early and not stop
                        stop = True
                        break
                    if epoch_end:
                        break
    except KeyboardInterrupt:
        result.interrupted = True
        if phase == "compute" and step_rng is not None:
            save(step_rng, data=step_data)  # the step never touched the weights: save its start state
        elif phase == "eval":
            save(post_rng if post_rng is not None else capture_rng_state(), pending=True)
        elif phase == "idle":
            save(capture_rng_state())
        # phase == "update": the weights may be half-updated; the previous checkpoint stays the latest.
    finally:
        bar.close()
        metrics.close()
    if runtime.is_main and loop.plot:
        from .plotting import plot_metrics

        plot_metrics(
            run_dir / "metrics.jsonl",
            run_dir / "curves.png",
            title=getattr(task, "plot_title", run_dir.name),
            val_keys=getattr(task, "plot_keys", None),
        )
    result.step, result.epoch = step, epoch
    result.best_value, result.best_step = best_value, best_step
    if result.best_checkpoint is None and manager is not None and (manager.folder / "best.pt").is_file():
        result.best_checkpoint = manager.folder / "best.pt"
    if result.interrupted and runtime.is_main:
        print(f"interrupted at step {step}: resume with --resume {run_dir}")
    return result
