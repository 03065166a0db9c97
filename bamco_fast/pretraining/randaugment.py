"""Batched RandAugment ("rand-n2-m10-mstd0.5", timm's rule) on float image tensors in [0, 1].

Each view draws ``num_ops`` operations uniformly **with replacement** from the 15 below; each drawn
operation fires with probability ``prob`` (0.5) at a magnitude ``m ~ N(magnitude, magnitude_std)``
clipped to [0, 10]; signed arguments flip sign with probability 0.5. Level ``l = m / 10`` maps to:

=================  ===================================================================
auto_contrast      per-channel min/max stretch to [0, 1]
equalize           per-channel histogram equalisation (PIL's rule, on 256 levels)
invert             ``1 - x``
rotate             ``±30 l`` degrees about the centre
posterize          keep the top ``floor(4 l)`` bits of each 8-bit value
solarize           invert values ``>= floor(256 l) / 255``
solarize_add       add ``floor(110 l) / 255`` to values below ``128 / 255``
color              saturation blend factor ``0.1 + 1.8 l``
contrast           contrast blend factor ``0.1 + 1.8 l`` (towards the mean luma)
brightness         brightness factor ``0.1 + 1.8 l``
sharpness          blend with PIL's 3x3 smoothing filter, factor ``0.1 + 1.8 l``
shear_x, shear_y   shear ``±0.3 l`` (about the top-left corner)
translate_x/_y     ``±0.45 l`` of the side
=================  ===================================================================

Geometric operations resample bilinearly (the published pipeline picks bilinear or bicubic at random)
and fill uncovered pixels with ``fill`` (the mean colour). All random draws come from the CPU
``generator``; the pixel work runs where ``x`` is, one batched call per (step, operation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["RANDAUGMENT_OPS", "apply_rand_augment", "draw_rand_augment", "rand_augment"]

RANDAUGMENT_OPS: tuple[str, ...] = (
    "auto_contrast",
    "equalize",
    "invert",
    "rotate",
    "posterize",
    "solarize",
    "solarize_add",
    "color",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
_LUMA = (0.2989, 0.587, 0.114)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (_LUMA[0] * x[:, 0] + _LUMA[1] * x[:, 1] + _LUMA[2] * x[:, 2]).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``b + factor (a - b)`` clamped; PIL ImageEnhance's blend of image ``a`` with degenerate ``b``."""
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp_(0, 1)


def _auto_contrast(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), x)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    m, c, h, w = x.shape
    q = (x * 255).round_().long().clamp_(0, 255).view(m * c, h * w)
    hist = torch.zeros(m * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, q, torch.ones_like(q))
    last = 255 - (hist > 0).flip(1).long().argmax(1, keepdim=True)
    step = (h * w - hist.gather(1, last)) // 255
    before = hist.cumsum(1) - hist
    lut = ((before + step // 2) // step.clamp_min(1)).clamp_(0, 255)
    identity = torch.arange(256, device=x.device).expand_as(lut)
    lut = torch.where(step > 0, lut, identity)
    return (lut.gather(1, q).float() / 255).view(m, c, h, w).to(x.dtype)


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    q = (x * 255).round_().to(torch.int32).clamp_(0, 255)
    mask = (0xFF << (8 - bits.to(torch.int32))).bitwise_and(0xFF).view(-1, 1, 1, 1)
    return (q & mask).to(x.dtype) / 255


def _sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5
    kernel = (kernel / 13).expand(3, 1, 3, 3)
    smooth = F.conv2d(x, kernel, padding=1, groups=3)
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth[:, :, 1:-1, 1:-1]  # PIL keeps the border pixels
    return _blend(x, degenerate, factor)


def _affine(x: torch.Tensor, matrix: torch.Tensor, fill: tuple[float, ...]) -> torch.Tensor:
    """Resample ``x`` with per-view affine maps ``matrix (M, 2, 3)``: output pixel centre -> input pixel."""
    m, _, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=x.dtype, device=x.device) + 0.5,
        torch.arange(w, dtype=x.dtype, device=x.device) + 0.5,
        indexing="ij",
    )
    coords = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, h * w, 3)
    source = coords @ matrix.to(x.dtype).transpose(1, 2)  # (M, h*w, 2) in pixels
    scale = torch.tensor([2 / w, 2 / h], dtype=x.dtype, device=x.device)
    grid = (source * scale - 1).view(m, h, w, 2)
    with_mask = torch.cat([x, torch.ones_like(x[:, :1])], 1)
    out = F.grid_sample(with_mask, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    colour = torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return out[:, :3] + (1 - out[:, 3:]) * colour


def _geometric(name: str, x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, fill) -> torch.Tensor:
    m, _, h, w = x.shape
    matrix = torch.zeros(m, 2, 3, dtype=torch.float64)
    matrix[:, 0, 0] = 1
    matrix[:, 1, 1] = 1
    level, sign = level.double().cpu(), sign.double().cpu()
    if name == "rotate":
        angle = sign * level * 30 * math.pi / 180
        cos, sin = torch.cos(angle), torch.sin(angle)
        cx, cy = w / 2, h / 2
        matrix[:, 0, 0], matrix[:, 0, 1] = cos, sin
        matrix[:, 1, 0], matrix[:, 1, 1] = -sin, cos
        matrix[:, 0, 2] = cx - cos * cx - sin * cy
        matrix[:, 1, 2] = cy + sin * cx - cos * cy
    elif name == "shear_x":
        matrix[:, 0, 1] = sign * level * 0.3
    elif name == "shear_y":
        matrix[:, 1, 0] = sign * level * 0.3
    elif name == "translate_x":
        matrix[:, 0, 2] = sign * level * 0.45 * w
    else:
        matrix[:, 1, 2] = sign * level * 0.45 * h
    return _affine(x, matrix.to(x.device), fill)


def _apply(name: str, x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, fill) -> torch.Tensor:
    enhance = 0.1 + 1.8 * level.to(x.device, x.dtype)
    if name == "auto_contrast":
        return _auto_contrast(x)
    if name == "equalize":
        return _equalize(x)
    if name == "invert":
        return 1 - x
    if name == "posterize":
        return _posterize(x, torch.floor(4 * level).to(x.device))
    if name == "solarize":
        threshold = (torch.floor(256 * level) / 255).to(x.device, x.dtype).view(-1, 1, 1, 1)
        return torch.where(x >= threshold, 1 - x, x)
    if name == "solarize_add":
        add = (torch.floor(110 * level) / 255).to(x.device, x.dtype).view(-1, 1, 1, 1)
        return torch.where(x < 128 / 255, (x + add).clamp_(0, 1), x)
    if name == "color":
        return _blend(x, _gray(x).expand_as(x), enhance)
    if name == "contrast":
        mean = _gray(x).mean((1, 2, 3), keepdim=True).expand_as(x)
        return _blend(x, mean, enhance)
    if name == "brightness":
        return _blend(x, torch.zeros_like(x), enhance)
    if name == "sharpness":
        return _sharpness(x, enhance)
    return _geometric(name, x, level, sign, fill)


def draw_rand_augment(
    m: int,
    generator: torch.Generator,
    *,
    num_ops: int = 2,
    magnitude: float = 10.0,
    magnitude_std: float = 0.5,
    prob: float = 0.5,
    ops: tuple[str, ...] = RANDAUGMENT_OPS,
) -> torch.Tensor:
    """Random choices for ``m`` views: ``(m, num_ops, 4)`` float64 rows ``(op, fires, level, sign)``.

    ``op`` indexes ``ops``; ``level`` in [0, 1] is the clipped magnitude / 10; ``sign`` is +-1.
    """
    unknown = [name for name in ops if name not in RANDAUGMENT_OPS]
    if unknown:
        raise ValueError(f"unknown RandAugment ops {unknown}; valid: {list(RANDAUGMENT_OPS)}")
    choice = torch.randint(len(ops), (m, num_ops), generator=generator).double()
    fire = (torch.rand(m, num_ops, generator=generator) < prob).double()
    noise = torch.randn(m, num_ops, generator=generator, dtype=torch.float64)
    level = (magnitude + magnitude_std * noise).clamp(0, 10) / 10
    sign = torch.where(torch.rand(m, num_ops, generator=generator) < 0.5, -1.0, 1.0).double()
    return torch.stack([choice, fire, level, sign], -1)


def apply_rand_augment(
    x: torch.Tensor,
    draws: torch.Tensor,
    *,
    fill: tuple[float, ...] = (0.5, 0.5, 0.5),
    ops: tuple[str, ...] = RANDAUGMENT_OPS,
) -> torch.Tensor:
    """Apply :func:`draw_rand_augment`'s ``draws (M, n, 4)`` to ``x (M, 3, H, W)``; in place, returns ``x``."""
    for step in range(draws.shape[1]):
        choice = draws[:, step, 0].long()
        fire = draws[:, step, 1] > 0
        for k, name in enumerate(ops):
            selected = (fire & (choice == k)).nonzero().squeeze(1)
            if selected.numel() == 0:
                continue
            rows = selected.to(x.device)
            level = draws[selected, step, 2].float()
            sign = draws[selected, step, 3].float()
            x[rows] = _apply(name, x[rows], level, sign, fill)
    return x


def rand_augment(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    num_ops: int = 2,
    magnitude: float = 10.0,
    magnitude_std: float = 0.5,
    prob: float = 0.5,
    fill: tuple[float, ...] = (0.5, 0.5, 0.5),
    ops: tuple[str, ...] = RANDAUGMENT_OPS,
) -> torch.Tensor:
    """RandAugment of ``x (M, 3, H, W)`` float in [0, 1], per-view random ops; returns a new tensor."""
    draws = draw_rand_augment(
        x.shape[0],
        generator,
        num_ops=num_ops,
        magnitude=magnitude,
        magnitude_std=magnitude_std,
        prob=prob,
        ops=ops,
    )
    return apply_rand_augment(x.clone(), draws, fill=fill, ops=ops)
