"""Frozen-tower feature caches of the pretraining benchmarks: rows computed once per key, then looked up.

A frozen tower is deterministic, so its output for a string (text tower) or for an image's unaugmented
reference view (image tower) can be computed once and reused every step. :class:`FrozenFeatureCache`
computes only the rows a run draws (:meth:`FrozenFeatureCache.ensure`) and times that one-time work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch


class FrozenFeatureCache:
    """Rows of a frozen tower's outputs, one per key (a string or an image), computed once.

    Args:
        size: number of keys (e.g. ``len(table.strings)``).
        compute: ``keys (list[int]) -> (len(keys), width)`` features of those keys.
        chunk: keys per ``compute`` call.
    """

    def __init__(self, size: int, compute: Callable[[list[int]], torch.Tensor], *, chunk: int = 64) -> None:
        self.compute, self.chunk = compute, chunk
        self.rows: torch.Tensor | None = None
        self.filled = torch.zeros(size, dtype=torch.bool)
        self.seconds = 0.0

    def ensure(self, keys: torch.Tensor) -> int:
        """Compute the missing rows among ``keys``; returns how many were computed (time in ``seconds``)."""
        missing = sorted(set(keys.reshape(-1).tolist()) - set(self.filled.nonzero()[:, 0].tolist()))
        start = time.perf_counter()
        for i in range(0, len(missing), self.chunk):
            part = missing[i : i + self.chunk]
            with torch.no_grad():
                values = self.compute(part)
            if self.rows is None:
                self.rows = torch.zeros(len(self.filled), values.shape[1], dtype=values.dtype)
            self.rows[part] = values
            self.filled[part] = True
        self.seconds += time.perf_counter() - start
        return len(missing)

    def __call__(self, keys: torch.Tensor) -> torch.Tensor:
        """``(B,)`` keys -> ``(B, width)`` cached rows (every key must have been :meth:`ensure` d)."""
        if self.rows is None or not bool(self.filled[keys].all()):
            raise KeyError("FrozenFeatureCache: a key was not computed; call ensure() with it first")
        return self.rows.index_select(0, keys)

    def seconds_per_key(self) -> float:
        return self.seconds / max(1, int(self.filled.sum()))


def trimmed_tokens(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the trailing columns that are padding in every row of ``tokens (N, L)``."""
    used = (tokens != pad_id).any(0).nonzero()
    return tokens[:, : int(used.max()) + 1] if used.numel() else tokens[:, :1]


def text_feature_cache(model, strings: Sequence[str], group_size: int = 8) -> FrozenFeatureCache:
    """Frozen text-tower outputs of ``strings``: tokenised at the towers' context length, sorted by length,
    and run ``group_size`` at a time with each group's all-padding columns trimmed."""
    config = getattr(model.towers.clip.text, "config", None)
    pad_id = getattr(config, "pad_token_id", None)

    def compute(keys: list[int]) -> torch.Tensor:
        tokens = model.towers.tokenize([strings[k] for k in keys])
        if pad_id is None:
            return model.frozen_text_features(tokens)
        # similar lengths together, so each group is trimmed to little more than its own texts
        order = (tokens != pad_id).sum(1).argsort()
        out = torch.empty(len(keys), model.towers.embed_dim)
        for group in order.split(group_size):
            out[group] = model.frozen_text_features(trimmed_tokens(tokens[group], pad_id)).float()
        return out

    return FrozenFeatureCache(len(strings), compute)


def image_feature_cache(model, cache, sampler_config) -> FrozenFeatureCache:
    """Frozen image-tower outputs of every cached image's deterministic reference view."""
    from bamco_fast.pretraining import evaluation_views

    towers = model.towers

    def compute(keys: list[int]) -> torch.Tensor:
        views = evaluation_views(
            cache.images,
            cache.sizes,
            torch.tensor(keys),
            sampler_config.reference,
            mean=towers.image_mean,
            std=towers.image_std,
        )
        return model.frozen_image_features(views.float())

    return FrozenFeatureCache(len(cache), compute, chunk=16)
