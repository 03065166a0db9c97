"""Assemble a pretraining run before any training: knowledge tables, image caches, towers, the model, and
the frozen-feature caches; and the matching evaluator of a run."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from .config import PretrainConfig

__all__ = ["Prepared", "evaluator", "prepare"]


@dataclasses.dataclass
class Prepared:
    """Everything built before training (shared by training and ``--eval-only``)."""

    config: PretrainConfig
    run_dir: Path
    runtime: Any
    tables: Any
    model: Any
    sampler: Any
    train_cache: Any
    val_cache: Any
    text_features: torch.Tensor
    val_text_features: torch.Tensor
    image_features: torch.Tensor | None
    val_image_features: torch.Tensor


def _tiny_towers(
    config: PretrainConfig, run_dir: Path, texts: tuple[str, ...], is_main: bool
) -> PretrainConfig:
    """Build the tiny towers once into ``run_dir/towers`` (rank 0) and point ``model.tower`` at them."""
    from bamco_fast.models.tiny import build_tiny_towers

    folder = (run_dir / "towers").absolute()
    tiny = config.tiny
    if is_main and not (folder / "open_clip_config.json").is_file():
        build_tiny_towers(
            folder,
            list(texts),
            image_size=tiny.image_size,
            seed=tiny.seed,
            embed_dim=tiny.embed_dim,
            context_length=tiny.context_length,
            vocab_size=tiny.vocab_size,
            text_width=tiny.text_width,
            text_layers=tiny.text_layers,
        )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    model = dataclasses.replace(config.model, tower=f"local-dir:{folder}", embed_dim=tiny.embed_dim)
    return dataclasses.replace(config, model=model)


def prepare(config: PretrainConfig, runtime, *, log=print) -> Prepared:
    """Tables, caches, the model (seeded) and the frozen-feature caches of a run."""
    from bamco_fast.models.knowledge_space import KnowledgeSpace
    from bamco_fast.models.towers import load_towers

    from . import data as pdata

    run_dir = Path(config.out)
    t0 = time.perf_counter()
    tables = pdata.load_tables(config)
    log(
        f"data: {len(tables.train)} training records, {tables.train.num_classes} classes, "
        f"{len(tables.train.images)} images, {len(tables.train.strings)} distinct strings; validation "
        f"{len(tables.val)} records of {len(tables.val.images)} images ({tables.val_source})"
    )
    if config.tiny.enabled:
        config = _tiny_towers(config, run_dir, tables.train.strings, runtime.is_main)
    towers = load_towers(config.model.tower, device=runtime.device)
    torch.manual_seed(config.loop.seed)  # the same initial heads on every rank
    model = KnowledgeSpace(config.model, tables.train.classes, towers=towers).to(runtime.device)
    per_rank = runtime.local_batch(config.loop.batch_size)
    sampler = pdata.sampler_config(config, towers.image_size, per_rank)
    train_cache = pdata.image_cache(tables.train, config, towers.image_size, "train")
    val_cache = pdata.image_cache(tables.val, config, towers.image_size, "val")
    norm = {"mean": towers.image_mean, "std": towers.image_std}
    model.eval()  # deterministic tower features (a trainable tower would otherwise apply dropout)
    text_features = pdata.frozen_text_features(model, tables.train.strings)
    val_text_features = pdata.frozen_text_features(model, tables.val.strings)
    image_features = None
    if config.data.cache_image_features:
        image_features = pdata.frozen_image_features(model, train_cache.to(runtime.device), sampler, **norm)
    val_image_features = pdata.frozen_image_features(model, val_cache.to(runtime.device), sampler, **norm)
    log(
        f"prepared in {time.perf_counter() - t0:.1f} s (images decoded once, frozen text features computed once)"
    )
    return Prepared(
        config, run_dir, runtime, tables, model, sampler, train_cache, val_cache,
        text_features, val_text_features, image_features, val_image_features,
    )  # fmt: skip


def evaluator(prep: Prepared, *, untrained: bool = False):
    """A function model -> matching scores on the validation records (``config.eval`` protocol)."""
    from bamco_fast.matching import matching_scores

    from .data import frozen_text_features, matching_inputs

    cfg = prep.config.eval
    cache = prep.val_cache.to(prep.runtime.device)

    def run_eval(model) -> dict[str, float]:
        text_features = prep.val_text_features
        if not untrained and not model.config.freeze_text_tower:  # a trained text tower: encode again
            text_features = frozen_text_features(model, prep.tables.val.strings)
        inputs = matching_inputs(
            model,
            prep.tables.val,
            cache,
            prep.sampler,
            text_features=text_features,
            image_features=prep.val_image_features,
            intra=cfg.intra,
            batch_size=cfg.batch_size,
            untrained=untrained,
            seed=prep.config.loop.seed,
        )
        return matching_scores(inputs, protocol=cfg.protocol, batch_size=cfg.batch_size)

    return run_eval
