"""VQA records -> batches: images from an :class:`~bamco_fast.data.images.ImageTable`, normalised on the fly.

* :class:`VQABatch` is what the model sees: ``images`` ``(B, 3, S, S)`` float32, pixels scaled to
  ``[0, 1]`` and normalised per channel, ``x = (p / 255 - mean_c) / std_c`` (the towers' mean/std), plus
  the question/answer strings and ids.
* :func:`iter_batches` walks the records in order (evaluation) or in a seeded permutation per epoch
  (training): ``torch.randperm(n, generator=Generator().manual_seed(seed + epoch))``, so the data order
  of an epoch is a function of ``(seed, epoch)`` and a resumed run continues it exactly.

No augmentation is applied: the published flips and 90-degree rotations change the answer of every
left/right and position question (Slake asks many), so they are left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from bamco_fast.data import VQARecord
from bamco_fast.data.images import ImageTable
from bamco_fast.models.vqa_features import FrozenFeatures, FrozenFeatureTable

__all__ = ["VQABatch", "epoch_order", "iter_batches", "num_batches"]


@dataclass
class VQABatch:
    """One batch: ``images`` ``(B, 3, S, S)`` float32 normalised (``None`` when the frozen features are
    precomputed); ``frozen``: the batch's rows of a :class:`~bamco_fast.models.vqa_features.FrozenFeatures`
    cache; ``index``: the records' positions in the split; the rest are length-``B`` lists."""

    images: torch.Tensor | None
    questions: list[str]
    answers: list[str]
    qids: list[str]
    records: list[VQARecord]
    index: list[int] = field(default_factory=list)
    frozen: FrozenFeatures | None = None

    def __len__(self) -> int:
        return len(self.qids)

    def to(self, device: torch.device | str) -> VQABatch:
        return replace(
            self,
            images=None if self.images is None else self.images.to(device),
            frozen=None if self.frozen is None else self.frozen.to(device),
        )

    def part(self, rows: slice) -> VQABatch:
        """The rows ``rows`` of the batch (a rank's share of a global batch)."""
        return VQABatch(
            images=None if self.images is None else self.images[rows],
            questions=self.questions[rows],
            answers=self.answers[rows],
            qids=self.qids[rows],
            records=self.records[rows],
            index=self.index[rows],
            frozen=None if self.frozen is None else self.frozen.select(range(len(self.qids))[rows]),
        )


def num_batches(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_order(n: int, *, shuffle: bool, seed: int, epoch: int) -> list[int]:
    """Record order of one epoch: identity, or ``randperm(n)`` seeded with ``seed + epoch``."""
    if not shuffle:
        return list(range(n))
    generator = torch.Generator().manual_seed(int(seed) + int(epoch))
    return torch.randperm(n, generator=generator).tolist()


def iter_batches(
    records: Sequence[VQARecord],
    table: ImageTable,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    start: int = 0,
    drop_last: bool = False,
    frozen: FrozenFeatureTable | None = None,
) -> Iterator[VQABatch]:
    """Batches of ``records`` (see the module docstring); ``start`` skips that many batches (resume).

    ``frozen``: precomputed frozen features of ``records`` (in order); each batch then carries its rows
    and no images (nothing is decoded or normalised).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if frozen is not None and len(frozen) != len(records):
        raise ValueError(f"frozen: expected features of {len(records)} records, got {len(frozen)}")
    order = epoch_order(len(records), shuffle=shuffle, seed=seed, epoch=epoch)
    total = num_batches(len(order), batch_size, drop_last=drop_last)
    for b in range(start, total):
        index = order[b * batch_size : (b + 1) * batch_size]
        chosen = [records[i] for i in index]
        yield VQABatch(
            images=None
            if frozen is not None
            else table.normalized(table.rows([r.image_path for r in chosen])),
            questions=[r.question for r in chosen],
            answers=[r.answer for r in chosen],
            qids=[r.qid for r in chosen],
            records=chosen,
            index=index,
            frozen=None if frozen is None else frozen.select(index),
        )
