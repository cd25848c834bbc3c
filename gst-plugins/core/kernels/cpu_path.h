// Which hand-written CPU kernels run on this machine: the one dispatch rule
// every model's hot kernels follow (rows_gemm.h, packed_gemm.h,
// packed_conv.h).
//
// The path is chosen once per process from cpuid, and can be lowered (never
// raised) with the environment variable
// CHATTERBOX_CPU=generic|avx2|avx512|avx512vnni:
//  - generic: no hand-written SIMD; every kernel falls back to LibTorch/BLAS.
//  - avx2:    AVX2 + FMA bodies.
//  - avx512:  AVX-512 F/VL bodies (and AVX2 where a kernel has no AVX-512 one).
//  - avx512vnni: also the AVX-512 VNNI integer dot products (int8 decode;
//    needs AVX-512 BW and DQ too, which every VNNI CPU has).
// The test command runs the model suites again with CHATTERBOX_CPU=generic,
// so the fallback a CPU without AVX-512 (or without AVX2) takes is tested on
// any machine.
#pragma once

#include <string>

namespace chatterbox::kernels {

enum class CpuPath { Generic = 0, Avx2 = 1, Avx512 = 2, Avx512Vnni = 3 };

// What this CPU supports (cpuid), ignoring CHATTERBOX_CPU.
CpuPath detected_cpu_path();

// The path in use: detected_cpu_path(), lowered by CHATTERBOX_CPU. An
// unknown value, or one above what the CPU has, is reported once on stderr
// and ignored (or clamped to the CPU's).
CpuPath cpu_path();

inline bool cpu_path_at_least(CpuPath p) { return static_cast<int>(cpu_path()) >= static_cast<int>(p); }

const char* cpu_path_name(CpuPath p);

// "Intel(R) Xeon(R) ... (kernels: avx512)": for benches and logs.
std::string cpu_description();

}  // namespace chatterbox::kernels
