// Run-time choice of the SIMD level of the CPU row kernels (see cpu_isa.h).
#include "cpu_isa.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <atomic>
#include <cstdlib>

namespace bamco_fast::cpu_isa {
namespace {

constexpr const char* kEnvVar = "BAMCO_FAST_CPU_ISA";

Level detect() {
#if BAMCO_MULTIVERSION
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return Level::kAvx512;
  if (__builtin_cpu_supports("x86-64-v3")) return Level::kAvx2;
#endif
  return Level::kDefault;
}

Level parse(const std::string& text, const char* source) {
  if (text.empty() || text == "auto") return best_supported();
  for (const Level level : {Level::kDefault, Level::kAvx2, Level::kAvx512}) {
    if (text == name(level)) {
      TORCH_CHECK(static_cast<int>(level) <= static_cast<int>(best_supported()), "bamco_fast: ", source,
                  " asks for the '", text, "' CPU kernels, but this CPU runs only ",
                  c10::Join(", ", supported_names()));
      return level;
    }
  }
  TORCH_CHECK(false, "bamco_fast: ", source, " must be one of auto, default, avx2, avx512, got '", text, "'");
}

std::atomic<int>& chosen() {
  static std::atomic<int> level = [] {
    const char* env = std::getenv(kEnvVar);
    return static_cast<int>(parse(env == nullptr ? "" : env, "the BAMCO_FAST_CPU_ISA environment variable"));
  }();
  return level;
}

}  // namespace

Level best_supported() {
  static const Level best = detect();
  return best;
}

Level current() { return static_cast<Level>(chosen().load(std::memory_order_relaxed)); }

const char* name(Level level) {
  switch (level) {
    case Level::kAvx512:
      return "avx512";
    case Level::kAvx2:
      return "avx2";
    default:
      return "default";
  }
}

std::vector<std::string> supported_names() {
  std::vector<std::string> names;
  for (int l = 0; l <= static_cast<int>(best_supported()); ++l) names.emplace_back(name(static_cast<Level>(l)));
  return names;
}

void set_level(const std::string& level_name) {
  chosen().store(static_cast<int>(parse(level_name, "set_cpu_isa")), std::memory_order_relaxed);
}

}  // namespace bamco_fast::cpu_isa
