"""Small JPEG thumbnails as ``data:`` URIs, so an HTML page carries its images and can be mailed.

* :func:`file_thumbnail`: an image file -> RGB, shrunk (aspect kept) so its longer side is at most
  ``max_side`` pixels (never enlarged), JPEG at ``quality``, base64 ``data:image/jpeg`` URI.
* :func:`pixels_thumbnail`: a ``(3, h, w)`` uint8 tensor (e.g. one image of an intra-class bank) -> the
  same kind of URI.

Pillow does the decoding, resizing (Lanczos) and encoding.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

__all__ = ["file_thumbnail", "image_thumbnail", "pixels_thumbnail"]


def image_thumbnail(image, max_side: int = 160, quality: int = 80) -> str:
    """A Pillow image -> ``data:image/jpeg;base64,...`` with its longer side at most ``max_side`` px."""
    from PIL import Image

    image = image.convert("RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_thumbnail(path: Path | str, max_side: int = 160, quality: int = 80) -> str | None:
    """The thumbnail URI of an image file, or ``None`` when the file is missing or not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(Path(path)) as image:
            image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when it can
            return image_thumbnail(image, max_side, quality)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def pixels_thumbnail(pixels, max_side: int = 96, quality: int = 85) -> str:
    """``(3, h, w)`` uint8 tensor (RGB) -> thumbnail URI."""
    from PIL import Image

    if pixels.dim() != 3 or pixels.shape[0] != 3:
        raise ValueError(f"pixels: expected a (3, h, w) uint8 tensor, got {tuple(pixels.shape)}")
    array = pixels.permute(1, 2, 0).contiguous().cpu().numpy()
    return image_thumbnail(Image.fromarray(array), max_side, quality)
