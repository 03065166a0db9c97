// Row kernels of the CPU dilated depthwise block (csrc/dilated_depthwise_block_cpu.cpp), one concept: the
// loops over the voxels of one channel or row. This file is included once per SIMD level of cpu_isa.h, each
// time inside its own namespace and target options, so it has no include guard and includes nothing itself;
// it uses kBranches and kTaps of the including file.

// Three dilated (1, 2, 3) depthwise 3x3x3 convolutions of one channel with zero "same" padding. `w` holds
// the 3 x 27 taps, `out` the three output channels; `sums` receives (sum, sum of squares) per branch.
template <typename T>
void dw_forward_channel(const T* __restrict x, const T* __restrict w, T* __restrict out0,
                                     T* __restrict out1, T* __restrict out2, int64_t D, int64_t H, int64_t W,
                                     double* __restrict sums) {
  T* const outs[kBranches] = {out0, out1, out2};
  for (int k = 0; k < kBranches; ++k) sums[2 * k] = sums[2 * k + 1] = 0.0;
  for (int64_t od = 0; od < D; ++od) {
    for (int64_t oh = 0; oh < H; ++oh) {
      for (int k = 0; k < kBranches; ++k) {
        const int64_t dl = k + 1;
        T* __restrict o = outs[k] + (od * H + oh) * W;
        for (int64_t ow = 0; ow < W; ++ow) o[ow] = T(0);
        for (int kd = 0; kd < 3; ++kd) {
          const int64_t id = od + (kd - 1) * dl;
          if (id < 0 || id >= D) continue;
          for (int kh = 0; kh < 3; ++kh) {
            const int64_t ih = oh + (kh - 1) * dl;
            if (ih < 0 || ih >= H) continue;
            const T* __restrict xr = x + (id * H + ih) * W;
            for (int kw = 0; kw < 3; ++kw) {
              const int64_t off = (kw - 1) * dl;
              const T wt = w[k * kTaps + kd * 9 + kh * 3 + kw];
              const int64_t lo = std::max<int64_t>(0, -off), hi = std::min<int64_t>(W, W - off);
#pragma omp simd
              for (int64_t ow = lo; ow < hi; ++ow) o[ow] += wt * xr[ow + off];
            }
          }
        }
        double s = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : s, ss)
        for (int64_t ow = 0; ow < W; ++ow) {
          const double v = static_cast<double>(o[ow]);
          s += v;
          ss += v * v;
        }
        sums[2 * k] += s;
        sums[2 * k + 1] += ss;
      }
    }
  }
}

// Transposed form of dw_forward_channel: dx += sum_k convT_k(g_k) and dw[k][tap] += sum_v x[v + off] g_k[v].
template <typename T>
void dw_backward_channel(const T* __restrict x, const T* __restrict w, const T* __restrict g0,
                                      const T* __restrict g1, const T* __restrict g2, T* __restrict dx,
                                      double* __restrict dw, int64_t D, int64_t H, int64_t W) {
  const T* const gs[kBranches] = {g0, g1, g2};
  for (int64_t od = 0; od < D; ++od) {
    for (int64_t oh = 0; oh < H; ++oh) {
      for (int k = 0; k < kBranches; ++k) {
        const int64_t dl = k + 1;
        const T* __restrict g = gs[k] + (od * H + oh) * W;
        for (int kd = 0; kd < 3; ++kd) {
          const int64_t id = od + (kd - 1) * dl;
          if (id < 0 || id >= D) continue;
          for (int kh = 0; kh < 3; ++kh) {
            const int64_t ih = oh + (kh - 1) * dl;
            if (ih < 0 || ih >= H) continue;
            const T* __restrict xr = x + (id * H + ih) * W;
            T* __restrict dxr = dx + (id * H + ih) * W;
            for (int kw = 0; kw < 3; ++kw) {
              const int64_t off = (kw - 1) * dl;
              const int tap = k * kTaps + kd * 9 + kh * 3 + kw;
              const T wt = w[tap];
              const int64_t lo = std::max<int64_t>(0, -off), hi = std::min<int64_t>(W, W - off);
              T acc = T(0);
#pragma omp simd reduction(+ : acc)
              for (int64_t ow = lo; ow < hi; ++ow) {
                acc += xr[ow + off] * g[ow];
                dxr[ow + off] += wt * g[ow];
              }
              dw[tap] += static_cast<double>(acc);
            }
          }
        }
      }
    }
  }
}

// In place t -> N(t) (stored) and a = prelu(gamma N + beta).
template <typename T>
void affine_norm_prelu_row(T* __restrict t, T* __restrict a, int64_t n, T mean, T rstd, T gamma,
                                        T beta, T slope) {
#pragma omp simd
  for (int64_t v = 0; v < n; ++v) {
    const T xh = (t[v] - mean) * rstd;
    t[v] = xh;
    const T u = gamma * xh + beta;
    a[v] = u > T(0) ? u : slope * u;
  }
}

template <typename T>
void row_sums(const T* __restrict t, int64_t n, double* __restrict sums) {
  double s = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : s, ss)
  for (int64_t v = 0; v < n; ++v) {
    const double x = static_cast<double>(t[v]);
    s += x;
    ss += x * x;
  }
  sums[0] = s;
  sums[1] = ss;
}

// In place z -> N(z) (stored) and h = prelu(N(z)).
template <typename T>
void norm_prelu_row(T* __restrict z, T* __restrict h, int64_t n, T mean, T rstd, T slope) {
#pragma omp simd
  for (int64_t v = 0; v < n; ++v) {
    const T t = (z[v] - mean) * rstd;
    z[v] = t;
    h[v] = t > T(0) ? t : slope * t;
  }
}

// z2 -> N(z2) (stored), r = prelu(N(z2)) + x with its sums in the same pass.
template <typename T>
void residual_row(T* __restrict z, const T* __restrict x, T* __restrict r, int64_t n, T mean,
                               T rstd, T slope, double* __restrict sums) {
  double s = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : s, ss)
  for (int64_t v = 0; v < n; ++v) {
    const T t = (z[v] - mean) * rstd;
    z[v] = t;
    const T rv = (t > T(0) ? t : slope * t) + x[v];
    r[v] = rv;
    const double d = static_cast<double>(rv);
    s += d;
    ss += d * d;
  }
  sums[0] = s;
  sums[1] = ss;
}

// r -> N(r) (stored) and, when y is given, y = prelu(N(r)).
template <typename T>
void output_row(T* __restrict r, T* __restrict y, int64_t n, T mean, T rstd, T slope) {
  if (y == nullptr) {
#pragma omp simd
    for (int64_t v = 0; v < n; ++v) r[v] = (r[v] - mean) * rstd;
    return;
  }
  norm_prelu_row(r, y, n, mean, rstd, slope);
}

// Backward through y = prelu(N(r)), r = h2 + x, h2 = prelu(N(z2)) for one channel. On entry rn = N(r),
// zn = N(z2); on exit dx = dL/dr (the residual share of dL/dx), rn = scratch, zn = dL/dz2.
template <typename T>
void residual_backward_row(const T* __restrict dy, T* __restrict rn, T* __restrict zn,
                                        T* __restrict dx, int64_t n, T rstd_r, T rstd_z, T s_out, T s_h2,
                                        double* __restrict dslopes) {
  double sg = 0.0, sgr = 0.0, ds_out = 0.0;
#pragma omp simd reduction(+ : sg, sgr, ds_out)
  for (int64_t v = 0; v < n; ++v) {
    const T t = rn[v];
    const T g = t > T(0) ? dy[v] : s_out * dy[v];
    sg += static_cast<double>(g);
    sgr += static_cast<double>(g * t);
    ds_out += t > T(0) ? 0.0 : static_cast<double>(dy[v] * t);
  }
  const T mg = static_cast<T>(sg / static_cast<double>(n)), mgr = static_cast<T>(sgr / static_cast<double>(n));
  double sg2 = 0.0, sg2z = 0.0, ds_h2 = 0.0;
#pragma omp simd reduction(+ : sg2, sg2z, ds_h2)
  for (int64_t v = 0; v < n; ++v) {
    const T t = rn[v];
    const T g = t > T(0) ? dy[v] : s_out * dy[v];
    const T dr = rstd_r * (g - mg - t * mgr);
    dx[v] = dr;
    const T z = zn[v];
    const T g2 = z > T(0) ? dr : s_h2 * dr;
    rn[v] = g2;
    sg2 += static_cast<double>(g2);
    sg2z += static_cast<double>(g2 * z);
    ds_h2 += z > T(0) ? 0.0 : static_cast<double>(dr * z);
  }
  const T m2 = static_cast<T>(sg2 / static_cast<double>(n)), m2z = static_cast<T>(sg2z / static_cast<double>(n));
#pragma omp simd
  for (int64_t v = 0; v < n; ++v) zn[v] = rstd_z * (rn[v] - m2 - zn[v] * m2z);
  dslopes[0] = ds_h2;
  dslopes[1] = ds_out;
}

// Backward through h = prelu(N(z)) for one row: on entry zn = N(z), dh = dL/dh; on exit zn = dL/dz.
template <typename T>
void norm_prelu_backward_row(T* __restrict zn, T* __restrict dh, int64_t n, T rstd, T slope,
                                          double* __restrict dslope) {
  double sg = 0.0, sgz = 0.0, ds = 0.0;
#pragma omp simd reduction(+ : sg, sgz, ds)
  for (int64_t v = 0; v < n; ++v) {
    const T z = zn[v];
    const T g = z > T(0) ? dh[v] : slope * dh[v];
    ds += z > T(0) ? 0.0 : static_cast<double>(dh[v] * z);
    dh[v] = g;
    sg += static_cast<double>(g);
    sgz += static_cast<double>(g * z);
  }
  const T mg = static_cast<T>(sg / static_cast<double>(n)), mgz = static_cast<T>(sgz / static_cast<double>(n));
#pragma omp simd
  for (int64_t v = 0; v < n; ++v) zn[v] = rstd * (dh[v] - mg - zn[v] * mgz);
  *dslope = ds;
}

// Backward through a = prelu(gamma N(t) + beta) for one branch row: on entry xn = N(t), da = dL/da; on exit
// xn = dL/dt. `out` receives (dL/dslope, dL/dgamma, dL/dbeta) of this sample and channel.
template <typename T>
void affine_norm_prelu_backward_row(T* __restrict xn, T* __restrict da, int64_t n, T rstd,
                                                 T gamma, T beta, T slope, double* __restrict out) {
  double ds = 0.0, sg = 0.0, sgx = 0.0;
  // The derivative w.r.t. slope uses the affine output u; the derivative w.r.t. the normalised value is
  // gamma * da * prelu'(u), accumulated as da * prelu'(u) (gamma applied after the loop).
#pragma omp simd reduction(+ : ds, sg, sgx)
  for (int64_t v = 0; v < n; ++v) {
    const T xh = xn[v];
    const T u = gamma * xh + beta;
    const T g = u > T(0) ? da[v] : slope * da[v];
    ds += u > T(0) ? 0.0 : static_cast<double>(da[v] * u);
    da[v] = g;
    sg += static_cast<double>(g);
    sgx += static_cast<double>(g * xh);
  }
  const double inv_n = 1.0 / static_cast<double>(n);
  const T mg = static_cast<T>(sg * inv_n), mgx = static_cast<T>(sgx * inv_n);
  const T scale = gamma * rstd;
#pragma omp simd
  for (int64_t v = 0; v < n; ++v) xn[v] = scale * (da[v] - mg - xn[v] * mgx);
  out[0] = ds;
  out[1] = sgx;
  out[2] = sg;
}
