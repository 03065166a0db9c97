"""What a stage gives the training loop: a :class:`Task` (the model, its batches, its loss, its validation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["Task"]


class Task:
    """Base class of a stage's task. Subclasses set :attr:`model` and :attr:`selection_metric` and define
    the four abstract methods; the optional hooks below have defaults.

    Attributes:
        model: the module to train (only parameters with ``requires_grad`` are optimised and saved).
        selection_metric: key of :meth:`evaluate`'s result used to pick ``best.pt``.
        selection_mode: ``"max"`` or ``"min"``.
        find_unused_parameters: passed to DistributedDataParallel.
        plot_keys: validation keys drawn in ``curves.png`` (``None``: all of them).
        plot_title: title of ``curves.png`` (``""``: the run folder's name).
    """

    model: nn.Module
    selection_metric: str
    selection_mode: str = "max"
    find_unused_parameters: bool = False
    plot_keys: list[str] | None = None
    plot_title: str = ""

    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (global batches; identical on every rank)."""
        raise NotImplementedError

    def train_batches(self, epoch: int, start: int) -> Iterator[Any]:
        """This rank's share of global batches ``start, start + 1, ...`` of ``epoch``, on the device."""
        raise NotImplementedError

    def step_loss(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Forward through ``model`` (possibly DDP-wrapped); ``"loss"`` is optimised, other scalars logged."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Validation metrics (called on rank 0 only, in eval mode, without gradients)."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------- optional hooks
    def batch_size(self, batch: Any) -> int:
        """Samples of ``batch`` on this rank."""
        return len(batch)

    def data_state(self) -> dict[str, Any]:
        """Data-order state beyond (epoch, batch index), stored in checkpoints (called between steps)."""
        return {}

    def load_data_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`data_state`."""
