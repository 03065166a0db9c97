"""The towers alone in the knowledge space's interface (Table 3's "no knowledge space" configuration)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PlainTowers", "plain_towers"]


class PlainTowers(nn.Module):
    """Frozen open_clip towers answering the calls the VQA model makes of a knowledge space.

    ``encode_text`` / ``encode_image`` are the towers' own projections, L2-normalised ``(N, D)`` float32;
    ``patch_tokens`` as the towers'. There are no classes and no intra-class encoder, so a VQA model on
    plain towers runs with ``use_intra_class=False``.
    """

    @dataclass
    class Config:
        embed_dim: int
        num_images: int = 0

    def __init__(self, towers: nn.Module):
        super().__init__()
        self.towers = towers
        self.config = PlainTowers.Config(embed_dim=int(towers.embed_dim))
        self.class_names: list[str] = []
        self.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.towers.parameters()).device

    def encode_text(self, texts: Sequence[str] | torch.Tensor) -> torch.Tensor:
        tokens = texts if torch.is_tensor(texts) else self.towers.tokenize(list(texts))
        return nn.functional.normalize(self.towers.encode_text(tokens.to(self.device)).float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.towers.encode_image(images).float(), dim=-1)

    def patch_tokens(self, images: torch.Tensor, positional: bool = True) -> torch.Tensor:
        return self.towers.patch_tokens(images, positional=positional)

    def encode_intra_class(self, stacks: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("plain towers have no intra-class encoder: set model.use_intra_class=false")


def plain_towers(name: str, *, device: torch.device | str | None = None) -> PlainTowers:
    """:class:`PlainTowers` of the open_clip towers ``name`` (``hf-hub:...`` or ``local-dir:...``)."""
    from .towers import load_towers

    return PlainTowers(load_towers(name, device=device))
