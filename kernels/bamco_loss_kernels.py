"""Triton kernels of the balanced contrastive loss (the device code; host side in ``bamco_loss``).

Notation of :mod:`bamco_fast.kernels.bamco_loss`: k = ``views_per_group`` views per group, anchors z_i
(the k*B rows of the group's views), keys = those rows followed by the C prototypes, s_ij = z_i . key_j,
dS_ij the gradient of the loss w.r.t. s_ij. ``PAIRS`` (constexpr) selects the view-pair groups (mode
``VIEW_PAIRS``); otherwise there is one group of all V views. The (k*B) x (k*B + C) similarity matrix never
exists; extra memory is O(V^2 B + C) floats:

* ``_count_kernel`` (only when B > ``INLINE_COUNT_MAX_BATCH``): ``n_c`` for every class. For smaller
  batches the counts are computed inside the other kernels by comparing against all labels.
* ``_fwd_kernel``, grid (row blocks, groups, key splits): each program streams the key tiles of its
  split (``tl.dot`` of BLOCK_D-wide chunks, fp32 accumulation), forms ``x = s * log2(e)/T + b * log2(e)``
  with the bias from ``cnt`` lookups and a label comparison in registers, masks the self column by index
  and keeps an online row maximum, sum of ``exp2`` and the sum of positive similarities. It writes the
  partial (m, sumexp, pos) of every row and split. Splitting the keys fills the GPU when the batch is small
  (B = 48 gives only one or two row blocks per group).
* ``_finish_kernel``, one program: merges the splits into the exact log-sum-exp of every row (stored as
  the row maximum and log2 of the sum, apart, for the gradient), reduces the loss in a fixed order (deterministic) and, when the
  counts were computed inline, writes the ``n_c`` table for the gradient kernel.
* ``_grad_kernel`` (only when ``compute_grad``), FlashAttention-shaped, no atomics: a program owns a
  block of rows of one view (or a block of prototypes) and a slice of D, streams the keys of every group
  that contains the rows, recomputes the similarity tiles and accumulates its gradient rows in fp32
  registers, written once. Anchor-anchor tiles are symmetric (s_ij = s_ji), so one similarity tile
  gives both the anchor side dS_rt and the key side dS_tr of the owned rows:
  ``dz_r += sum_t (dS_rt + dS_tr) z_t`` (t over the group's batch rows) ``+ sum_c dS_rc p_c``.
  Prototype programs compute ``dp_c = sum_t dS_tc z_t``.

For 16-bit inputs the gradient tile ``p - [pos]/(k n)`` (magnitude <= 1, the coefficient coef/T is applied
to the fp32 accumulator afterwards) is rounded to the input dtype before the second product, as in
FlashAttention. Under ``TRITON_INTERPRET=1`` the dots widen their operands to fp32 first (``_mma``), so
the interpreter runs fp16 and bf16 with the tensor-core products but cannot emulate TF32. The
log-sum-exp uses an online maximum, never a fixed shift, so any T > 0 is stable.
"""

import triton
import triton.language as tl

from .bamco_loss_tiles import (
    _class_counts,
    _counts_of,
    _group_rows,
    _key_tile,
    _logits,
    _mma,
    _online_update,
    _pair_views,
    _sim_tile,
)


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------
@triton.jit
def _count_kernel(labels_ptr, n_ptr, B, C, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """n_ptr[c] = number of labels equal to c (float32), one program per BLOCK_C classes."""
    cls = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = _class_counts(cls, labels_ptr, B, BLOCK_C, BLOCK_L)
    tl.store(n_ptr + cls, n, mask=cls < C)


# _fwd_kernel is longer than 80 lines because its 25 launch arguments take 27 lines; the tile work is
# already in the @triton.jit helpers above, and the two key loops share the online-softmax state.
@triton.jit
def _fwd_kernel(
    feat_ptr,
    proto_ptr,
    labels_ptr,
    n_ptr,
    part_ptr,
    B,
    C,
    D,
    V,
    views_per_group,
    num_splits,
    num_part_rows,
    cols_per_split,
    stride_fb,
    stride_fv,
    stride_pc,
    scale2,
    PAIRS: tl.constexpr,
    INLINE_COUNTS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Partial (m, sumexp, pos) of BLOCK_M anchors of group ``program_id(1)`` over key split ``program_id(2)``.

    Key columns of a group: its k*B batch rows (padded to a multiple of BLOCK_N), then the C prototypes.
    part_ptr is (3, num_splits, num_part_rows) float32: running max of x (log2 domain), sum of exp2(x - m), sum of the
    positive similarities s_ij (unscaled).
    """
    pid_m = tl.program_id(0)
    g = tl.program_id(1)
    split = tl.program_id(2)
    rows_in_group = views_per_group * B
    va, vb = _pair_views(g, V)

    r = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = r < rows_in_group
    view_r, i_r, idx_r = _group_rows(r, B, V, va, vb, PAIRS)
    row_ptrs = feat_ptr + i_r.to(tl.int64) * stride_fb + view_r * stride_fv
    y_r = tl.load(labels_ptr + i_r, mask=rmask, other=-2)
    n_r = _counts_of(y_r, rmask, labels_ptr, n_ptr, B, BLOCK_M, BLOCK_L, INLINE_COUNTS)
    same_bias = -tl.log2(views_per_group * n_r)

    m = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    sumexp = tl.zeros([BLOCK_M], dtype=tl.float32)
    pos = tl.zeros([BLOCK_M], dtype=tl.float32)

    kb_pad = tl.cdiv(rows_in_group, BLOCK_N) * BLOCK_N
    c_lo = split * cols_per_split
    c_hi = tl.minimum(c_lo + cols_per_split, kb_pad + C)
    # Batch-row keys of the group.
    for t0 in range(c_lo, tl.minimum(c_hi, kb_pad), BLOCK_N):
        t = t0 + tl.arange(0, BLOCK_N)
        tmask = t < rows_in_group
        view_t, i_t, _ = _group_rows(t, B, V, va, vb, PAIRS)
        col_ptrs = feat_ptr + i_t.to(tl.int64) * stride_fb + view_t * stride_fv
        y_t = tl.load(labels_ptr + i_t, mask=tmask, other=-1)
        n_t = _counts_of(y_t, tmask, labels_ptr, n_ptr, B, BLOCK_N, BLOCK_L, INLINE_COUNTS)
        s = _sim_tile(row_ptrs, rmask, col_ptrs, tmask, D, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
        valid = rmask[:, None] & tmask[None, :] & (r[:, None] != t[None, :])
        same = y_r[:, None] == y_t[None, :]
        m, sumexp, pos = _online_update(
            s, valid, same, same_bias, -tl.log2(views_per_group * n_t + 1.0), scale2, m, sumexp, pos
        )
    # Prototype keys.
    for t0 in range(tl.maximum(c_lo, kb_pad), c_hi, BLOCK_N):
        c = t0 - kb_pad + tl.arange(0, BLOCK_N)
        cmask = c < C
        col_ptrs = proto_ptr + c.to(tl.int64) * stride_pc
        n_c = _counts_of(c, cmask, labels_ptr, n_ptr, B, BLOCK_N, BLOCK_L, INLINE_COUNTS)
        s = _sim_tile(row_ptrs, rmask, col_ptrs, cmask, D, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
        valid = rmask[:, None] & cmask[None, :]
        same = y_r[:, None] == c[None, :]
        m, sumexp, pos = _online_update(
            s, valid, same, same_bias, -tl.log2(views_per_group * n_c + 1.0), scale2, m, sumexp, pos
        )

    out = part_ptr + split * num_part_rows + idx_r
    tl.store(out, m, mask=rmask)
    tl.store(out + num_splits * num_part_rows, sumexp, mask=rmask)
    tl.store(out + 2 * num_splits * num_part_rows, pos, mask=rmask)


@triton.jit
def _finish_kernel(
    part_ptr,
    lse_ptr,
    loss_ptr,
    labels_ptr,
    n_ptr,
    B,
    C,
    V,
    views_per_group,
    num_groups,
    num_splits,
    num_part_rows,
    inv_t,
    coef,
    PAIRS: tl.constexpr,
    INLINE_COUNTS: tl.constexpr,
    WRITE_COUNTS: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One program: merge the key splits, store the row statistics, write the loss.

    lse_ptr is (2, num_part_rows) float32: the row maximum m of x and l = log2(sum exp2(x - m)), kept apart so
    that the gradient's exponent (x - m) - l loses nothing to an lse of size 1/T (lse = (m + l) ln 2).
    loss = coef * sum_rows (lse_r - pos_r / (T k n_y)), summed in a fixed order. With WRITE_COUNTS the
    count table n_ptr (C,) is filled too (the gradient kernel reads it).
    """
    rows_in_group = views_per_group * B
    total = tl.zeros([BLOCK_ROWS], dtype=tl.float32)
    for g in range(num_groups):
        va, vb = _pair_views(g, V)
        for r0 in range(0, rows_in_group, BLOCK_ROWS):
            r = r0 + tl.arange(0, BLOCK_ROWS)
            rmask = r < rows_in_group
            _, i_r, idx = _group_rows(r, B, V, va, vb, PAIRS)
            m = tl.full([BLOCK_ROWS], float("-inf"), dtype=tl.float32)
            sumexp = tl.zeros([BLOCK_ROWS], dtype=tl.float32)
            pos = tl.zeros([BLOCK_ROWS], dtype=tl.float32)
            for split in range(num_splits):
                ptr = part_ptr + split * num_part_rows + idx
                m_s = tl.load(ptr, mask=rmask, other=float("-inf"))
                sumexp_s = tl.load(ptr + num_splits * num_part_rows, mask=rmask, other=0.0)
                pos += tl.load(ptr + 2 * num_splits * num_part_rows, mask=rmask, other=0.0)
                m_new = tl.maximum(m, m_s)
                m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
                sumexp = sumexp * tl.exp2(m - m_safe) + sumexp_s * tl.exp2(m_s - m_safe)
                m = m_new
            m = tl.where(rmask, m, 0.0)
            l2 = tl.where(rmask, tl.log2(tl.where(rmask, sumexp, 1.0)), 0.0)
            tl.store(lse_ptr + idx, m, mask=rmask)
            tl.store(lse_ptr + num_part_rows + idx, l2, mask=rmask)
            y = tl.load(labels_ptr + i_r, mask=rmask, other=-2)
            n = _counts_of(y, rmask, labels_ptr, n_ptr, B, BLOCK_ROWS, BLOCK_L, INLINE_COUNTS)
            row = (m * 0.6931471805599453 - pos * inv_t / (views_per_group * n)) + l2 * 0.6931471805599453
            total += tl.where(rmask, row, 0.0)
    tl.store(loss_ptr, (tl.sum(total, axis=0) * coef).to(loss_ptr.dtype.element_ty))
    if WRITE_COUNTS:
        for c0 in range(0, C, BLOCK_ROWS):
            c = c0 + tl.arange(0, BLOCK_ROWS)
            tl.store(n_ptr + c, _class_counts(c, labels_ptr, B, BLOCK_ROWS, BLOCK_L), mask=c < C)


# _grad_kernel is longer than 80 lines because it is one FlashAttention-shaped program: its fp32
# accumulator stays in registers across the group and key loops, and the AOT tests pin its compiled code.
@triton.jit
def _grad_kernel(
    feat_ptr,
    proto_ptr,
    labels_ptr,
    n_ptr,
    lse_ptr,
    gfeat_ptr,
    gproto_ptr,
    B,
    C,
    D,
    V,
    views_per_group,
    num_groups,
    groups_per_view,
    num_part_rows,
    NUM_ROW_PROGRAMS,
    stride_fb,
    stride_fv,
    stride_pc,
    stride_gb,
    stride_gv,
    stride_gc,
    scale2,
    gscale,
    PAIRS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DO: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Gradient rows, FlashAttention-shaped (no atomics).

    Programs [0, NUM_ROW_PROGRAMS) own BLOCK_M samples of one view v: for every group containing v
    (all views: the one group; ``PAIRS``: the pairs {v, w}) they add (dS_rt + dS_tr) z_t over the group's batch
    rows t and dS_rc p_c over the prototypes. The remaining programs own BLOCK_M prototypes and add
    dS_tc z_t over every group's batch rows. ``program_id(1)`` selects the D slice of width BLOCK_DO.
    The tiles hold p - [pos]/(k n) (|.| <= 1); the fp32 accumulator is scaled by gscale = coef/T at the end.
    """
    pid = tl.program_id(0)
    do = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
    do_mask = do < D
    rows_in_group = views_per_group * B
    acc = tl.zeros([BLOCK_M, BLOCK_DO], dtype=tl.float32)
    if pid < NUM_ROW_PROGRAMS:
        blocks_per_view = tl.cdiv(B, BLOCK_M)
        v = pid // blocks_per_view
        i = (pid - v * blocks_per_view) * BLOCK_M + tl.arange(0, BLOCK_M)
        imask = i < B
        row_ptrs = feat_ptr + i.to(tl.int64) * stride_fb + v * stride_fv
        y_r = tl.load(labels_ptr + i, mask=imask, other=-2)
        kn_r = views_per_group * tl.load(n_ptr + y_r, mask=imask, other=1.0)
        same_bias_r = -tl.log2(kn_r)
        other_bias_r = -tl.log2(kn_r + 1.0)
        inv_pos_r = 1.0 / kn_r
        for mi in range(groups_per_view):
            if not PAIRS:
                va = v
                vb = v
                r = v * B + i
                idx_r = r
            else:
                va = v
                vb = (v + 1 + mi) % V
                r = i
                idx_r = (v * V + vb) * B + i
            m_r = tl.load(lse_ptr + idx_r, mask=imask, other=0.0)
            l_r = tl.load(lse_ptr + num_part_rows + idx_r, mask=imask, other=0.0)
            for t0 in range(0, rows_in_group, BLOCK_N):
                s, t, tmask, col_ptrs, y_t, kn_t, m_t, l_t = _key_tile(
                    row_ptrs, imask, t0, rows_in_group, B, V, va, vb, feat_ptr, stride_fb, stride_fv,
                    labels_ptr, n_ptr, views_per_group, lse_ptr, num_part_rows, D, BLOCK_M, BLOCK_N, BLOCK_D,
                    PAIRS, PRECISION,
                )  # fmt: skip
                valid = imask[:, None] & tmask[None, :] & (r[:, None] != t[None, :])
                same = y_r[:, None] == y_t[None, :]
                # anchor r, key t
                x1 = _logits(s, scale2, tl.where(same, same_bias_r[:, None], -tl.log2(kn_t + 1.0)[None, :]))
                # invalid lanes (padding, the diagonal) get exp2(-inf) = 0 instead of a possible overflow
                g1 = tl.exp2(tl.where(valid, (x1 - m_r[:, None]) - l_r[:, None], float("-inf")))
                g1 -= tl.where(same, inv_pos_r[:, None], 0.0)
                # anchor t, key r
                x2 = _logits(s, scale2, tl.where(same, -tl.log2(kn_t)[None, :], other_bias_r[:, None]))
                g2 = tl.exp2(tl.where(valid, (x2 - m_t[None, :]) - l_t[None, :], float("-inf")))
                g2 -= tl.where(same, (1.0 / kn_t)[None, :], 0.0)
                gt = tl.where(valid, g1 + g2, 0.0)
                kt = tl.load(
                    col_ptrs[:, None] + do[None, :], mask=tmask[:, None] & do_mask[None, :], other=0.0
                )
                acc = _mma(gt.to(kt.dtype), kt, acc, PRECISION)
            for c0 in range(0, C, BLOCK_N):
                c = c0 + tl.arange(0, BLOCK_N)
                cmask = c < C
                col_ptrs = proto_ptr + c.to(tl.int64) * stride_pc
                n_c = tl.load(n_ptr + c, mask=cmask, other=0.0)
                s = _sim_tile(row_ptrs, imask, col_ptrs, cmask, D, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
                valid = imask[:, None] & cmask[None, :]
                same = y_r[:, None] == c[None, :]
                x1 = _logits(
                    s,
                    scale2,
                    tl.where(same, same_bias_r[:, None], -tl.log2(views_per_group * n_c + 1.0)[None, :]),
                )
                g1 = tl.exp2(tl.where(valid, (x1 - m_r[:, None]) - l_r[:, None], float("-inf")))
                gt = tl.where(valid, g1 - tl.where(same, inv_pos_r[:, None], 0.0), 0.0)
                pt = tl.load(
                    col_ptrs[:, None] + do[None, :], mask=cmask[:, None] & do_mask[None, :], other=0.0
                )
                acc = _mma(gt.to(pt.dtype), pt, acc, PRECISION)
        out = gfeat_ptr + i.to(tl.int64)[:, None] * stride_gb + v * stride_gv + do[None, :]
        tl.store(out, (acc * gscale).to(gfeat_ptr.dtype.element_ty), mask=imask[:, None] & do_mask[None, :])
    else:
        c = (pid - NUM_ROW_PROGRAMS) * BLOCK_M + tl.arange(0, BLOCK_M)
        cmask = c < C
        proto_rows = proto_ptr + c.to(tl.int64) * stride_pc
        other_bias_c = -tl.log2(views_per_group * tl.load(n_ptr + c, mask=cmask, other=0.0) + 1.0)
        for g in range(num_groups):
            va, vb = _pair_views(g, V)
            for t0 in range(0, rows_in_group, BLOCK_N):
                s, t, tmask, col_ptrs, y_t, kn_t, m_t, l_t = _key_tile(
                    proto_rows, cmask, t0, rows_in_group, B, V, va, vb, feat_ptr, stride_fb, stride_fv,
                    labels_ptr, n_ptr, views_per_group, lse_ptr, num_part_rows, D, BLOCK_M, BLOCK_N, BLOCK_D,
                    PAIRS, PRECISION,
                )  # fmt: skip
                valid = cmask[:, None] & tmask[None, :]
                same = c[:, None] == y_t[None, :]
                x = _logits(s, scale2, tl.where(same, -tl.log2(kn_t)[None, :], other_bias_c[:, None]))
                gt = tl.exp2(tl.where(valid, (x - m_t[None, :]) - l_t[None, :], float("-inf")))
                gt = tl.where(valid, gt - tl.where(same, (1.0 / kn_t)[None, :], 0.0), 0.0)
                zt = tl.load(
                    col_ptrs[:, None] + do[None, :], mask=tmask[:, None] & do_mask[None, :], other=0.0
                )
                acc = _mma(gt.to(zt.dtype), zt, acc, PRECISION)
        out = gproto_ptr + c.to(tl.int64)[:, None] * stride_gc + do[None, :]
        tl.store(out, (acc * gscale).to(gproto_ptr.dtype.element_ty), mask=cmask[:, None] & do_mask[None, :])
