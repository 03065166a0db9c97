"""VQA records -> batches: each image decoded once into a uint8 cache, batches normalised on the fly.

* :class:`ImageTable` decodes every distinct image of a set of records once (PIL, RGB, bicubic resize to
  ``size x size``) into one ``(N, 3, size, size)`` uint8 tensor; a record finds its row by image path.
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
from dataclasses import dataclass
from pathlib import Path

import torch

from bamco_fast.data import VQARecord

__all__ = ["ImageDecodeError", "ImageTable", "VQABatch", "decode_image", "iter_batches", "num_batches"]


class ImageDecodeError(ValueError):
    """An image file is missing or cannot be decoded."""


def decode_image(path: Path | str, size: int) -> torch.Tensor:
    """Read ``path`` as RGB and resize it to ``(size, size)``: ``(3, size, size)`` uint8.

    Raises :class:`ImageDecodeError` naming the file and the decoder's reason.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"image not found: {path} (expected an image file)")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageDecodeError(f"cannot decode image {path}: {exc}") from None
    return data.view(size, size, 3).permute(2, 0, 1).contiguous()


class ImageTable:
    """Every distinct image of ``paths`` decoded once: ``pixels`` ``(N, 3, size, size)`` uint8.

    ``normalized(rows)`` returns ``(len(rows), 3, size, size)`` float32 ``(p/255 - mean) / std``.
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        progress: bool = False,
    ) -> None:
        unique = list(dict.fromkeys(str(p) for p in paths))
        self.size = int(size)
        self.index = {p: i for i, p in enumerate(unique)}
        self.pixels = torch.empty((len(unique), 3, self.size, self.size), dtype=torch.uint8)
        items = unique
        if progress and len(unique) > 50:
            from tqdm.auto import tqdm

            items = tqdm(unique, desc="decoding images", unit="img", leave=False)
        for i, path in enumerate(items):
            self.pixels[i] = decode_image(path, self.size)
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, paths: Sequence[Path | str]) -> list[int]:
        return [self.index[str(p)] for p in paths]

    def normalized(self, rows: Sequence[int]) -> torch.Tensor:
        pixels = self.pixels[torch.as_tensor(list(rows), dtype=torch.long)].float().div_(255.0)
        return (pixels - self.mean) / self.std


@dataclass
class VQABatch:
    """One batch: ``images`` ``(B, 3, S, S)`` float32 normalised; the rest are length-``B`` lists."""

    images: torch.Tensor
    questions: list[str]
    answers: list[str]
    qids: list[str]
    records: list[VQARecord]

    def __len__(self) -> int:
        return len(self.qids)

    def to(self, device: torch.device | str) -> VQABatch:
        return VQABatch(self.images.to(device), self.questions, self.answers, self.qids, self.records)


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
) -> Iterator[VQABatch]:
    """Batches of ``records`` (see the module docstring); ``start`` skips that many batches (resume)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = epoch_order(len(records), shuffle=shuffle, seed=seed, epoch=epoch)
    total = num_batches(len(order), batch_size, drop_last=drop_last)
    for b in range(start, total):
        chosen = [records[i] for i in order[b * batch_size : (b + 1) * batch_size]]
        yield VQABatch(
            images=table.normalized(table.rows([r.image_path for r in chosen])),
            questions=[r.question for r in chosen],
            answers=[r.answer for r in chosen],
            qids=[r.qid for r in chosen],
            records=chosen,
        )
