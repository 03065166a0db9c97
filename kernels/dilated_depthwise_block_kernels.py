"""Triton kernels of GLIMS' depthwise atrous block (the device code; host side in ``dilated_depthwise_block``).

Notation of :mod:`bamco_fast.kernels.dilated_depthwise_block`: a row is one (sample, channel) pair of V =
D*H*W voxels, each program handles ``BLOCK`` voxels of one row (grid = (rows, voxel blocks)), and every
reduction is written as per-block partial sums that the host adds in a fixed order (deterministic, no
atomics). ``SLOPE_OFF`` / ``ROWS_PER_SLOPE`` pick the PReLU slope of a row from the block's six slopes.

* ``_dw_fwd_kernel``: the three dilated depthwise 3x3x3 convolutions (dilations 1, 2, 3) of one voxel
  block, written branch-major with their partial (sum, sum of squares).
* ``_norm_act_kernel``: normalise (+ GroupNorm affine when ``HAS_AFFINE``) and PReLU.
* ``_residual_kernel``: r = prelu(N(z2)) + x with the partial moments of r.
* ``_bwd_partials_kernel`` / ``_bwd_apply_kernel``: the backward of a normalisation + PReLU (per-block
  sums of g, g N(t) and the slope gradient, then dL/dt).
* ``_dw_bwd_kernel``: dL/dx (gather form of the transposed dilated convolutions, plus the residual share)
  and the 81 partial weight gradients of its block.

The ``@triton.jit`` helpers below (inlined into the kernels) hold what several kernels share: a program's
voxel coordinates, a load at shifted voxels and the partial moments.
"""

from __future__ import annotations

import triton
import triton.language as tl


# --------------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------------
@triton.jit
def _channel_block(C, H, W, V, BLOCK: tl.constexpr):
    """This program's voxel block of one (sample, channel) row: (row = n * C + i, block index, n, i, voxel
    offsets, their mask, and their (d, h, w) coordinates in the D x H x W volume)."""
    row = tl.program_id(0)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    valid = offs < V
    ow = offs % W
    oh = (offs // W) % H
    od = offs // (W * H)
    return row, blk, row // C, row % C, offs, valid, od, oh, ow


@triton.jit
def _load_shifted(base, valid, d, h, w, D, H, W):
    """``base[(d * H + h) * W + w]`` where ``valid`` and the voxel (d, h, w) lies in the volume, else 0."""
    inside = valid & (d >= 0) & (d < D) & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    return tl.load(base + (d * H + h) * W + w, mask=inside, other=0.0)


@triton.jit
def _store_moments(part_ptr, row, NBLK, blk, v):
    """Partial (sum, sum of squares) of the block values ``v`` (0 where masked) at part[row, blk, 0:2]."""
    p = part_ptr + (row * NBLK + blk) * 2
    tl.store(p, tl.sum(v, axis=0))
    tl.store(p + 1, tl.sum(v * v, axis=0))


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------
@triton.jit
def _dw_fwd_kernel(x_ptr, w_ptr, d_ptr, part_ptr, C, D, H, W, V, NBLK, BLOCK: tl.constexpr):
    row, blk, n, i, offs, valid, od, oh, ow = _channel_block(C, H, W, V, BLOCK)
    x_base = x_ptr + row.to(tl.int64) * V
    for k in tl.static_range(3):
        dl = k + 1
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for tap in tl.static_range(27):
            id_ = od + (tap // 9 - 1) * dl
            ih = oh + ((tap // 3) % 3 - 1) * dl
            iw = ow + (tap % 3 - 1) * dl
            xv = _load_shifted(x_base, valid, id_, ih, iw, D, H, W).to(tl.float32)
            wt = tl.load(w_ptr + (k * C + i) * 27 + tap).to(tl.float32)
            acc += wt * xv
        out_row = (n * 3 + k) * C + i
        tl.store(d_ptr + out_row.to(tl.int64) * V + offs, acc, mask=valid)
        _store_moments(part_ptr, out_row, NBLK, blk, tl.where(valid, acc, 0.0))


@triton.jit
def _norm_act_kernel(
    z_ptr,
    out_ptr,
    mean_ptr,
    rstd_ptr,
    gamma_ptr,
    beta_ptr,
    slope_ptr,
    R,
    V,
    ROWS_PER_SLOPE,
    SLOPE_OFF,
    HAS_AFFINE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)  # n * R + r
    r = row % R
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < V
    z = tl.load(z_ptr + row.to(tl.int64) * V + offs, mask=valid, other=0.0).to(tl.float32)
    t = (z - tl.load(mean_ptr + row)) * tl.load(rstd_ptr + row)
    if HAS_AFFINE:
        t = t * tl.load(gamma_ptr + r).to(tl.float32) + tl.load(beta_ptr + r).to(tl.float32)
    s = tl.load(slope_ptr + SLOPE_OFF + r // ROWS_PER_SLOPE).to(tl.float32)
    out = tl.where(t > 0, t, s * t)
    tl.store(out_ptr + row.to(tl.int64) * V + offs, out.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _residual_kernel(
    z_ptr, x_ptr, r_ptr, mean_ptr, rstd_ptr, slope_ptr, part_ptr, V, NBLK, BLOCK: tl.constexpr
):
    row = tl.program_id(0)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    valid = offs < V
    base = row.to(tl.int64) * V
    z = tl.load(z_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    t = (z - tl.load(mean_ptr + row)) * tl.load(rstd_ptr + row)
    s = tl.load(slope_ptr + 4).to(tl.float32)
    x = tl.load(x_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    r = tl.where(valid, tl.where(t > 0, t, s * t) + x, 0.0)
    tl.store(r_ptr + base + offs, r, mask=valid)
    _store_moments(part_ptr, row, NBLK, blk, r)


@triton.jit
def _bwd_partials_kernel(
    t_ptr,
    dh_ptr,
    mean_ptr,
    rstd_ptr,
    gamma_ptr,
    beta_ptr,
    slope_ptr,
    part_ptr,
    R,
    V,
    NBLK,
    ROWS_PER_SLOPE,
    SLOPE_OFF,
    HAS_AFFINE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    blk = tl.program_id(1)
    r = row % R
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    valid = offs < V
    base = row.to(tl.int64) * V
    t = (
        tl.load(t_ptr + base + offs, mask=valid, other=0.0).to(tl.float32) - tl.load(mean_ptr + row)
    ) * tl.load(rstd_ptr + row)
    u = t
    if HAS_AFFINE:
        u = t * tl.load(gamma_ptr + r).to(tl.float32) + tl.load(beta_ptr + r).to(tl.float32)
    s = tl.load(slope_ptr + SLOPE_OFF + r // ROWS_PER_SLOPE).to(tl.float32)
    dh = tl.load(dh_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    g = tl.where(u > 0, dh, s * dh)
    p = part_ptr + (row * NBLK + blk) * 3
    tl.store(p, tl.sum(g, axis=0))
    tl.store(p + 1, tl.sum(g * t, axis=0))
    tl.store(p + 2, tl.sum(tl.where(u > 0, 0.0, dh * u), axis=0))


@triton.jit
def _bwd_apply_kernel(
    t_ptr,
    dh_ptr,
    out_ptr,
    mean_ptr,
    rstd_ptr,
    gamma_ptr,
    beta_ptr,
    slope_ptr,
    mg_ptr,
    mgt_ptr,
    R,
    V,
    ROWS_PER_SLOPE,
    SLOPE_OFF,
    HAS_AFFINE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    r = row % R
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < V
    base = row.to(tl.int64) * V
    rstd = tl.load(rstd_ptr + row)
    t = (tl.load(t_ptr + base + offs, mask=valid, other=0.0).to(tl.float32) - tl.load(mean_ptr + row)) * rstd
    u = t
    scale = rstd
    if HAS_AFFINE:
        gamma = tl.load(gamma_ptr + r).to(tl.float32)
        u = t * gamma + tl.load(beta_ptr + r).to(tl.float32)
        scale = rstd * gamma
    s = tl.load(slope_ptr + SLOPE_OFF + r // ROWS_PER_SLOPE).to(tl.float32)
    dh = tl.load(dh_ptr + base + offs, mask=valid, other=0.0).to(tl.float32)
    g = tl.where(u > 0, dh, s * dh)
    dt = scale * (g - tl.load(mg_ptr + row) - t * tl.load(mgt_ptr + row))
    tl.store(out_ptr + base + offs, dt, mask=valid)


@triton.jit
def _dw_bwd_kernel(
    x_ptr, w_ptr, dd_ptr, dres_ptr, dx_ptr, part_ptr, C, D, H, W, V, NBLK, BLOCK: tl.constexpr
):
    row, blk, n, i, offs, valid, od, oh, ow = _channel_block(C, H, W, V, BLOCK)
    base = row.to(tl.int64) * V
    x_base = x_ptr + base
    dx = tl.load(dres_ptr + base + offs, mask=valid, other=0.0)
    for k in tl.static_range(3):
        dl = k + 1
        g_base = dd_ptr + ((n * 3 + k) * C + i).to(tl.int64) * V
        g = tl.load(g_base + offs, mask=valid, other=0.0)
        for tap in tl.static_range(27):
            fd = (tap // 9 - 1) * dl
            fh = ((tap // 3) % 3 - 1) * dl
            fw = (tap % 3 - 1) * dl
            wt = tl.load(w_ptr + (k * C + i) * 27 + tap).to(tl.float32)
            # dL/dx[v] += w[tap] * g[v - off]   (gather form of the transposed convolution)
            dx += wt * _load_shifted(g_base, valid, od - fd, oh - fh, ow - fw, D, H, W)
            # dL/dw[tap] += sum_v x[v + off] * g[v]
            xs = _load_shifted(x_base, valid, od + fd, oh + fh, ow + fw, D, H, W).to(tl.float32)
            tl.store(part_ptr + (row * NBLK + blk) * 81 + k * 27 + tap, tl.sum(xs * g, axis=0))
    tl.store(dx_ptr + base + offs, dx.to(dx_ptr.dtype.element_ty), mask=valid)
