"""Triton (CUDA) backend of the balanced multimodal contrastive loss: ``bamco_fast::bamco_loss_triton``.

Math (same contract as the C++ op ``bamco_fast::bamco_loss``). ``features`` (B, V, D) hold V views of
B samples, ``prototypes`` (C, D) one key per class, ``labels`` (B,) int64. A group is a set of k views:
mode 0 has one group of all V views, mode 1 has one group per unordered view pair (k = 2). Inside a group
the anchors are the k*B rows of its views and the keys are those rows followed by all C prototypes. With
``n_c`` the batch count of class c, ``cnt[c] = k n_c + 1`` and ``s_ij = z_i . k_j``, anchor i of class y
has the loss

    l_i = log sum_{j != i} exp(s_ij / T + b_ij) - 1 / (k n_y) * sum_{j in P(i)} s_ij / T,
    b_ij = -log(cnt[y_j] - [y_j == y]),

P(i) = the other keys of class y in the group (own prototype included, |P(i)| = k n_y). The loss is the
mean over groups of the mean over the group's anchors. With ``coef = 1 / (num_groups * k * B)`` and the
biased softmax p_ij, the gradient w.r.t. s_ij is ``G_ij = coef / T * (p_ij - [j in P(i)] / (k n_y))``;
``dZ = G K`` (anchor side) and ``dK = G^T Z`` (key side). A batch row receives both sides in every
group that contains its view; a prototype receives the key side only.

Kernels (the (k*B) x (k*B + C) similarity matrix never exists; extra memory is O(V^2 B + C) floats):

* ``_count_kernel`` (only when B > ``INLINE_COUNT_MAX_BATCH``): ``n_c`` for every class. For smaller
  batches the counts are computed inside the other kernels by comparing against all labels.
* ``_fwd_kernel``, grid (row blocks, groups, key splits): each program streams the key tiles of its
  split (``tl.dot`` of BLOCK_D-wide chunks, fp32 accumulation), forms ``x = s * log2(e)/T + b * log2(e)``
  with the bias from ``cnt`` lookups and a label comparison in registers, masks the self column by index
  and keeps an online row maximum, sum of ``exp2`` and the sum of positive similarities. It writes the
  partial (m, sumexp, pos) of every row and split. Splitting the keys fills the GPU when the batch is small
  (B = 48 gives only one or two row blocks per group).
* ``_finish_kernel``, one program: merges the splits into the exact log-sum-exp of every row (stored in
  the log2 domain for the gradient), reduces the loss in a fixed order (deterministic) and, when the
  counts were computed inline, writes the ``n_c`` table for the gradient kernel.
* ``_grad_kernel`` (only when ``compute_grad``), FlashAttention-shaped, no atomics: a program owns a
  block of rows of one view (or a block of prototypes) and a slice of D, streams the keys of every group
  that contains the rows, recomputes the similarity tiles and accumulates its gradient rows in fp32
  registers, written once. Anchor-anchor tiles are symmetric (s_ij = s_ji), so one similarity tile
  gives both the anchor side G_rt and the key side G_tr of the owned rows:
  ``dz_r += sum_t (G_rt + G_tr) z_t`` (t over the group's batch rows) ``+ sum_c G_rc p_c``.
  Prototype programs compute ``dp_c = sum_t G_tc z_t``.

Launches: 2 without gradient and 3 with gradient for B <= ``INLINE_COUNT_MAX_BATCH`` (one more for the
count kernel above). FLOPs for forward plus gradient: ``2 A M D + n_do (2 A^2 D + 4 A C D) + 2 A^2 D
+ 4 A C D`` per group (A = k B anchors, M = A + C keys, n_do = ceil(D / BLOCK_DO) D slices of
the gradient, each recomputing its similarity tiles); with n_do = 1 that is ``2 A M D + 4 A^2 D
+ 8 A C D``, against ``8 A M D`` for a scheme without the symmetry.

Tiles (``launch_config``): on GPU the forward uses 128 x 64 tiles with 32-wide D chunks and the
gradient 64 x 32 tiles with 256-wide D slices, picked from sm_90 ptxas resource usage and not yet tuned
by timing. ``python -m bamco_fast.kernels.aot`` compiles these launches for sm_90 or sm_80 without a GPU
and prints registers, spills, shared memory and the dot instruction of each kernel (sm_90, Triton 3.8:
no spills in the forward and gradient kernels in any dtype; wgmma for 16-bit inputs). The key splits
target two programs per SM. Under the interpreter (CPU tensors) the tiles are 32 x 32 and there is one
split, unless ``PLAN_FOR_SMS`` asks for the launches of a card (tests run that plan in the interpreter).

Precision: fp32, fp16 and bf16 inputs; similarities, softmax statistics and gradient accumulators are
fp32. For fp32 inputs ``tl.dot`` runs with ``input_precision="ieee"`` (full fp32, matching the fp32
tolerances of :data:`bamco_fast.ops.bamco_loss.TOLERANCES`); ``TUNING["fp32_precision"] = "tf32"``
trades that for tensor-core speed (about 1e-3 relative error on the logits). For 16-bit inputs the
gradient tile ``p - [pos]/(k n)`` (magnitude <= 1, the coefficient coef/T is applied to the fp32
accumulator afterwards) is rounded to the input dtype before the second product, as in FlashAttention.
Measured under the interpreter over the test shapes in bf16, that rounding and the bf16 gradient outputs
give errors of at most ~1% of the largest gradient entry (about half of each from the two roundings).
Under ``TRITON_INTERPRET=1`` the dots widen their operands to fp32 first (``_mma``), so the interpreter
runs fp16 and bf16 with the tensor-core products but cannot emulate TF32. The log-sum-exp uses an online
maximum, never a fixed shift, so any T > 0 is stable.
"""

import contextlib
import math
from collections.abc import Iterator

import torch
import triton
import triton.language as tl
from torch._subclasses.fake_tensor import is_fake

from bamco_fast.ops._backends import triton_interpreted

OP = "bamco_fast::bamco_loss_triton"

# Tuning knobs; ``None`` means "choose from the shapes and the device". Tests force several key splits
# and small tiles through this dict to exercise the split-KV path at small shapes.
TUNING: dict[str, object] = {
    "num_splits": None,  # key splits of the forward kernel
    "block_m": None,  # anchor rows per forward program
    "block_n": None,  # key rows per tile (forward)
    "block_m_grad": None,  # rows (samples or prototypes) per gradient program
    "block_n_grad": None,  # key rows per tile (gradient)
    "block_d": None,  # D chunk of the similarity products
    "block_do": None,  # D slice owned by one gradient program
    "num_warps": None,  # warps per forward program
    "num_warps_grad": None,  # warps per gradient program
    "num_stages": None,  # software-pipelining stages of the key loops
    "fp32_precision": "ieee",  # "ieee" or "tf32" for fp32 inputs
    "inline_counts": None,  # True/False forces the in-kernel class counts on/off
}


@contextlib.contextmanager
def tuned(**overrides: object) -> Iterator[dict[str, object]]:
    """Apply ``TUNING`` overrides inside the block (restored on exit); unknown keys raise ``KeyError``.

    Example: ``with tuned(block_do=512): loss = bamco_loss(f, y, p, backend="triton")``.
    """
    unknown = sorted(set(overrides) - set(TUNING))
    if unknown:
        raise KeyError(f"tuned: {unknown} are not TUNING keys; expected some of {sorted(TUNING)}")
    saved = dict(TUNING)
    TUNING.update(overrides)
    try:
        yield TUNING
    finally:
        TUNING.clear()
        TUNING.update(saved)


# Batches up to this size get their class counts inside the kernels (saves the count launch).
INLINE_COUNT_MAX_BATCH = 512

_LN2 = math.log(2.0)
_LOG2E = 1.0 / _LN2


# --------------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------------
@triton.jit
def _pair_views(g, V):
    """Views (a, b) of pair group g (mode 1): g = (d - 1) V + a, b = (a + d) mod V.

    For odd V, d runs over 1..(V-1)/2 and a over 0..V-1; for even V the last offset d = V/2 only takes
    a < V/2. This enumerates every unordered pair exactly once, V (V - 1) / 2 groups in all.
    """
    a = g % V
    b = (a + g // V + 1) % V
    return a, b


@triton.jit
def _group_rows(t, B, V, va, vb, MODE: tl.constexpr):
    """Group-local row indices t = slot * B + i -> (view, sample i, index into the per-row buffers).

    Mode 0: slot = view and the buffer index is t itself (V*B rows). Mode 1: slot 0 is view ``va``,
    slot 1 is view ``vb``; the buffer row of (view, other view, i) is (view * V + other) * B + i.
    """
    slot = t // B
    i = t - slot * B
    if MODE == 0:
        view = slot
        idx = t
    else:
        view = tl.where(slot == 0, va, vb)
        other = tl.where(slot == 0, vb, va)
        idx = (view * V + other) * B + i
    return view, i, idx


@triton.jit
def _class_counts(y, labels_ptr, B, SIZE: tl.constexpr, BLOCK_L: tl.constexpr):
    """n_c for a vector of class ids ``y`` (SIZE,) by comparison against all B labels (float32)."""
    n = tl.zeros([SIZE], dtype=tl.float32)
    for l0 in range(0, B, BLOCK_L):
        offs = l0 + tl.arange(0, BLOCK_L)
        lab = tl.load(labels_ptr + offs, mask=offs < B, other=-1)
        n += tl.sum((y[:, None] == lab[None, :]).to(tl.float32), axis=1)
    return n


@triton.jit
def _counts_of(
    y, mask, labels_ptr, n_ptr, B, SIZE: tl.constexpr, BLOCK_L: tl.constexpr, INLINE: tl.constexpr
):
    """n_c for class ids ``y``: inline comparison or a lookup in the count table (1.0 where masked)."""
    if INLINE:
        n = _class_counts(y, labels_ptr, B, SIZE, BLOCK_L)
    else:
        n = tl.load(n_ptr + y, mask=mask, other=1.0)
    return tl.where(mask, n, 1.0)


# The interpreter's ``tl.dot`` reads bfloat16 operands as raw bits (numpy has no bfloat16), so under
# TRITON_INTERPRET=1 the 16-bit operands are widened to fp32 first. A product of two bf16 or fp16 values is
# exact in fp32, so this is the tensor-core result (fp32 accumulation) up to the order of the sums. On a GPU
# the flag is False and the branch is compiled away.
_INTERPRETED = triton_interpreted()
_WIDEN_DOT = tl.constexpr(_INTERPRETED)


@triton.jit
def _mma(a, b, acc, PRECISION: tl.constexpr):
    """``acc + a @ b`` with fp32 accumulation (``input_precision`` applies to fp32 operands)."""
    if _WIDEN_DOT:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc=acc, input_precision="ieee")
    return tl.dot(a, b, acc=acc, input_precision=PRECISION)


@triton.jit
def _sim_tile(
    a_rows,
    a_mask,
    b_rows,
    b_mask,
    D,
    BLOCK_A: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """s = A B^T (BLOCK_A, BLOCK_B) in fp32 for row pointer vectors ``a_rows`` / ``b_rows`` (unit stride)."""
    s = tl.zeros([BLOCK_A, BLOCK_B], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        dmask = offs_d < D
        a = tl.load(a_rows[:, None] + offs_d[None, :], mask=a_mask[:, None] & dmask[None, :], other=0.0)
        b = tl.load(b_rows[:, None] + offs_d[None, :], mask=b_mask[:, None] & dmask[None, :], other=0.0)
        s = _mma(a, tl.trans(b), s, PRECISION)
    return s


@triton.jit
def _online_update(s, valid, same, same_bias, other_bias, scale2, m, sumexp, pos):
    """One key tile of the online log-sum-exp (log2 domain) and of the positive similarity sum."""
    x = s * scale2 + tl.where(same, same_bias[:, None], other_bias[None, :])
    x = tl.where(valid, x, float("-inf"))
    m_new = tl.maximum(m, tl.max(x, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    sumexp = sumexp * tl.exp2(m - m_safe) + tl.sum(tl.exp2(x - m_safe[:, None]), axis=1)
    pos += tl.sum(tl.where(valid & same, s, 0.0), axis=1)
    return m_new, sumexp, pos


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------
@triton.jit
def _count_kernel(labels_ptr, n_ptr, B, C, BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """n_ptr[c] = number of labels equal to c (float32), one program per BLOCK_C classes."""
    cls = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = _class_counts(cls, labels_ptr, B, BLOCK_C, BLOCK_L)
    tl.store(n_ptr + cls, n, mask=cls < C)


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
    K,
    NS,
    NR,
    cols_per_split,
    stride_fb,
    stride_fv,
    stride_pc,
    scale2,
    MODE: tl.constexpr,
    INLINE_COUNTS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Partial (m, sumexp, pos) of BLOCK_M anchors of group ``program_id(1)`` over key split ``program_id(2)``.

    Key columns of a group: its k*B batch rows (padded to a multiple of BLOCK_N), then the C prototypes.
    part_ptr is (3, NS, NR) float32: running max of x (log2 domain), sum of exp2(x - m), sum of the
    positive similarities s_ij (unscaled).
    """
    pid_m = tl.program_id(0)
    g = tl.program_id(1)
    split = tl.program_id(2)
    KB = K * B
    va, vb = _pair_views(g, V)

    r = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = r < KB
    view_r, i_r, idx_r = _group_rows(r, B, V, va, vb, MODE)
    row_ptrs = feat_ptr + i_r.to(tl.int64) * stride_fb + view_r * stride_fv
    y_r = tl.load(labels_ptr + i_r, mask=rmask, other=-2)
    n_r = _counts_of(y_r, rmask, labels_ptr, n_ptr, B, BLOCK_M, BLOCK_L, INLINE_COUNTS)
    same_bias = -tl.log2(K * n_r)

    m = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    sumexp = tl.zeros([BLOCK_M], dtype=tl.float32)
    pos = tl.zeros([BLOCK_M], dtype=tl.float32)

    kb_pad = tl.cdiv(KB, BLOCK_N) * BLOCK_N
    c_lo = split * cols_per_split
    c_hi = tl.minimum(c_lo + cols_per_split, kb_pad + C)
    # Batch-row keys of the group.
    for t0 in range(c_lo, tl.minimum(c_hi, kb_pad), BLOCK_N):
        t = t0 + tl.arange(0, BLOCK_N)
        tmask = t < KB
        view_t, i_t, _ = _group_rows(t, B, V, va, vb, MODE)
        col_ptrs = feat_ptr + i_t.to(tl.int64) * stride_fb + view_t * stride_fv
        y_t = tl.load(labels_ptr + i_t, mask=tmask, other=-1)
        n_t = _counts_of(y_t, tmask, labels_ptr, n_ptr, B, BLOCK_N, BLOCK_L, INLINE_COUNTS)
        s = _sim_tile(row_ptrs, rmask, col_ptrs, tmask, D, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
        valid = rmask[:, None] & tmask[None, :] & (r[:, None] != t[None, :])
        same = y_r[:, None] == y_t[None, :]
        m, sumexp, pos = _online_update(
            s, valid, same, same_bias, -tl.log2(K * n_t + 1.0), scale2, m, sumexp, pos
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
            s, valid, same, same_bias, -tl.log2(K * n_c + 1.0), scale2, m, sumexp, pos
        )

    out = part_ptr + split * NR + idx_r
    tl.store(out, m, mask=rmask)
    tl.store(out + NS * NR, sumexp, mask=rmask)
    tl.store(out + 2 * NS * NR, pos, mask=rmask)


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
    K,
    G,
    NS,
    NR,
    inv_t,
    coef,
    MODE: tl.constexpr,
    INLINE_COUNTS: tl.constexpr,
    WRITE_COUNTS: tl.constexpr,
    BLOCK_F: tl.constexpr,
    BLOCK_L: tl.constexpr,
):
    """One program: merge the key splits, store lse (log2 domain) per row, write the loss.

    loss = coef * sum_rows (lse_r - pos_r / (T k n_y)), summed in a fixed order. With WRITE_COUNTS the
    count table n_ptr (C,) is filled too (the gradient kernel reads it).
    """
    KB = K * B
    total = tl.zeros([BLOCK_F], dtype=tl.float32)
    for g in range(G):
        va, vb = _pair_views(g, V)
        for r0 in range(0, KB, BLOCK_F):
            r = r0 + tl.arange(0, BLOCK_F)
            rmask = r < KB
            _, i_r, idx = _group_rows(r, B, V, va, vb, MODE)
            m = tl.full([BLOCK_F], float("-inf"), dtype=tl.float32)
            sumexp = tl.zeros([BLOCK_F], dtype=tl.float32)
            pos = tl.zeros([BLOCK_F], dtype=tl.float32)
            for split in range(NS):
                ptr = part_ptr + split * NR + idx
                m_s = tl.load(ptr, mask=rmask, other=float("-inf"))
                sumexp_s = tl.load(ptr + NS * NR, mask=rmask, other=0.0)
                pos += tl.load(ptr + 2 * NS * NR, mask=rmask, other=0.0)
                m_new = tl.maximum(m, m_s)
                m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
                sumexp = sumexp * tl.exp2(m - m_safe) + sumexp_s * tl.exp2(m_s - m_safe)
                m = m_new
            lse2 = tl.where(rmask, m + tl.log2(tl.where(rmask, sumexp, 1.0)), 0.0)
            tl.store(lse_ptr + idx, lse2, mask=rmask)
            y = tl.load(labels_ptr + i_r, mask=rmask, other=-2)
            n = _counts_of(y, rmask, labels_ptr, n_ptr, B, BLOCK_F, BLOCK_L, INLINE_COUNTS)
            row = lse2 * 0.6931471805599453 - pos * inv_t / (K * n)
            total += tl.where(rmask, row, 0.0)
    tl.store(loss_ptr, (tl.sum(total, axis=0) * coef).to(loss_ptr.dtype.element_ty))
    if WRITE_COUNTS:
        for c0 in range(0, C, BLOCK_F):
            c = c0 + tl.arange(0, BLOCK_F)
            tl.store(n_ptr + c, _class_counts(c, labels_ptr, B, BLOCK_F, BLOCK_L), mask=c < C)


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
    K,
    G,
    NMEMB,
    NUM_ROW_PROGRAMS,
    stride_fb,
    stride_fv,
    stride_pc,
    stride_gb,
    stride_gv,
    stride_gc,
    scale2,
    gscale,
    MODE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_DO: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Gradient rows, FlashAttention-shaped (no atomics).

    Programs [0, NUM_ROW_PROGRAMS) own BLOCK_M samples of one view v: for every group containing v
    (mode 0: the one group, mode 1: the pairs {v, w}) they add (G_rt + G_tr) z_t over the group's batch
    rows t and G_rc p_c over the prototypes. The remaining programs own BLOCK_M prototypes and add
    G_tc z_t over every group's batch rows. ``program_id(1)`` selects the D slice of width BLOCK_DO.
    The tiles hold p - [pos]/(k n) (|.| <= 1); the fp32 accumulator is scaled by gscale = coef/T at the end.
    """
    pid = tl.program_id(0)
    do = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
    do_mask = do < D
    KB = K * B
    acc = tl.zeros([BLOCK_M, BLOCK_DO], dtype=tl.float32)
    if pid < NUM_ROW_PROGRAMS:
        blocks_per_view = tl.cdiv(B, BLOCK_M)
        v = pid // blocks_per_view
        i = (pid - v * blocks_per_view) * BLOCK_M + tl.arange(0, BLOCK_M)
        imask = i < B
        row_ptrs = feat_ptr + i.to(tl.int64) * stride_fb + v * stride_fv
        y_r = tl.load(labels_ptr + i, mask=imask, other=-2)
        kn_r = K * tl.load(n_ptr + y_r, mask=imask, other=1.0)
        same_bias_r = -tl.log2(kn_r)
        other_bias_r = -tl.log2(kn_r + 1.0)
        inv_pos_r = 1.0 / kn_r
        for mi in range(NMEMB):
            if MODE == 0:
                va = v
                vb = v
                r = v * B + i
                idx_r = r
            else:
                va = v
                vb = (v + 1 + mi) % V
                r = i
                idx_r = (v * V + vb) * B + i
            lse_r = tl.load(lse_ptr + idx_r, mask=imask, other=0.0)
            for t0 in range(0, KB, BLOCK_N):
                t = t0 + tl.arange(0, BLOCK_N)
                tmask = t < KB
                view_t, i_t, idx_t = _group_rows(t, B, V, va, vb, MODE)
                col_ptrs = feat_ptr + i_t.to(tl.int64) * stride_fb + view_t * stride_fv
                y_t = tl.load(labels_ptr + i_t, mask=tmask, other=-1)
                kn_t = K * tl.load(n_ptr + y_t, mask=tmask, other=1.0)
                lse_t = tl.load(lse_ptr + idx_t, mask=tmask, other=0.0)
                s = _sim_tile(row_ptrs, imask, col_ptrs, tmask, D, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
                valid = imask[:, None] & tmask[None, :] & (r[:, None] != t[None, :])
                same = y_r[:, None] == y_t[None, :]
                sx = s * scale2
                # anchor r, key t
                x1 = sx + tl.where(same, same_bias_r[:, None], -tl.log2(kn_t + 1.0)[None, :])
                # invalid lanes (padding, the diagonal) get exp2(-inf) = 0 instead of a possible overflow
                g1 = tl.exp2(tl.where(valid, x1 - lse_r[:, None], float("-inf")))
                g1 -= tl.where(same, inv_pos_r[:, None], 0.0)
                # anchor t, key r
                x2 = sx + tl.where(same, -tl.log2(kn_t)[None, :], other_bias_r[:, None])
                g2 = tl.exp2(tl.where(valid, x2 - lse_t[None, :], float("-inf")))
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
                x1 = s * scale2 + tl.where(same, same_bias_r[:, None], -tl.log2(K * n_c + 1.0)[None, :])
                g1 = tl.exp2(tl.where(valid, x1 - lse_r[:, None], float("-inf")))
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
        other_bias_c = -tl.log2(K * tl.load(n_ptr + c, mask=cmask, other=0.0) + 1.0)
        for g in range(G):
            va, vb = _pair_views(g, V)
            for t0 in range(0, KB, BLOCK_N):
                t = t0 + tl.arange(0, BLOCK_N)
                tmask = t < KB
                view_t, i_t, idx_t = _group_rows(t, B, V, va, vb, MODE)
                col_ptrs = feat_ptr + i_t.to(tl.int64) * stride_fb + view_t * stride_fv
                y_t = tl.load(labels_ptr + i_t, mask=tmask, other=-1)
                kn_t = K * tl.load(n_ptr + y_t, mask=tmask, other=1.0)
                lse_t = tl.load(lse_ptr + idx_t, mask=tmask, other=0.0)
                s = _sim_tile(proto_rows, cmask, col_ptrs, tmask, D, BLOCK_M, BLOCK_N, BLOCK_D, PRECISION)
                valid = cmask[:, None] & tmask[None, :]
                same = c[:, None] == y_t[None, :]
                x = s * scale2 + tl.where(same, -tl.log2(kn_t)[None, :], other_bias_c[:, None])
                gt = tl.exp2(tl.where(valid, x - lse_t[None, :], float("-inf")))
                gt = tl.where(valid, gt - tl.where(same, (1.0 / kn_t)[None, :], 0.0), 0.0)
                zt = tl.load(
                    col_ptrs[:, None] + do[None, :], mask=tmask[:, None] & do_mask[None, :], other=0.0
                )
                acc = _mma(gt.to(zt.dtype), zt, acc, PRECISION)
        out = gproto_ptr + c.to(tl.int64)[:, None] * stride_gc + do[None, :]
        tl.store(out, (acc * gscale).to(gproto_ptr.dtype.element_ty), mask=cmask[:, None] & do_mask[None, :])


# --------------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------------
def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


# SM count of a card to plan launches for while CPU tensors stand in for CUDA ones (set by
# :func:`bamco_fast.kernels.aot.record_launches`, which compiles the planned launches without a GPU).
PLAN_FOR_SMS: int | None = None


def _gpu_plan(device: torch.device) -> bool:
    """True when the launches are planned for a GPU (CUDA tensors, or the ahead-of-time planner)."""
    return device.type == "cuda" or PLAN_FOR_SMS is not None


def _num_sms(device: torch.device) -> int:
    if PLAN_FOR_SMS is not None:
        return PLAN_FOR_SMS
    if device.type != "cuda":
        return 4
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


_SM_CACHE: dict[int, int] = {}


def _sm_count(index: int) -> int:
    if index not in _SM_CACHE:
        _SM_CACHE[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_CACHE[index]


def launch_config(
    device: torch.device,
    dtype: torch.dtype,
    batch: int,
    group_size: int,
    num_groups: int,
    num_classes: int,
    dim: int,
) -> dict[str, object]:
    """Tile sizes, key splits and warps for one call (``TUNING`` entries that are not None win).

    On CPU tensors (Triton interpreter) the tiles are large and there is one split, because the
    interpreter's cost grows with the number of programs and loop iterations.
    """
    interpreted = not _gpu_plan(device)
    d_pow2 = max(16, _next_pow2(dim))
    cfg: dict[str, object]
    if interpreted:
        cfg = {
            "block_m": 32,
            "block_n": 32,
            "block_m_grad": 32,
            "block_n_grad": 32,
            "block_d": min(64, d_pow2),
            "block_do": d_pow2,
            "num_warps": 4,
            "num_warps_grad": 4,
            "num_stages": 1,
        }
    else:
        # Chosen from ptxas resource usage for sm_90 (see ``python -m bamco_fast.kernels.aot``: no spills,
        # wgmma-sized row blocks); not yet tuned by timing.
        cfg = {
            "block_m": 128,
            "block_n": 64,
            "block_m_grad": 64,
            "block_n_grad": 32,
            "block_d": 32,
            "block_do": min(d_pow2, 256),
            "num_warps": 8,
            "num_warps_grad": 8,
            "num_stages": 2,
        }
    for key in (
        "block_m",
        "block_n",
        "block_m_grad",
        "block_n_grad",
        "block_d",
        "block_do",
        "num_warps",
        "num_warps_grad",
        "num_stages",
    ):
        if TUNING.get(key) is not None:
            cfg[key] = int(TUNING[key])  # type: ignore[arg-type]
    rows = group_size * batch
    row_blocks = num_groups * triton.cdiv(rows, cfg["block_m"])
    col_tiles = triton.cdiv(rows, cfg["block_n"]) + triton.cdiv(num_classes, cfg["block_n"])
    if TUNING.get("num_splits") is not None:
        splits = int(TUNING["num_splits"])  # type: ignore[arg-type]
    elif interpreted:
        splits = 1
    else:
        splits = triton.cdiv(2 * _num_sms(device), row_blocks)
    cfg["num_splits"] = max(1, min(splits, col_tiles))
    cfg["cols_per_split"] = triton.cdiv(col_tiles, cfg["num_splits"]) * cfg["block_n"]
    # Recompute the split count from the rounded split width so no split is empty.
    cfg["num_splits"] = triton.cdiv(col_tiles * cfg["block_n"], cfg["cols_per_split"])
    inline = TUNING.get("inline_counts")
    cfg["inline_counts"] = bool(batch <= INLINE_COUNT_MAX_BATCH) if inline is None else bool(inline)
    prec = TUNING.get("fp32_precision", "ieee")
    cfg["precision"] = prec if dtype == torch.float32 else "tf32"
    return cfg


def _launch(kernel, grid: tuple[int, ...], *args, **kwargs) -> None:
    """Launch through ``torch.library.wrap_triton`` (traceable by ``torch.compile`` / ``make_fx``).

    Under ``TRITON_INTERPRET=1`` ``wrap_triton`` hands back the plain interpreted kernel, which cannot run
    on fake tensors; when the op is traced with fake tensors (``register_fake`` semantics, ``opcheck``)
    the launch is skipped, since a launch has no effect on fake outputs beyond their allocation.
    """
    wrapped = torch.library.wrap_triton(kernel)
    if wrapped is kernel and any(isinstance(a, torch.Tensor) and is_fake(a) for a in args):
        return
    wrapped[grid](*args, **kwargs)


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
        mode: 0 = one group of all V views, 1 = mean over the unordered view pairs.
        compute_grad: also return d loss / d features and d loss / d prototypes.

    Returns:
        (loss, grad_features, grad_prototypes): loss is 0-dim in the features dtype; the gradients are
        (B, V, D) and (C, D) in the features dtype, or empty (0,) tensors when not ``compute_grad``.
    """
    if features.dim() != 3 or prototypes.dim() != 2 or labels.dim() != 1:
        raise ValueError(
            f"{OP}: expected features (B, V, D), labels (B,), prototypes (C, D); got "
            f"{tuple(features.shape)}, {tuple(labels.shape)}, {tuple(prototypes.shape)}"
        )
    if mode not in (0, 1):
        raise ValueError(f"{OP}: mode must be 0 (all views) or 1 (view pairs), got {mode}")
    features = features.contiguous()
    prototypes = prototypes.contiguous()
    labels = labels.contiguous()
    batch, num_views, dim = features.shape
    num_classes = prototypes.shape[0]
    group_size = num_views if mode == 0 else 2
    num_groups = 1 if mode == 0 else num_views * (num_views - 1) // 2
    num_buffer_rows = num_views * batch if mode == 0 else num_views * num_views * batch
    device = features.device
    cfg = launch_config(device, features.dtype, batch, group_size, num_groups, num_classes, dim)
    inline = bool(cfg["inline_counts"])
    num_splits = int(cfg["num_splits"])
    f32 = torch.float32

    partials = torch.empty((3, num_splits, num_buffer_rows), dtype=f32, device=device)
    lse = torch.empty((num_buffer_rows,), dtype=f32, device=device)
    counts = torch.empty((num_classes,), dtype=f32, device=device)
    loss = torch.empty((), dtype=features.dtype, device=device)
    launch = {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}
    gpu = _gpu_plan(device)
    block_l = 128 if gpu else 64

    if not inline:
        block_c = 64
        _launch(
            _count_kernel,
            (triton.cdiv(num_classes, block_c),),
            labels,
            counts,
            batch,
            num_classes,
            BLOCK_C=block_c,
            BLOCK_L=block_l,
            num_warps=8 if gpu else 4,
        )
    scale2 = _LOG2E / float(temperature)
    grid = (triton.cdiv(group_size * batch, cfg["block_m"]), num_groups, num_splits)
    _launch(
        _fwd_kernel,
        grid,
        features,
        prototypes,
        labels,
        counts,
        partials,
        batch,
        num_classes,
        dim,
        num_views,
        group_size,
        num_splits,
        num_buffer_rows,
        cfg["cols_per_split"],
        features.stride(0),
        features.stride(1),
        prototypes.stride(0),
        scale2,
        MODE=mode,
        INLINE_COUNTS=inline,
        BLOCK_M=cfg["block_m"],
        BLOCK_N=cfg["block_n"],
        BLOCK_D=cfg["block_d"],
        BLOCK_L=block_l,
        PRECISION=cfg["precision"],
        **launch,
    )
    inv_t = 1.0 / float(temperature)
    coef = 1.0 / (num_groups * group_size * batch)
    _launch(
        _finish_kernel,
        (1,),
        partials,
        lse,
        loss,
        labels,
        counts,
        batch,
        num_classes,
        num_views,
        group_size,
        num_groups,
        num_splits,
        num_buffer_rows,
        inv_t,
        coef,
        MODE=mode,
        INLINE_COUNTS=inline,
        WRITE_COUNTS=inline and compute_grad,
        BLOCK_F=256,
        BLOCK_L=16 if gpu else block_l,
        num_warps=8 if gpu else 4,
    )
    if not compute_grad:
        return loss, features.new_empty((0,)), prototypes.new_empty((0,))

    grad_features = torch.empty_like(features)
    grad_prototypes = torch.empty_like(prototypes)
    block_m = cfg["block_m_grad"]
    row_programs = num_views * triton.cdiv(batch, block_m)
    grid = (row_programs + triton.cdiv(num_classes, block_m), triton.cdiv(dim, cfg["block_do"]))
    _launch(
        _grad_kernel,
        grid,
        features,
        prototypes,
        labels,
        counts,
        lse,
        grad_features,
        grad_prototypes,
        batch,
        num_classes,
        dim,
        num_views,
        group_size,
        num_groups,
        1 if mode == 0 else num_views - 1,
        row_programs,
        features.stride(0),
        features.stride(1),
        prototypes.stride(0),
        grad_features.stride(0),
        grad_features.stride(1),
        grad_prototypes.stride(0),
        scale2,
        coef * inv_t,
        MODE=mode,
        BLOCK_M=block_m,
        BLOCK_N=cfg["block_n_grad"],
        BLOCK_D=cfg["block_d"],
        BLOCK_DO=cfg["block_do"],
        PRECISION=cfg["precision"],
        num_warps=cfg["num_warps_grad"],
        num_stages=cfg["num_stages"],
    )
    return loss, grad_features, grad_prototypes


# On a GPU the op is a ``triton_op``: torch.compile sees through it to the kernels. Under the interpreter
# (TRITON_INTERPRET=1, CPU tensors) ``wrap_triton`` cannot be traced, so a traced copy of the body would
# have no kernel launches; there the op is opaque (``custom_op``) and compiled graphs call it as a whole.
# Its fake implementation is the body itself, whose launches are skipped on fake tensors.
if _INTERPRETED:
    bamco_loss_triton = torch.library.custom_op(OP, mutates_args=())(_bamco_loss_triton)
    bamco_loss_triton.register_fake(_bamco_loss_triton)
else:
    bamco_loss_triton = torch.library.triton_op(OP, mutates_args=())(_bamco_loss_triton)

_AUTOGRAD_REGISTERED = False


def registered_op(setup_context, backward):
    """Attach the autograd formula (once) and return ``torch.ops.bamco_fast.bamco_loss_triton.default``.

    Args:
        setup_context: ``(ctx, inputs, output) -> None``, saves what ``backward`` needs.
        backward: ``(ctx, grad_loss, grad_gf, grad_gp) -> grads of the six inputs``.
    """
    global _AUTOGRAD_REGISTERED
    if not _AUTOGRAD_REGISTERED:
        torch.library.register_autograd(OP, backward, setup_context=setup_context)
        _AUTOGRAD_REGISTERED = True
    return torch.ops.bamco_fast.bamco_loss_triton.default
