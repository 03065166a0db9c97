"""Triton (CUDA) backend of GLIMS' depthwise atrous block: ``bamco_fast::dilated_depthwise_block_triton``.

Math (same contract as the C++ op ``bamco_fast::dilated_depthwise_block``, see
:mod:`bamco_fast.ops.dilated_depthwise_block`): per sample and channel, N(t) = (t - mean) * rstd over the
V = D*H*W voxels,

    a_k = prelu_{s_k}(gamma_k N(dwconv_{k+1}(x)) + beta_k),  h1 = prelu_{s_3}(N(W1 a)),
    h2 = prelu_{s_4}(N(W2 h1)),  y = prelu_{s_5}(N(h2 + x)).

Kernels (:mod:`.dilated_depthwise_block_kernels`, grid = (rows, voxel blocks); every reduction is written
as per-block partial sums that are added in a fixed order, so results are deterministic and there are no
atomics):

* ``_dw_fwd_kernel``: the three dilated depthwise convolutions of one (sample, channel) voxel block read
  the input neighbourhood once (the three dilations share the cached loads) and write the raw branch
  outputs straight into the branch-major concat layout with their partial (sum, sum of squares).
* ``_norm_act_kernel``: normalise (+ GroupNorm affine) and PReLU, writing the GEMM operand in the compute
  dtype. The 1x1x1 convolutions are batched GEMMs (cuBLAS, fp32 accumulation).
* ``_residual_kernel``: r = prelu(N(z2)) + x with the partial moments of r in the same pass.
* backward: ``_bwd_partials_kernel`` (sum g, sum g N(t), dL/dslope per block) and ``_bwd_apply_kernel``
  (dL/dt = gamma rstd (g - mean g - N(t) mean(g N(t)))) serve all four normalisations;
  ``_dw_bwd_kernel`` computes dL/dx (gather form of the transposed dilated convolutions, plus the
  residual share) and the 81 partial weight gradients of its block in one sweep.

Both ops (forward and ``_backward``) are defined like every Triton op of the library
(:mod:`._triton_op`): ``triton_op``s whose kernels ``torch.compile`` sees on a GPU, opaque ops under the
interpreter; the autograd formula is attached by :mod:`bamco_fast.ops.dilated_depthwise_block`.

The backward recomputes the forward from x, a chunk of samples at a time (``BACKWARD_CHUNK``), so only x
is kept between forward and backward. Precision: fp32 and bf16 inputs; statistics, normalised values and
gradients are fp32; in bf16 the GEMM operands are bf16.
"""

from __future__ import annotations

import torch
import triton

from ._triton_op import define_op, launch
from .dilated_depthwise_block_kernels import (
    _bwd_apply_kernel,
    _bwd_partials_kernel,
    _dw_bwd_kernel,
    _dw_fwd_kernel,
    _norm_act_kernel,
    _residual_kernel,
)

OP = "bamco_fast::dilated_depthwise_block_triton"
BLOCK = 512
BACKWARD_CHUNK = 8


def _grid(rows: int, V: int) -> tuple[int, int]:
    return rows, triton.cdiv(V, BLOCK)


def _moments(part: torch.Tensor, rows: int, V: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, NBLK, 2) partial (sum, sum of squares) -> fp32 mean, rstd (summed in float64)."""
    sums = part.view(rows, -1, 2).double().sum(1)
    mean = sums[:, 0] / V
    var = (sums[:, 1] / V - mean * mean).clamp_min(0)
    return mean.float().contiguous(), (var + eps).rsqrt().float().contiguous()


def _var_mean(z: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(z.float(), dim=-1, correction=0)
    return mean.reshape(-1).contiguous(), (var + eps).rsqrt().reshape(-1).contiguous()


def _norm_act(z, out, stats, gamma, beta, prelu, rows, R, V, rows_per_slope, slope_off, affine) -> None:
    """out = prelu([gamma] N(z) [+ beta]) for ``rows`` rows of V voxels (R rows per sample), in the dtype
    of ``out``; ``stats`` = (mean, rstd) fp32 per row, the slope of row r is ``prelu[slope_off + r //
    rows_per_slope]``."""
    launch(
        _norm_act_kernel,
        _grid(rows, V),
        z,
        out,
        *stats,
        gamma,
        beta,
        prelu,
        R,
        V,
        rows_per_slope,
        slope_off,
        HAS_AFFINE=affine,
        BLOCK=BLOCK,
    )


def _forward(x, dw, gamma, beta, w1, w2, prelu, eps, keep: bool):
    """Forward of a batch; returns y, and when ``keep`` the tensors the backward needs."""
    B, C, D, H, W = x.shape
    V, E = D * H * W, w1.shape[0]
    op_dtype = torch.bfloat16 if x.dtype == torch.bfloat16 else torch.float32
    nblk = triton.cdiv(V, BLOCK)
    dev = x.device
    d = torch.empty(B, 3 * C, V, device=dev, dtype=torch.float32)
    part = torch.empty(B * 3 * C, nblk, 2, device=dev, dtype=torch.float32)
    launch(_dw_fwd_kernel, _grid(B * C, V), x, dw, d, part, C, D, H, W, V, nblk, BLOCK=BLOCK)
    mean_d, rstd_d = _moments(part, B * 3 * C, V, eps)
    a = torch.empty(B, 3 * C, V, device=dev, dtype=op_dtype)
    _norm_act(d, a, (mean_d, rstd_d), gamma, beta, prelu, B * 3 * C, 3 * C, V, C, 0, True)
    z1 = torch.matmul(w1.to(op_dtype), a)
    mean1, rstd1 = _var_mean(z1, eps)
    h1 = torch.empty(B, E, V, device=dev, dtype=op_dtype)
    _norm_act(z1, h1, (mean1, rstd1), gamma, beta, prelu, B * E, E, V, E, 3, False)
    z2 = torch.matmul(w2.to(op_dtype), h1)
    mean2, rstd2 = _var_mean(z2, eps)
    r = torch.empty(B, C, V, device=dev, dtype=torch.float32)
    part_r = torch.empty(B * C, nblk, 2, device=dev, dtype=torch.float32)
    launch(_residual_kernel, _grid(B * C, V), z2, x, r, mean2, rstd2, prelu, part_r, V, nblk, BLOCK=BLOCK)
    mean_r, rstd_r = _moments(part_r, B * C, V, eps)
    y = torch.empty_like(x)
    _norm_act(r, y, (mean_r, rstd_r), gamma, beta, prelu, B * C, C, V, C, 5, False)
    if not keep:
        return y, None
    saved = dict(
        d=d,
        stats_d=(mean_d, rstd_d),
        a=a,
        z1=z1,
        stats1=(mean1, rstd1),
        h1=h1,
        z2=z2,
        stats2=(mean2, rstd2),
        r=r,
        stats_r=(mean_r, rstd_r),
    )
    return y, saved


def _norm_backward(t, dh, stats, gamma, beta, prelu, R, V, rows_per_slope, slope_off, affine):
    """dL/dt through u = [gamma] N(t) [+ beta], prelu(u); returns (dL/dt fp32, per-row partial sums)."""
    rows = t.shape[0] * R
    nblk = triton.cdiv(V, BLOCK)
    part = torch.empty(rows, nblk, 3, device=t.device, dtype=torch.float32)
    launch(
        _bwd_partials_kernel,
        _grid(rows, V),
        t,
        dh,
        *stats,
        gamma,
        beta,
        prelu,
        part,
        R,
        V,
        nblk,
        rows_per_slope,
        slope_off,
        HAS_AFFINE=affine,
        BLOCK=BLOCK,
    )
    sums = part.double().sum(1)  # (rows, 3): sum g, sum g N(t), dL/dslope share
    mg = (sums[:, 0] / V).float().contiguous()
    mgt = (sums[:, 1] / V).float().contiguous()
    out = torch.empty(t.shape, device=t.device, dtype=torch.float32)
    launch(
        _bwd_apply_kernel,
        _grid(rows, V),
        t,
        dh,
        out,
        *stats,
        gamma,
        beta,
        prelu,
        mg,
        mgt,
        R,
        V,
        rows_per_slope,
        slope_off,
        HAS_AFFINE=affine,
        BLOCK=BLOCK,
    )
    return out, sums


def dilated_depthwise_block_fwd(x, dw, gamma, beta, w1, w2, prelu, eps):
    """Launcher: y (B, c, D, H, W) in the dtype of ``x``; no autograd."""
    return _forward(x, dw, gamma, beta, w1, w2, prelu, eps, keep=False)[0]


def dilated_depthwise_block_bwd(grad_y, x, dw, gamma, beta, w1, w2, prelu, eps):
    """Launcher: the gradients w.r.t. (x, dw, gamma, beta, w1, w2, prelu), recomputing the forward."""
    B, C, D, H, W = x.shape
    V, E = D * H * W, w1.shape[0]
    dev = x.device
    dx = torch.empty_like(x)
    g_dw = torch.zeros(3 * C * 27, device=dev, dtype=torch.float64)
    g_gamma = torch.zeros(3 * C, device=dev, dtype=torch.float64)
    g_beta = torch.zeros(3 * C, device=dev, dtype=torch.float64)
    g_w1 = torch.zeros(E, 3 * C, device=dev, dtype=torch.float32)
    g_w2 = torch.zeros(C, E, device=dev, dtype=torch.float32)
    g_slope = torch.zeros(6, device=dev, dtype=torch.float64)
    nblk = triton.cdiv(V, BLOCK)
    for start in range(0, B, BACKWARD_CHUNK):
        xs, dys = x[start : start + BACKWARD_CHUNK], grad_y[start : start + BACKWARD_CHUNK]
        n = xs.shape[0]
        _, sv = _forward(xs, dw, gamma, beta, w1, w2, prelu, eps, keep=True)
        dres, sums = _norm_backward(sv["r"], dys, sv["stats_r"], gamma, beta, prelu, C, V, C, 5, False)
        g_slope[5] += sums[:, 2].sum()
        dz2, sums = _norm_backward(sv["z2"], dres, sv["stats2"], gamma, beta, prelu, C, V, C, 4, False)
        g_slope[4] += sums[:, 2].sum()
        h1 = sv["h1"]
        g_w2 += torch.einsum("bcv,bev->ce", dz2, h1.float())
        dh1 = torch.matmul(w2.t().float(), dz2)
        dz1, sums = _norm_backward(sv["z1"], dh1, sv["stats1"], gamma, beta, prelu, E, V, E, 3, False)
        g_slope[3] += sums[:, 2].sum()
        g_w1 += torch.einsum("bev,bkv->ek", dz1, sv["a"].float())
        da = torch.matmul(w1.t().float(), dz1)
        dd, sums = _norm_backward(sv["d"], da, sv["stats_d"], gamma, beta, prelu, 3 * C, V, C, 0, True)
        per_row = sums.view(n, 3 * C, 3).sum(0)  # per (branch, channel): sum g, sum g N(t), slope share
        g_beta += per_row[:, 0]
        g_gamma += per_row[:, 1]
        g_slope[:3] += per_row[:, 2].view(3, C).sum(1)
        part = torch.empty(n * C, nblk, 81, device=dev, dtype=torch.float32)
        launch(
            _dw_bwd_kernel,
            _grid(n * C, V),
            xs,
            dw,
            dd,
            dres,
            dx[start : start + n],
            part,
            C,
            D,
            H,
            W,
            V,
            nblk,
            BLOCK=BLOCK,
        )
        g_dw += part.view(n, C, nblk, 3, 27).double().sum((0, 2)).permute(1, 0, 2).reshape(-1)
    dt = dw.dtype
    return (
        dx,
        g_dw.view(3, C, 3, 3, 3).to(dt),
        g_gamma.view(3, C).to(dt),
        g_beta.view(3, C).to(dt),
        g_w1.to(dt),
        g_w2.to(dt),
        g_slope.to(dt),
    )


# The schemas of the C++ ops (csrc/bindings.cpp): the Triton ops keep their contract and argument names.
_ARGS = (
    "Tensor x, Tensor dw_weight, Tensor norm_weight, Tensor norm_bias, Tensor pw1_weight, Tensor pw2_weight, "
    "Tensor prelu, float eps"
)
_GRADS = "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)"

# ``triton_op``s on a GPU, opaque ops under the interpreter (see :mod:`._triton_op`), as for the loss.
dilated_depthwise_block_triton = define_op(OP, dilated_depthwise_block_fwd, schema=f"({_ARGS}) -> Tensor")
dilated_depthwise_block_triton_backward = define_op(
    OP + "_backward", dilated_depthwise_block_bwd, schema=f"(Tensor grad_y, {_ARGS}) -> {_GRADS}"
)


def registered_ops():
    """``(forward, backward)``: the ops ``bamco_fast::dilated_depthwise_block_triton`` and its ``_backward``.

    The autograd formula is attached by :mod:`bamco_fast.ops.dilated_depthwise_block`, as for the loss.
    """
    return (
        torch.ops.bamco_fast.dilated_depthwise_block_triton.default,
        torch.ops.bamco_fast.dilated_depthwise_block_triton_backward.default,
    )
