"""Projectors from the knowledge space's feature widths to the language model's width.

* :class:`PatchPoolingProjector` — image patch tokens on a ``(gh, gw)`` grid, ``pool x pool`` average
  pooling on the grid, then a per-token ``Linear -> GELU -> Linear`` MLP (the published "spatial pooling
  projector": 196 ViT-B/16 tokens -> 49 tokens).
* :class:`VectorProjector` — one feature vector per sample to ``tokens`` LLM-width tokens through
  ``Linear -> ReLU -> Dropout -> Linear -> ReLU -> Dropout`` (the published knowledge projector; its final
  ReLU makes the tokens non-negative, kept as published).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PatchPoolingProjector", "VectorProjector"]


class PatchPoolingProjector(nn.Module):
    """Average-pool patch tokens on their grid, then project every pooled token with an MLP.

    Token ``t`` of the input sits at grid cell ``(t // gw, t % gw)`` (row-major, as ViTs flatten their
    patches); pooled tokens come out in row-major order of the pooled grid.

    .. math::
        y_{ij} = W_2\\,\\mathrm{GELU}\\Big(W_1 \\frac{1}{p^2}\\sum_{a,b<p} x_{pi+a,\\,pj+b} + b_1\\Big) + b_2

    Args:
        in_dim: width of the patch tokens (768 for ViT-B).
        out_dim: width of the language model.
        grid: ``(gh, gw)`` patch grid, each divisible by ``pool``.
        pool: pooling window and stride (2 as published).
        hidden: hidden width of the MLP (``out_dim`` as published).

    Shape:
        ``(B, gh*gw, in_dim)`` float -> ``(B, (gh/pool)*(gw/pool), out_dim)``.
    """

    def __init__(
        self, in_dim: int, out_dim: int, grid: tuple[int, int], pool: int = 2, hidden: int | None = None
    ):
        super().__init__()
        gh, gw = (int(g) for g in grid)
        if pool < 1 or gh % pool or gw % pool:
            raise ValueError(f"grid: expected both sides divisible by pool={pool}, got {tuple(grid)}")
        self.in_dim, self.out_dim, self.grid, self.pool = in_dim, out_dim, (gh, gw), pool
        hidden = out_dim if hidden is None else hidden
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    @property
    def num_tokens(self) -> int:
        """Tokens produced per image: ``(gh / pool) * (gw / pool)``."""
        return (self.grid[0] // self.pool) * (self.grid[1] // self.pool)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        gh, gw = self.grid
        if tokens.dim() != 3 or tokens.shape[1] != gh * gw or tokens.shape[2] != self.in_dim:
            raise ValueError(
                f"tokens: expected shape (B, {gh * gw}, {self.in_dim}) for grid {self.grid}, "
                f"got {tuple(tokens.shape)}"
            )
        batch = tokens.shape[0]
        grid = tokens.transpose(1, 2).reshape(batch, self.in_dim, gh, gw)
        pooled = F.avg_pool2d(grid, kernel_size=self.pool, stride=self.pool)
        pooled = pooled.flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(self.fc1(pooled)))


class VectorProjector(nn.Module):
    """Project one vector per sample to ``tokens`` tokens of the language model's width.

    .. math::
        y = \\mathrm{Drop}(\\mathrm{ReLU}(W_2\\,\\mathrm{Drop}(\\mathrm{ReLU}(W_1 x + b_1)) + b_2))

    Args:
        in_dim: width of the input vectors (the knowledge space's 512).
        out_dim: width of the language model.
        tokens: number of output tokens (the last layer has ``tokens * out_dim`` outputs).
        hidden: hidden width (``out_dim // 2`` by default: 512 -> 1024 -> 2048 as published).
        dropout: dropout probability after each ReLU (0.1 as published).

    Shape:
        ``(B, in_dim)`` float -> ``(B, tokens, out_dim)``.
    """

    def __init__(
        self, in_dim: int, out_dim: int, tokens: int = 1, hidden: int | None = None, dropout: float = 0.1
    ):
        super().__init__()
        if tokens < 1:
            raise ValueError(f"tokens: expected at least 1, got {tokens}")
        self.in_dim, self.out_dim, self.tokens = in_dim, out_dim, tokens
        hidden = max(1, out_dim // 2) if hidden is None else hidden
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, tokens * out_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        if vectors.dim() != 2 or vectors.shape[1] != self.in_dim:
            raise ValueError(f"vectors: expected shape (B, {self.in_dim}), got {tuple(vectors.shape)}")
        return self.net(vectors).view(vectors.shape[0], self.tokens, self.out_dim)
