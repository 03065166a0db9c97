"""Question images decoded once into a uint8 table and normalised per batch (what the VQA model sees).

* :func:`decode_image`: PIL, RGB, bicubic resize to ``size x size`` -> ``(3, size, size)`` uint8.
* :class:`ImageTable` decodes every distinct image of a set of paths once into one
  ``(N, 3, size, size)`` uint8 tensor; rows are found by path, and :meth:`ImageTable.normalized` returns
  ``(B, 3, S, S)`` float32 ``x = (p / 255 - mean_c) / std_c`` (the towers' per-channel mean and std).

No augmentation: flips and 90-degree rotations change the answer of every left/right and position
question, so they are never applied to question images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: this package needs only the standard library
    import torch

__all__ = ["ImageDecodeError", "ImageTable", "decode_image"]


class ImageDecodeError(ValueError):
    """An image file is missing or cannot be decoded; the message names the file."""


def decode_image(path: Path | str, size: int) -> torch.Tensor:
    """Read ``path`` as RGB and resize it to ``(size, size)``: ``(3, size, size)`` uint8.

    Raises :class:`ImageDecodeError` naming the file and the decoder's reason.
    """
    import torch
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not found"
        raise ImageDecodeError(f"image {path}: expected an image file, got {what}")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageDecodeError(f"cannot decode image {path}: {exc}") from None
    return data.view(size, size, 3).permute(2, 0, 1).contiguous()


class ImageTable:
    """Every distinct image of ``paths`` decoded once: ``pixels`` ``(N, 3, size, size)`` uint8.

    Args:
        paths: image files (repeats are decoded once).
        size: side of the square the images are resized to (the image tower's input size).
        mean, std: per-channel normalisation of the image tower.
        progress: show a progress bar when there are many images.
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
        import torch

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
        """Row of each path (every path must be in the table)."""
        return [self.index[str(p)] for p in paths]

    def normalized(self, rows: Sequence[int]) -> torch.Tensor:
        """``(len(rows), 3, size, size)`` float32 ``(p / 255 - mean) / std``."""
        import torch

        pixels = self.pixels[torch.as_tensor(list(rows), dtype=torch.long)].float().div_(255.0)
        return (pixels - self.mean) / self.std
