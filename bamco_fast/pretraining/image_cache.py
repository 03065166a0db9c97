"""Decode every distinct image once into a uint8 tensor cache at a working resolution.

The published pipeline opens and decodes 37 JPEGs per sample (1,776 per batch of 48) every step. The
pools are small (Slake 642 images, VQA-RAD 314, PathVQA ~5k), so :func:`build_image_cache` decodes
each distinct image once with Pillow, converts it to RGB (grayscale, palette, CMYK, alpha -> RGB),
resizes it so its longer side is ``resolution`` (aspect ratio kept, Lanczos-filtered; JPEG draft
mode decodes at a reduced scale first when the file is much larger) and stores it top-left in a
``(N, 3, R, R)`` uint8 tensor, with each image's valid ``(height, width)``. Crops are then taken
inside the valid region only (:mod:`.augment`), so padding never enters a sample.

Memory: ``N * 3 * R * R`` bytes (Slake at R=256: 126 MB; PathVQA 5k images: 0.98 GB).

Optional on-disk cache (``cache_file``): a ``torch.save`` file holding the tensors, the names, the
resolution and a fingerprint (size and mtime of every source file); it is reused only when all of
them match, rebuilt otherwise, and written atomically with the umask's file mode.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["ImageCache", "build_image_cache", "decode_image"]

_FORMAT = 1


@dataclass(frozen=True)
class ImageCache:
    """Decoded images.

    Attributes:
        images: ``(N, 3, R, R)`` uint8 (or float holding 0-255 after ``to(dtype=...)``), image ``i`` in ``images[i, :, :h_i, :w_i]``, zeros elsewhere.
        sizes: ``(N, 2)`` int64 valid ``(height, width)``; ``max(h_i, w_i) == R``.
        names: the ``N`` image names (the table's ``images``).
        resolution: ``R``.
    """

    images: torch.Tensor
    sizes: torch.Tensor
    names: tuple[str, ...]
    resolution: int

    def __len__(self) -> int:
        return len(self.names)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ImageCache:
        """The same cache on ``device`` (e.g. the training GPU); ``dtype`` (e.g. ``torch.float32``) stores
        the pixel values (0-255) in that type, which saves a conversion per batch at 4x the memory."""
        images = self.images.to(device=device, dtype=dtype)
        return ImageCache(images, self.sizes.to(device), self.names, self.resolution)

    @property
    def device(self) -> torch.device:
        return self.images.device


def decode_image(path: Path, resolution: int) -> torch.Tensor:
    """Decode ``path`` to a ``(3, h, w)`` uint8 RGB tensor with ``max(h, w) == resolution``."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        scale = resolution / max(width, height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        if image.format == "JPEG" and scale < 0.5:
            image.draft("RGB", target)  # DCT-domain downscale by 1/2, 1/4 or 1/8, never below target
        if image.mode != "RGB":
            image = image.convert("RGBA").convert("RGB") if image.mode == "P" else image.convert("RGB")
        if image.size != target:
            image = image.resize(target, Image.Resampling.LANCZOS)
        data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(target[1], target[0], 3).permute(2, 0, 1).contiguous()


def _fingerprint(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    out = []
    for path in paths:
        stat = path.stat()
        out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return out


def _atomic_torch_save(value: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(value, handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _load_saved(
    cache_file: Path | str | None,
    resolution: int,
    names: tuple[str, ...],
    fingerprint: list[tuple[str, int, int]],
) -> ImageCache | None:
    """The cache saved in ``cache_file`` when its format, resolution, fingerprint and names all match, else None."""
    if cache_file is None or not Path(cache_file).is_file():
        return None
    try:
        saved = torch.load(Path(cache_file), map_location="cpu", weights_only=True)
    except Exception:  # unreadable or foreign file: rebuild it
        saved = None
    if (
        isinstance(saved, dict)
        and saved.get("format") == _FORMAT
        and saved.get("resolution") == resolution
        and saved.get("fingerprint") == [list(f) for f in fingerprint]
        and tuple(saved.get("names", ())) == names
    ):
        return ImageCache(saved["images"], saved["sizes"], names, resolution)
    return None


def _decode_all(
    paths: list[Path], resolution: int, workers: int | None, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every path into ``(N, 3, R, R)`` uint8 images (top-left, zero padded) and ``(N, 2)`` int64 sizes."""
    workers = min(8, os.cpu_count() or 1) if workers is None else max(1, workers)
    images = torch.zeros(len(paths), 3, resolution, resolution, dtype=torch.uint8)
    sizes = torch.zeros(len(paths), 2, dtype=torch.int64)

    def load(i: int) -> None:
        try:
            data = decode_image(paths[i], resolution)
        except Exception as exc:
            raise ValueError(f"cannot decode image {paths[i]}: {exc}") from exc
        images[i, :, : data.shape[1], : data.shape[2]] = data
        sizes[i, 0], sizes[i, 1] = data.shape[1], data.shape[2]

    indices = range(len(paths))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="decoding images", unit="img")
    if workers == 1:
        for i in indices:
            load(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(load, indices):
                pass
    return images, sizes


def build_image_cache(
    paths: Sequence[Path | str],
    resolution: int = 256,
    *,
    names: Sequence[str] | None = None,
    cache_file: Path | str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> ImageCache:
    """Decode ``paths`` once into an :class:`ImageCache` (see the module docstring).

    Args:
        paths: image files (e.g. ``KnowledgeTable.image_paths``).
        resolution: longer side ``R`` of every cached image; at least the largest crop size used
            (224 for the reference view) to avoid upsampling.
        names: names stored in the cache (default: the paths as strings).
        cache_file: optional on-disk cache, reused when its fingerprint matches.
        workers: decoding threads (Pillow releases the GIL while decoding); default ``min(8, cpus)``.
        progress: show a tqdm bar.
    """
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8 pixels, got {resolution}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths is empty: nothing to decode")
    names = tuple(str(p) for p in paths) if names is None else tuple(names)
    if len(names) != len(paths):
        raise ValueError(f"names has {len(names)} entries, paths has {len(paths)}")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image file(s) not found, first: {missing[:5]}")
    fingerprint = _fingerprint(paths)
    saved = _load_saved(cache_file, resolution, names, fingerprint)
    if saved is not None:
        return saved

    images, sizes = _decode_all(paths, resolution, workers, progress)
    cache = ImageCache(images, sizes, names, resolution)
    if cache_file is not None:
        _atomic_torch_save(
            {
                "format": _FORMAT,
                "resolution": resolution,
                "names": list(names),
                "fingerprint": [list(f) for f in fingerprint],
                "images": images,
                "sizes": sizes,
            },
            Path(cache_file),
        )
    return cache
