"""The balanced multimodal contrastive loss (BaMCo Eq. 1, BalSCL semantics): reference, backends, dispatch.

Math. ``features`` (B, V, D) are stacked view-major into anchors ``z_1..z_A`` (A = V*B); the keys are
the anchors followed by the C ``prototypes``. With ``n_c`` the batch count of class c and
``cnt[c] = V * n_c + 1`` (the prototype counts), anchor i of class y has the loss

    l_i = log sum_{j != i} exp(z_i.k_j / T) / (cnt[y_j] - [y_j == y])
          - 1 / |P(i)| * sum_{p in P(i)} z_i.k_p / T,

where P(i) are the other keys of class y (own prototype included, so |P(i)| = V * n_y >= 1). The loss
is the mean of l_i over the A anchors. Prototypes are keys only. ``mode="pairs"`` averages this
two-view loss over every unordered pair of views (the paper's objective over image, text and
intra-class image features).

Backends: ``triton`` (CUDA), ``cpp`` (CPU, ``torch.ops.bamco_fast.bamco_loss``) and ``reference``
(:func:`bamco_loss_reference`, pure torch, any device). The fused backends compute the loss and its
gradient in one pass when a gradient is needed and hold only a bounded block of the (A, A + C)
similarity matrix at a time (CPU: chunks of >= 256 anchor rows within 4 MiB, or all rows when fewer;
GPU: tiles), so their extra memory is O((A + C) * D) plus that block.
"""

from __future__ import annotations

import itertools
import math

import torch

from ..kernels.bamco_loss_plan import ALL_VIEWS, VIEW_PAIRS
from . import _backends
from ._tolerance import Tolerance

# ``mode`` names -> the int the op schemas take (C++ and Triton alike).
_MODES = {"views": ALL_VIEWS, "pairs": VIEW_PAIRS}
OP_NAME = "bamco_loss"

# How close every fast path (a fused backend, or any backend below float64) must come to the float64
# reference: error <= factor x the reference's own error in that dtype + floor, errors relative to the
# largest exact entry (see :mod:`bamco_fast.ops._tolerance`). Every test of this op reads this table.
#   factor 2: a path may round twice as badly as the pure-torch reference, not worse.
#   floor, float64: the backends agree with a literal Eq. 1 to ~1e-14; 1e-10 leaves room for long sums
#     (1450 classes, D = 512) while a wrong term shows at >= 1e-6.
#   floor, 16-bit and float32: 16 units in the last place of an O(1) result, for tensors the reference
#     happens to get nearly exact.
TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(factor=2.0, floor=1e-10),
    torch.float32: Tolerance(factor=2.0, floor=16 * torch.finfo(torch.float32).eps),
    torch.float16: Tolerance(factor=2.0, floor=16 * torch.finfo(torch.float16).eps),
    torch.bfloat16: Tolerance(factor=2.0, floor=16 * torch.finfo(torch.bfloat16).eps),
}


def bamco_loss_reference(
    features: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 0.07,
    mode: str = "views",
    upcast: bool = True,
) -> torch.Tensor:
    """Vectorised pure-torch balanced contrastive loss (differentiable; the oracle and the fallback).

    Args:
        features: (B, V, D) float, rows L2-normalised by the caller, V >= 2.
        labels: (B,) integer class indices in [0, C) (any integer dtype; used as int64).
        prototypes: (C, D) float, same dtype and device as ``features``.
        temperature: T > 0.
        mode: ``"views"`` (one loss over all V views) or ``"pairs"`` (mean over view pairs a < b).
        upcast: compute in float32 when the inputs are float16/bfloat16.

    Returns:
        0-dim tensor in the dtype of ``features``. Materialises (V*B, V*B + C) temporaries.
    """
    out_dtype = features.dtype
    labels = labels.to(
        torch.int64
    )  # class indices, whatever the integer dtype (uint8 must not act as a mask)
    if upcast and features.dtype in (torch.float16, torch.bfloat16):
        features, prototypes = features.float(), prototypes.float()
    num_views = features.shape[1]
    if _MODES[mode] == VIEW_PAIRS and num_views > 2:
        losses = [
            _views_loss_reference(features[:, [a, b]], labels, prototypes, temperature)
            for a, b in itertools.combinations(range(num_views), 2)
        ]
        return torch.stack(losses).mean().to(out_dtype)
    return _views_loss_reference(features, labels, prototypes, temperature).to(out_dtype)


def _views_loss_reference(
    features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, temperature: float
) -> torch.Tensor:
    batch, num_views, dim = features.shape
    num_classes = prototypes.shape[0]
    anchors = features.transpose(0, 1).reshape(batch * num_views, dim)
    keys = torch.cat([anchors, prototypes], dim=0)
    row_labels = labels.repeat(num_views)
    col_labels = torch.cat([row_labels, torch.arange(num_classes, device=labels.device)])
    cnt = num_views * torch.bincount(labels, minlength=num_classes) + 1
    logits = anchors @ keys.T / temperature
    same = row_labels[:, None] == col_labels[None, :]
    weight = cnt[col_labels][None, :] - same.to(cnt.dtype)
    is_self = torch.zeros_like(same)
    is_self.diagonal()[:] = True
    biased = (logits - torch.log(weight.to(logits.dtype))).masked_fill(is_self, float("-inf"))
    lse = torch.logsumexp(biased, dim=1)
    positives = same & ~is_self
    num_pos = (num_views * torch.bincount(labels, minlength=num_classes))[row_labels]
    pos_mean = (logits * positives).sum(dim=1) / num_pos
    return (lse - pos_mean).mean()


def check_inputs(
    features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, temperature: float
) -> None:
    """Validate shapes, dtypes, devices, label range and temperature; raise naming the argument.

    Raises:
        TypeError: a non-tensor argument, non-floating features/prototypes, non-integer labels.
        ValueError: wrong ranks or sizes, V < 2, D = 0, empty batch, mismatched dtype/device, labels
            outside [0, C), rows of features or prototypes that are not L2-normalised (norm off 1 by more
            than 1e-3, 2e-2 for 16-bit dtypes), a temperature that is not finite or below
            :func:`min_temperature`.
    """
    for name, t in (("features", features), ("labels", labels), ("prototypes", prototypes)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{OP_NAME}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not features.is_floating_point():
        raise TypeError(f"{OP_NAME}: features must be a floating tensor, got dtype {features.dtype}")
    if not prototypes.is_floating_point():
        raise TypeError(f"{OP_NAME}: prototypes must be a floating tensor, got dtype {prototypes.dtype}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{OP_NAME}: labels must be an integer tensor (int64), got dtype {labels.dtype}")
    if features.dim() != 3:
        raise ValueError(f"{OP_NAME}: features must have shape (B, V, D), got {tuple(features.shape)}")
    batch, num_views, dim = features.shape
    if batch == 0:
        raise ValueError(f"{OP_NAME}: features must hold at least one sample, got {tuple(features.shape)}")
    if dim == 0:
        raise ValueError(
            f"{OP_NAME}: features need D >= 1 dimensions (rows are L2-normalised), got {tuple(features.shape)}"
        )
    if num_views < 2:
        raise ValueError(f"{OP_NAME}: features need V >= 2 views per sample, got {tuple(features.shape)}")
    if prototypes.dim() != 2 or prototypes.shape[1] != dim or prototypes.shape[0] == 0:
        raise ValueError(
            f"{OP_NAME}: prototypes must have shape (C, D) with C >= 1 and D = {dim}, "
            f"got {tuple(prototypes.shape)}"
        )
    if labels.shape != (batch,):
        raise ValueError(f"{OP_NAME}: labels must have shape ({batch},), got {tuple(labels.shape)}")
    if prototypes.dtype != features.dtype:
        raise ValueError(
            f"{OP_NAME}: prototypes dtype {prototypes.dtype} must match features dtype {features.dtype}"
        )
    if prototypes.device != features.device or labels.device != features.device:
        raise ValueError(
            f"{OP_NAME}: features, labels and prototypes must be on one device, got {features.device}, "
            f"{labels.device} and {prototypes.device}"
        )
    if not isinstance(temperature, (int, float)) or not (0 < float(temperature) < float("inf")):
        raise ValueError(f"{OP_NAME}: temperature must be a finite number > 0, got {temperature!r}")
    num_keys = num_views * batch + prototypes.shape[0]
    lowest = min_temperature(features.dtype, num_keys)
    if float(temperature) < lowest:
        raise ValueError(
            f"{OP_NAME}: temperature must be >= {lowest:.3g} for {str(features.dtype).replace('torch.', '')} "
            f"features with {num_keys} keys (logits z.k / T of unit rows reach 1 / T and their sums must stay "
            f"finite), got {temperature!r}"
        )
    if not torch.compiler.is_compiling():
        num_classes = prototypes.shape[0]
        lo, hi = torch.aminmax(labels)
        lo, hi = int(lo), int(hi)
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{OP_NAME}: labels must lie in [0, {num_classes}) (C = prototypes.shape[0]), "
                f"got values in [{lo}, {hi}]"
            )
        _check_unit_rows("features", features)
        _check_unit_rows("prototypes", prototypes)


#: How far a row's L2 norm may be from 1 (16-bit rows are rounded after normalising).
_UNIT_NORM_TOLERANCE = {torch.float16: 2e-2, torch.bfloat16: 2e-2}


def _check_unit_rows(name: str, t: torch.Tensor) -> None:
    """Raise ``ValueError`` when a row of ``t`` is not L2-normalised (NaN rows pass: the loss reports them)."""
    norms = torch.linalg.vector_norm(t.detach().float(), dim=-1)
    worst = float((norms - 1).abs().nan_to_num(0.0).max())
    if worst > _UNIT_NORM_TOLERANCE.get(t.dtype, 1e-3):
        lo, hi = (float(v) for v in torch.aminmax(norms.nan_to_num(1.0)))
        raise ValueError(
            f"{OP_NAME}: {name} rows must be L2-normalised (the loss is defined on unit vectors), got row norms "
            f"in [{lo:.4g}, {hi:.4g}]; apply torch.nn.functional.normalize(x, dim=-1) first"
        )


def min_temperature(dtype: torch.dtype, num_keys: int) -> float:
    """The smallest temperature every backend accepts for ``num_keys`` keys (V*B anchors + C prototypes).

    With unit rows the logits z.k / T reach 1 / T. Every backend sums up to ``num_keys`` such terms (the
    positives of an anchor, the loss over the anchors) in its compute dtype (float64 for float64 inputs,
    else float32), and the loss, up to 2 / T + log(num_keys), must fit the input dtype. The factor 4 covers
    both with room, so below this bound no backend could return a finite answer reliably, and all of them
    refuse the same inputs (one backend returning 4.5e37 where another overflows is not an answer).
    """
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    return max(4.0 * num_keys / torch.finfo(compute).max, 4.0 / torch.finfo(dtype).max)


def check_finite_result(loss: torch.Tensor, features: torch.Tensor, prototypes: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the culprit when the loss is not finite.

    The inputs are inspected only when the (scalar) loss is non-finite, so the check costs one scalar
    read per call; it is skipped while ``torch.compile`` traces.
    """
    if torch.compiler.is_compiling() or math.isfinite(loss.detach().item()):
        return
    for name, t in (("features", features), ("prototypes", prototypes)):
        bad = ~torch.isfinite(t.detach())
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{OP_NAME}: {name} contains {int(bad.sum())} non-finite values (first at index {first})"
            )
    raise ValueError(f"{OP_NAME}: the loss is not finite although the inputs are (temperature too small?)")


def _check_grad_available(ctx) -> None:
    if not ctx.grad_computed:
        raise RuntimeError(
            f"{OP_NAME}: backward called on a loss computed without gradient (inputs did not require grad)"
        )


def _setup_context(ctx, inputs, output) -> None:
    _, grad_features, grad_prototypes = output
    ctx.save_for_backward(grad_features, grad_prototypes)
    # The compute_grad flag itself, not the size of the saved gradients (those are empty for D = 0 too).
    ctx.grad_computed = bool(inputs[5])
    # The gradient outputs never receive gradient; without this, autograd would fill two zero tensors of
    # the inputs' sizes for them on every backward.
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_loss, _grad_f, _grad_p):
    if grad_loss is None:  # only the gradient outputs were used downstream: nothing flows back
        return None, None, None, None, None, None
    _backends.check_first_order_backward(OP_NAME)
    grad_features, grad_prototypes = ctx.saved_tensors
    _check_grad_available(ctx)
    if _hand_over(grad_loss):  # plain loss.backward(): the saved gradients are the answer
        return grad_features, None, grad_prototypes, None, None, None
    return grad_loss * grad_features, None, grad_loss * grad_prototypes, None, None, None


_keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)


def _hand_over(grad_loss: torch.Tensor) -> bool:
    """Whether the saved gradients can be returned as they are (no scaling, no copy).

    Only for an upstream gradient of exactly 1 (a CPU scalar, read for free) and when this backward frees
    the graph: autograd may adopt a returned tensor as ``.grad`` of a leaf, so with a retained graph
    (``retain_graph=True``) the saved tensors must stay private and fresh ones are returned. Eager mode
    only; where torch lacks the graph-task query, always fresh tensors.
    """
    if _keep_graph is None or torch.compiler.is_compiling():
        return False
    if grad_loss.device.type != "cpu" or grad_loss.numel() != 1 or _keep_graph():
        return False
    return bool(grad_loss == 1)


def _fused_fake(features, labels, prototypes, temperature, mode, compute_grad):
    loss = features.new_empty(())
    if compute_grad:
        return loss, torch.empty_like(features), torch.empty_like(prototypes)
    return loss, features.new_empty((0,)), prototypes.new_empty((0,))


@_backends.register_once
def _register_cpp() -> None:
    """Attach the fake implementation and autograd formula to the compiled op."""
    _backends.require_cpp(OP_NAME)
    torch.library.register_fake("bamco_fast::bamco_loss")(_fused_fake)
    torch.library.register_autograd("bamco_fast::bamco_loss", _backward, setup_context=_setup_context)


def cpp_op():
    """The registered ``torch.ops.bamco_fast.bamco_loss`` (fake and autograd attached)."""
    _register_cpp()
    return torch.ops.bamco_fast.bamco_loss.default


@_backends.register_once
def _register_triton() -> None:
    """Import the Triton kernels (which define the op) and attach the autograd formula."""
    from ..kernels import bamco_loss as kernel  # lazy: Triton is optional

    (forward,) = kernel.registered_ops()
    torch.library.register_autograd(forward, _backward, setup_context=_setup_context)


def triton_op():
    """The Triton ``torch.ops.bamco_fast.bamco_loss_triton`` op (autograd attached on first use)."""
    _register_triton()
    return torch.ops.bamco_fast.bamco_loss_triton.default


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _fused(op, features, labels, prototypes, temperature, mode):
    compute_grad = _needs_grad(features, prototypes)
    loss, _, _ = op(
        features.contiguous(),
        labels.to(torch.int64).contiguous(),  # any integer dtype is accepted; the kernels take int64
        prototypes.contiguous(),
        float(temperature),
        mode,
        compute_grad,
    )
    return loss


def _run_reference(features, labels, prototypes, temperature, mode):
    return bamco_loss_reference(features, labels, prototypes, temperature, mode)


def _run_cpp(features, labels, prototypes, temperature, mode):
    return _fused(cpp_op(), features, labels, prototypes, temperature, _MODES[mode])


def _run_triton(features, labels, prototypes, temperature, mode):
    return _fused(triton_op(), features, labels, prototypes, temperature, _MODES[mode])


# The backends in priority order; each ``run`` takes validated (features, labels, prototypes, temperature,
# mode) and returns the loss.
TABLE = _backends.BackendTable(
    OP_NAME,
    (
        _backends.triton_backend(_run_triton, (torch.float32, torch.float16, torch.bfloat16)),
        _backends.cpp_backend(_run_cpp),
        _backends.reference_backend(_run_reference),
    ),
)
backends = TABLE.backends


def select_backend(features: torch.Tensor, backend: str | None) -> _backends.Backend:
    """The backend that runs these features (see :func:`bamco_fast.ops._backends.select`)."""
    return TABLE.select(backend, features.device, features.dtype)


def bamco_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 0.07,
    mode: str = "views",
    backend: str | None = None,
) -> torch.Tensor:
    """Dispatching entry point behind :func:`bamco_fast.functional.bamco_loss` (see module docstring)."""
    if mode not in _MODES:
        raise ValueError(f"{OP_NAME}: mode must be one of {list(_MODES)}, got {mode!r}")
    check_inputs(features, labels, prototypes, temperature)
    loss = select_backend(features, backend).run(features, labels, prototypes, temperature, mode)
    check_finite_result(loss, features, prototypes)
    return loss
