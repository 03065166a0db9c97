"""Seeded, resumable pretraining batches: knowledge records -> tensors for the knowledge space.

One sample = one record of a :class:`~.records.KnowledgeTable` (published rules,
``official_code_notes.md`` §2.2):

* **reference image**: the record's image through the training view pipeline -> ``(3, S, S)``;
* **intra-class stack**: with probability ``intra_from_pool_p`` (0.8) ``K`` images drawn uniformly
  **with replacement** from the distinct images of the record's class, otherwise the record's own
  image ``K`` times; each of the ``K`` is augmented independently -> ``(K, 3, h, w)``;
* **text**: entity name, definition or ``"<relation> <tail>"`` with probabilities
  ``text_probabilities`` = (0.33, 0.2278, 0.4422), the published two-draw rule (``u1 < 0.33`` ->
  entity; else ``u2 < 0.66`` -> relation; else definition) written as one categorical draw;
  returned as an index into ``table.strings``;
* **label**: the record's class.

Order and randomness: each epoch shuffles the records with a permutation seeded by
``(seed, epoch)``; batch ``b`` of an epoch draws everything else from a generator seeded by
``(seed, epoch, rank, b)``. A batch is therefore a pure function of (seed, epoch, batch index), the
sampler's whole state is ``(seed, epoch, position)`` and a resumed run sees exactly the batches an
uninterrupted one would, on any device. Incomplete final batches are dropped (``drop_last``, as
published). With ``world_size > 1`` each rank takes every ``world_size``-th batch-sized slice of the
same permutation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import torch

from .augment import CLIP_MEAN, CLIP_STD, AugmentConfig, augment_views, evaluation_views
from .image_cache import ImageCache, build_image_cache
from .records import TEXT_KINDS, KnowledgeTable

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "PUBLISHED_TEXT_PROBABILITIES",
    "BatchDraw",
    "EvalBatch",
    "KnowledgeBatches",
    "PretrainBatch",
    "SamplerConfig",
    "evaluation_batches",
]

# entity, definition, relation: P(entity) = 0.33, P(relation) = 0.67 * 0.66, P(definition) = 0.67 * 0.34
PUBLISHED_TEXT_PROBABILITIES: tuple[float, float, float] = (0.33, 0.67 * 0.34, 0.67 * 0.66)


@dataclass(frozen=True)
class SamplerConfig:
    """Batch shapes and sampling rules (paper/published values as defaults).

    ``reference`` / ``intra`` default to :meth:`AugmentConfig.reference` / :meth:`AugmentConfig.intra` at
    ``image_size`` / ``intra_image_size``, with RandAugment when ``randaugment`` (the published pipelines);
    ``augment_reference=False`` / ``augment_intra=False`` use the evaluation views instead.
    """

    batch_size: int = 48
    num_images: int = 36
    image_size: int = 224
    intra_image_size: int = 84
    intra_from_pool_p: float = 0.8
    text_probabilities: tuple[float, float, float] = PUBLISHED_TEXT_PROBABILITIES
    augment_reference: bool = True
    augment_intra: bool = True
    randaugment: bool = True
    shuffle: bool = True
    reference: AugmentConfig | None = field(default=None)
    intra: AugmentConfig | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("batch_size", "num_images", "image_size", "intra_image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.intra_from_pool_p <= 1:
            raise ValueError(f"intra_from_pool_p must be in [0, 1], got {self.intra_from_pool_p}")
        probs = tuple(float(p) for p in self.text_probabilities)
        if len(probs) != 3 or min(probs) < 0 or abs(sum(probs) - 1) > 1e-6:
            raise ValueError(
                f"text_probabilities must be 3 non-negative numbers (entity, definition, relation) "
                f"summing to 1, got {self.text_probabilities}"
            )
        if self.reference is None:
            object.__setattr__(
                self, "reference", AugmentConfig.reference(self.image_size, randaugment=self.randaugment)
            )
        if self.intra is None:
            object.__setattr__(
                self, "intra", AugmentConfig.intra(self.intra_image_size, randaugment=self.randaugment)
            )
        if self.reference.size != self.image_size or self.intra.size != self.intra_image_size:
            raise ValueError(
                f"reference/intra AugmentConfig sizes ({self.reference.size}, {self.intra.size}) must equal "
                f"image_size/intra_image_size ({self.image_size}, {self.intra_image_size})"
            )


class _TensorBatch:
    """What every batch dataclass of tensors has: its length (the rows of ``labels``) and ``to``."""

    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Self:
        """A copy with every tensor field moved to ``device``."""
        return type(self)(
            **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )


@dataclass
class PretrainBatch(_TensorBatch):
    """One training batch (``B`` samples).

    Attributes:
        images: ``(B, 3, S, S)`` float, normalised reference images.
        intra_stacks: ``(B, K, 3, h, w)`` float, normalised intra-class images.
        text_index: ``(B,)`` int64 index into ``table.strings``.
        text_kind: ``(B,)`` int64 index into :data:`~.records.TEXT_KINDS` (0 entity, 1 definition, 2 relation).
        labels: ``(B,)`` int64 class of each sample.
        record_index: ``(B,)`` int64 record of each sample.
        image_index: ``(B,)`` int64 cache index of the reference image (key for frozen image features
            when the reference view is not augmented).
        intra_index: ``(B, K)`` int64 cache index of each intra-class image.
    """

    images: torch.Tensor
    intra_stacks: torch.Tensor
    text_index: torch.Tensor
    text_kind: torch.Tensor
    labels: torch.Tensor
    record_index: torch.Tensor
    image_index: torch.Tensor
    intra_index: torch.Tensor


@dataclass(frozen=True)
class BatchDraw:
    """The random index choices of one batch: ``records (B,)``, ``image_index (B,)``, ``intra_index (B, K)``,
    ``text_kind (B,)`` and ``text_index (B,)`` (int64, CPU)."""

    records: torch.Tensor
    image_index: torch.Tensor
    intra_index: torch.Tensor
    text_kind: torch.Tensor
    text_index: torch.Tensor


@dataclass
class EvalBatch(_TensorBatch):
    """One evaluation batch: deterministic views and all three texts of each record.

    Attributes:
        images: ``(B, 3, S, S)`` float, ``Resize -> CenterCrop`` views.
        intra_stacks: ``(B, K, 3, h, w)`` float (the record's own image repeated, as published, or a
            seeded draw from its pool).
        text_index: ``(B, 3)`` int64 indices into ``table.strings``, columns (entity, definition, relation).
        labels: ``(B,)`` int64 class (``-1`` for a head outside the table's classes).
        record_index, image_index: ``(B,)`` int64.
    """

    images: torch.Tensor
    intra_stacks: torch.Tensor
    text_index: torch.Tensor
    labels: torch.Tensor
    record_index: torch.Tensor
    image_index: torch.Tensor


def _generator(*key: int) -> torch.Generator:
    import numpy as np

    seed = int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed & 0x7FFFFFFFFFFFFFFF)


def _check_cache(table: KnowledgeTable, cache: ImageCache) -> None:
    if tuple(cache.names) != tuple(table.images):
        raise ValueError(
            f"cache holds {len(cache.names)} images that are not the table's {len(table.images)} images in "
            "order; build it with build_image_cache(table.image_paths, names=table.images)"
        )


def _draw_intra(
    table: KnowledgeTable, records: torch.Tensor, k: int, pool_p: float, generator: torch.Generator
) -> torch.Tensor:
    """``(B, K)`` int64 image indices: pool draws with probability ``pool_p``, else the own image."""
    classes = table.record_class[records]
    if bool((classes < 0).any()):
        raise ValueError("records outside the table's classes cannot be sampled for training")
    from_pool = torch.rand(records.shape[0], generator=generator) < pool_p
    u = torch.rand(records.shape[0], k, generator=generator, dtype=torch.float64)
    lo = table.pool_offsets[classes]
    size = table.pool_offsets[classes + 1] - lo
    pick = torch.minimum((u * size[:, None]).long(), size[:, None] - 1) + lo[:, None]
    own = table.record_image[records][:, None].expand(-1, k)
    return torch.where(from_pool[:, None], table.pool_images[pick], own)


class KnowledgeBatches:
    """Iterable of :class:`PretrainBatch` over a :class:`~.records.KnowledgeTable` (see the module doc).

    Example::

        table = load_knowledge_table("kg_train.json", "slake/imgs")
        batches = KnowledgeBatches.from_table(table, SamplerConfig(batch_size=48), seed=0, device="cuda")
        for epoch in range(epochs):
            for batch in batches:          # the rest of the current epoch, then the epoch advances
                ...
                checkpoint["sampler"] = batches.state_dict()
        batches.load_state_dict(checkpoint["sampler"])   # resume: identical subsequent batches

    Args:
        table: records, classes and image pools.
        cache: decoded images of ``table.images`` (same order); its device is where batches are made.
        config: shapes and sampling rules.
        seed: base seed.
        rank, world_size: data-parallel shard.
        mean, std: normalisation of the towers (CLIP's by default).
        dtype: dtype of the image tensors returned.
    """

    def __init__(
        self,
        table: KnowledgeTable,
        cache: ImageCache,
        config: SamplerConfig | None = None,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        _check_cache(table, cache)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.table = table
        self.cache = cache
        self.config = config or SamplerConfig()
        self.seed = int(seed)
        self.rank, self.world_size = rank, world_size
        self.mean, self.std, self.dtype = tuple(mean), tuple(std), dtype
        if bool((table.record_class < 0).any()):
            raise ValueError("a training table needs every record in a class (build it without classes=)")
        self._cum = torch.tensor(self.config.text_probabilities, dtype=torch.float64).cumsum(0)
        self.epoch = 0
        self.position = 0
        if len(self) == 0:
            raise ValueError(
                f"{len(table)} records make no full batch of {self.config.batch_size} x {world_size} ranks; "
                "lower batch_size"
            )

    @classmethod
    def from_table(
        cls,
        table: KnowledgeTable,
        config: SamplerConfig | None = None,
        *,
        resolution: int | None = None,
        cache_file=None,
        device: torch.device | str = "cpu",
        **kwargs: Any,
    ) -> KnowledgeBatches:
        """Decode the table's images (``resolution`` default: the larger of 256 and ``image_size``) and build."""
        config = config or SamplerConfig()
        resolution = resolution or max(256, config.image_size)
        cache = build_image_cache(table.image_paths, resolution, names=table.images, cache_file=cache_file)
        return cls(table, cache.to(device), config, **kwargs)

    def __len__(self) -> int:
        return len(self.table) // (self.config.batch_size * self.world_size)

    @property
    def device(self) -> torch.device:
        return self.cache.device

    def permutation(self, epoch: int) -> torch.Tensor:
        """``(N,)`` record order of ``epoch``."""
        n = len(self.table)
        if not self.config.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=_generator(self.seed, epoch, 0x5EED))

    def draw(self, epoch: int, index: int) -> BatchDraw:
        """The index draws of batch ``index`` of ``epoch`` (what :meth:`batch` uses), without any image work."""
        records, g = self._records_and_generator(epoch, index)
        return self._draw(records, g)

    def _records_and_generator(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Generator]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch index must be in [0, {len(self)}), got {index}")
        b = self.config.batch_size
        start = (index * self.world_size + self.rank) * b
        records = self.permutation(epoch)[start : start + b]
        return records, _generator(self.seed, epoch, self.rank + 1, index)

    def _draw(self, records: torch.Tensor, g: torch.Generator) -> BatchDraw:
        cfg, table = self.config, self.table
        intra_index = _draw_intra(table, records, cfg.num_images, cfg.intra_from_pool_p, g)
        u = torch.rand(records.shape[0], generator=g, dtype=torch.float64)
        kind = torch.searchsorted(self._cum, u, right=True).clamp_(max=len(TEXT_KINDS) - 1)
        text_index = table.record_text[records].gather(1, kind[:, None])[:, 0]
        return BatchDraw(records, table.record_image[records], intra_index, kind, text_index)

    def batch(self, epoch: int, index: int) -> PretrainBatch:
        """Batch ``index`` of ``epoch`` on this rank (pure function of seed, epoch, rank, index)."""
        records, g = self._records_and_generator(epoch, index)
        d = self._draw(records, g)
        cfg, cache = self.config, self.cache
        b, k = records.shape[0], cfg.num_images
        norm = {"mean": self.mean, "std": self.std}
        if cfg.augment_reference:
            images = augment_views(cache.images, cache.sizes, d.image_index, cfg.reference, g, **norm)
        else:
            images = evaluation_views(cache.images, cache.sizes, d.image_index, cfg.reference, **norm)
        flat = d.intra_index.reshape(-1)
        if cfg.augment_intra:
            intra = augment_views(cache.images, cache.sizes, flat, cfg.intra, g, **norm)
        else:
            intra = evaluation_views(cache.images, cache.sizes, flat, cfg.intra, **norm)
        device = cache.device
        return PretrainBatch(
            images=images.to(self.dtype),
            intra_stacks=intra.to(self.dtype).view(b, k, 3, cfg.intra_image_size, cfg.intra_image_size),
            text_index=d.text_index.to(device),
            text_kind=d.text_kind.to(device),
            labels=self.table.record_class[records].to(device),
            record_index=records.to(device),
            image_index=d.image_index.to(device),
            intra_index=d.intra_index.to(device),
        )

    def __iter__(self) -> Iterator[PretrainBatch]:
        """Yield the remaining batches of the current epoch; when they are exhausted the epoch advances.

        ``position`` counts batches already handed out, so a ``state_dict()`` taken while a batch is
        being used resumes with the next one.
        """
        while self.position < len(self):
            index = self.position
            self.position += 1
            yield self.batch(self.epoch, index)
        self.epoch += 1
        self.position = 0

    def set_epoch(self, epoch: int, position: int = 0) -> None:
        if epoch < 0 or not 0 <= position <= len(self):
            raise ValueError(f"epoch must be >= 0 and position in [0, {len(self)}], got {epoch}, {position}")
        self.epoch, self.position = int(epoch), int(position)

    def state_dict(self) -> dict[str, int]:
        """``{seed, epoch, position, num_records, batch_size, world_size, rank}`` (plain ints)."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "num_records": len(self.table),
            "batch_size": self.config.batch_size,
            "world_size": self.world_size,
            "rank": self.rank,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a :meth:`state_dict`; refuses the state of a different table, batch size or world size."""
        mine = self.state_dict()
        missing = [k for k in ("seed", "epoch", "position") if k not in state]
        if missing:
            raise ValueError(
                f"sampler state lacks {missing}; expected the keys of state_dict(): {sorted(mine)}"
            )
        for key in ("num_records", "batch_size", "world_size"):
            if key in state and int(state[key]) != mine[key]:
                raise ValueError(
                    f"sampler state is for {key}={state[key]}, this sampler has {key}={mine[key]}: "
                    "resume with the same knowledge file and batch settings"
                )
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]), int(state["position"]))


def evaluation_batches(
    table: KnowledgeTable,
    cache: ImageCache,
    config: SamplerConfig | None = None,
    *,
    batch_size: int | None = None,
    intra: str = "repeat",
    seed: int = 0,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
    dtype: torch.dtype = torch.float32,
) -> Iterator[EvalBatch]:
    """Every record once, in table order, without augmentation (the last batch may be smaller).

    ``intra="repeat"``: the record's own image ``K`` times (the published evaluation);
    ``"pool"``: ``K`` images drawn from its class's pool with a generator seeded by ``(seed, record)``
    (records outside the classes fall back to ``repeat``). Views are deterministic.
    """
    if intra not in ("repeat", "pool"):
        raise ValueError(f"intra must be 'repeat' or 'pool', got {intra!r}")
    _check_cache(table, cache)
    config = config or SamplerConfig()
    size = batch_size or config.batch_size
    k, h = config.num_images, config.intra_image_size
    norm = {"mean": mean, "std": std}
    for start in range(0, len(table), size):
        records = torch.arange(start, min(start + size, len(table)))
        image_index = table.record_image[records]
        images = evaluation_views(cache.images, cache.sizes, image_index, config.reference, **norm)
        if intra == "repeat":
            own = evaluation_views(cache.images, cache.sizes, image_index, config.intra, **norm)
            stacks = own[:, None].expand(-1, k, -1, -1, -1)
        else:
            rows = []
            for r in records.tolist():
                if int(table.record_class[r]) < 0:
                    rows.append(table.record_image[r].expand(k))
                else:
                    rows.append(_draw_intra(table, torch.tensor([r]), k, 1.0, _generator(seed, r, 0xE7A1))[0])
            flat = torch.stack(rows).reshape(-1)
            stacks = evaluation_views(cache.images, cache.sizes, flat, config.intra, **norm)
            stacks = stacks.view(len(records), k, 3, h, h)
        device = cache.device
        yield EvalBatch(
            images=images.to(dtype),
            intra_stacks=stacks.to(dtype),
            text_index=table.record_text[records].to(device),
            labels=table.record_class[records].to(device),
            record_index=records.to(device),
            image_index=image_index.to(device),
        )
