"""Argument checks on tensors shared by the library's modules and ops (``import torch`` only)."""

from __future__ import annotations

import torch

__all__ = ["require_float_tensor"]


def require_float_tensor(value: object, what: str, expected: str = "") -> torch.Tensor:
    """Return ``value`` when it is a floating-point ``torch.Tensor``; otherwise raise ``TypeError``.

    Args:
        value: the argument as received.
        what: who and which argument, e.g. ``"IntraClassEncoder: images"``; starts the message.
        expected: what else the caller expects, appended to "must be a floating tensor", e.g.
            ``" (B, 3, 224, 224) normalised with image_mean/std"``.

    Raises:
        TypeError: ``"{what} must be a torch.Tensor{expected}, got list"`` for a non-tensor, and
            ``"{what} must be a floating tensor{expected}, got dtype torch.int64 with shape (2, 3)"`` for an
            integer, boolean or complex tensor.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor{expected}, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(
            f"{what} must be a floating tensor{expected}, got dtype {value.dtype} with shape {tuple(value.shape)}"
        )
    return value
