// The CPU-capability probe (see cpu.h): oneDNN's effective ISA and trial creation of the primitive
// descriptors a feature needs.
#include "cpu.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "dnnl/context.h"
#include "error.h"

namespace dermis::cpu {

namespace {
using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;

Isa from_dnnl(dnnl::cpu_isa i) {
  switch (i) {
    case dnnl::cpu_isa::sse41: return Isa::sse41;
    case dnnl::cpu_isa::avx: return Isa::avx;
    case dnnl::cpu_isa::avx2: return Isa::avx2;
    case dnnl::cpu_isa::avx2_vnni: return Isa::avx2_vnni;
    case dnnl::cpu_isa::avx512_core: return Isa::avx512_core;
    case dnnl::cpu_isa::avx512_core_vnni: return Isa::avx512_core_vnni;
    case dnnl::cpu_isa::avx512_core_bf16: return Isa::avx512_core_bf16;
    case dnnl::cpu_isa::avx512_core_amx: return Isa::avx512_core_amx;
    default: return Isa::other;
  }
}

const char* name_of(Isa i) {
  switch (i) {
    case Isa::sse41: return "sse41";
    case Isa::avx: return "avx";
    case Isa::avx2: return "avx2";
    case Isa::avx2_vnni: return "avx2_vnni";
    case Isa::avx512_core: return "avx512_core";
    case Isa::avx512_core_vnni: return "avx512_core_vnni";
    case Isa::avx512_core_bf16: return "avx512_core_bf16";
    case Isa::avx512_core_amx: return "avx512_core_amx";
    case Isa::other: break;
  }
  return "other";
}

// "model name" and the vector-extension flags of the first processor in /proc/cpuinfo.
void read_cpuinfo(Info& in, Isa& hw) {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(f, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && in.model.empty()) in.model = value;
    if (key == "flags" && flags.empty()) {
      std::istringstream s(value);
      for (std::string w; s >> w;) flags.insert(w);
    }
  }
  if (in.model.empty()) in.model = "unknown";
  for (const char* w : {"avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                        "amx_tile", "amx_bf16"})
    if (flags.count(w)) {
      if (!in.hw_flags.empty()) in.hw_flags += ' ';
      in.hw_flags += w;
    }
  const bool core = flags.count("avx512f") && flags.count("avx512bw") && flags.count("avx512vl") && flags.count("avx512dq");
  hw = flags.count("amx_bf16") && core       ? Isa::avx512_core_amx
       : flags.count("avx512_bf16") && core  ? Isa::avx512_core_bf16
       : flags.count("avx512_vnni") && core  ? Isa::avx512_core_vnni
       : core                                ? Isa::avx512_core
       : flags.count("avx_vnni")             ? Isa::avx2_vnni
       : flags.count("avx2")                 ? Isa::avx2
       : flags.count("avx")                  ? Isa::avx
                                             : Isa::sse41;
}

// Tries to create what `make` creates; on failure records `what` in *missing.
bool can_create(const char* what, const std::function<void()>& make, std::string* missing) {
  try {
    make();
    return true;
  } catch (const dnnl::error&) {
    if (missing && missing->empty()) *missing = what;
    return false;
  }
}

// The bf16 primitives dermis's mixed precision runs: convolution forward, backward-data and
// backward-weights (f32 weight gradients), batch norm forward and backward, ReLU and max pooling,
// on the blocked layout convolutions hand over.
bool probe_bf16(std::string* missing) {
  const auto& eng = dnnl_ctx::engine();
  const memory::dims x{2, 16, 8, 8}, w{16, 16, 3, 3}, s{1, 1}, d{0, 0}, p{1, 1};
  const memory::desc xa(x, dt::bf16, tag::any), wa(w, dt::bf16, tag::any), wf(w, dt::f32, tag::any),
      bias({16}, dt::f32, tag::any), blocked(x, dt::bf16, tag::nChw16c);
  const auto fwd_prop = dnnl::prop_kind::forward_training;
  const auto alg = dnnl::algorithm::convolution_direct;
  bool ok = can_create("bf16 convolution", [&] {
    dnnl::convolution_forward::primitive_desc f({fwd_prop, alg, xa, wa, bias, xa, s, d, p, p}, eng);
    dnnl::convolution_backward_data::primitive_desc({alg, xa, wa, xa, s, d, p, p}, eng, f);
    dnnl::convolution_backward_weights::primitive_desc({alg, xa, wf, bias, xa, s, d, p, p}, eng, f);
  }, missing);
  ok = ok && can_create("bf16 batch normalization", [&] {
    const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    dnnl::batch_normalization_forward::primitive_desc f({fwd_prop, blocked, 1e-5f, flags}, eng);
    dnnl::batch_normalization_backward::primitive_desc({dnnl::prop_kind::backward, blocked, blocked, 1e-5f, flags}, eng,
                                                        f);
  }, missing);
  ok = ok && can_create("bf16 eltwise (ReLU)", [&] {
    dnnl::eltwise_forward::primitive_desc f({fwd_prop, dnnl::algorithm::eltwise_relu, blocked, 0.f, 0.f}, eng);
    dnnl::eltwise_backward::primitive_desc({dnnl::algorithm::eltwise_relu, blocked, blocked, 0.f, 0.f}, eng, f);
  }, missing);
  ok = ok && can_create("bf16 max pooling", [&] {
    const memory::desc y({2, 16, 4, 4}, dt::bf16, tag::any);
    dnnl::pooling_forward::primitive_desc f(
        {fwd_prop, dnnl::algorithm::pooling_max, blocked, y, {2, 2}, {2, 2}, {0, 0}, {0, 0}}, eng);
    dnnl::pooling_backward::primitive_desc(
        {dnnl::algorithm::pooling_max, blocked, y, {2, 2}, {2, 2}, {0, 0}, {0, 0}}, eng, f);
  }, missing);
  return ok;
}

// oneDNN's f32 Winograd training kernels on a ResNet-like shape.
bool probe_winograd() {
  const auto& eng = dnnl_ctx::engine();
  const memory::dims x{2, 64, 14, 14}, w{64, 64, 3, 3}, s{1, 1}, d{0, 0}, p{1, 1};
  const memory::desc xa(x, dt::f32, tag::any), wa(w, dt::f32, tag::any);
  const auto alg = dnnl::algorithm::convolution_winograd;
  return can_create("winograd", [&] {
    dnnl::convolution_forward::primitive_desc f({dnnl::prop_kind::forward_training, alg, xa, wa, xa, s, d, p, p}, eng);
    dnnl::convolution_backward_data::primitive_desc({alg, xa, wa, xa, s, d, p, p}, eng, f);
    dnnl::convolution_backward_weights::primitive_desc({alg, xa, wa, xa, s, d, p, p}, eng, f);
  }, nullptr);
}

Info probe() {
  Info in;
  Isa hw = Isa::other;
  read_cpuinfo(in, hw);
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  in.cores = n > 0 ? static_cast<int>(n) : 1;
  in.isa = from_dnnl(dnnl::get_effective_cpu_isa());
  in.isa_name = name_of(in.isa);
  const bool env = (std::getenv("ONEDNN_MAX_CPU_ISA") && *std::getenv("ONEDNN_MAX_CPU_ISA")) ||
                   (std::getenv("DNNL_MAX_CPU_ISA") && *std::getenv("DNNL_MAX_CPU_ISA"));
  in.capped = env && in.isa != Isa::other && hw != Isa::other && static_cast<int>(in.isa) < static_cast<int>(hw);
  in.bf16 = probe_bf16(&in.bf16_missing);
  in.bf16_native = in.bf16 && (in.isa == Isa::avx512_core_bf16 || in.isa == Isa::avx512_core_amx);
  in.winograd = probe_winograd();
  return in;
}
}  // namespace

const Info& info() {
  static const Info in = probe();
  return in;
}

std::string summary() {
  const Info& in = info();
  return fmt::format("{}, {} cores, oneDNN ISA {}{}, bf16 {}, Winograd {}", in.model, in.cores, in.isa_name,
                     in.capped ? " (capped by ONEDNN_MAX_CPU_ISA)" : "",
                     in.bf16 ? (in.bf16_native ? "native" : "emulated") : "no", in.winograd ? "yes" : "no");
}

void require_bf16(const std::string& what, const std::string& f32) {
  const Info& in = info();
  if (in.bf16) return;
  DERMIS_FAIL(
      "{}: bf16 needs oneDNN's bf16 kernels, which need AVX-512 (avx512_core; native with AVX512-BF16 or AMX), but "
      "oneDNN runs this CPU ({}) at {}{} and has no {} kernel for it; {} works on every CPU",
      what, in.model, in.isa_name, in.capped ? " (capped by ONEDNN_MAX_CPU_ISA)" : "", in.bf16_missing, f32);
}

}  // namespace dermis::cpu
