// bench/cbam: the fused CBAM op against the same block composed from primitive ops, forward and
// forward+backward, alternating A B A B in one process; prints one JSON object per shape with the
// medians and the ratio composed / fused (> 1: the fused op is faster).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <vector>

#include "bench/cpu_report.h"
#include "framework/io/json.h"
#include "framework/ops.h"
#include "framework/random.h"
#include "framework/cli.h"

using namespace dermis;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Shape parse_shape(const std::string& s) {
  Shape r;
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, ',')) {
    char* end = nullptr;
    const long v = std::strtol(t.c_str(), &end, 10);
    DERMIS_CHECK(!t.empty() && *end == '\0' && v > 0, "flag --shapes: '{}' is not a list of positive N,C,H,W", s);
    r.push_back(v);
  }
  DERMIS_CHECK(r.size() == 4, "flag --shapes: '{}' needs four numbers N,C,H,W", s);
  return r;
}

int run(int argc, char** argv) {
  cli::Args args("usage: bench/cbam [flags]\nTimes the fused CBAM op against its composition from primitive ops.");
  args.add("shapes", "32,64,56,56;32,256,14,14", "semicolon-separated N,C,H,W shapes");
  args.add("reps", "7", "timed repetitions per variant (medians reported)");
  args.add("threads", "2", "OpenMP threads");
  args.add("layout", "blocked", "input layout: blocked (nChw16c, as inside a network) or plain (NCHW)");
  if (!args.parse(argc, argv)) return 0;
  set_num_threads(static_cast<int>(args.integer("threads", 1, 1024)));
  const int reps = static_cast<int>(args.integer("reps", 1, 1000));
  const std::string layout = args.str("layout");
  DERMIS_CHECK(layout == "blocked" || layout == "plain", "flag --layout: expected blocked or plain, got '{}'", layout);
  bench::print_cpu_header("bench/cbam");
  std::stringstream ss(args.str("shapes"));
  std::string item;
  while (std::getline(ss, item, ';')) {
    const Shape s = parse_shape(item);
    const int64_t C = s[1], Cr = std::max<int64_t>(C / 16, 1);
    Generator g(1);
    Tensor x0 = Tensor::randn(s, g);
    if (layout == "blocked")
      x0 = x0.to_desc(dnnl::memory::desc({s[0], s[1], s[2], s[3]}, dnnl::memory::data_type::f32,
                                         dnnl::memory::format_tag::nChw16c));
    Tensor dy = Tensor::randn(s, g).to_desc(x0.desc());
    CbamWeights w{Var::parameter(Tensor::randn({Cr, C}, g, 0, 0.1f)), Var::parameter(Tensor::zeros({Cr})),
                  Var::parameter(Tensor::randn({C, Cr}, g, 0, 0.1f)), Var::parameter(Tensor::zeros({C})),
                  Var::parameter(Tensor::randn({1, 2, 7, 7}, g, 0, 0.1f)), Var::parameter(Tensor::full({1}, 1.f)),
                  Var::parameter(Tensor::zeros({1}))};
    Tensor rm = Tensor::zeros({1}), rv = Tensor::full({1}, 1.f);
    auto fwd = [&](bool fused, bool backward) {
      Var x = Var::parameter(x0);
      const double t0 = now();
      Var y = fused ? cbam(x, w, rm, rv) : cbam_composed(x, w, rm, rv);
      if (backward) y.backward(dy);
      const double t = now() - t0;
      for (auto* v : {&w.fc1_w, &w.fc1_b, &w.fc2_w, &w.fc2_b, &w.conv_w, &w.bn_w, &w.bn_b}) v->zero_grad();
      return t;
    };
    for (bool f : {true, false}) fwd(f, true), fwd(f, true);  // warm-up: primitive creation
    std::vector<double> ff, cf, fb, cb;
    for (int r = 0; r < reps; ++r) {
      ff.push_back(fwd(true, false));
      cf.push_back(fwd(false, false));
      fb.push_back(fwd(true, true));
      cb.push_back(fwd(false, true));
    }
    json::Object o{{"bench", "cbam"},
                   {"shape", json::Array{s[0], s[1], s[2], s[3]}},
                   {"layout", layout},
                   {"threads", num_threads()},
                   {"reps", reps},
                   {"fused_fwd_ms", median(ff) * 1e3},
                   {"composed_fwd_ms", median(cf) * 1e3},
                   {"fused_fwd_bwd_ms", median(fb) * 1e3},
                   {"composed_fwd_bwd_ms", median(cb) * 1e3},
                   {"speedup_fwd", median(cf) / median(ff)},
                   {"speedup_fwd_bwd", median(cb) / median(fb)},
                   {"cpu", bench::cpu_json()}};
    std::printf("%s\n", json::dump(o).c_str());
    std::fflush(stdout);
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return dermis::cli::run_main("bench/cbam", [&] { return run(argc, argv); });
}
