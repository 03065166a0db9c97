"""Device helpers of the balanced contrastive loss kernels (:mod:`.bamco_loss_kernels`): view pairs, row
indexing, class counts, the fp32-accumulating dot, similarity tiles, the logits and the online log-sum-exp.
"""

import triton
import triton.language as tl

from ._probe import triton_interpreted


@triton.jit
def _pair_views(g, V):
    """Views (a, b) of pair group g (``PAIRS``): g = (d - 1) V + a, b = (a + d) mod V.

    For odd V, d runs over 1..(V-1)/2 and a over 0..V-1; for even V the last offset d = V/2 only takes
    a < V/2. This enumerates every unordered pair exactly once, V (V - 1) / 2 groups in all.
    """
    a = g % V
    b = (a + g // V + 1) % V
    return a, b


@triton.jit
def _group_rows(t, B, V, va, vb, PAIRS: tl.constexpr):
    """Group-local row indices t = slot * B + i -> (view, sample i, index into the per-row buffers).

    All views (not ``PAIRS``): slot = view and the buffer index is t itself (V*B rows). ``PAIRS``: slot 0 is view ``va``,
    slot 1 is view ``vb``; the buffer row of (view, other view, i) is (view * V + other) * B + i.
    """
    slot = t // B
    i = t - slot * B
    if not PAIRS:
        view = slot
        idx = t
    else:
        view = tl.where(slot == 0, va, vb)
        other = tl.where(slot == 0, vb, va)
        idx = (view * V + other) * B + i
    return view, i, idx


@triton.jit
def _key_tile(
    a_rows,
    a_mask,
    t0,
    rows_in_group,
    B,
    V,
    va,
    vb,
    feat_ptr,
    stride_fb,
    stride_fv,
    labels_ptr,
    n_ptr,
    views_per_group,
    lse_ptr,
    num_part_rows,
    D,
    BLOCK_A: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PAIRS: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One tile of a group's batch rows as keys of the gradient, against the anchor rows ``a_rows``
    (``a_mask``): the similarities s (BLOCK_A, BLOCK_N) and, per key, its group-local index t, mask, feature
    row pointer, label, k n_y, and the forward's row maximum m and log2 sum of exponentials l (log2
    domain; see ``_finish_kernel``)."""
    t = t0 + tl.arange(0, BLOCK_N)
    tmask = t < rows_in_group
    view_t, i_t, idx_t = _group_rows(t, B, V, va, vb, PAIRS)
    col_ptrs = feat_ptr + i_t.to(tl.int64) * stride_fb + view_t * stride_fv
    y_t = tl.load(labels_ptr + i_t, mask=tmask, other=-1)
    kn_t = views_per_group * tl.load(n_ptr + y_t, mask=tmask, other=1.0)
    m_t = tl.load(lse_ptr + idx_t, mask=tmask, other=0.0)
    l_t = tl.load(lse_ptr + num_part_rows + idx_t, mask=tmask, other=0.0)
    s = _sim_tile(a_rows, a_mask, col_ptrs, tmask, D, BLOCK_A, BLOCK_N, BLOCK_D, PRECISION)
    return s, t, tmask, col_ptrs, y_t, kn_t, m_t, l_t


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


# Under TRITON_INTERPRET=1 the dot is written out as fp32 products summed over k in one fixed order. The
# interpreter's ``tl.dot`` would read bfloat16 operands as raw bits (numpy has no bfloat16), and its BLAS
# product rounds an element differently depending on where it sits in the tile, so a similarity recomputed
# by the gradient kernel in another tile shape would not be bit-identical to the forward's (at T = 0.002 one
# ulp of s moves an exponent by 4e-5). A product of two bf16 or fp16 values is exact in fp32, so this is the
# tensor-core result (fp32 accumulation) up to the order of the sums. On a GPU the flag is False and the
# branch is compiled away.
_INTERPRETED = triton_interpreted()
_WIDEN_DOT = tl.constexpr(_INTERPRETED)


@triton.jit
def _mma(a, b, acc, PRECISION: tl.constexpr):
    """``acc + a @ b`` (a (M, K), b (K, N)) with fp32 accumulation (``input_precision`` applies to fp32
    operands)."""
    if _WIDEN_DOT:
        return acc + tl.sum(a.to(tl.float32)[:, :, None] * b.to(tl.float32)[None, :, :], axis=1)
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
def _logits(s, scale2, bias):
    """x = s log2(e)/T + bias (log2 domain); the forward and gradient kernels call this one helper, so the
    row maximum stored by the forward is bit-identical to the x the gradient recomputes for it."""
    return s * scale2 + bias


@triton.jit
def _online_update(s, valid, same, same_bias, other_bias, scale2, m, sumexp, pos):
    """One key tile of the online log-sum-exp (log2 domain) and of the positive similarity sum."""
    x = tl.where(
        valid, _logits(s, scale2, tl.where(same, same_bias[:, None], other_bias[None, :])), float("-inf")
    )
    m_new = tl.maximum(m, tl.max(x, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    sumexp = sumexp * tl.exp2(m - m_safe) + tl.sum(tl.exp2(x - m_safe[:, None]), axis=1)
    pos += tl.sum(tl.where(valid & same, s, 0.0), axis=1)
    return m_new, sumexp, pos
