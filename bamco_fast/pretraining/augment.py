"""Batched image augmentation on tensors, with per-sample random parameters.

Works on the uint8 cache of :mod:`.image_cache` (``(N, 3, R, R)``, valid region ``sizes[i]``) and a list
of image indices (``(M,)``, one per output view), on the cache's device. Every random parameter is drawn
per view from a CPU ``torch.Generator`` (so a seed gives the same views on every device) and moved to
the device; the pixel work is one batched call per step:

1. **RandomResizedCrop** (torchvision's rule: area fraction ``U(scale)``, log-uniform aspect ratio,
   10 attempts, then the whole image clamped to the ratio range), as boxes in each image's valid
   region, resampled to ``size x size`` by :func:`torchvision.ops.roi_align` with one box per view
   (bilinear; a box more than 1.5x the output is sampled from a 2x2-pooled copy of its image, like
   a mipmap level, against aliasing; PIL filters the full footprint instead).
2. **Horizontal flip** with probability ``flip_p``.
3. **Colour jitter**: brightness, contrast, saturation factors ``U(max(0, 1 - a), 1 + a)``, hue shift
   ``U(-h, h)`` (HSV), each view its own factors.
4. **Random grayscale** with probability ``grayscale_p`` (ITU-R 601 luma, 3 channels).
5. **RandAugment** (optional, :mod:`.randaugment`), then CLIP **normalisation** with the towers' mean/std.

Evaluation view: ``Resize(resize) -> CenterCrop(size)`` as one centred square box of side
``min(h, w) * size / resize`` resampled to ``size``.

Differences from the published per-sample PIL pipeline (``official_code_notes.md`` §2.3):

* colour jitter applies its four adjustments in a fixed order (brightness, contrast, saturation, hue)
  instead of a random order per call;
* pixels stay float in [0, 1] between steps (PIL rounds to uint8 after each step), and images are
  resampled from the cache (longer side ``R``) instead of the original file: with ``R`` below an
  image's size, fine detail is bounded by ``R``;
* images are RGB throughout (the published loader keeps grayscale JPEGs single-channel for Slake and
  VQA-RAD, which only works because ``Normalize`` broadcasts);
* RandAugment is a batched re-implementation of the same 15 operations with bilinear resampling
  only (see :mod:`.randaugment`); ``AugmentConfig(randaugment=False)`` turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "AugmentConfig",
    "augment_views",
    "center_crop_boxes",
    "color_jitter",
    "crop_resize",
    "evaluation_views",
    "normalize",
    "random_resized_crop_boxes",
    "rgb_to_grayscale",
]

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
_LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """One training view pipeline; defaults are the published 224-px reference pipeline.

    ``intra()`` gives the published 84-px intra-class pipeline (hue 0.1).
    """

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.0
    grayscale_p: float = 0.2
    randaugment: bool = True
    randaugment_ops: int = 2
    randaugment_magnitude: float = 10.0
    randaugment_std: float = 0.5
    eval_resize: int = 256

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        for name in ("flip_p", "grayscale_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if self.eval_resize < self.size:
            raise ValueError(f"eval_resize ({self.eval_resize}) must be >= size ({self.size})")

    @classmethod
    def reference(cls, size: int = 224, **changes) -> AugmentConfig:
        """Published reference-image pipeline: RRC(224) flip jitter(0.4, 0.4, 0.4, 0) gray(0.2) RandAugment."""
        return cls(size=size, eval_resize=max(size, round(size * 256 / 224)), **changes)

    @classmethod
    def intra(cls, size: int = 84, **changes) -> AugmentConfig:
        """Published intra-class pipeline: as the reference one at 84 px with hue 0.1; eval Resize(84)."""
        changes.setdefault("hue", 0.1)
        return cls(size=size, eval_resize=size, **changes)


def random_resized_crop_boxes(
    sizes: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    attempts: int = 10,
) -> torch.Tensor:
    """Per-view RandomResizedCrop boxes ``(M, 4)`` float ``(x1, y1, x2, y2)`` inside ``sizes (M, 2)`` (h, w).

    torchvision's rule, vectorised: ``attempts`` candidates of area ``U(scale) * h * w`` and aspect
    ``exp(U(log ratio))``, side lengths rounded, the first that fits wins; otherwise the whole image
    clamped to the ratio range, centred. Offsets are uniform integers.
    """
    sizes = sizes.to("cpu", torch.float64)
    m = sizes.shape[0]
    height, width = sizes[:, 0:1], sizes[:, 1:2]
    area = height * width
    target = area * torch.empty(m, attempts, dtype=torch.float64).uniform_(*scale, generator=generator)
    log_r = torch.empty(m, attempts, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((m,), -1))
    pick = first.clamp_min(0)[:, None]
    w_ok, h_ok = w.gather(1, pick)[:, 0], h.gather(1, pick)[:, 0]
    # fallback: whole image, aspect clamped to the ratio range
    in_ratio = width[:, 0] / height[:, 0]
    w_fb = torch.where(
        in_ratio < ratio[0],
        width[:, 0],
        torch.where(in_ratio > ratio[1], torch.round(height[:, 0] * ratio[1]), width[:, 0]),
    )
    h_fb = torch.where(in_ratio < ratio[0], torch.round(width[:, 0] / ratio[0]), height[:, 0])
    use = first >= 0
    w_box, h_box = torch.where(use, w_ok, w_fb), torch.where(use, h_ok, h_fb)
    u = torch.rand(m, 2, dtype=torch.float64, generator=generator)
    x1 = torch.where(
        use, torch.floor(u[:, 0] * (width[:, 0] - w_box + 1)), torch.round((width[:, 0] - w_box) / 2)
    )
    y1 = torch.where(
        use, torch.floor(u[:, 1] * (height[:, 0] - h_box + 1)), torch.round((height[:, 0] - h_box) / 2)
    )
    return torch.stack([x1, y1, x1 + w_box, y1 + h_box], 1).float()


def center_crop_boxes(sizes: torch.Tensor, fraction: float) -> torch.Tensor:
    """``Resize(short side -> s / fraction) -> CenterCrop(s)`` as boxes: a centred square of side
    ``fraction * min(h, w)``; ``(M, 4)`` float ``(x1, y1, x2, y2)``."""
    sizes = sizes.to("cpu", torch.float32)
    side = fraction * sizes.min(1).values
    y1 = (sizes[:, 0] - side) / 2
    x1 = (sizes[:, 1] - side) / 2
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def crop_resize(images: torch.Tensor, index: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Resample box ``boxes[j]`` of image ``images[index[j]]`` to ``size x size``.

    Args:
        images: ``(N, 3, R, R)`` uint8 cache, or the same values as float (``ImageCache.to(dtype=...)``).
        index: ``(M,)`` int64 image index per view.
        boxes: ``(M, 4)`` float ``(x1, y1, x2, y2)`` in pixel-edge coordinates (``(0, 0, w, h)`` = whole image).
        size: output side ``S``.

    Returns:
        ``(M, 3, S, S)`` float32 in [0, 1], on ``images.device``.

    Resampling is bilinear at each output pixel's centre (:func:`torchvision.ops.roi_align`, one sample
    per bin; exact at scale 1). Against aliasing, a view whose box is more than 1.5x the output side is
    taken from a 2x2-average-pooled copy of its image (``2^l`` pooling for a box ``1.5 * 2^l`` times larger,
    as a mipmap's nearest level), so a box is at most 1.5x the output where it is sampled.
    """
    from torchvision.ops import roi_align

    device = images.device
    index = index.to(device)
    if images.is_floating_point():
        source, rows = images, index
    else:
        unique, rows = torch.unique(index, return_inverse=True)
        source = images.index_select(0, unique).float()
    boxes = boxes.to("cpu", torch.float32)
    scale = (boxes[:, 2:] - boxes[:, :2]).amax(1) / size
    level = torch.floor(torch.log2((scale / 1.5).clamp_min(1e-6))).add_(1).clamp_(min=0).long()
    out = torch.empty(index.shape[0], source.shape[1], size, size, device=device, dtype=source.dtype)
    pooled = source
    for lvl in range(int(level.max()) + 1 if level.numel() else 0):
        if lvl:
            pooled = torch.nn.functional.avg_pool2d(pooled, 2, ceil_mode=True)
        views = (level == lvl).nonzero().squeeze(1)
        if views.numel() == 0:
            continue
        views_dev = views.to(device)
        rois = torch.cat(
            [rows[views_dev, None].to(source.dtype), (boxes[views] / 2**lvl).to(device, source.dtype)], 1
        )
        out[views_dev] = roi_align(
            pooled, rois, (size, size), spatial_scale=1.0, sampling_ratio=1, aligned=True
        )
    return out.float().mul_(1 / 255).clamp_(0, 1)


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(M, 3, H, W)`` -> ``(M, 1, H, W)`` luma ``0.2989 R + 0.587 G + 0.114 B``."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """HSV hue + ``shift`` (turns) per view, in RGB directly: value = max and chroma = max - min are
    kept; channel ``c`` = ``max - chroma * clamp(min(k, 4 - k), 0, 1)``, ``k = (n_c + 6 h) mod 6``,
    ``n = (5, 3, 1)`` for (R, G, B)."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    chroma = maxc - minc
    inv = chroma.clamp_min(1e-12).reciprocal_()
    h6 = torch.where(
        maxc == r,
        (g - b).mul_(inv),
        torch.where(maxc == g, (b - r).mul_(inv).add_(2), (r - g).mul_(inv).add_(4)),
    )
    h6.add_(6 * shift.to(x.device, x.dtype).view(-1, 1, 1))
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(h6.unsqueeze(1) + n, 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return maxc.unsqueeze(1) - chroma.unsqueeze(1) * ramp


def color_jitter(
    x: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    hue: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-view colour jitter of ``x (M, 3, H, W)`` in [0, 1], in place; factors are ``(M,)`` tensors.

    brightness ``b``: ``b x``; contrast ``c``: ``c x + (1 - c) mean(gray(x))``; saturation ``s``:
    ``s x + (1 - s) gray(x)``; each clamped to [0, 1]; hue: HSV hue shifted by ``hue`` (fraction of a turn).
    Returns ``x`` (a new tensor only when a hue shift is applied).
    """

    def col(v: torch.Tensor) -> torch.Tensor:
        return v.to(x.device, x.dtype).view(-1, 1, 1, 1)

    x.mul_(col(brightness)).clamp_(0, 1)
    c = col(contrast)
    mean = rgb_to_grayscale(x).mean((1, 2, 3), keepdim=True)
    x.mul_(c).add_((1 - c) * mean).clamp_(0, 1)
    s = col(saturation)
    gray = rgb_to_grayscale(x).mul_(1 - s)
    x.mul_(s).add_(gray).clamp_(0, 1)
    if hue is not None and bool((hue != 0).any()):
        x = _shift_hue(x, hue).clamp_(0, 1)
    return x


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(x - mean) / std`` per channel, in place on ``x``."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def _factor(m: int, amount: float, generator: torch.Generator) -> torch.Tensor:
    return torch.empty(m).uniform_(max(0.0, 1 - amount), 1 + amount, generator=generator)


def _chunk_views(size: int, device: torch.device) -> int:
    """Views per chunk: about 4 MiB of float32 on CPU (elementwise chains stay in cache), all on GPU."""
    if device.type != "cpu":
        return 1 << 30
    return max(1, (4 << 20) // (3 * size * size * 4))


def augment_views(
    images: torch.Tensor,
    sizes: torch.Tensor,
    index: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
    *,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> torch.Tensor:
    """Training views of ``images[index]``: ``(M, 3, S, S)`` float32 normalised, on ``images.device``.

    ``images (N, 3, R, R)`` uint8 and ``sizes (N, 2)`` come from an :class:`~.image_cache.ImageCache`;
    all random parameters come from ``generator`` (a CPU generator), drawn for all views first, in a
    fixed order. On CPU the pixel steps after the crop run over chunks of views that fit in cache.
    """
    index = index.to("cpu", torch.int64)
    m = index.shape[0]
    boxes = random_resized_crop_boxes(sizes.to("cpu")[index], config.scale, config.ratio, generator)
    flip = torch.rand(m, generator=generator) < config.flip_p
    brightness = _factor(m, config.brightness, generator)
    contrast = _factor(m, config.contrast, generator)
    saturation = _factor(m, config.saturation, generator)
    hue = torch.empty(m).uniform_(-config.hue, config.hue, generator=generator)
    gray = torch.rand(m, generator=generator) < config.grayscale_p
    ops = None
    if config.randaugment:
        from .randaugment import apply_rand_augment, draw_rand_augment

        ops = draw_rand_augment(
            m,
            generator,
            num_ops=config.randaugment_ops,
            magnitude=config.randaugment_magnitude,
            magnitude_std=config.randaugment_std,
        )

    x = crop_resize(images, index, boxes, config.size)
    step = _chunk_views(config.size, x.device)
    for lo in range(0, m, step):
        part = slice(lo, min(m, lo + step))
        chunk = x[part]
        rows = flip[part].nonzero().squeeze(1).to(x.device)
        if rows.numel():
            chunk[rows] = chunk[rows].flip(-1)
        chunk = color_jitter(
            chunk, brightness[part], contrast[part], saturation[part], hue[part] if config.hue > 0 else None
        )
        rows = gray[part].nonzero().squeeze(1).to(x.device)
        if rows.numel():
            chunk[rows] = rgb_to_grayscale(chunk[rows]).expand(-1, 3, -1, -1)
        if ops is not None:
            chunk = apply_rand_augment(chunk, ops[part], fill=mean)
        x[part] = normalize(chunk, mean, std)
    return x


def evaluation_views(
    images: torch.Tensor,
    sizes: torch.Tensor,
    index: torch.Tensor,
    config: AugmentConfig,
    *,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> torch.Tensor:
    """Deterministic ``Resize(eval_resize) -> CenterCrop(size)`` views, normalised: ``(M, 3, S, S)`` float32."""
    index = index.to("cpu", torch.int64)
    boxes = center_crop_boxes(sizes.to("cpu")[index], config.size / config.eval_resize)
    return normalize(crop_resize(images, index, boxes, config.size), mean, std)
