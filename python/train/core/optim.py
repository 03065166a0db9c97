"""What the loop optimises and stores: AdamW with its schedule, the trainable state, seeding, autocast."""

from __future__ import annotations

import contextlib
import math
import random

import torch
from torch import nn

from .config import LoopConfig, OptimConfig

__all__ = [
    "autocast",
    "build_optimizer",
    "load_trainable_state",
    "lr_factor",
    "seed_everything",
    "trainable_state",
]


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
        if param.requires_grad:
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
    """Inverse of :func:`trainable_state`; the names must match the model's exactly."""
    from .checkpoint import CheckpointError

    expected = set(trainable_state(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: the checkpoint's weights do not fit the model (missing {missing[:8]}, "
            f"unexpected {unexpected[:8]})"
        )
    model.load_state_dict(state, strict=False)


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy (when installed) and torch (CPU and CUDA)."""
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed % 2**32)


def autocast(loop: LoopConfig, device: torch.device):
    """bf16 autocast on CUDA with ``loop.precision == "bf16"``; nothing otherwise (CPU stays fp32)."""
    if device.type == "cuda" and loop.precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
