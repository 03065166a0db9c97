"""The intra-class image bank: retrieve a class for an image, then a seeded stack of that class's images.

Retrieval (paper Fig. 3, published code): the knowledge space's image embedding of the question image is
compared by cosine similarity with the text embeddings of every class name; the top-1 class is taken
(ties go to the lowest class index). Then ``K`` training images of that class are drawn with
replacement (as published) and stacked for the frozen intra-class encoder.

Unlike the published evaluation (unseeded Python ``random`` and a random crop at test time), the draw
here is a pure function of ``(seed, class name, key)`` through a BLAKE2 hash, and images are resized
deterministically, so the same question gets the same stack in every run, on every machine and in any
batch composition.

``sampling="question"`` (default) keys the draw by the question id; ``sampling="class"`` draws one stack
per class (the key is ignored), so a class's stack — and its frozen intra-class embedding — is the
same for every question and can be cached exactly.

Images are held once as a ``uint8`` tensor ``(N, 3, h, w)`` at the intra-class size; stacks are
normalised on the fly: ``(x / 255 - mean) / std``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from typing_extensions import Required, TypedDict, Unpack

    class BankOptions(TypedDict, total=False):
        """The keywords of :class:`IntraClassBank` after its pools (``**options: Unpack[BankOptions]``)."""

        mean: Required[Sequence[float]]
        std: Required[Sequence[float]]
        seed: int
        sampling: str


__all__ = ["SAMPLING_MODES", "IntraClassBank", "decode_images"]

SAMPLING_MODES = ("question", "class")


def _square(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(3, h_i, w_i)`` uint8 -> ``(3, h, w)`` uint8, bilinear with antialiasing (aspect not kept)."""
    if tuple(image.shape[1:]) == tuple(size):
        return image
    resized = torch.nn.functional.interpolate(
        image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return resized[0].round_().clamp_(0, 255).to(torch.uint8)


def decode_images(paths: Sequence[Path | str], size: tuple[int, int]) -> torch.Tensor:
    """Decode image files to RGB and resize them to ``size = (h, w)``; returns ``(N, 3, h, w)`` uint8.

    Decoding is :func:`bamco_fast.pretraining.image_cache.decode_image` (any mode -> RGB); the whole
    image is then resized to ``size`` deterministically. An unreadable file raises ``ValueError``
    naming it.
    """
    from bamco_fast.pretraining.image_cache import decode_image

    out = torch.empty((len(paths), 3, *size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        try:
            decoded = decode_image(Path(path), max(size))
        except Exception as exc:
            raise ValueError(f"intra-class image {str(path)!r} cannot be decoded: {exc}") from None
        out[i] = _square(decoded, size)
    return out


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def _shared_pools(
    class_to_items: Mapping[str, Sequence[Path | str]], what: str, known: Container[str] | None = None
) -> tuple[list[str], list[list[int]]]:
    """The distinct items (as ``str``, first-seen order) and each class's pool of indices into them.

    Every class needs an item; with ``known`` (an image cache's names) every item must be in it.
    """
    order: dict[str, int] = {}
    pools = []
    for name, items in class_to_items.items():
        if len(items) == 0:
            raise ValueError(f"{what}: class {name!r} has no images")
        unknown = [] if known is None else [item for item in items if item not in known]
        if unknown:
            raise ValueError(f"{what}: image {unknown[0]!r} of class {name!r} is not in the cache")
        pools.append([order.setdefault(str(item), len(order)) for item in items])
    return list(order), pools


class IntraClassBank:
    """Class name -> pool of training images, with cosine retrieval and seeded stacks.

    Args:
        class_names: the ``C`` retrievable classes (knowledge-record head entities).
        images: ``(N, 3, h, w)`` uint8 pool of every class's images (shared images stored once).
        pools: ``pools[c]`` = indices into ``images`` of class ``c`` (non-empty).
        mean, std: per-channel normalisation of the intra-class encoder (the towers' CLIP values).
        seed: base seed of every draw.
        sampling: ``"question"`` or ``"class"`` (see the module docstring).

    Attributes:
        class_embeddings: ``(C, D)`` L2-normalised text embeddings of ``class_names`` (``None`` until
            :meth:`set_class_embeddings`; the VQA model sets them from its knowledge space).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        images: torch.Tensor,
        pools: Sequence[Sequence[int]],
        *,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
        sampling: str = "question",
    ):
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling: expected one of {SAMPLING_MODES}, got {sampling!r}")
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images: expected a (N, 3, h, w) uint8 tensor, got {images.dtype} {tuple(images.shape)}"
            )
        if len(class_names) == 0 or len(pools) != len(class_names):
            raise ValueError(
                f"pools: expected one pool per class ({len(class_names)} classes), got {len(pools)} pools"
            )
        if len(set(class_names)) != len(class_names):
            raise ValueError("class_names: expected distinct names")
        self.class_names = [str(n) for n in class_names]
        self.images = images.contiguous()
        self.pools: list[np.ndarray] = []
        for name, pool in zip(self.class_names, pools):
            index = np.asarray(list(pool), dtype=np.int64)
            if index.size == 0:
                raise ValueError(f"pools: class {name!r} has no images")
            if index.min() < 0 or index.max() >= images.shape[0]:
                raise ValueError(f"pools: class {name!r} refers to an image outside 0..{images.shape[0] - 1}")
            self.pools.append(index)
        self.mean = torch.tensor([float(m) for m in mean]).view(1, 1, 3, 1, 1)
        self.std = torch.tensor([float(s) for s in std]).view(1, 1, 3, 1, 1)
        self.seed = int(seed)
        self.sampling = sampling
        self.class_embeddings: torch.Tensor | None = None

    @classmethod
    def from_paths(
        cls,
        class_to_paths: Mapping[str, Sequence[Path | str]],
        *,
        image_size: int | tuple[int, int],
        **options: Unpack[BankOptions],
    ) -> IntraClassBank:
        """Build a bank from ``{class name: image files}``; every distinct file is decoded once.

        ``image_size``: ``h = w`` or ``(h, w)`` of the stored images; the other keywords (``mean``, ``std``
        required; ``seed``, ``sampling``) are the constructor's.
        """
        files, pools = _shared_pools(class_to_paths, "class_to_paths")
        images = decode_images(files, _size(image_size))
        return cls(list(class_to_paths), images, pools, **options)

    @classmethod
    def from_image_cache(
        cls,
        class_to_names: Mapping[str, Sequence[str]],
        cache,
        *,
        image_size: int | tuple[int, int],
        **options: Unpack[BankOptions],
    ) -> IntraClassBank:
        """Build a bank from an :class:`~bamco_fast.pretraining.image_cache.ImageCache` (no decoding).

        ``class_to_names`` maps each class to image names of ``cache.names``; the valid region of each
        cached image is resized to ``image_size`` (``h = w`` or ``(h, w)``); the other keywords as
        :meth:`from_paths`.
        """
        size = _size(image_size)
        position = {name: i for i, name in enumerate(cache.names)}
        order, pools = _shared_pools(class_to_names, "class_to_names", known=position)
        images = torch.empty((len(order), 3, *size), dtype=torch.uint8)
        for i, image_name in enumerate(order):
            j = position[image_name]
            h, w = (int(v) for v in cache.sizes[j])
            images[i] = _square(cache.images[j, :, :h, :w].cpu(), size)
        return cls(list(class_to_names), images, pools, **options)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def set_class_embeddings(self, embeddings: torch.Tensor) -> None:
        """Store ``(C, D)`` class text embeddings (L2-normalised here) for :meth:`retrieve`."""
        if embeddings.dim() != 2 or embeddings.shape[0] != self.num_classes:
            raise ValueError(
                f"embeddings: expected shape ({self.num_classes}, D), got {tuple(embeddings.shape)}"
            )
        self.class_embeddings = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1)

    def retrieve(self, query: torch.Tensor) -> torch.Tensor:
        """Top-1 class by cosine similarity: ``argmax_c <q/|q|, e_c>``; ``(B, D)`` -> ``(B,)`` int64."""
        if self.class_embeddings is None:
            raise RuntimeError(
                "IntraClassBank.retrieve: class embeddings not set (call set_class_embeddings)"
            )
        if query.dim() != 2 or query.shape[1] != self.class_embeddings.shape[1]:
            raise ValueError(
                f"query: expected shape (B, {self.class_embeddings.shape[1]}), got {tuple(query.shape)}"
            )
        q = torch.nn.functional.normalize(query.detach().float(), dim=-1)
        scores = q @ self.class_embeddings.to(q.device).T
        return scores.argmax(dim=-1)

    def sample_indices(self, class_index: int, key: str, k: int) -> np.ndarray:
        """The ``k`` image indices (with replacement) drawn for ``key`` from class ``class_index``."""
        if not 0 <= class_index < self.num_classes:
            raise ValueError(f"class_index: expected 0..{self.num_classes - 1}, got {class_index}")
        if k < 1:
            raise ValueError(f"k: expected at least 1, got {k}")
        key_part = "" if self.sampling == "class" else str(key)
        digest = hashlib.blake2b(
            f"{self.seed}\x00{self.class_names[class_index]}\x00{key_part}".encode(), digest_size=8
        ).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        pool = self.pools[class_index]
        return pool[rng.integers(0, pool.size, size=k)]

    def stacks(self, class_index: torch.Tensor | Sequence[int], keys: Sequence[str], k: int) -> torch.Tensor:
        """Seeded stacks for a batch: ``(B,)`` classes and ``B`` keys -> ``(B, k, 3, h, w)`` normalised float32."""
        classes = [int(c) for c in (class_index.tolist() if torch.is_tensor(class_index) else class_index)]
        if len(keys) != len(classes):
            raise ValueError(f"keys: expected {len(classes)} keys (one per class index), got {len(keys)}")
        index = np.stack([self.sample_indices(c, key, k) for c, key in zip(classes, keys)])
        raw = self.images[torch.from_numpy(index)].float().div_(255.0)
        return (raw - self.mean) / self.std
