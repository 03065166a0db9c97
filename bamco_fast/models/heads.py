"""The two trainable MLP heads of the knowledge space.

Both are ``Linear(in, D) -> LayerNorm(D) -> ReLU -> Linear(D, D)`` (with biases), as published:

* :class:`TextHead` maps the frozen text-tower feature (512) to the text embedding f3 (before L2 norm);
* :class:`PrototypeHead` maps each classifier weight column (2D = 1024: image + intra-class halves) to its
  class prototype (before L2 norm).

The cosine classifier itself is :class:`bamco_fast.NormedLinear`.
"""

from __future__ import annotations

import torch
from torch import nn


class _MLPHead(nn.Sequential):
    """``Linear(in_dim, out_dim) -> LayerNorm(out_dim) -> ReLU -> Linear(out_dim, out_dim)``.

    Indices 0, 1, 3 hold the parameters (the published ``head`` / ``head_fc`` state-dict names).

    Shape:
        (N, in_dim) -> (N, out_dim), dtype of the input.
    """

    def __init__(self, in_dim: int, out_dim: int):
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {value!r}")
        super().__init__(
            nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim)
        )
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.in_dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__}: input must have shape (N, {self.in_dim}), got {got}")
        return super().forward(x)


class TextHead(_MLPHead):
    """Trainable head on frozen text-tower features: (N, text_dim) -> (N, D), not normalised."""


class PrototypeHead(_MLPHead):
    """Maps classifier weight columns to class prototypes: (C, 2D) -> (C, D), not normalised."""
