"""The reference intra-class encoder: GLIMS' convolutional path as the published model builds it.

The published encoder (GLIMS, used by BaMCo with ``feature_size=12``) assembles MONAI ``Convolution``
blocks (conv -> InstanceNorm -> PReLU, "NDA" order) and its own depthwise atrous blocks. This module builds
the same module tree with the same names, so a published state dict loads with ``load_state_dict`` as it
is, and it computes the published forward op for op (convolution biases included). The fast
:class:`~bamco_fast.encoders.IntraClassEncoder` (fused blocks, biases that cancel in a normalisation
dropped) is checked against it: weights of this module, mapped by
:meth:`~bamco_fast.encoders.IntraClassEncoder.load_official_state_dict`, give the same output and
gradients on every backend.

    stem        Convolution(3 -> f, 1^3)                                  f = feature_size
    dmsf_s      l1, l2: depthwise atrous blocks (c = f 2^(s-1), e = 2c); ds: Convolution(c -> 2c, 2^3, stride 2)
    fc          Linear(32 f D'H'W' -> 768) -> LayerNorm -> ReLU -> Linear(768 -> out_dim)

Depthwise atrous block (``DACB``): three branches ``conv_3x3``, ``conv_3x3_dil``, ``conv_3x3_dil2`` (depthwise
3^3 conv with dilation 1, 2, 3 and "same" padding, GroupNorm(c, c), PReLU), concatenated, ``conv_1x1``
(3c -> e) and ``conv_1x1_2`` (e -> c) Convolutions, then ``prelu2(instance_norm(h + x))``; its ``prelu`` is
created but never used, as published.

Input: the ``(B, 3, K, H, W)`` volume (:meth:`IntraClassEncoder.volume` builds it from a stack).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GLIMSEncoder"]

_PRELU = ("prelu", {"num_parameters": 1, "init": 0.25})
_INSTANCE = ("instance", {"affine": False})


def _convolution(in_channels: int, out_channels: int, kernel: int, stride: int = 1):
    """MONAI's ``Convolution`` block as GLIMS configures it: conv (bias) -> InstanceNorm -> PReLU."""
    from monai.networks.blocks import Convolution

    return Convolution(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel,
        strides=stride,
        padding=0,
        act=_PRELU,
        norm=_INSTANCE,
        bias=True,
    )


class _GroupConv(nn.Module):
    """Depthwise 3^3 conv (dilation ``d``, "same" padding, bias) -> GroupNorm(c, c) -> PReLU."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels)
        self.norm = nn.GroupNorm(channels, channels, eps=1e-5)
        self.prelu = nn.PReLU(1, init=0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.norm(self.conv(x)))


class _DACB(nn.Module):
    def __init__(self, channels: int, expansion: int):
        super().__init__()
        self.conv_3x3 = _GroupConv(channels, 1)
        self.conv_3x3_dil = _GroupConv(channels, 2)
        self.conv_3x3_dil2 = _GroupConv(channels, 3)
        self.conv_1x1 = _convolution(3 * channels, expansion, 1)
        self.conv_1x1_2 = _convolution(expansion, channels, 1)
        self.prelu = nn.PReLU(1, init=0.25)  # created by the published block, never used
        self.prelu2 = nn.PReLU(1, init=0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.conv_3x3(x), self.conv_3x3_dil(x), self.conv_3x3_dil2(x)], dim=1)
        h = self.conv_1x1_2(self.conv_1x1(h))
        return self.prelu2(F.instance_norm(h + x, eps=1e-5))


class _DADB(nn.Module):
    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.conv_3x3 = _convolution(channels, out_channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_3x3(x)


class _DMSF(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.l1 = _DACB(channels, 2 * channels)
        self.l2 = _DACB(channels, 2 * channels)
        self.ds = _DADB(channels, 2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ds(self.l2(self.l1(x)))


class GLIMSEncoder(nn.Module):
    """The published encoder (see the module docstring), MONAI blocks, published parameter names.

    Args:
        in_channels, feature_size, out_dim: 3, f (12), 512 as published.
        num_images, image_size: K and H = W of the volume (36, 84): they fix the flattened size.

    Shape:
        ``(B, in_channels, K, H, W)`` float -> ``(B, out_dim)`` (not normalised).
    """

    def __init__(
        self,
        in_channels: int = 3,
        feature_size: int = 12,
        out_dim: int = 512,
        num_images: int = 36,
        image_size: int = 84,
    ):
        super().__init__()
        self.stem = _convolution(in_channels, feature_size, 1)
        for s in range(5):
            self.add_module(f"dmsf_{s + 1}", _DMSF(feature_size * 2**s))
        final = [num_images >> 5, image_size >> 5, image_size >> 5]
        flat = feature_size * 2**5 * math.prod(final)
        self.fc = nn.Sequential(nn.Linear(flat, 768), nn.LayerNorm(768), nn.ReLU(), nn.Linear(768, out_dim))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        x = self.stem(volume)
        for s in range(5):
            x = getattr(self, f"dmsf_{s + 1}")(x)
        return self.fc(x.flatten(1))
