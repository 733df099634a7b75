// The one CPU-capability probe. Everything in dermis that depends on the CPU (which convolution
// algorithm, whether bf16 can run, which of dermis's own kernels to use, what a benchmark reports)
// asks here, never the CPU name or /proc/cpuinfo directly.
//
// The answers are oneDNN's: the instruction set its dispatcher uses (dnnl::get_effective_cpu_isa,
// so ONEDNN_MAX_CPU_ISA=AVX2 turns an AVX-512 machine into a faithful AVX2 test bed for oneDNN and
// dermis alike), and whether the primitives a feature needs can be created. Each is asked once.
//
//   if (!cpu::info().bf16) ...            // bf16 convolution/BN/eltwise/pooling kernels exist
//   cpu::require_bf16("flag --precision bf16", "--precision f32");  // or one clear error
#pragma once

#include <string>

namespace dermis::cpu {

// Instruction-set levels oneDNN 2.6 dispatches to, in order.
enum class Isa { sse41, avx, avx2, avx2_vnni, avx512_core, avx512_core_vnni, avx512_core_bf16, avx512_core_amx, other };

struct Info {
  std::string model;     // the CPU's model name ("AMD EPYC 9R14", "unknown" when the system does not say)
  int cores = 0;         // logical CPUs online
  Isa isa = Isa::other;  // what oneDNN dispatches to (after ONEDNN_MAX_CPU_ISA)
  std::string isa_name;  // oneDNN's name for it: "avx2", "avx512_core_bf16", ...
  std::string hw_flags;  // the vector extensions the hardware reports: "avx2 avx512f avx512_bf16 ..."
  bool capped = false;   // ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) limits oneDNN below the hardware
  bool bf16 = false;     // bf16 convolution (fwd, both bwd), batch norm, eltwise and pooling primitives exist
  bool bf16_native = false;  // ... and run on bf16 hardware (AVX512-BF16 or AMX), not emulated
  bool winograd = false;     // oneDNN's f32 Winograd training convolution exists (AVX-512 only in 2.6)
  std::string bf16_missing;  // when !bf16: the first primitive oneDNN could not create
};

// Probed on first use (thread-safe), then fixed for the process.
const Info& info();

// One line: "AMD EPYC 9R14, 2 cores, oneDNN ISA avx512_core_bf16, bf16 native, Winograd yes"
// (" (capped by ONEDNN_MAX_CPU_ISA)" after the ISA when it is; bf16 native, emulated or no).
std::string summary();

// Throws dermis::Error unless bf16 can run: which instruction set bf16 needs, what this CPU has,
// and that f32 works. `what` names the request ("flag --precision bf16"), `f32` the way to ask for
// f32 instead ("--precision f32").
void require_bf16(const std::string& what, const std::string& f32);

}  // namespace dermis::cpu
