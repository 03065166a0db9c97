"""Data of a pretraining run: knowledge tables, image caches, frozen-tower feature caches, matching inputs.

* :func:`load_tables`: training and validation :class:`~bamco_fast.pretraining.KnowledgeTable` (validation
  from its own knowledge file, or ``val_fraction`` of the training images held out, seeded, by image, or
  the images the VQA stage validates on, ``data.vqa_root``).
* :func:`frozen_text_features`: the frozen text tower over the finite table of training strings, once
  (exact: text is never augmented).
* :func:`frozen_image_features`: the frozen image tower over every distinct image's deterministic view,
  once (exact when the reference view is not augmented; with augmentation it is a change from the paper,
  which is why the option requires ``data.augment_reference=false``).
* :func:`matching_inputs`: embeddings of a validation table for :mod:`bamco_fast.matching`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bamco_fast.matching import MatchingInputs
from bamco_fast.pretraining import (
    ImageCache,
    KnowledgeTable,
    SamplerConfig,
    build_image_cache,
    evaluation_batches,
    evaluation_views,
    load_knowledge_table,
)

from .config import PretrainConfig

__all__ = [
    "Tables",
    "frozen_image_features",
    "frozen_text_features",
    "load_tables",
    "matching_inputs",
    "vqa_validation_images",
]


@dataclass
class Tables:
    """Training and validation tables (validation classes = the training classes; unseen heads -> -1)."""

    train: KnowledgeTable
    val: KnowledgeTable
    val_source: str  # "file <path>" or "carved: <n> of <m> training images"


def _resolve(path: str, what: str) -> Path:
    if not path:
        raise ValueError(f"config key {what!r}: a path is required (set it with --set {what}=PATH)")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise FileNotFoundError(f"config key {what!r}: {resolved} does not exist")
    return resolved


def vqa_validation_images(config: PretrainConfig) -> set[str]:
    """Image names (as the dataset's records name them) of the validation split the VQA stage selects on
    for ``config.data.dataset`` at ``config.data.vqa_root``, with the split defaults both stages share
    (:data:`bamco_fast.data.vqa_splits.SPLIT_DEFAULTS`)."""
    from bamco_fast.data.loading import DATASETS
    from bamco_fast.data.vqa_splits import SPLIT_DEFAULTS, load_vqa_splits

    data = config.data
    if data.dataset not in DATASETS:
        raise ValueError(
            f"config key 'data.vqa_root': needs data.dataset to name the VQA dataset, one of {list(DATASETS)}, "
            f"got {data.dataset!r}"
        )
    root = _resolve(data.vqa_root, "data.vqa_root")
    splits = load_vqa_splits(
        data.dataset,
        root,
        eval_split=SPLIT_DEFAULTS["eval_split"],
        layout=SPLIT_DEFAULTS["layout"],
        lang=SPLIT_DEFAULTS["lang"],
        val_fraction=data.val_fraction or SPLIT_DEFAULTS["val_fraction"],
        test_fraction=SPLIT_DEFAULTS["test_fraction"],
        seed=data.split_seed,
    )
    return {r.image_name for r in splits.validate}


def _tables(
    train_source, val_source, image_root: Path, options: dict, description: str, config=None
) -> Tables:
    """Training table, then the validation table over the training classes (unseen heads -> -1).
    Sources are knowledge files or record lists (``options`` carries ``image_map`` for files); with
    ``data.max_train_records`` / ``data.max_val_records`` only the first records of each are kept."""
    from bamco_fast.knowledge.published import read_knowledge_file

    limits = (config.data.max_train_records, config.data.max_val_records) if config is not None else (0, 0)
    sources = []
    for source, limit in zip((train_source, val_source), limits):
        if limit and not isinstance(source, list):
            source = read_knowledge_file(Path(source), image_map=options.get("image_map"))
        sources.append(source[:limit] if limit else source)
    table_options = {k: v for k, v in options.items() if k != "image_map" or not isinstance(sources[0], list)}
    train = load_knowledge_table(sources[0], image_root, **table_options)
    val_options = {k: v for k, v in options.items() if k != "image_map" or not isinstance(sources[1], list)}
    val = load_knowledge_table(
        sources[1], image_root, classes=train.classes, allow_empty_classes=True, **val_options
    )
    return Tables(train, val, description)


def _shared_validation(
    config: PretrainConfig, train_path: Path, image_root: Path, image_map, options
) -> Tables:
    """Validation = the records of the VQA stage's validation images (``data.vqa_root``), from the
    training and (if any) validation knowledge files; training = the other training records."""
    from bamco_fast.knowledge.published import read_knowledge_file

    data = config.data
    held = vqa_validation_images(config)
    records = read_knowledge_file(train_path, image_map=image_map)
    extra = []
    if data.val_knowledge:
        extra = read_knowledge_file(_resolve(data.val_knowledge, "data.val_knowledge"), image_map=image_map)
    train_records = [r for r in records if r.image not in held]
    val_records = [r for r in (*records, *extra) if r.image in held]
    if not val_records:
        raise ValueError(
            f"config key 'data.vqa_root': none of the {len(held)} validation images of {data.dataset} at "
            f"{data.vqa_root} has a knowledge record in {train_path.name}"
            + (f" or {Path(data.val_knowledge).name}" if data.val_knowledge else "")
        )
    n_images = len({r.image for r in val_records})
    source = (
        f"the VQA stage's validation split of {data.dataset}: records of {n_images} of its {len(held)} images, "
        f"{len(records) - len(train_records)} of them held out of {train_path.name}"
    )
    return _tables(train_records, val_records, image_root, options, source, config)


def load_tables(config: PretrainConfig) -> Tables:
    """Read the knowledge files of ``config.data`` (checks every image exists before any decoding)."""
    from bamco_fast.knowledge.published import load_image_map, read_knowledge_file

    data = config.data
    train_path = _resolve(data.train_knowledge, "data.train_knowledge")
    image_root = _resolve(data.image_root, "data.image_root")
    image_map = load_image_map(_resolve(data.image_map, "data.image_map")) if data.image_map else None
    options = {"missing_definition": data.missing_definition, "lowercase": True}
    if data.vqa_root:
        return _shared_validation(config, train_path, image_root, image_map, options)
    if data.val_knowledge:
        val_path = _resolve(data.val_knowledge, "data.val_knowledge")
        return _tables(
            train_path, val_path, image_root, {**options, "image_map": image_map}, f"file {val_path}", config
        )
    if data.val_fraction <= 0:
        raise ValueError(
            "config: no validation records: set data.val_knowledge=FILE or data.val_fraction > 0 "
            "(model selection uses validation only, never test)"
        )
    records = read_knowledge_file(train_path, image_map=image_map)
    images = list(dict.fromkeys(r.image for r in records))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(config.loop.seed + 7919))
    n_val = max(1, round(data.val_fraction * len(images)))
    held = {images[i] for i in order[:n_val].tolist()}
    train_records = [r for r in records if r.image not in held]
    val_records = [r for r in records if r.image in held]
    source = f"carved: {n_val} of {len(images)} training images ({train_path.name})"
    return _tables(train_records, val_records, image_root, options, source, config)


def sampler_config(config: PretrainConfig, image_size: int, per_rank_batch: int) -> SamplerConfig:
    """Batch shapes from the model config and the towers' image size."""
    data, model = config.data, config.model
    return SamplerConfig(
        batch_size=per_rank_batch,
        num_images=model.num_images,
        image_size=image_size,
        intra_image_size=model.intra_image_size,
        intra_from_pool_p=data.intra_from_pool_p,
        text_probabilities=tuple(data.text_probabilities),
        augment_reference=data.augment_reference,
        augment_intra=data.augment_intra,
    )


def image_cache(table: KnowledgeTable, config: PretrainConfig, image_size: int, suffix: str) -> ImageCache:
    """Decode ``table.images`` once (uint8, longer side ``data.cache_resolution`` or max(256, image size))."""
    resolution = config.data.cache_resolution or max(256, image_size)
    resolution = max(resolution, image_size, config.model.intra_image_size)
    cache_file = f"{config.data.cache_file}.{suffix}" if config.data.cache_file else None
    return build_image_cache(table.image_paths, resolution, names=table.images, cache_file=cache_file)


@torch.no_grad()
def frozen_text_features(model, strings: tuple[str, ...], batch_size: int = 256) -> torch.Tensor:
    """(T, E) frozen text-tower outputs of ``strings`` (raw, not normalised), on the model's device."""
    return model.frozen_text_features(list(strings), batch_size=batch_size)


@torch.no_grad()
def frozen_image_features(
    model, cache: ImageCache, sampler: SamplerConfig, batch_size: int = 64, *, mean, std
) -> torch.Tensor:
    """(M, E) frozen image-tower outputs of every cached image's deterministic view, on the model's device."""
    out = []
    for index in torch.arange(len(cache)).split(batch_size):
        views = evaluation_views(cache.images, cache.sizes, index, sampler.reference, mean=mean, std=std)
        out.append(model.frozen_image_features(views.to(model.device)))
    return torch.cat(out)


@torch.no_grad()
def matching_inputs(
    model,
    table: KnowledgeTable,
    cache: ImageCache,
    sampler: SamplerConfig,
    *,
    text_features: torch.Tensor,
    image_features: torch.Tensor,
    intra: str = "repeat",
    batch_size: int = 48,
    untrained: bool = False,
    seed: int = 0,
) -> MatchingInputs:
    """Embeddings of every record of ``table`` for the matching evaluation.

    Args:
        model: a :class:`~bamco_fast.models.KnowledgeSpace`.
        table, cache: the evaluation records and their decoded images.
        sampler: view sizes.
        text_features: (T, E) frozen text-tower outputs of ``table.strings``.
        image_features: (M, E) frozen image-tower outputs of ``table.images``.
        intra: ``"repeat"`` (own image K times, published) or ``"pool"`` (seeded draw from the class pool).
        untrained: the towers alone (the baseline): f3 = norm(text tower output), no intra-class embedding.
    """
    image = F.normalize(image_features.float(), dim=-1)[table.record_image.to(image_features.device)]
    if untrained:
        strings = F.normalize(text_features.float(), dim=-1)
        return MatchingInputs(image=image, strings=strings, text_index=table.record_text.to(image.device))
    strings = F.normalize(model.text_head(text_features).float(), dim=-1)
    k, h = sampler.num_images, sampler.intra_image_size
    mean, std = model.towers.image_mean, model.towers.image_std
    if intra == "repeat":  # the stack depends only on the image: encode each distinct image once
        per_image = []
        for index in torch.arange(len(cache)).split(batch_size):
            own = evaluation_views(cache.images, cache.sizes, index, sampler.intra, mean=mean, std=std)
            stacks = own[:, None].expand(-1, k, -1, -1, -1).to(model.device)
            per_image.append(model.encode_intra_class(stacks).float())
        intra_emb = torch.cat(per_image)[table.record_image.to(model.device)]
    else:
        parts = []
        for batch in evaluation_batches(
            table, cache, sampler, batch_size=batch_size, intra="pool", seed=seed, mean=mean, std=std
        ):
            parts.append(
                model.encode_intra_class(batch.intra_stacks.view(-1, k, 3, h, h).to(model.device)).float()
            )
        intra_emb = torch.cat(parts)
    return MatchingInputs(
        image=image.to(model.device),
        strings=strings,
        text_index=table.record_text.to(model.device),
        intra=intra_emb,
    )
