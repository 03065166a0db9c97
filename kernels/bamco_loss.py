"""Triton (CUDA) backend of the balanced multimodal contrastive loss: ``bamco_fast::bamco_loss_triton``.

Math (same contract as the C++ op ``bamco_fast::bamco_loss``). ``features`` (B, V, D) hold V views of
B samples, ``prototypes`` (C, D) one key per class, ``labels`` (B,) int64. A group is a set of k views:
mode ``ALL_VIEWS`` (0) has one group of all V views (k = V), mode ``VIEW_PAIRS`` (1) one group per
unordered view pair (k = 2). Inside a group the anchors z_i are the k*B rows of its views and the keys
are those rows followed by all C prototypes. With ``n_c`` the batch count of class c,
``cnt[c] = k n_c + 1`` and ``s_ij = z_i . key_j``, anchor i of class y has the loss

    l_i = log sum_{j != i} exp(s_ij / T + b_ij) - 1 / (k n_y) * sum_{j in P(i)} s_ij / T,
    b_ij = -log(cnt[y_j] - [y_j == y]),

P(i) = the other keys of class y in the group (own prototype included, |P(i)| = k n_y). The loss is the
mean over groups of the mean over the group's anchors. With ``coef = 1 / (num_groups * k * B)`` and the
biased softmax p_ij, the gradient w.r.t. s_ij is ``dS_ij = coef / T * (p_ij - [j in P(i)] / (k n_y))``;
the anchors receive ``dS @ keys`` and the keys ``dS^T @ anchors``. A batch row receives both sides in
every group that contains its view; a prototype receives the key side only.

Three modules, one concept each: :mod:`.bamco_loss_plan` (the launch settings a caller may ask for and
the frozen :class:`~.bamco_loss_plan.LaunchPlan` of one call), :mod:`.bamco_loss_kernels` (the Triton
kernels) and this one (the host code that launches them, and the op). The op is defined like every
Triton op of the library (:mod:`._triton_op`); its autograd formula is attached by
:mod:`bamco_fast.ops.bamco_loss`.

Launches: 2 without gradient and 3 with gradient for B <= ``INLINE_COUNT_MAX_BATCH`` (one more for the
count kernel). FLOPs for forward plus gradient: ``2 A M D + n_do (2 A^2 D + 4 A C D) + 2 A^2 D + 4 A C D``
per group (A = k B anchors, M = A + C keys, n_do = ceil(D / BLOCK_DO) D slices of the gradient, each
recomputing its similarity tiles); with n_do = 1 that is ``2 A M D + 4 A^2 D + 8 A C D``, against
``8 A M D`` for a scheme without the symmetry.

Precision: fp32, fp16 and bf16 inputs; similarities, softmax statistics and gradient accumulators are
fp32. For fp32 inputs ``tl.dot`` runs with ``input_precision="ieee"`` (full fp32);
``launch_settings(fp32_precision="tf32")`` trades that for tensor-core speed. Accuracy is judged by
:data:`bamco_fast.ops.bamco_loss.TOLERANCES`; measured figures are in ``benchmarks/README.md``.
"""

import math
from typing import NamedTuple

import torch
import triton

from . import bamco_loss_kernels as kernels
from ._triton_op import define_op, launch
from .bamco_loss_plan import (
    ALL_VIEWS,
    INLINE_COUNT_MAX_BATCH,
    VIEW_PAIRS,
    LaunchPlan,
    LaunchSettings,
    current_settings,
    launch_settings,
    plan_launches,
)

__all__ = [
    "ALL_VIEWS",
    "INLINE_COUNT_MAX_BATCH",
    "OP",
    "VIEW_PAIRS",
    "LaunchPlan",
    "LaunchSettings",
    "current_settings",
    "launch_settings",
    "plan_launches",
    "registered_ops",
]

OP = "bamco_fast::bamco_loss_triton"

_LOG2E = 1.0 / math.log(2.0)


class _Groups(NamedTuple):
    """How the V views of a call form groups (see the module docstring).

    Attributes:
        pairs: mode ``VIEW_PAIRS`` (one group per unordered view pair) rather than one group of all views.
        views_per_group: k (2 for pairs, else V).
        num_groups: V (V - 1) / 2 for pairs, else 1.
        num_part_rows: rows of the per-row buffers (partials, lse): one per (view, sample), V B, or per
            (view, other view, sample), V V B, for pairs.
    """

    pairs: bool
    views_per_group: int
    num_groups: int
    num_part_rows: int


class _Operands(NamedTuple):
    """The four tensors the forward and gradient kernels both read first, in their argument order:
    ``features`` (B, V, D), ``prototypes`` (C, D), ``labels`` (B,) int64 and the class ``counts`` (C,)
    fp32 (filled by the count kernel, or by the finish kernel when the counts are inline)."""

    features: torch.Tensor
    prototypes: torch.Tensor
    labels: torch.Tensor
    counts: torch.Tensor


def _mean_weight(groups: _Groups, batch: int) -> float:
    """``coef = 1 / (num_groups k B)``: the weight of one anchor's loss in the mean over groups and anchors."""
    return 1.0 / (groups.num_groups * groups.views_per_group * batch)


def _groups(mode: int, batch: int, num_views: int) -> _Groups:
    """The :class:`_Groups` of ``mode`` for B = ``batch`` samples of V = ``num_views`` views."""
    pairs = mode == VIEW_PAIRS
    return _Groups(
        pairs=pairs,
        views_per_group=2 if pairs else num_views,
        num_groups=num_views * (num_views - 1) // 2 if pairs else 1,
        num_part_rows=num_views * num_views * batch if pairs else num_views * batch,
    )


def _check_inputs(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, mode: int) -> None:
    """Raise ``ValueError`` for inputs that are not (B, V, D), (B,), (C, D) or an unknown ``mode``."""
    if features.dim() != 3 or prototypes.dim() != 2 or labels.dim() != 1:
        raise ValueError(
            f"{OP}: expected features (B, V, D), labels (B,), prototypes (C, D); got "
            f"{tuple(features.shape)}, {tuple(labels.shape)}, {tuple(prototypes.shape)}"
        )
    if mode not in (ALL_VIEWS, VIEW_PAIRS):
        raise ValueError(
            f"{OP}: mode must be {ALL_VIEWS} (all views) or {VIEW_PAIRS} (view pairs), got {mode}"
        )


def _launch_counts(
    plan: LaunchPlan, labels: torch.Tensor, counts: torch.Tensor, batch: int, num_classes: int
) -> None:
    """Per-class batch counts ``n_c`` (C,) fp32 into ``counts`` with the count kernel (64 classes a program)."""
    block_c = 64
    launch(
        kernels._count_kernel,
        (triton.cdiv(num_classes, block_c),),
        labels,
        counts,
        batch,
        num_classes,
        BLOCK_C=block_c,
        BLOCK_L=plan.block_labels,
        num_warps=plan.count_warps,
    )


def _launch_forward(
    plan: LaunchPlan, groups: _Groups, operands: _Operands, partials: torch.Tensor, temperature: float
) -> None:
    """Forward kernel: the per-row partial softmax statistics of every key split, (3, splits, rows) fp32
    into ``partials``; the grid is (anchor blocks, groups, key splits)."""
    features, prototypes = operands.features, operands.prototypes
    scale2 = _LOG2E / temperature
    batch, num_views, dim = features.shape
    grid = (triton.cdiv(groups.views_per_group * batch, plan.block_m), groups.num_groups, plan.num_splits)
    launch(
        kernels._fwd_kernel,
        grid,
        *operands,
        partials,
        batch,
        prototypes.shape[0],
        dim,
        num_views,
        groups.views_per_group,
        plan.num_splits,
        groups.num_part_rows,
        plan.keys_per_split,
        features.stride(0),
        features.stride(1),
        prototypes.stride(0),
        scale2,
        PAIRS=groups.pairs,
        INLINE_COUNTS=plan.inline_counts,
        BLOCK_M=plan.block_m,
        BLOCK_N=plan.block_n,
        BLOCK_D=plan.block_d,
        BLOCK_L=plan.block_labels,
        PRECISION=plan.precision,
        num_warps=plan.num_warps,
        num_stages=plan.num_stages,
    )


def _launch_finish(
    plan: LaunchPlan,
    groups: _Groups,
    operands: _Operands,
    stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    temperature: float,
    write_counts: bool,
) -> None:
    """Finish kernel (one program): merge the split statistics into the per-row log-sum-exp and reduce the
    loss; ``stats`` is (partials, lse, loss) and the kernel writes the last two. With ``write_counts`` it
    also stores the inline class counts."""
    partials, lse, loss = stats
    batch, num_views, _ = operands.features.shape
    launch(
        kernels._finish_kernel,
        (1,),
        partials,
        lse,
        loss,
        operands.labels,
        operands.counts,
        batch,
        operands.prototypes.shape[0],
        num_views,
        groups.views_per_group,
        groups.num_groups,
        plan.num_splits,
        groups.num_part_rows,
        1.0 / temperature,
        _mean_weight(groups, batch),
        PAIRS=groups.pairs,
        INLINE_COUNTS=plan.inline_counts,
        WRITE_COUNTS=write_counts,
        BLOCK_ROWS=plan.block_finish_rows,
        BLOCK_L=plan.block_finish_labels,
        num_warps=plan.finish_warps,
    )


def _launch_grad(
    plan: LaunchPlan, groups: _Groups, operands: _Operands, lse: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient kernel: d loss / d features (B, V, D) and d loss / d prototypes (C, D) in the features
    dtype; the grid is (row blocks of every view, then prototype blocks) x (D slices of ``BLOCK_DO``)."""
    features, prototypes = operands.features, operands.prototypes
    batch, num_views, dim = features.shape
    scale2 = _LOG2E / temperature
    grad_scale = _mean_weight(groups, batch) * (1.0 / temperature)
    num_classes = prototypes.shape[0]
    grad_features = torch.empty_like(features)
    grad_prototypes = torch.empty_like(prototypes)
    row_programs = num_views * triton.cdiv(batch, plan.block_m_grad)
    grid = (row_programs + triton.cdiv(num_classes, plan.block_m_grad), triton.cdiv(dim, plan.block_do))
    launch(
        kernels._grad_kernel,
        grid,
        *operands,
        lse,
        grad_features,
        grad_prototypes,
        batch,
        num_classes,
        dim,
        num_views,
        groups.views_per_group,
        groups.num_groups,
        num_views - 1 if groups.pairs else 1,  # groups each view belongs to
        groups.num_part_rows,
        row_programs,
        features.stride(0),
        features.stride(1),
        prototypes.stride(0),
        grad_features.stride(0),
        grad_features.stride(1),
        grad_prototypes.stride(0),
        scale2,
        grad_scale,
        PAIRS=groups.pairs,
        BLOCK_M=plan.block_m_grad,
        BLOCK_N=plan.block_n_grad,
        BLOCK_D=plan.block_d,
        BLOCK_DO=plan.block_do,
        PRECISION=plan.precision,
        num_warps=plan.num_warps_grad,
        num_stages=plan.num_stages_grad,
    )
    return grad_features, grad_prototypes


def _bamco_loss_triton(
    features: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float,
    mode: int,
    compute_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused balanced contrastive loss (and its gradient) with Triton kernels.

    Args:
        features: (B, V, D) float32/float16/bfloat16, V >= 2.
        labels: (B,) int64 in [0, C).
        prototypes: (C, D), dtype and device of ``features``.
        temperature: T > 0.
        mode: ``ALL_VIEWS`` (0, one group of all V views) or ``VIEW_PAIRS`` (1, the mean over the unordered
            view pairs); integers because the op schema (shared with the C++ op) takes an int.
        compute_grad: also return d loss / d features and d loss / d prototypes.

    Returns:
        (loss, grad_features, grad_prototypes): loss is 0-dim in the features dtype; the gradients are
        (B, V, D) and (C, D) in the features dtype, or empty (0,) tensors when not ``compute_grad``.
    """
    _check_inputs(features, labels, prototypes, mode)
    features = features.contiguous()
    prototypes = prototypes.contiguous()
    labels = labels.contiguous()
    batch, num_views, dim = features.shape
    num_classes = prototypes.shape[0]
    groups = _groups(mode, batch, num_views)
    device = features.device
    plan = plan_launches(
        device, features.dtype, batch, groups.views_per_group, groups.num_groups, num_classes, dim
    )
    f32 = torch.float32

    partials = torch.empty((3, plan.num_splits, groups.num_part_rows), dtype=f32, device=device)
    lse = torch.empty((2, groups.num_part_rows), dtype=f32, device=device)  # row max m, log2 sum exp2(x - m)
    counts = torch.empty((num_classes,), dtype=f32, device=device)
    loss = torch.empty((), dtype=features.dtype, device=device)

    if not plan.inline_counts:
        _launch_counts(plan, labels, counts, batch, num_classes)
    temperature = float(temperature)
    operands = _Operands(features, prototypes, labels, counts)
    _launch_forward(plan, groups, operands, partials, temperature)
    write_counts = plan.inline_counts and compute_grad
    _launch_finish(plan, groups, operands, (partials, lse, loss), temperature, write_counts)
    if not compute_grad:
        return loss, features.new_empty((0,)), prototypes.new_empty((0,))
    grad_features, grad_prototypes = _launch_grad(plan, groups, operands, lse, temperature)
    return loss, grad_features, grad_prototypes


# A ``triton_op`` on a GPU, an opaque op under the interpreter (see :mod:`._triton_op`).
bamco_loss_triton = define_op(OP, _bamco_loss_triton)


def registered_ops():
    """``(forward,)``: the op ``bamco_fast::bamco_loss_triton`` (it returns the gradients as well).

    The autograd formula is attached by :mod:`bamco_fast.ops.bamco_loss`, as for the block.
    """
    return (torch.ops.bamco_fast.bamco_loss_triton.default,)
