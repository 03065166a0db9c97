// CPU kernel of bamco_fast::bamco_loss: the balanced multimodal contrastive loss and its gradient.
//
// Notation. features (B, V, D) are stacked view-major into the anchors z_i (A = V*B rows); the keys are
// the anchors followed by the prototypes (M = A + C rows). For a group g of k views (mode 0: all V
// views; mode 1: one unordered pair of views), anchor i of class y in g sees the keys of g's views plus
// all prototypes, with class sizes cnt[c] = k*n_c + 1 and biases b_ij = -log(cnt[y_j] - [y_j == y_i]):
//
//   loss_i = log sum_{j != i} exp(s_ij / T + b_ij) - (1 / (k n_y)) sum_{j in P(i)} s_ij / T,
//
// P(i) = the other keys of class y in g (own prototype included), s_ij = z_i . key_j. The loss is the
// mean over groups of the mean over their k*B anchors. Gradient w.r.t. s_ij:
//   dS_ij = coef / T * (softmax_ij - [j in P(i)] / (k n_y)),     coef = 1 / (num_groups * k * B)
// so the anchors receive dS @ keys (anchor side) and the keys dS^T @ anchors (key side).
//
// Algorithm. Anchors are processed in chunks of chunk_rows rows. Per chunk one GEMM (BLAS, all threads)
// gives the chunk_rows x M similarities; a two-pass max / sum-exp per row and group (rows in parallel)
// gives the exact log-sum-exp (stable for any T > 0) and, when gradients are wanted, overwrites the row
// with dS; two more GEMMs add the chunk's anchor gradient dS @ keys and its key-side contribution
// dS^T @ anchors_chunk. chunk_rows is set by a 4 MiB budget but at least 256 rows (all 96 anchors at
// B = 48, 299 rows at B = 1024, 256 at B = 16384), so the GEMMs are big enough for BLAS to use every
// core. Keys are read in place (views of the features and the prototypes, no stacked copy). Extra
// memory: chunk_rows * (M + 2D) for the chunk plus the gradients, O((A + C) * D); the A x M matrix is
// never held beyond the chunk.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>


#include "cpu_isa.h"

#if defined(__GNUC__) && !defined(__clang__)
#define BAMCO_INLINE inline __attribute__((always_inline))
#else
#define BAMCO_INLINE inline
#endif

namespace bamco_fast {
namespace {

// exp(x) for x <= 0 in float, written so that the compiler vectorises it with any SIMD level: round to
// nearest with the 1.5 * 2^23 trick, Cody-Waite range reduction and a degree-6 polynomial (max relative
// error ~2 ulp); returns 0 below -87.
BAMCO_INLINE float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  const int32_t e = ((bits - 0x4B400000) + 127) << 23;
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  float scale;
  std::memcpy(&scale, &e, sizeof(scale));
  return p * scale;
}
BAMCO_INLINE double exp_nonpos(double x) { return std::exp(x); }

// Per-column data shared by all rows: label and -log(cnt[label]).
template <typename scalar_t>
struct Columns {
  const int32_t* label;
  const scalar_t* neg_log_cnt;
};

// One contiguous span [begin, end) of a row's columns (never containing the anchor itself).
struct Span {
  int64_t begin;
  int64_t end;
};

// Pass 1: the row maximum of s/T + bias over the spans.
template <typename scalar_t>
BAMCO_INLINE scalar_t spans_max(const scalar_t* s, const Columns<scalar_t>& col, const Span* spans, int nspans,
                          int64_t y, scalar_t inv_t, scalar_t same_bias) {
  const int32_t* __restrict lab = col.label;
  const scalar_t* __restrict nlc = col.neg_log_cnt;
  const int32_t y32 = static_cast<int32_t>(y);
  scalar_t m = -std::numeric_limits<scalar_t>::infinity();
  for (int q = 0; q < nspans; ++q) {
    const int64_t b = spans[q].begin, e = spans[q].end;
#pragma omp simd reduction(max : m)
    for (int64_t j = b; j < e; ++j) {
      const scalar_t v = s[j] * inv_t + (lab[j] == y32 ? same_bias : nlc[j]);
      m = v > m ? v : m;
    }
  }
  return m;
}

// Pass 2: writes exp(s/T + bias - m) to ex[j], returns the sum, and adds the positives' s to pos_sum.
template <typename scalar_t>
BAMCO_INLINE scalar_t spans_sumexp(const scalar_t* s, const Columns<scalar_t>& col, const Span* spans, int nspans,
                             int64_t y, scalar_t inv_t, scalar_t same_bias, scalar_t m, scalar_t* ex,
                             scalar_t& pos_sum) {
  const int32_t* __restrict lab = col.label;
  const scalar_t* __restrict nlc = col.neg_log_cnt;
  scalar_t* __restrict out = ex;
  const int32_t y32 = static_cast<int32_t>(y);
  scalar_t sum = 0, pos = 0;
  for (int q = 0; q < nspans; ++q) {
    const int64_t b = spans[q].begin, e = spans[q].end;
#pragma omp simd reduction(+ : sum, pos)
    for (int64_t j = b; j < e; ++j) {
      const bool same = lab[j] == y32;
      const scalar_t bias = same ? same_bias : nlc[j];
      const scalar_t v = exp_nonpos(s[j] * inv_t + bias - m);
      out[j] = v;
      sum += v;
      pos += same ? s[j] : scalar_t(0);
    }
  }
  pos_sum += pos;
  return sum;
}

// Pass 3: ds[j] (+)= c_soft * ex[j] - c_pos * [label_j == y] (overwrite when the row has one group).
template <typename scalar_t>
BAMCO_INLINE void spans_grad(const scalar_t* ex, const Columns<scalar_t>& col, const Span* spans, int nspans,
                       int64_t y, scalar_t c_soft, scalar_t c_pos, scalar_t* ds, bool overwrite) {
  const int32_t* __restrict lab = col.label;
  const scalar_t* __restrict e_in = ex;
  scalar_t* __restrict ds_out = ds;
  const int32_t y32 = static_cast<int32_t>(y);
  for (int q = 0; q < nspans; ++q) {
    const int64_t b = spans[q].begin, e = spans[q].end;
    if (overwrite) {
#pragma omp simd
      for (int64_t j = b; j < e; ++j) ds_out[j] = c_soft * e_in[j] - (lab[j] == y32 ? c_pos : scalar_t(0));
    } else {
#pragma omp simd
      for (int64_t j = b; j < e; ++j) ds_out[j] += c_soft * e_in[j] - (lab[j] == y32 ? c_pos : scalar_t(0));
    }
  }
}

// One anchor row within one group: returns the row loss (unscaled) and, if ds != nullptr, adds
// coef * dloss/ds (the row of dS) to ds. `ex` is scratch of length M.
template <typename scalar_t>
BAMCO_INLINE scalar_t row_group(const scalar_t* s, const Columns<scalar_t>& col, const Span* spans, int nspans, int64_t y,
                   int64_t num_pos, scalar_t inv_t, scalar_t coef, scalar_t* ex, scalar_t* ds,
                                bool overwrite) {
  const scalar_t same_bias = -std::log(static_cast<scalar_t>(num_pos));
  const scalar_t m = spans_max(s, col, spans, nspans, y, inv_t, same_bias);
  scalar_t pos_sum = 0;
  const scalar_t sum = spans_sumexp(s, col, spans, nspans, y, inv_t, same_bias, m, ex, pos_sum);
  const scalar_t lse = m + std::log(sum);
  if (ds != nullptr) {
    spans_grad(ex, col, spans, nspans, y, coef * inv_t / sum, coef * inv_t / num_pos, ds, overwrite);
  }
  return lse - pos_sum * inv_t / static_cast<scalar_t>(num_pos);
}

// The float row pass is compiled for each SIMD level of cpu_isa.h and picked per call; double is left to the
// baseline build (its exp is the library's).
#define BAMCO_ROW_GROUP_F32(fn_name)                                                                     \
  float fn_name(const float* s, const Columns<float>& col, const Span* spans, int nspans, int64_t y,    \
                int64_t num_pos, float inv_t, float coef, float* ex, float* ds, bool overwrite) {         \
    return row_group<float>(s, col, spans, nspans, y, num_pos, inv_t, coef, ex, ds, overwrite);         \
  }
BAMCO_ROW_GROUP_F32(row_group_f32_default)
#if BAMCO_MULTIVERSION
__attribute__((target("arch=x86-64-v3"))) BAMCO_ROW_GROUP_F32(row_group_f32_avx2)
__attribute__((target("arch=x86-64-v4"))) BAMCO_ROW_GROUP_F32(row_group_f32_avx512)
#endif
#undef BAMCO_ROW_GROUP_F32

using RowGroupF32 = float (*)(const float*, const Columns<float>&, const Span*, int, int64_t, int64_t, float,
                              float, float*, float*, bool);

RowGroupF32 row_group_f32_for(cpu_isa::Level level) {
#if BAMCO_MULTIVERSION
  if (level == cpu_isa::Level::kAvx512) return &row_group_f32_avx512;
  if (level == cpu_isa::Level::kAvx2) return &row_group_f32_avx2;
#endif
  return &row_group_f32_default;
}

// Row pass of one group for one anchor row (see row_group); `f32` is the float version for this call.
BAMCO_INLINE double row_group_dispatch(RowGroupF32, const double* s, const Columns<double>& col,
                                       const Span* spans, int nspans, int64_t y, int64_t num_pos, double inv_t,
                                       double coef, double* ex, double* ds, bool overwrite) {
  return row_group<double>(s, col, spans, nspans, y, num_pos, inv_t, coef, ex, ds, overwrite);
}
BAMCO_INLINE float row_group_dispatch(RowGroupF32 f32, const float* s, const Columns<float>& col,
                                      const Span* spans, int nspans, int64_t y, int64_t num_pos, float inv_t,
                                      float coef, float* ex, float* ds, bool overwrite) {
  return f32(s, col, spans, nspans, y, num_pos, inv_t, coef, ex, ds, overwrite);
}

// The views of each group, as a flat table: groups[g * group_size + t].
std::vector<int64_t> make_groups(int64_t num_views, int64_t mode, int64_t& group_size) {
  std::vector<int64_t> groups;
  if (mode == 0) {
    group_size = num_views;
    for (int64_t v = 0; v < num_views; ++v) groups.push_back(v);
  } else {
    group_size = 2;
    for (int64_t a = 0; a < num_views; ++a)
      for (int64_t b = a + 1; b < num_views; ++b) {
        groups.push_back(a);
        groups.push_back(b);
      }
  }
  return groups;
}

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor> bamco_loss_kernel(const at::Tensor& features_in,
                                                                 const at::Tensor& labels,
                                                                 const at::Tensor& prototypes_in,
                                                                 double temperature, int64_t mode,
                                                                 bool compute_grad) {
  // Aliases that do not require grad: the parallel workers call no autograd-aware code.
  const at::NoGradGuard no_grad;
  const at::Tensor features = features_in.detach();
  const at::Tensor prototypes = prototypes_in.detach();
  const int64_t B = features.size(0), V = features.size(1), D = features.size(2);
  const int64_t C = prototypes.size(0);
  const int64_t A = V * B, M = A + C;
  const auto opts = features.options();

  // Key segments, used in place (no stacked copy): view v is features[:, v, :] (a strided (B, D) matrix,
  // which BLAS takes through its leading dimension), segment V is the prototypes. Column j of a
  // similarity row is key j of the view-major order [view 0 rows, ..., view V-1 rows, prototypes].
  std::vector<at::Tensor> segs;
  for (int64_t v = 0; v < V; ++v) segs.push_back(features.select(1, v));
  segs.push_back(prototypes);
  auto seg_rows = [&](int64_t seg) { return seg < V ? B : C; };
  // Visits the parts of anchor rows [a0, a0 + rows) that lie in one view: f(offset in chunk, view, b, n).
  auto for_each_view_part = [&](int64_t a0, int64_t rows, auto&& f) {
    for (int64_t r0 = 0; r0 < rows;) {
      const int64_t i0 = a0 + r0, view = i0 / B, b = i0 % B;
      const int64_t n = std::min(rows - r0, B - b);
      f(r0, view, b, n);
      r0 += n;
    }
  };

  int64_t views_per_group = 0;
  const std::vector<int64_t> groups = make_groups(V, mode, views_per_group);
  const int64_t num_groups = static_cast<int64_t>(groups.size()) / views_per_group;

  // Class sizes within a group (cnt = views_per_group * n_c + 1) and per-column label / -log(cnt).
  const at::Tensor n_c = at::bincount(labels, {}, C);
  const int64_t* class_count = n_c.data_ptr<int64_t>();
  const int64_t* y_ptr = labels.data_ptr<int64_t>();
  std::vector<int32_t> col_label(M);
  std::vector<scalar_t> col_nlc(M);
  for (int64_t j = 0; j < M; ++j) {
    const int64_t lab = j < A ? y_ptr[j % B] : j - A;
    col_label[j] = static_cast<int32_t>(lab);
    col_nlc[j] = -std::log(static_cast<scalar_t>(views_per_group * class_count[lab] + 1));
  }
  const Columns<scalar_t> col{col_label.data(), col_nlc.data()};

  const RowGroupF32 row_group_f32 = row_group_f32_for(cpu_isa::current());
  const scalar_t inv_t = static_cast<scalar_t>(1.0 / temperature);
  const scalar_t coef = static_cast<scalar_t>(1.0 / (static_cast<double>(num_groups) * views_per_group * B));

  // For every view, the groups it belongs to.
  std::vector<std::vector<int64_t>> groups_of_view(V);
  for (int64_t g = 0; g < num_groups; ++g)
    for (int64_t t = 0; t < views_per_group; ++t)
      groups_of_view[groups[g * views_per_group + t]].push_back(g);
  const bool single_group = groups_of_view[0].size() == 1;

  // The chunk_rows x M similarity buffer stays within a small budget, but chunk_rows >= kMinRows (up to
  // A) so that the key-side GEMM's inner dimension keeps BLAS efficient and the key gradients are re-read
  // rarely.
  constexpr int64_t kChunkBudgetBytes = int64_t(4) << 20;
  constexpr int64_t kMinRows = 256;
  const int64_t chunk_rows = std::min<int64_t>(
      A, std::max<int64_t>(kMinRows, kChunkBudgetBytes / (M * static_cast<int64_t>(sizeof(scalar_t)))));
  const at::Tensor sim_buffer = at::empty({chunk_rows, M}, opts);
  const at::Tensor z_buffer = at::empty({chunk_rows, D}, opts);  // the chunk's anchors, contiguous
  const at::Tensor dz_buffer = compute_grad ? at::empty({chunk_rows, D}, opts) : at::Tensor();
  // Scratch per parallel task: exp values (M) and, for rows in several groups, a copy of the row (M).
  const int64_t scratch_len = single_group || !compute_grad ? M : 2 * M;

  // Gradients accumulate straight into the outputs, addressed per key segment: view v of the features
  // (keys v*B .. v*B+B; a strided (B, D) view, which BLAS takes through its leading dimension),
  // then the prototypes.
  // Not zero-filled: the first chunk's key-side product writes every row (beta = 0).
  at::Tensor grad_features = compute_grad ? at::empty({B, V, D}, opts) : at::empty({0}, opts);
  at::Tensor grad_prototypes = compute_grad ? at::empty({C, D}, opts) : at::empty({0}, opts);
  std::vector<at::Tensor> grad_segs;
  if (compute_grad) {
    for (int64_t v = 0; v < V; ++v) grad_segs.push_back(grad_features.select(1, v));
    grad_segs.push_back(grad_prototypes);
  }
  std::vector<double> row_loss(A, 0.0);

  for (int64_t a0 = 0; a0 < A; a0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, A - a0);
    at::Tensor sim = sim_buffer.narrow(0, 0, rows);
    const at::Tensor z = z_buffer.narrow(0, 0, rows);
    for_each_view_part(a0, rows, [&](int64_t r0, int64_t view, int64_t b, int64_t n) {
      z.narrow(0, r0, n).copy_(segs[view].narrow(0, b, n));
    });
    for (int64_t seg = 0; seg <= V; ++seg) {
      at::Tensor out = sim.narrow(1, seg * B, seg_rows(seg));
      at::mm_out(out, z, segs[seg].t());
    }
    scalar_t* s_base = sim.data_ptr<scalar_t>();
    at::parallel_for(0, rows, 1, [&](int64_t r_begin, int64_t r_end) {
      std::vector<scalar_t> scratch(scratch_len);
      scalar_t* ex = scratch.data();
      scalar_t* s_copy = ex + M;
      // Per group: up to two spans per view, then the prototypes.
      std::vector<Span> spans(2 * views_per_group + 1);
      for (int64_t r = r_begin; r < r_end; ++r) {
        const int64_t i = a0 + r;
        const int64_t view = i / B, b = i % B;
        const int64_t y = y_ptr[b];
        scalar_t* row = s_base + r * M;
        const scalar_t* s_row = row;
        scalar_t* ds_row = compute_grad ? row : nullptr;
        if (compute_grad && !single_group) {
          std::copy(row, row + M, s_copy);
          std::fill(row, row + M, scalar_t(0));
          s_row = s_copy;
        }
        double loss_i = 0.0;
        for (const int64_t g : groups_of_view[view]) {
          // Spans: each view of the group (skipping the anchor itself), then the prototypes.
          int num_spans = 0;
          for (int64_t t = 0; t < views_per_group; ++t) {
            const int64_t v = groups[g * views_per_group + t];
            const int64_t lo = v * B, hi = lo + B;
            if (v == view) {
              if (i > lo) spans[num_spans++] = {lo, i};
              if (i + 1 < hi) spans[num_spans++] = {i + 1, hi};
            } else {
              spans[num_spans++] = {lo, hi};
            }
          }
          spans[num_spans++] = {A, M};
          const int64_t num_pos = views_per_group * class_count[y];
          const scalar_t group_loss = row_group_dispatch(row_group_f32, s_row, col, spans.data(), num_spans, y,
                                                         num_pos, inv_t, coef, ex, ds_row, single_group);
          loss_i += static_cast<double>(coef) * static_cast<double>(group_loss);
        }
        if (ds_row) ds_row[i] = scalar_t(0);
        row_loss[i] = loss_i;
      }
    });
    if (compute_grad) {
      // sim now holds dS (rows x M). Key side: grad_keys[seg] (+)= dS[:, seg]^T @ anchors_chunk (the first
      // chunk writes); anchor side: grad_anchors_chunk = dS @ keys (summed over key segments), added to
      // the rows' views.
      for (int64_t seg = 0; seg <= V; ++seg) {
        const at::Tensor ds_seg_t = sim.narrow(1, seg * B, seg_rows(seg)).t();
        if (a0 == 0) {
          at::mm_out(grad_segs[seg], ds_seg_t, z);
        } else {
          grad_segs[seg].addmm_(ds_seg_t, z);
        }
      }
      at::Tensor dz = dz_buffer.narrow(0, 0, rows);
      for (int64_t seg = 0; seg <= V; ++seg) {
        const at::Tensor ds_seg = sim.narrow(1, seg * B, seg_rows(seg));
        if (seg == 0) {
          at::mm_out(dz, ds_seg, segs[seg]);
        } else {
          dz.addmm_(ds_seg, segs[seg]);
        }
      }
      for_each_view_part(a0, rows, [&](int64_t r0, int64_t view, int64_t b, int64_t n) {
        grad_segs[view].narrow(0, b, n).add_(dz.narrow(0, r0, n));
      });
    }
  }

  double total = 0.0;
  for (int64_t i = 0; i < A; ++i) total += row_loss[i];
  return {at::scalar_tensor(total, opts), grad_features, grad_prototypes};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bamco_loss_cpu(const at::Tensor& features,
                                                              const at::Tensor& labels,
                                                              const at::Tensor& prototypes,
                                                              double temperature, int64_t mode,
                                                              bool compute_grad) {
  TORCH_CHECK(features.dim() == 3, "bamco_loss: features must be (B, V, D), got shape ", features.sizes());
  TORCH_CHECK(features.size(0) >= 1, "bamco_loss: features must have a non-empty batch, got shape ",
              features.sizes());
  TORCH_CHECK(features.size(1) >= 2, "bamco_loss: features must have V >= 2 views, got shape ",
              features.sizes());
  TORCH_CHECK(prototypes.dim() == 2 && prototypes.size(1) == features.size(2),
              "bamco_loss: prototypes must be (C, D) with D = ", features.size(2), ", got shape ",
              prototypes.sizes());
  TORCH_CHECK(prototypes.size(0) >= 1, "bamco_loss: prototypes must hold at least one class, got shape ",
              prototypes.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == features.size(0),
              "bamco_loss: labels must be (B,) with B = ", features.size(0), ", got shape ", labels.sizes());
  TORCH_CHECK(labels.scalar_type() == at::kLong, "bamco_loss: labels must be int64, got ",
              labels.scalar_type());
  TORCH_CHECK(features.scalar_type() == prototypes.scalar_type(),
              "bamco_loss: features and prototypes must share a dtype, got ", features.scalar_type(), " and ",
              prototypes.scalar_type());
  TORCH_CHECK(features.scalar_type() == at::kFloat || features.scalar_type() == at::kDouble,
              "bamco_loss (cpu): features must be float32 or float64, got ", features.scalar_type());
  TORCH_CHECK(temperature > 0.0 && std::isfinite(temperature),
              "bamco_loss: temperature must be a finite positive number, got ", temperature);
  TORCH_CHECK(mode == 0 || mode == 1, "bamco_loss: mode must be 0 (all views) or 1 (view pairs), got ", mode);
  const at::Tensor lab = labels.contiguous();
  if (lab.numel() > 0) {
    const int64_t lo = lab.min().item<int64_t>(), hi = lab.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < prototypes.size(0), "bamco_loss: labels must lie in [0, ",
                prototypes.size(0), "), got values in [", lo, ", ", hi, "]");
  }
  const at::Tensor f = features.contiguous();
  const at::Tensor p = prototypes.contiguous();
  return AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "bamco_loss_cpu", [&] {
    return bamco_loss_kernel<scalar_t>(f, lab, p, temperature, mode, compute_grad);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(bamco_fast, CPU, m) { m.impl("bamco_loss", &bamco_loss_cpu); }

}  // namespace bamco_fast
