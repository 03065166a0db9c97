// CPU kernels of bamco_fast::dilated_depthwise_block and its backward: GLIMS' depthwise atrous block.
//
// Math (per sample, c channels, V = D*H*W voxels, N(t) = (t - mean) / sqrt(var + eps) per channel):
//   a_k = prelu_{s_k}(gamma_k N(dwconv_{delta_k}(x)) + beta_k),  k = 0, 1, 2,  delta = 1, 2, 3
//   h1 = prelu_{s_3}(N(W1 [a_0; a_1; a_2])),  h2 = prelu_{s_4}(N(W2 h1)),  y = prelu_{s_5}(N(h2 + x)).
// Backward of t -> N(t) with g = dL/dN: dL/dt = rstd * (g - mean(g) - N(t) * mean(g N(t))); with the affine
// GroupNorm g = gamma * dL/d(affine output). PReLU: d/dt = [t > 0] + s [t <= 0], d/ds = min(t, 0).
//
// Algorithm. With at least as many samples as threads, each thread runs whole samples (one parallel region
// per call, single-threaded GEMMs, a workspace per thread); otherwise samples run one after another and the
// threads share the channels and GEMMs of each sample. Per sample:
//   pass A (per channel): the three dilated depthwise convolutions read each input row once and write the
//     three raw outputs with their moments in the same loop; the channel is then normalised in place
//     (N stored) and a_k = prelu(gamma N + beta) written to the branch-major concat buffer.
//   B: z1 = W1 a (one GEMM, e x 3c by 3c x V).   C (per row): moments, N(z1) stored, h1 = prelu.
//   D: z2 = W2 h1 (GEMM).   E (per channel): moments of z2, r = prelu(N(z2)) + x with its moments in the
//     same pass, then N(r) stored and y = prelu(N(r)) written.
// The backward op recomputes A-E for the sample (only x is kept between forward and backward, so a block's
// activation memory is its input) and then runs the chain backwards: per channel the residual/norm
// backward (three row passes), two GEMMs for dW2 and dh1, per row the norm backward of h1, two GEMMs for
// dW1 and da, and per channel the GroupNorm backward fused with the depthwise convolutions' input and
// weight gradients (one sweep over x and the three branch gradients). All reductions are per channel in
// double, in a fixed order, and weight gradients are kept per sample and summed in sample order, so results
// do not depend on how samples are spread over threads (only the GEMM library's own threading, used when
// B < threads, may change the last bits). Workspaces (12 c V values per running sample) are
// cached between calls.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <vector>

#include "cpu_isa.h"

namespace bamco_fast {
namespace {

constexpr int kBranches = 3;
constexpr int kTaps = 27;
constexpr int kSlopes = 6;

struct Moments {
  double mean;
  double rstd;
};

Moments finish_moments(double sum, double sumsq, int64_t n, double eps) {
  const double mean = sum / static_cast<double>(n);
  const double var = std::max(sumsq / static_cast<double>(n) - mean * mean, 0.0);
  return {mean, 1.0 / std::sqrt(var + eps)};
}

// The row kernels, compiled once per SIMD level (cpu_isa.h); a call picks one table for its whole run.
namespace isa_default {
#include "dilated_depthwise_block_rows.h"
}  // namespace isa_default
#if BAMCO_MULTIVERSION
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
namespace isa_avx2 {
#include "dilated_depthwise_block_rows.h"
}  // namespace isa_avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
namespace isa_avx512 {
#include "dilated_depthwise_block_rows.h"
}  // namespace isa_avx512
#pragma GCC pop_options
#endif

template <typename T>
struct RowKernels {
  decltype(&isa_default::dw_forward_channel<T>) dw_forward_channel;
  decltype(&isa_default::dw_backward_channel<T>) dw_backward_channel;
  decltype(&isa_default::affine_norm_prelu_row<T>) affine_norm_prelu_row;
  decltype(&isa_default::row_sums<T>) row_sums;
  decltype(&isa_default::norm_prelu_row<T>) norm_prelu_row;
  decltype(&isa_default::residual_row<T>) residual_row;
  decltype(&isa_default::output_row<T>) output_row;
  decltype(&isa_default::residual_backward_row<T>) residual_backward_row;
  decltype(&isa_default::norm_prelu_backward_row<T>) norm_prelu_backward_row;
  decltype(&isa_default::affine_norm_prelu_backward_row<T>) affine_norm_prelu_backward_row;
};

#define BAMCO_ROW_KERNELS(ns)                                                                               \
  RowKernels<T> {                                                                                        \
    &ns::dw_forward_channel<T>, &ns::dw_backward_channel<T>, &ns::affine_norm_prelu_row<T>,              \
        &ns::row_sums<T>, &ns::norm_prelu_row<T>, &ns::residual_row<T>, &ns::output_row<T>,              \
        &ns::residual_backward_row<T>, &ns::norm_prelu_backward_row<T>, &ns::affine_norm_prelu_backward_row<T> \
  }

// The row kernels of the current SIMD level.
template <typename T>
const RowKernels<T>& row_kernels() {
#if BAMCO_MULTIVERSION
  static const RowKernels<T> tables[3] = {BAMCO_ROW_KERNELS(isa_default), BAMCO_ROW_KERNELS(isa_avx2),
                                          BAMCO_ROW_KERNELS(isa_avx512)};
  return tables[static_cast<int>(cpu_isa::current())];
#else
  static const RowKernels<T> table = BAMCO_ROW_KERNELS(isa_default);
  return table;
#endif
}
#undef BAMCO_ROW_KERNELS

// Per-sample workspace: raw/normalised tensors of one sample (all (rows, V), contiguous).
struct Workspace {
  at::Tensor d;   // (3c, V): N(dwconv) of the three branches, branch-major
  at::Tensor a;   // (3c, V): prelu(gamma N + beta), the concat feeding W1
  at::Tensor z1;  // (e, V): N(W1 a)
  at::Tensor h1;  // (e, V): prelu(N(W1 a))
  at::Tensor z2;  // (c, V): N(W2 h1)
  at::Tensor r;   // (c, V): N(h2 + x)
  std::vector<double> rstd_dw, rstd1, rstd2, rstd_r;
};

template <typename T>
struct Block {
  int64_t C, E, D, H, W, V;
  double eps;
  const T* dw;     // (3, c, 27)
  const T* gamma;  // (3, c)
  const T* beta;   // (3, c)
  T slope[kSlopes];
  at::Tensor w1, w2;
};

// Large workspaces are kept between calls: a fresh multi-megabyte allocation is returned to the OS on free,
// and touching it again costs a page fault per 4 KiB (a fifth of the run time at 36x84x84). One flat
// buffer per dtype grows to the largest request; a call that finds it in use allocates its own.
struct WorkspaceCache {
  std::mutex mutex;
  at::Tensor buffer;
};

WorkspaceCache& workspace_cache(at::ScalarType dtype) {
  static WorkspaceCache caches[2];
  return caches[dtype == at::kDouble ? 1 : 0];
}

int64_t workspace_numel(int64_t C, int64_t E, int64_t V) { return (2 * kBranches * C + 2 * E + 2 * C) * V; }

// Carves per-thread workspaces out of `flat` (numel >= count * workspace_numel).
template <typename T>
std::vector<Workspace> carve_workspaces(const Block<T>& b, const at::Tensor& flat, int64_t count) {
  std::vector<Workspace> out(count);
  int64_t offset = 0;
  auto take = [&](int64_t rows) {
    at::Tensor t = flat.narrow(0, offset, rows * b.V).view({rows, b.V});
    offset += rows * b.V;
    return t;
  };
  for (auto& ws : out) {
    ws.d = take(kBranches * b.C);
    ws.a = take(kBranches * b.C);
    ws.z1 = take(b.E);
    ws.h1 = take(b.E);
    ws.z2 = take(b.C);
    ws.r = take(b.C);
    ws.rstd_dw.assign(kBranches * b.C, 0.0);
    ws.rstd1.assign(b.E, 0.0);
    ws.rstd2.assign(b.C, 0.0);
    ws.rstd_r.assign(b.C, 0.0);
  }
  return out;
}

// Runs fn(workspaces) with `count` workspaces, from the cache when it is free.
template <typename T, typename Fn>
void with_workspaces(const Block<T>& b, const at::TensorOptions& opts, int64_t count, Fn&& fn) {
  const int64_t need = count * workspace_numel(b.C, b.E, b.V);
  WorkspaceCache& cache = workspace_cache(opts.dtype().toScalarType());
  std::unique_lock<std::mutex> lock(cache.mutex, std::try_to_lock);
  if (!lock.owns_lock()) {
    fn(carve_workspaces(b, at::empty({need}, opts), count));
    return;
  }
  if (!cache.buffer.defined() || cache.buffer.numel() < need) {
    cache.buffer = at::Tensor();
    cache.buffer = at::empty({need}, opts);
  }
  fn(carve_workspaces(b, cache.buffer, count));
}

// Passes A-E for one sample; writes y when y != nullptr.
template <typename T>
void forward_sample(const Block<T>& b, const T* x, Workspace& ws, T* y) {
  const RowKernels<T>& rows = row_kernels<T>();
  const int64_t C = b.C, V = b.V;
  T* d = ws.d.data_ptr<T>();
  T* a = ws.a.data_ptr<T>();
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    T taps[kBranches * kTaps];
    double sums[2 * kBranches];
    for (int64_t i = begin; i < end; ++i) {
      for (int k = 0; k < kBranches; ++k)
        std::copy_n(b.dw + (k * C + i) * kTaps, kTaps, taps + k * kTaps);
      rows.dw_forward_channel(x + i * V, taps, d + i * V, d + (C + i) * V, d + (2 * C + i) * V, b.D, b.H, b.W,
                            sums);
      for (int k = 0; k < kBranches; ++k) {
        const int64_t row = k * C + i;
        const Moments m = finish_moments(sums[2 * k], sums[2 * k + 1], V, b.eps);
        ws.rstd_dw[row] = m.rstd;
        rows.affine_norm_prelu_row(d + row * V, a + row * V, V, static_cast<T>(m.mean), static_cast<T>(m.rstd),
                                 b.gamma[row], b.beta[row], b.slope[k]);
      }
    }
  });
  at::mm_out(ws.z1, b.w1, ws.a);
  T* z1 = ws.z1.data_ptr<T>();
  T* h1 = ws.h1.data_ptr<T>();
  at::parallel_for(0, b.E, 1, [&](int64_t begin, int64_t end) {
    double sums[2];
    for (int64_t j = begin; j < end; ++j) {
      rows.row_sums(z1 + j * V, V, sums);
      const Moments m = finish_moments(sums[0], sums[1], V, b.eps);
      ws.rstd1[j] = m.rstd;
      rows.norm_prelu_row(z1 + j * V, h1 + j * V, V, static_cast<T>(m.mean), static_cast<T>(m.rstd), b.slope[3]);
    }
  });
  at::mm_out(ws.z2, b.w2, ws.h1);
  T* z2 = ws.z2.data_ptr<T>();
  T* r = ws.r.data_ptr<T>();
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    double sums[2];
    for (int64_t i = begin; i < end; ++i) {
      rows.row_sums(z2 + i * V, V, sums);
      const Moments m2 = finish_moments(sums[0], sums[1], V, b.eps);
      ws.rstd2[i] = m2.rstd;
      rows.residual_row(z2 + i * V, x + i * V, r + i * V, V, static_cast<T>(m2.mean), static_cast<T>(m2.rstd),
                      b.slope[4], sums);
      const Moments mr = finish_moments(sums[0], sums[1], V, b.eps);
      ws.rstd_r[i] = mr.rstd;
      rows.output_row(r + i * V, y == nullptr ? nullptr : y + i * V, V, static_cast<T>(mr.mean),
                    static_cast<T>(mr.rstd), b.slope[5]);
    }
  });
}

// Per-sample gradient contributions (summed over samples in a fixed order at the end).
template <typename T>
struct SampleGrads {
  at::Tensor w1, w2;  // (e, 3c), (c, e) of this sample
  double* dw;         // (3, c, 27)
  double* gamma;      // (3, c)
  double* beta;       // (3, c)
  double* slope;      // (6,)
};

// Backward of one sample after forward_sample(..., y = nullptr) filled the workspace.
template <typename T>
void backward_sample(const Block<T>& b, const T* x, const T* dy, Workspace& ws, T* dx,
                     SampleGrads<T>& g) {
  const RowKernels<T>& rows = row_kernels<T>();
  const int64_t C = b.C, E = b.E, V = b.V;
  T* d = ws.d.data_ptr<T>();
  T* a = ws.a.data_ptr<T>();
  T* z1 = ws.z1.data_ptr<T>();
  T* h1 = ws.h1.data_ptr<T>();
  T* z2 = ws.z2.data_ptr<T>();
  T* r = ws.r.data_ptr<T>();
  std::vector<double> part(static_cast<size_t>(std::max(3 * C, E) * 3), 0.0);

  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      rows.residual_backward_row(dy + i * V, r + i * V, z2 + i * V, dx + i * V, V, static_cast<T>(ws.rstd_r[i]),
                               static_cast<T>(ws.rstd2[i]), b.slope[5], b.slope[4], &part[2 * i]);
  });
  std::fill_n(g.slope, kSlopes, 0.0);
  for (int64_t i = 0; i < C; ++i) {
    g.slope[4] += part[2 * i];
    g.slope[5] += part[2 * i + 1];
  }
  at::mm_out(g.w2, ws.z2, ws.h1.t());
  at::mm_out(ws.h1, b.w2.t(), ws.z2);  // dL/dh1

  at::parallel_for(0, E, 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j)
      rows.norm_prelu_backward_row(z1 + j * V, h1 + j * V, V, static_cast<T>(ws.rstd1[j]), b.slope[3], &part[j]);
  });
  for (int64_t j = 0; j < E; ++j) g.slope[3] += part[j];
  at::mm_out(g.w1, ws.z1, ws.a.t());
  at::mm_out(ws.a, b.w1.t(), ws.z1);  // dL/da

  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    T taps[kBranches * kTaps];
    double dtaps[kBranches * kTaps];
    for (int64_t i = begin; i < end; ++i) {
      for (int k = 0; k < kBranches; ++k) {
        const int64_t row = k * C + i;
        std::copy_n(b.dw + row * kTaps, kTaps, taps + k * kTaps);
        rows.affine_norm_prelu_backward_row(d + row * V, a + row * V, V, static_cast<T>(ws.rstd_dw[row]),
                                          b.gamma[row], b.beta[row], b.slope[k], &part[3 * row]);
        g.gamma[row] = part[3 * row + 1];
        g.beta[row] = part[3 * row + 2];
      }
      std::fill_n(dtaps, kBranches * kTaps, 0.0);
      rows.dw_backward_channel(x + i * V, taps, d + i * V, d + (C + i) * V, d + (2 * C + i) * V, dx + i * V,
                             dtaps, b.D, b.H, b.W);
      for (int k = 0; k < kBranches; ++k)
        for (int t = 0; t < kTaps; ++t) g.dw[(k * C + i) * kTaps + t] = dtaps[k * kTaps + t];
    }
  });
  for (int k = 0; k < kBranches; ++k)
    for (int64_t i = 0; i < C; ++i) g.slope[k] += part[3 * (k * C + i)];
}

// How many samples run at once: one per thread when the batch has at least as many samples as threads
// (each sample then runs single-threaded: one parallel region per call instead of one per pass and sample,
// which matters for the small late-stage volumes), else one at a time with the threads inside the sample.
int64_t sample_workers(int64_t N) {
  const int64_t threads = at::get_num_threads();
  return (threads > 1 && N >= threads && !at::in_parallel_region()) ? threads : 1;
}

template <typename Fn>
void for_samples(int64_t N, int64_t workers, Fn&& fn) {
  if (workers == 1) {
    for (int64_t n = 0; n < N; ++n) fn(n, 0);
    return;
  }
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    // Dispatch state is thread-local: the GEMMs of worker threads must skip autograd too.
    at::AutoDispatchBelowADInplaceOrView guard;
    const int64_t worker = at::get_thread_num();
    for (int64_t n = begin; n < end; ++n) fn(n, worker);
  });
}

void check_args(const at::Tensor& x, const at::Tensor& dw_weight, const at::Tensor& norm_weight,
                const at::Tensor& norm_bias, const at::Tensor& pw1_weight, const at::Tensor& pw2_weight,
                const at::Tensor& prelu, double eps) {
  TORCH_CHECK(x.dim() == 5 && x.numel() > 0,
              "dilated_depthwise_block: x must be a non-empty (B, c, D, H, W) tensor, got shape ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "dilated_depthwise_block (cpu): x must be float32 or float64, got ", x.scalar_type());
  const int64_t C = x.size(1);
  TORCH_CHECK(pw1_weight.dim() == 2 && pw1_weight.size(1) == 3 * C && pw1_weight.size(0) >= 1,
              "dilated_depthwise_block: pw1_weight must be (e, ", 3 * C, "), got shape ", pw1_weight.sizes());
  const int64_t E = pw1_weight.size(0);
  TORCH_CHECK(dw_weight.sizes() == at::IntArrayRef({3, C, 3, 3, 3}),
              "dilated_depthwise_block: dw_weight must be (3, ", C, ", 3, 3, 3), got shape ", dw_weight.sizes());
  TORCH_CHECK(norm_weight.sizes() == at::IntArrayRef({3, C}),
              "dilated_depthwise_block: norm_weight must be (3, ", C, "), got shape ", norm_weight.sizes());
  TORCH_CHECK(norm_bias.sizes() == at::IntArrayRef({3, C}),
              "dilated_depthwise_block: norm_bias must be (3, ", C, "), got shape ", norm_bias.sizes());
  TORCH_CHECK(pw2_weight.sizes() == at::IntArrayRef({C, E}),
              "dilated_depthwise_block: pw2_weight must be (", C, ", ", E, "), got shape ", pw2_weight.sizes());
  TORCH_CHECK(prelu.sizes() == at::IntArrayRef({kSlopes}),
              "dilated_depthwise_block: prelu must be (6,), got shape ", prelu.sizes());
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"dw_weight", dw_weight},
                                {"norm_weight", norm_weight},
                                {"norm_bias", norm_bias},
                                {"pw1_weight", pw1_weight},
                                {"pw2_weight", pw2_weight},
                                {"prelu", prelu}}) {
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "dilated_depthwise_block: ", name, " dtype ",
                t.scalar_type(), " must match x dtype ", x.scalar_type());
    TORCH_CHECK(t.device() == x.device(), "dilated_depthwise_block: ", name, " is on ", t.device(),
                " but x is on ", x.device());
  }
  TORCH_CHECK(eps > 0.0 && std::isfinite(eps), "dilated_depthwise_block: eps must be a finite number > 0, got ",
              eps);
}

template <typename T>
Block<T> make_block(const at::Tensor& x, const at::Tensor& dw, const at::Tensor& gamma, const at::Tensor& beta,
                    const at::Tensor& w1, const at::Tensor& w2, const at::Tensor& prelu, double eps) {
  Block<T> b;
  b.C = x.size(1);
  b.E = w1.size(0);
  b.D = x.size(2);
  b.H = x.size(3);
  b.W = x.size(4);
  b.V = b.D * b.H * b.W;
  b.eps = eps;
  b.dw = dw.data_ptr<T>();
  b.gamma = gamma.data_ptr<T>();
  b.beta = beta.data_ptr<T>();
  const T* s = prelu.data_ptr<T>();
  for (int k = 0; k < kSlopes; ++k) b.slope[k] = s[k];
  b.w1 = w1.detach();
  b.w2 = w2.detach();
  return b;
}

at::Tensor dilated_depthwise_block_cpu(const at::Tensor& x_in, const at::Tensor& dw_weight,
                                       const at::Tensor& norm_weight, const at::Tensor& norm_bias,
                                       const at::Tensor& pw1_weight, const at::Tensor& pw2_weight,
                                       const at::Tensor& prelu, double eps) {
  check_args(x_in, dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu, eps);
  at::AutoDispatchBelowADInplaceOrView guard;
  const at::Tensor x = x_in.contiguous(), dw = dw_weight.contiguous(), gamma = norm_weight.contiguous();
  const at::Tensor beta = norm_bias.contiguous(), w1 = pw1_weight.contiguous(), w2 = pw2_weight.contiguous();
  const at::Tensor s = prelu.contiguous();
  at::Tensor y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dilated_depthwise_block_cpu", [&] {
    const Block<scalar_t> b = make_block<scalar_t>(x, dw, gamma, beta, w1, w2, s, eps);
    const int64_t N = x.size(0), stride = b.C * b.V;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    const int64_t workers = sample_workers(N);
    with_workspaces(b, x.options(), workers, [&](std::vector<Workspace> wss) {
      for_samples(N, workers, [&](int64_t n, int64_t worker) {
        forward_sample<scalar_t>(b, xp + n * stride, wss[worker], yp + n * stride);
      });
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
dilated_depthwise_block_backward_cpu(const at::Tensor& grad_y, const at::Tensor& x_in,
                                     const at::Tensor& dw_weight, const at::Tensor& norm_weight,
                                     const at::Tensor& norm_bias, const at::Tensor& pw1_weight,
                                     const at::Tensor& pw2_weight, const at::Tensor& prelu, double eps) {
  check_args(x_in, dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu, eps);
  TORCH_CHECK(grad_y.sizes() == x_in.sizes() && grad_y.scalar_type() == x_in.scalar_type(),
              "dilated_depthwise_block_backward: grad_y must match x (", x_in.sizes(), ", ", x_in.scalar_type(),
              "), got ", grad_y.sizes(), " ", grad_y.scalar_type());
  at::AutoDispatchBelowADInplaceOrView guard;
  const at::Tensor x = x_in.contiguous(), dy = grad_y.contiguous(), dw = dw_weight.contiguous();
  const at::Tensor gamma = norm_weight.contiguous(), beta = norm_bias.contiguous();
  const at::Tensor w1 = pw1_weight.contiguous(), w2 = pw2_weight.contiguous(), s = prelu.contiguous();
  at::Tensor dx = at::empty_like(x);
  at::Tensor g_w1, g_w2, g_dw, g_gamma, g_beta, g_slope;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dilated_depthwise_block_backward_cpu", [&] {
    const Block<scalar_t> b = make_block<scalar_t>(x, dw, gamma, beta, w1, w2, s, eps);
    const int64_t N = x.size(0), C = b.C, stride = C * b.V;
    // Per-sample slots: (N, e, 3c), (N, c, e) and, in double, (N, 3c*27 + 3c + 3c + 6).
    at::Tensor slot_w1 = at::empty({N, b.E, kBranches * C}, x.options());
    at::Tensor slot_w2 = at::empty({N, C, b.E}, x.options());
    const int64_t small = kBranches * C * kTaps + 2 * kBranches * C + kSlopes;
    std::vector<double> slot_small(static_cast<size_t>(N * small), 0.0);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* dyp = dy.data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    const int64_t workers = sample_workers(N);
    with_workspaces(b, x.options(), workers, [&](std::vector<Workspace> wss) {
      for_samples(N, workers, [&](int64_t n, int64_t worker) {
        double* sm = slot_small.data() + n * small;
        SampleGrads<scalar_t> g{slot_w1[n], slot_w2[n], sm, sm + kBranches * C * kTaps,
                                sm + kBranches * C * kTaps + kBranches * C, sm + small - kSlopes};
        forward_sample<scalar_t>(b, xp + n * stride, wss[worker], nullptr);
        backward_sample<scalar_t>(b, xp + n * stride, dyp + n * stride, wss[worker], dxp + n * stride, g);
      });
    });
    // Sum over samples in sample order (independent of the thread count).
    g_w1 = slot_w1[0].clone();
    g_w2 = slot_w2[0].clone();
    for (int64_t n = 1; n < N; ++n) {
      g_w1.add_(slot_w1[n]);
      g_w2.add_(slot_w2[n]);
    }
    std::vector<double> total(static_cast<size_t>(small), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < small; ++j) total[j] += slot_small[n * small + j];
    const auto dopts = at::TensorOptions().dtype(at::kDouble);
    auto to_tensor = [&](int64_t offset, at::IntArrayRef shape) {
      return at::from_blob(total.data() + offset, shape, dopts).to(x.scalar_type()).clone();
    };
    g_dw = to_tensor(0, {3, C, 3, 3, 3});
    g_gamma = to_tensor(kBranches * C * kTaps, {3, C});
    g_beta = to_tensor(kBranches * C * kTaps + kBranches * C, {3, C});
    g_slope = to_tensor(small - kSlopes, {kSlopes});
  });
  return {dx, g_dw, g_gamma, g_beta, g_w1, g_w2, g_slope};
}

}  // namespace

// Bytes held by the workspace caches (both dtypes); with release = true the caches are freed first
// (a cache in use by a running call is left alone) and the bytes freed are returned.
int64_t dilated_depthwise_block_workspace(bool release) {
  int64_t bytes = 0;
  for (const at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    WorkspaceCache& cache = workspace_cache(dtype);
    const std::unique_lock<std::mutex> lock(cache.mutex, std::try_to_lock);
    if (!lock.owns_lock() || !cache.buffer.defined()) continue;
    bytes += cache.buffer.nbytes();
    if (release) cache.buffer = at::Tensor();
  }
  return bytes;
}

TORCH_LIBRARY_IMPL(bamco_fast, CPU, m) {
  m.impl("dilated_depthwise_block", &dilated_depthwise_block_cpu);
  m.impl("dilated_depthwise_block_backward", &dilated_depthwise_block_backward_cpu);
}

}  // namespace bamco_fast
