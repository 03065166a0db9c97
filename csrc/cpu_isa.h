// The x86 SIMD level that the CPU row kernels run at, chosen at run time.
//
// The per-row loops of the CPU ops are compiled three times: for x86-64-v4 ("avx512": AVX-512 F/BW/CD/DQ/VL),
// x86-64-v3 ("avx2": AVX2, FMA, BMI) and the baseline ("default": SSE2). A call runs the version of the
// current level: the best one this CPU supports, unless the environment variable BAMCO_FAST_CPU_ISA (read
// at the first call) or set_level() asks for a lower one. Asking for a level the CPU lacks is
// an error, never a silent fallback. Tests use this to check every version against the reference on one
// machine.
#pragma once

#include <string>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define BAMCO_MULTIVERSION 1
#else
#define BAMCO_MULTIVERSION 0
#endif

namespace bamco_fast::cpu_isa {

enum class Level : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// The level the row kernels run at now.
Level current();
// The highest level this CPU (and this build) can run.
Level best_supported();
// "default", "avx2" or "avx512".
const char* name(Level level);
// Names of every level this CPU can run, lowest first.
std::vector<std::string> supported_names();
// Run the row kernels at `level_name` ("auto" = best_supported()); throws c10::Error naming the CPU's levels
// when it cannot run that level.
void set_level(const std::string& level_name);

}  // namespace bamco_fast::cpu_isa
