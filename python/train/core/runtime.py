"""Process runtime of a training run: device choice, ``torchrun`` process group, rank-0 helpers.

Under ``torchrun`` (environment ``WORLD_SIZE > 1``) :func:`init_runtime` joins the default process group
(NCCL on CUDA, gloo on CPU) and puts each rank on ``cuda:LOCAL_RANK``; otherwise it is a single process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Runtime", "broadcast_object", "init_runtime", "runtime_of", "shutdown_runtime"]


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: ``rank`` of ``world_size`` processes, on ``device``."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this runtime created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def local_batch(self, global_batch: int) -> int:
        """This rank's share of a global batch; the global batch must divide evenly."""
        if global_batch % self.world_size:
            raise ValueError(
                f"loop.batch_size: the global batch ({global_batch}) must be a multiple of the number of "
                f"processes ({self.world_size})"
            )
        return global_batch // self.world_size


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"loop.device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"loop.device: {device!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_runtime(device: str = "auto") -> Runtime:
    """Single process, or join the ``torchrun`` process group described by the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return Runtime(device=dev)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return Runtime(
        device=dev,
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        owns_group=owns,
    )


def shutdown_runtime(runtime: Runtime) -> None:
    """Destroy the process group if :func:`init_runtime` created it."""
    if runtime.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value: Any, runtime: Runtime) -> Any:
    """Rank 0's ``value`` on every rank (identity in a single process)."""
    if not runtime.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def runtime_of(device: str = "auto", num_threads: int = 0) -> Iterator[Runtime]:
    """:func:`init_runtime` for a run (``num_threads`` > 0 sets torch's CPU threads), shut down on exit."""
    runtime = init_runtime(device)
    if num_threads and runtime.device.type == "cpu":
        torch.set_num_threads(num_threads)
    try:
        yield runtime
    finally:
        shutdown_runtime(runtime)
