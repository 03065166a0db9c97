"""The training loop shared by both stages.

A stage supplies a :class:`~bamco_fast.train.core.task.Task`; :func:`train` runs AdamW (weight decay on
matrices only) with a per-step linear warm-up then half-cosine schedule, bf16 autocast on CUDA, DDP under
``torchrun``, a tqdm bar with loss and samples/s, ``metrics.jsonl`` (+ TensorBoard; train rows carry the
peak memory of their window, :mod:`.memory`), validation-only model selection, atomic checkpoints and
exact resume. :func:`train` reads top to bottom; each of its steps is a method of :class:`_Trainer`.

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

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import CheckpointManager, capture_rng_state, load_checkpoint, restore_rng_state
from .config import LoopConfig, OptimConfig, fingerprint
from .memory import MemoryProbe
from .metrics_log import MetricsLog
from .optim import (
    autocast,
    build_optimizer,
    load_trainable_state,
    lr_factor,
    seed_everything,
    trainable_state,
)
from .runtime import Runtime, broadcast_object
from .task import Task

__all__ = [
    "TrainResult",
    "autocast",
    "build_optimizer",
    "lr_factor",
    "seed_everything",
    "train",
    "trainable_state",
]


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


def train(
    task: Task,
    loop: LoopConfig,
    optim: OptimConfig,
    run_dir: Path,
    *,
    config_dict: dict[str, Any],
    runtime: Runtime,
    resume: Path | None = None,
) -> TrainResult:
    """Train ``task.model``; write checkpoints, metrics and the plot into ``run_dir``.

    Args:
        task: the stage (see :class:`~bamco_fast.train.core.task.Task`).
        loop, optim: loop and optimiser settings.
        run_dir: the run folder (created).
        config_dict: the whole resolved config (stored in checkpoints; its fingerprint guards resumes).
        runtime: device and process group (:func:`bamco_fast.train.core.runtime.init_runtime`).
        resume: a checkpoint file or run folder to continue from.
    """
    trainer = _Trainer(task, loop, optim, Path(run_dir), config_dict, runtime)
    trainer.restore(resume)
    try:
        with _Interrupt() as interrupt:
            if trainer.pending_eval:
                trainer.save(capture_rng_state(), best=trainer.validate())
            while not trainer.finished():
                for batch in trainer.epoch_batches():
                    trainer.step(batch)
                    is_best = trainer.validate() if trainer.validation_due() else False
                    stop = trainer.any_rank(interrupt.requested)
                    if trainer.checkpoint_due(stop):
                        trainer.save(capture_rng_state(), best=is_best)
                    if trainer.leave_epoch(stop):
                        break
    except KeyboardInterrupt:
        trainer.save_interrupted()
    finally:
        trainer.close()
    return trainer.finish()


class _Trainer:
    """The state of one :func:`train` call and its steps (restore / step / validate / save / finish)."""

    def __init__(self, task, loop, optim, run_dir, config_dict, runtime) -> None:
        if task.selection_mode not in ("max", "min"):
            raise ValueError(f"task.selection_mode: expected 'max' or 'min', got {task.selection_mode!r}")
        self.task, self.loop, self.run_dir, self.runtime = task, loop, run_dir, runtime
        self.config_dict, self.fp = config_dict, fingerprint(config_dict)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.steps_per_epoch = int(task.steps_per_epoch())
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"train: an epoch has no full batch (steps_per_epoch = {self.steps_per_epoch}); lower "
                f"loop.batch_size ({loop.batch_size}) or use more training samples"
            )
        self.total_steps = self.steps_per_epoch * loop.epochs
        if loop.max_steps:
            self.total_steps = min(self.total_steps, loop.max_steps)
        self.model, self.grad_clip = task.model, optim.grad_clip
        self.optimizer = build_optimizer(self.model, optim)
        min_ratio, warmup, total = optim.min_lr / optim.lr, optim.warmup_steps, self.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, warmup_steps=warmup, total_steps=total, min_ratio=min_ratio),
        )
        self.step_count = self.epoch = self.batch_in_epoch = 0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.pending_eval = False
        self.metrics = MetricsLog(run_dir, enabled=runtime.is_main, tensorboard=loop.tensorboard)
        self.manager = CheckpointManager(run_dir, keep_last=loop.keep_last) if runtime.is_main else None
        self.result = TrainResult(0, 0, None, None, None, None)
        self.ddp_model: nn.Module = self.model
        self.phase = "idle"  # what a KeyboardInterrupt interrupts: idle, compute, update or eval
        self.step_rng: dict[str, Any] | None = None
        self.post_rng: dict[str, Any] | None = None
        self.step_data: dict[str, Any] | None = None
        self.stop = self.epoch_end = self.stopped_early = False
        self.bar = None

    # ------------------------------------------------------------------------------------ restore
    def restore(self, resume: Path | None) -> None:
        """Load ``resume`` (or seed a fresh run), wrap the model for DDP, start the bar and the probes."""
        if resume is not None:
            state = load_checkpoint(resume, config=self.config_dict, fingerprint=self.fp)
            load_trainable_state(self.model, state["model"], f"--resume {resume}")
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if "data" in state:
                self.task.load_data_state(state["data"])
            self.step_count, self.epoch = int(state["step"]), int(state["epoch"])
            self.batch_in_epoch = int(state["batch_in_epoch"])
            self.best_value, self.best_step = state["best"]["value"], state["best"]["step"]
            self.pending_eval = bool(state.get("pending_eval", False))
            self._restore_rank_rng(state["rng"])
            self.metrics.truncate_after(self.step_count)
        else:
            seed_everything(self.loop.seed + self.runtime.rank)
            self.metrics.truncate_after(0)
        if self.runtime.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=bool(self.task.find_unused_parameters)
            )
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.total_steps,
            initial=self.step_count,
            disable=not (self.loop.progress and self.runtime.is_main),
            dynamic_ncols=True,
            desc="train",
        )
        self.window_samples, self.window_start = 0, time.perf_counter()
        self.memory = MemoryProbe(self.runtime.device)
        self.model.train()

    def _restore_rank_rng(self, rng: dict[str, Any]) -> None:
        if "per_rank" not in rng:
            restore_rng_state(rng)
            return
        states = rng["per_rank"]
        if len(states) != self.runtime.world_size:
            from .checkpoint import CheckpointError

            raise CheckpointError(
                f"--resume: the checkpoint was written by {len(states)} processes, this run has "
                f"{self.runtime.world_size}; an exact resume needs the same number of processes"
            )
        restore_rng_state(states[self.runtime.rank])

    # --------------------------------------------------------------------------------------- steps
    def finished(self) -> bool:
        return self.stop or self.step_count >= self.total_steps or self.epoch >= self.loop.epochs

    def epoch_batches(self):
        """This epoch's remaining batches; each is drawn inside the ``compute`` phase of its step."""
        batches = self.task.train_batches(self.epoch, self.batch_in_epoch)
        while self.batch_in_epoch < self.steps_per_epoch:
            self.step_rng = capture_rng_state()
            self.step_data = self.task.data_state()
            self.phase = "compute"
            yield next(batches)

    def step(self, batch: Any) -> None:
        """Forward, backward, clip, AdamW and scheduler steps; log every ``log_every_steps``."""
        with autocast(self.loop, self.runtime.device):
            out = self.task.step_loss(self.ddp_model, batch)
        loss = out["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.phase = "update"
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], self.grad_clip
            )
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step_count += 1
        self.batch_in_epoch += 1
        self.phase = "idle"
        self.window_samples += self.task.batch_size(batch) * self.runtime.world_size
        if self.step_count % self.loop.log_every_steps == 0 or self.step_count == 1:
            self._log(out, lr, float(loss.detach()))
        self.bar.update(1)
        self.epoch_end = self.batch_in_epoch == self.steps_per_epoch
        if self.epoch_end:
            self.epoch += 1
            self.batch_in_epoch = 0

    def _log(self, out: dict[str, torch.Tensor], lr: float, loss: float) -> None:
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        values = {k: float(v.detach()) for k, v in out.items() if torch.is_tensor(v)}
        values.update(lr=lr, samples_per_s=self.window_samples / elapsed, **self.memory.read())
        self.metrics.log(self.step_count, self.epoch, "train", values)
        self.bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{self.window_samples / elapsed:.1f}")
        self.window_samples, self.window_start = 0, time.perf_counter()

    def validation_due(self) -> bool:
        epochs_done = self.epoch_end and self.epoch % self.loop.eval_every_epochs == 0
        return self.step_count == self.total_steps or epochs_done

    def validate(self) -> bool:
        """Validate on rank 0 (the RNG restored afterwards); returns whether this is the new best."""
        self.post_rng = capture_rng_state()
        self.phase, self.pending_eval = "eval", True
        rng = capture_rng_state()
        values = None
        if self.runtime.is_main:
            self.model.eval()
            with torch.no_grad(), autocast(self.loop, self.runtime.device):
                values = {k: float(v) for k, v in self.task.evaluate().items()}
            self.model.train()
        restore_rng_state(rng)
        values = broadcast_object(values, self.runtime)
        metric = self.task.selection_metric
        if metric not in values:
            raise KeyError(
                f"task.evaluate() returned {sorted(values)}; the selection metric {metric!r} is not among them"
            )
        self.metrics.log(self.step_count, self.epoch, "val", values)
        self.result.history.append({"step": self.step_count, **values})
        self.phase, self.pending_eval = "idle", False
        value, best = values[metric], self.best_value
        if best is None or math.isnan(best):
            improved = not math.isnan(value)
        else:
            improved = value > best if self.task.selection_mode == "max" else value < best
        if improved:
            self.best_value, self.best_step = value, self.step_count
        return improved

    def any_rank(self, flag: bool) -> bool:
        if not self.runtime.distributed:
            return flag
        device = self.runtime.device if self.runtime.device.type == "cuda" else "cpu"
        value = torch.tensor([1 if flag else 0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def checkpoint_due(self, stop: bool) -> bool:
        self.stop = stop
        self.stopped_early = bool(self.loop.stop_at_step) and self.step_count >= self.loop.stop_at_step
        periodic = (
            bool(self.loop.checkpoint_every_steps) and self.step_count % self.loop.checkpoint_every_steps == 0
        )
        return self.epoch_end or periodic or stop or self.stopped_early or self.step_count == self.total_steps

    def leave_epoch(self, stop: bool) -> bool:
        """After a step's checkpoint: whether to leave the epoch loop (end of training, a stop, epoch end)."""
        if self.step_count == self.total_steps:
            self.stop = True
        elif stop or self.stopped_early:
            self.result.interrupted = stop
            self.result.stopped_early = self.stopped_early and not stop
            self.stop = True
        return self.stop or self.epoch_end

    # --------------------------------------------------------------------------------------- saving
    def save(
        self, rng: dict[str, Any], *, best: bool = False, pending: bool = False, data: dict | None = None
    ) -> None:
        """Write a checkpoint of the current state (every rank's RNG goes into rank 0's checkpoint)."""
        if self.runtime.distributed:
            states: list[Any] = [None] * self.runtime.world_size
            dist.all_gather_object(states, rng)
            rng = {"per_rank": states}
        if self.manager is None:
            return
        snapshot = {
            "config": self.config_dict,
            "fingerprint": self.fp,
            "step": self.step_count,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "model": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data": self.task.data_state() if data is None else data,
            "rng": rng,
            "best": {"value": self.best_value, "step": self.best_step, "metric": self.task.selection_metric},
            "pending_eval": pending,
        }
        self.result.last_checkpoint = self.manager.save(snapshot, best=best)
        if best:
            self.result.best_checkpoint = self.manager.folder / "best.pt"

    def save_interrupted(self) -> None:
        """Checkpoint what a KeyboardInterrupt left, by the phase it interrupted (nothing mid-update)."""
        self.result.interrupted = True
        if self.phase == "compute" and self.step_rng is not None:
            self.save(self.step_rng, data=self.step_data)  # the step never touched the weights
        elif self.phase == "eval":
            self.save(self.post_rng if self.post_rng is not None else capture_rng_state(), pending=True)
        elif self.phase == "idle":
            self.save(capture_rng_state())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.metrics.close()

    def finish(self) -> TrainResult:
        """Draw the curves; fill in the result."""
        if self.runtime.is_main and self.loop.plot:
            from .plotting import plot_metrics

            plot_metrics(
                self.run_dir / "metrics.jsonl",
                self.run_dir / "curves.png",
                title=self.task.plot_title or self.run_dir.name,
                val_keys=self.task.plot_keys,
            )
        result = self.result
        result.step, result.epoch = self.step_count, self.epoch
        result.best_value, result.best_step = self.best_value, self.best_step
        best = self.run_dir / "checkpoints" / "best.pt"
        if result.best_checkpoint is None and self.manager is not None and best.is_file():
            result.best_checkpoint = best
        if result.interrupted and self.runtime.is_main:
            print(f"interrupted at step {self.step_count}: continue with --resume {self.run_dir}")
        return result
