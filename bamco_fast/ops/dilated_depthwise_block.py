"""The dilated depthwise block of BaMCo's intra-class 3D encoder (GLIMS ``DACB``): reference, backends, dispatch.

Math. For an input ``x`` (B, c, D, H, W), dilations ``delta_k`` = 1, 2, 3 (k = 0, 1, 2), per-(sample,
channel) normalisation ``N(t) = (t - mean(t)) / sqrt(var(t) + eps)`` over the D*H*W voxels (biased
variance) and ``prelu_s(t) = max(t, 0) + s * min(t, 0)`` with one scalar slope ``s``:

    a_k = prelu_{s_k}(gamma_k * N(conv3d_dw(x, w_k, dilation=delta_k, padding=delta_k)) + beta_k)
    h1  = prelu_{s_3}(N(W1 @ [a_0; a_1; a_2]))          W1: (e, 3c), a 1x1x1 convolution
    h2  = prelu_{s_4}(N(W2 @ h1))                       W2: (c, e)
    y   = prelu_{s_5}(N(h2 + x))

``gamma_k, beta_k`` are per channel (GroupNorm with c groups); the other three normalisations have no
affine part (InstanceNorm3d). The published block also adds a bias after every convolution; each such bias
is followed by a per-channel mean subtraction and cancels exactly, so the fused backends take no biases
(:func:`dilated_depthwise_block_reference` accepts them to demonstrate the identity).

Backends: ``triton`` (CUDA, ``bamco_fast.kernels.dilated_depthwise_block``), ``cpp`` (CPU,
``torch.ops.bamco_fast.dilated_depthwise_block``) and ``reference`` (pure torch, any device). The fused
backends keep only ``x`` for the backward pass and recompute the block a sample (``cpp``) or a chunk of
samples (``triton``) at a time, so the activation memory of a block is that of its input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..tensor_checks import require_float_tensor
from . import _backends
from ._tolerance import Tolerance

OP_NAME = "dilated_depthwise_block"
DILATIONS = (1, 2, 3)
NUM_PRELU = 6
#: The block's parameters after ``x``, in the order every backend takes them.
PARAM_NAMES = ("dw_weight", "norm_weight", "norm_bias", "pw1_weight", "pw2_weight", "prelu")

# How close every fast path (a fused backend, or any backend below float64) must come to the float64
# reference: error <= factor x the reference's own error in that dtype + floor, errors relative to the
# largest exact entry (see :mod:`bamco_fast.ops._tolerance`). Every test of this op, and of the
# intra-class encoder built from it, reads this table.
#   factor 2: a path may round twice as badly as the pure-torch reference, not worse.
#   floor, float64: the cpp block agrees with the reference to ~1e-15 and the five-stage encoder to ~1e-12;
#     1e-10 keeps that headroom while a wrong term shows at >= 1e-6.
#   floor, 16-bit and float32: 16 units in the last place of an O(1) result (the block ends in a
#     normalisation), for tensors the reference happens to get nearly exact.
TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(factor=2.0, floor=1e-10),
    torch.float32: Tolerance(factor=2.0, floor=16 * torch.finfo(torch.float32).eps),
    torch.float16: Tolerance(factor=2.0, floor=16 * torch.finfo(torch.float16).eps),
    torch.bfloat16: Tolerance(factor=2.0, floor=16 * torch.finfo(torch.bfloat16).eps),
}


def _instance_norm(t: torch.Tensor, eps: float) -> torch.Tensor:
    return F.instance_norm(t, eps=eps)


def dilated_depthwise_block_reference(
    x: torch.Tensor,
    dw_weight: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    pw1_weight: torch.Tensor,
    pw2_weight: torch.Tensor,
    prelu: torch.Tensor,
    eps: float = 1e-5,
    *,
    dw_bias: torch.Tensor | None = None,
    pw1_bias: torch.Tensor | None = None,
    pw2_bias: torch.Tensor | None = None,
    upcast: bool = True,
) -> torch.Tensor:
    """Pure-torch dilated depthwise block, layer by layer as the published module runs (see module docstring).

    Args:
        x: (B, c, D, H, W) float.
        dw_weight: (3, c, 3, 3, 3) depthwise kernels for dilations 1, 2, 3.
        norm_weight, norm_bias: (3, c) GroupNorm(c, c) affine parameters of the three branches.
        pw1_weight: (e, 3c) first 1x1x1 convolution (input channels ordered branch-major: dilation 1's c
            channels, then dilation 2's, then 3's).
        pw2_weight: (c, e) second 1x1x1 convolution.
        prelu: (6,) PReLU slopes: three branches, after ``pw1``, after ``pw2``, after the residual norm.
        eps: normalisation epsilon (1e-5 in the published model).
        dw_bias, pw1_bias, pw2_bias: optional (3, c), (e,), (c,) biases of the published layers; they cancel
            in the following normalisation (the output does not depend on them).
        upcast: compute in float32 when the inputs are float16/bfloat16.

    Returns:
        (B, c, D, H, W) in the dtype of ``x``; differentiable w.r.t. every tensor argument.
    """
    out_dtype = x.dtype
    if upcast and x.dtype in (torch.float16, torch.bfloat16):
        x, dw_weight, norm_weight, norm_bias = (
            x.float(),
            dw_weight.float(),
            norm_weight.float(),
            norm_bias.float(),
        )
        pw1_weight, pw2_weight, prelu = pw1_weight.float(), pw2_weight.float(), prelu.float()
        dw_bias = None if dw_bias is None else dw_bias.float()
        pw1_bias = None if pw1_bias is None else pw1_bias.float()
        pw2_bias = None if pw2_bias is None else pw2_bias.float()
    c = x.shape[1]
    branches = []
    for k, delta in enumerate(DILATIONS):
        bias = None if dw_bias is None else dw_bias[k]
        t = F.conv3d(x, dw_weight[k].unsqueeze(1), bias, padding=delta, dilation=delta, groups=c)
        t = F.group_norm(t, c, norm_weight[k], norm_bias[k], eps)
        branches.append(F.prelu(t, prelu[k : k + 1]))
    h = torch.cat(branches, dim=1)
    h = F.conv3d(h, pw1_weight[:, :, None, None, None], pw1_bias)
    h = F.prelu(_instance_norm(h, eps), prelu[3:4])
    h = F.conv3d(h, pw2_weight[:, :, None, None, None], pw2_bias)
    h = F.prelu(_instance_norm(h, eps), prelu[4:5])
    y = F.prelu(_instance_norm(h + x, eps), prelu[5:6])
    return y.to(out_dtype)


def check_inputs(x: torch.Tensor, params: Sequence[torch.Tensor], eps: float) -> None:
    """Validate types, shapes, dtypes and devices; raise naming the argument and the value received.

    Args:
        x: the block input, (B, c, D, H, W).
        params: the six parameters in the order of :data:`PARAM_NAMES` (shapes in
            :func:`dilated_depthwise_block`).
        eps: normalisation epsilon.

    Raises:
        TypeError: a non-tensor argument or a non-floating dtype.
        ValueError: wrong ranks or sizes, an empty input, mismatched dtypes/devices, eps <= 0.
    """
    named = {"x": x, **dict(zip(PARAM_NAMES, params))}
    for name, t in named.items():
        require_float_tensor(t, f"{OP_NAME}: {name}")
    if x.dim() != 5:
        raise ValueError(f"{OP_NAME}: x must have shape (B, c, D, H, W), got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{OP_NAME}: x must be non-empty, got shape {tuple(x.shape)}")
    if x.shape[2] * x.shape[3] * x.shape[4] < 2:
        raise ValueError(
            f"{OP_NAME}: x needs at least 2 voxels per channel for the normalisations, got {tuple(x.shape)}"
        )
    pw1_weight = named["pw1_weight"]
    c = x.shape[1]
    if pw1_weight.dim() != 2:
        raise ValueError(f"{OP_NAME}: pw1_weight must have shape (e, {3 * c}), got {tuple(pw1_weight.shape)}")
    e = pw1_weight.shape[0]
    expected = {
        "dw_weight": (3, c, 3, 3, 3),
        "norm_weight": (3, c),
        "norm_bias": (3, c),
        "pw1_weight": (e, 3 * c),
        "pw2_weight": (c, e),
        "prelu": (NUM_PRELU,),
    }
    for name, shape in expected.items():
        if tuple(named[name].shape) != shape:
            raise ValueError(
                f"{OP_NAME}: {name} must have shape {shape} for x of shape {tuple(x.shape)}, "
                f"got {tuple(named[name].shape)}"
            )
    for name, t in named.items():
        if t.dtype != x.dtype:
            raise ValueError(f"{OP_NAME}: {name} dtype {t.dtype} must match x dtype {x.dtype}")
        if t.device != x.device:
            raise ValueError(f"{OP_NAME}: {name} is on {t.device} but x is on {x.device}")
    if not isinstance(eps, (int, float)) or not (0 < float(eps) < float("inf")):
        raise ValueError(f"{OP_NAME}: eps must be a finite number > 0, got {eps!r}")


def _fake_forward(x, dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu, eps):
    return torch.empty_like(x)


def _fake_backward(grad_y, x, dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu, eps):
    return (
        torch.empty_like(x),
        torch.empty_like(dw_weight),
        torch.empty_like(norm_weight),
        torch.empty_like(norm_bias),
        torch.empty_like(pw1_weight),
        torch.empty_like(pw2_weight),
        torch.empty_like(prelu),
    )


def _setup_context(ctx, inputs, output) -> None:
    x, dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu, eps = inputs
    ctx.save_for_backward(x, dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu)
    ctx.eps = eps


def _cpp_backward(ctx, grad_y):
    _backends.check_first_order_backward(OP_NAME)
    grads = torch.ops.bamco_fast.dilated_depthwise_block_backward.default(
        grad_y.contiguous(), *ctx.saved_tensors, ctx.eps
    )
    return (*grads, None)


@_backends.register_once
def _register_cpp() -> None:
    """Attach the fake implementations and the autograd formula to the compiled ops."""
    _backends.require_cpp(OP_NAME)
    torch.library.register_fake("bamco_fast::dilated_depthwise_block")(_fake_forward)
    torch.library.register_fake("bamco_fast::dilated_depthwise_block_backward")(_fake_backward)
    torch.library.register_autograd(
        "bamco_fast::dilated_depthwise_block", _cpp_backward, setup_context=_setup_context
    )


def cpp_op():
    """The registered ``torch.ops.bamco_fast.dilated_depthwise_block`` (fakes and autograd attached)."""
    _register_cpp()
    return torch.ops.bamco_fast.dilated_depthwise_block.default


def cpu_workspace_bytes(release: bool = False) -> int:
    """Bytes the ``cpp`` backend keeps cached between calls (its per-thread sample workspaces).

    The cache grows to the largest call and is kept for the life of the process, because re-allocating
    and first-touching it on every call is slow (sizes and cost measured in ``benchmarks/README.md``). ``release=True`` frees it (when no call is using it) and returns the bytes
    freed; the next call allocates again. Returns 0 when the extension is not loaded.
    """
    from .. import _cpp

    if not _cpp.available():
        return 0
    return int(_cpp.module().dilated_depthwise_block_workspace(release))


@_backends.register_once
def _register_triton() -> None:
    """Import the Triton kernels (which define the ops) and attach the autograd formula."""
    from ..kernels import dilated_depthwise_block as kernel  # lazy: Triton is optional

    forward, backward_op = kernel.registered_ops()

    def backward(ctx, grad_y):
        _backends.check_first_order_backward(OP_NAME)
        return (*backward_op(grad_y.contiguous(), *ctx.saved_tensors, ctx.eps), None)

    torch.library.register_autograd(forward, backward, setup_context=_setup_context)


def triton_op():
    """The Triton op ``torch.ops.bamco_fast.dilated_depthwise_block_triton`` (autograd attached on first use)."""
    _register_triton()
    return torch.ops.bamco_fast.dilated_depthwise_block_triton.default


def _run_fused(op, x, dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu, eps):
    args = (x, dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu)
    return op(*(t.contiguous() for t in args), float(eps))


def _run_cpp(*args):
    return _run_fused(cpp_op(), *args)


def _run_triton(*args):
    return _run_fused(triton_op(), *args)


# The backends in priority order (chosen by ``TABLE.select``, see :func:`bamco_fast.ops._backends.select`);
# each ``run`` takes the validated arguments of :func:`dilated_depthwise_block` (x, the six parameters,
# eps) and returns y.
TABLE = _backends.BackendTable(
    OP_NAME,
    (
        _backends.triton_backend(_run_triton, (torch.float32, torch.bfloat16)),
        _backends.cpp_backend(_run_cpp),
        _backends.reference_backend(dilated_depthwise_block_reference),
    ),
)
backends = TABLE.backends


def dilated_depthwise_block(
    x: torch.Tensor,
    dw_weight: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    pw1_weight: torch.Tensor,
    pw2_weight: torch.Tensor,
    prelu: torch.Tensor,
    eps: float = 1e-5,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """GLIMS' depthwise atrous block (the building block of :class:`bamco_fast.IntraClassEncoder`), fused.

    ``a_k = prelu(gamma_k N(dwconv_{dilation k+1}(x)) + beta_k)`` for k = 0, 1, 2;
    ``h1 = prelu(N(W1 [a_0; a_1; a_2]))``; ``h2 = prelu(N(W2 h1))``; ``y = prelu(N(h2 + x))``, with N the
    per-(sample, channel) normalisation over the volume (biased variance, ``eps``) and one PReLU slope per
    stage (see the module docstring). Public as :func:`bamco_fast.functional.dilated_depthwise_block`.

    Args:
        x: (B, c, D, H, W) float32/float64 (CPU) or float32/bfloat16 (CUDA).
        dw_weight: (3, c, 3, 3, 3) depthwise kernels for dilations 1, 2, 3.
        norm_weight, norm_bias: (3, c) per-branch GroupNorm(c, c) affine parameters.
        pw1_weight: (e, 3c), pw2_weight: (c, e) the 1x1x1 convolutions (no bias: it cancels in N).
        prelu: (6,) slopes (three branches, after pw1, after pw2, output).
        eps: normalisation epsilon.
        backend: ``None``/``"auto"``, ``"triton"``, ``"cpp"`` or ``"reference"``.

    Returns:
        (B, c, D, H, W), dtype of ``x``; differentiable w.r.t. every tensor argument.
    """
    params = (dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu)
    check_inputs(x, params, eps)
    return TABLE.select(backend, x.device, x.dtype).run(x, *params, eps)
