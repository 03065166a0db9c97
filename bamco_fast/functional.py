"""Stateless losses and the fused block of the intra-class encoder, named like ``torch.nn.functional``.

All functions accept ``backend=None`` (automatic: ``triton`` for CUDA tensors, ``cpp`` for CPU tensors,
else ``reference``), or an explicit ``"triton"``, ``"cpp"``, ``"reference"``, which never falls back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import distributed
from .ops import bamco_loss as _op
from .ops.dilated_depthwise_block import dilated_depthwise_block  # defined with its dispatch

__all__ = ["bamco_loss", "bamco_multimodal_loss", "dilated_depthwise_block", "logit_adjusted_cross_entropy"]


def bamco_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 0.07,
    *,
    backend: str | None = None,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """Balanced multi-view contrastive loss (BaMCo Eq. 1 with BalSCL class-averaging and prototypes).

    ``L = mean_i [ log sum_{j != i} exp(z_i.k_j / T) / (cnt[y_j] - [y_j == y_i])
    - mean_{p in P(i)} z_i.k_p / T ]`` over the V*B anchors, keys = anchors + prototypes,
    ``cnt[c] = V n_c + 1``, P(i) = the other keys of i's class including its prototype.

    Args:
        features: (B, V, D) float32/float64 (CPU) or float32/float16/bfloat16 (CUDA), V >= 2 views,
            rows L2-normalised by the caller.
        labels: (B,) integer class indices in [0, C) (int64; other integer dtypes are converted).
        prototypes: (C, D) class centres, L2-normalised, same dtype/device as ``features``.
        temperature: T > 0 (default 0.07).
        backend: ``None``/``"auto"``, ``"triton"``, ``"cpp"`` or ``"reference"``.
        gather_distributed: all-gather ``features`` (with gradient) and ``labels`` across ranks first,
            so the loss is that of the global batch on every rank (see
            :func:`bamco_fast.distributed.gather_with_grad` for the gradient convention).

    Returns:
        0-dim tensor, dtype of ``features``; differentiable w.r.t. ``features`` and ``prototypes``.

    Raises:
        TypeError / ValueError: bad shapes, dtypes, devices, labels, temperature or non-finite inputs
            (non-finiteness is detected from the loss). The label range and the loss's finiteness are
            one scalar read each: on CUDA tensors that is two host synchronisations per call (none while
            ``torch.compile`` traces, where both checks are skipped).
    """
    if gather_distributed:
        features = distributed.gather_with_grad(features, "features")
        labels = distributed.gather_no_grad(labels, "labels")
    return _op.bamco_loss(features, labels, prototypes, temperature, mode="views", backend=backend)


def bamco_multimodal_loss(
    modalities: Sequence[torch.Tensor],
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 0.07,
    *,
    backend: str | None = None,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """The paper's training objective: the mean over unordered modality pairs of the two-view loss.

    ``L = mean_{a < b} bamco_loss(stack(m_a, m_b), labels, prototypes)`` computed in one fused call
    (the fused backends share the similarity products between pairs).

    Args:
        modalities: sequence of >= 2 tensors (B, D), e.g. (image, text, intra-class image) features.
        labels, prototypes, temperature, backend, gather_distributed: as in :func:`bamco_loss`.

    Returns:
        0-dim tensor, dtype of the modalities.
    """
    if isinstance(modalities, torch.Tensor) or not isinstance(modalities, Sequence):
        raise TypeError(
            f"bamco_multimodal_loss: modalities must be a sequence of (B, D) tensors, got {type(modalities).__name__}"
        )
    if len(modalities) < 2:
        raise ValueError(f"bamco_multimodal_loss: modalities needs at least 2 tensors, got {len(modalities)}")
    shapes = [tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__ for m in modalities]
    if any(not isinstance(m, torch.Tensor) or m.dim() != 2 for m in modalities) or len(set(shapes)) != 1:
        raise ValueError(
            f"bamco_multimodal_loss: modalities must be (B, D) tensors of one shape, got {shapes}"
        )
    kinds = [(m.dtype, m.device) for m in modalities]
    if len(set(kinds)) != 1:
        found = [f"{str(d).replace('torch.', '')} on {dev}" for d, dev in kinds]
        raise ValueError(f"bamco_multimodal_loss: modalities must share one dtype and device, got {found}")
    features = torch.stack(list(modalities), dim=1)
    if gather_distributed:
        features = distributed.gather_with_grad(features, "modalities")
        labels = distributed.gather_no_grad(labels, "labels")
    return _op.bamco_loss(features, labels, prototypes, temperature, mode="pairs", backend=backend)


def logit_adjusted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, log_prior: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Logit-adjusted cross-entropy: ``CE(logits + tau * log_prior, labels)`` (mean over the batch).

    Args:
        logits: (B, C) float.
        labels: (B,) integer class indices in [0, C).
        log_prior: (C,) log class frequencies of the training set.
        tau: adjustment strength (1.0 in the paper).
    """
    if logits.dim() != 2 or log_prior.shape != (logits.shape[1],):
        raise ValueError(
            f"logit_adjusted_cross_entropy: logits must be (B, C) and log_prior (C,), got "
            f"{tuple(logits.shape)} and {tuple(log_prior.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(
            f"logit_adjusted_cross_entropy: labels must be integer class indices, got {labels.dtype}"
        )
    if labels.shape != (logits.shape[0],):
        raise ValueError(
            f"logit_adjusted_cross_entropy: labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}"
        )
    if labels.numel() and not torch.compiler.is_compiling():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= logits.shape[1]:
            raise ValueError(
                f"logit_adjusted_cross_entropy: labels must lie in [0, {logits.shape[1]}) "
                f"(C = logits.shape[1]), got values in [{lo}, {hi}]"
            )
    return F.cross_entropy(logits + tau * log_prior.to(logits.dtype), labels.to(torch.int64))
