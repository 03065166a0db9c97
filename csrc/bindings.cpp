// The extension module bamco_fast._C: every op schema of the library, in one place, plus build facts.
//
// Kernels live in one file per op and device (<op>_cpu.cpp) and register with TORCH_LIBRARY_IMPL.
// Fake (meta) implementations and autograd formulas are registered from Python (bamco_fast/ops/).
#include <torch/library.h>
#include <torch/extension.h>

#include "cpu_isa.h"

#ifdef _OPENMP
#include <omp.h>
#endif

TORCH_LIBRARY(bamco_fast, m) {
  // Balanced multimodal contrastive loss (BalSCL, BaMCo Eq. 1) with its gradient in one pass.
  //   features (B, V, D), labels (B,) int64, prototypes (C, D); mode 0: one loss over all V views,
  //   mode 1: the mean over unordered view pairs. Returns (loss, grad_features, grad_prototypes); the
  //   gradients are of the loss w.r.t. the inputs when compute_grad, else empty tensors.
  m.def(
      "bamco_loss(Tensor features, Tensor labels, Tensor prototypes, float temperature, int mode, "
      "bool compute_grad) -> (Tensor, Tensor, Tensor)");
  // GLIMS' depthwise atrous block, fused: three dilated (1, 2, 3) depthwise 3x3x3 convs of x (B, c, D, H, W)
  //   with GroupNorm(c, c) + PReLU, 1x1x1 convs 3c -> e -> c with InstanceNorm + PReLU, residual add,
  //   InstanceNorm + PReLU. dw_weight (3, c, 3, 3, 3), norm_weight/norm_bias (3, c), pw1_weight (e, 3c),
  //   pw2_weight (c, e), prelu (6,). The backward recomputes the block from x and returns the gradients
  //   w.r.t. (x, dw_weight, norm_weight, norm_bias, pw1_weight, pw2_weight, prelu).
  m.def(
      "dilated_depthwise_block(Tensor x, Tensor dw_weight, Tensor norm_weight, Tensor norm_bias, "
      "Tensor pw1_weight, Tensor pw2_weight, Tensor prelu, float eps) -> Tensor");
  m.def(
      "dilated_depthwise_block_backward(Tensor grad_y, Tensor x, Tensor dw_weight, Tensor norm_weight, "
      "Tensor norm_bias, Tensor pw1_weight, Tensor pw2_weight, Tensor prelu, float eps) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

namespace bamco_fast {
int64_t dilated_depthwise_block_workspace(bool release);  // csrc/dilated_depthwise_block_cpu.cpp
}  // namespace bamco_fast

namespace {
pybind11::dict build_info() {
  pybind11::dict info;
  info["torch_version"] = BAMCO_FAST_TORCH_VERSION;
  info["compiler"] = BAMCO_FAST_COMPILER;
  info["cpu_isa_levels"] = bamco_fast::cpu_isa::supported_names();
#ifdef _OPENMP
  info["openmp"] = _OPENMP;
  info["openmp_max_threads"] = omp_get_max_threads();
#else
  info["openmp"] = 0;
#endif
  return info;
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "bamco_fast compiled CPU ops (registered under torch.ops.bamco_fast)";
  m.def("build_info", &build_info, "Facts about how this extension was built.");
  m.def("dilated_depthwise_block_workspace", &bamco_fast::dilated_depthwise_block_workspace,
        pybind11::arg("release") = false,
        "Bytes held by the CPU workspace cache of dilated_depthwise_block; release=True frees it first.");
  m.def(
      "cpu_isa", [] { return std::string(bamco_fast::cpu_isa::name(bamco_fast::cpu_isa::current())); },
      "The SIMD level the CPU row kernels run at now: 'avx512', 'avx2' or 'default'.");
  m.def("set_cpu_isa", &bamco_fast::cpu_isa::set_level, pybind11::arg("level"),
        "Run the CPU row kernels at `level` ('auto', 'avx512', 'avx2', 'default'); raises when this CPU "
        "cannot run it.");
}
