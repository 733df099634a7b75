// What every benchmark reports about the machine it ran on: the CPU model, its core count and the
// instruction set oneDNN dispatched to (framework/cpu.h's probe), as a JSON object for the output
// and as a header line on stderr (stdout stays one JSON object per measurement).
#pragma once

#include <fmt/format.h>

#include <cstdio>

#include "framework/cpu.h"
#include "framework/io/json.h"

namespace dermis::bench {

inline json::Object cpu_json() {
  const cpu::Info& c = cpu::info();
  return json::Object{{"model", c.model},       {"cores", c.cores},     {"onednn_isa", c.isa_name},
                      {"isa_capped", c.capped}, {"hw_flags", c.hw_flags}, {"bf16", c.bf16},
                      {"bf16_native", c.bf16_native}, {"winograd", c.winograd}};
}

inline void print_cpu_header(const char* bench) { fmt::print(stderr, "{}: cpu: {}\n", bench, cpu::summary()); }

}  // namespace dermis::bench
