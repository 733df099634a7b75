// bench/ops: framework overhead per op. Times dermis' conv2d, batch_norm2d (+ReLU), max_pool2d and
// CBAM forward and backward against the raw oneDNN primitives for the same shapes and layouts
// (created once, executed directly on oneDNN memories), alternating A B A B; prints one JSON object
// per op with medians in milliseconds and the ratio dermis / raw (1.0: no overhead). CBAM has no
// oneDNN primitive: it is compared with the same block composed from dermis' primitive ops.
// Shapes are those of resnet18_cbam at 112x112 with batch 32 unless --batch changes N.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include <fmt/format.h>

#include "bench/cpu_report.h"
#include "framework/dnnl/context.h"
#include "framework/io/json.h"
#include "framework/ops.h"
#include "framework/ops/conv2d.h"
#include "framework/random.h"
#include "framework/cli.h"

using namespace dermis;
using dnnl::memory;
namespace ctx = dermis::dnnl_ctx;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A tensor of random values in the given oneDNN layout.
Tensor random_in(const Shape& s, const memory::desc& md, Generator& g) { return Tensor::randn(s, g).to_desc(md); }

memory::desc any(const memory::dims& d) { return memory::desc(d, memory::data_type::f32, memory::format_tag::any); }

struct Timing {
  std::vector<double> ours_fwd, ours_fwdbwd, raw_fwd, raw_fwdbwd;
};

// Runs the four closures `reps` times each, alternating ours and raw, after one warm-up call.
Timing time_pairs(int reps, const std::function<void()>& ours_f, const std::function<void()>& ours_fb,
                  const std::function<void()>& raw_f, const std::function<void()>& raw_fb) {
  Timing t;
  ours_f(), ours_fb(), raw_f(), raw_fb();
  auto ms = [](const std::function<void()>& f) {
    const double t0 = now();
    f();
    return (now() - t0) * 1e3;
  };
  for (int i = 0; i < reps; ++i) {
    t.ours_fwd.push_back(ms(ours_f));
    t.raw_fwd.push_back(ms(raw_f));
    t.ours_fwdbwd.push_back(ms(ours_fb));
    t.raw_fwdbwd.push_back(ms(raw_fb));
  }
  return t;
}

void report(const std::string& op, const std::string& shape, const std::string& baseline, const Timing& t) {
  const double of = median(t.ours_fwd), rf = median(t.raw_fwd), ofb = median(t.ours_fwdbwd), rfb = median(t.raw_fwdbwd);
  json::Object o{{"bench", "ops"},           {"op", op},
                 {"shape", shape},           {"baseline", baseline},
                 {"dermis_fwd_ms", of},      {"baseline_fwd_ms", rf},
                 {"dermis_fwd_bwd_ms", ofb}, {"baseline_fwd_bwd_ms", rfb},
                 {"fwd_ratio", of / rf},     {"fwd_bwd_ratio", ofb / rfb},
                 {"threads", num_threads()}, {"cpu", bench::cpu_json()}};
  std::printf("%s\n", json::dump(o).c_str());
  std::fflush(stdout);
}

void conv_case(int64_t N, int64_t C, int64_t OC, int64_t H, int64_t K, int64_t stride, int reps, Generator& g) {
  const int64_t pad = K / 2, Ho = (H + 2 * pad - K) / stride + 1;
  const memory::dims src{N, C, H, H}, wei{OC, C, K, K}, dst{N, OC, Ho, Ho}, st{stride, stride}, pl{pad, pad};
  const memory::dims pr{(Ho - 1) * stride + K - H - pad, (Ho - 1) * stride + K - H - pad};
  auto& eng = ctx::engine();
  // The raw primitives are oneDNN's direct convolution, or its Winograd under --conv onednn-winograd
  // where it applies; dermis's side runs what --conv picks (auto: the fastest, measured).
  const Conv2dParams p{.stride = stride, .pad = pad};
  const dnnl::algorithm alg = conv_algorithm() == ConvAlgorithm::onednn_winograd &&
                                      detail::conv2d_uses_winograd({N, C, H, H}, {OC, C, K, K}, p)
                                  ? dnnl::algorithm::convolution_winograd
                                  : dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fpd(
      {dnnl::prop_kind::forward_training, alg, any(src), any(wei), memory::desc(), any(dst), st, pl, pr}, eng);
  dnnl::convolution_backward_data::primitive_desc bdpd({alg, any(src), any(wei), any(dst), st, pl, pr}, eng, fpd);
  dnnl::convolution_backward_weights::primitive_desc bwpd(
      {alg, any(src), any(wei), memory::desc(), any(dst), st, pl, pr}, eng, fpd);
  dnnl::convolution_forward fwd(fpd);
  dnnl::convolution_backward_data bdata(bdpd);
  dnnl::convolution_backward_weights bweights(bwpd);
  const Shape xs{N, C, H, H}, ys{N, OC, Ho, Ho};
  Tensor x = random_in(xs, fpd.src_desc(), g), w = Tensor::randn({OC, C, K, K}, g, 0.f, 0.05f);
  Tensor wb = w.to_desc(fpd.weights_desc()), y = Tensor::with_desc(ys, fpd.dst_desc());
  Tensor dy = random_in(ys, bdpd.diff_dst_desc(), g), dx = Tensor::with_desc(xs, bdpd.diff_src_desc());
  Tensor dw = Tensor::with_desc({OC, C, K, K}, bwpd.diff_weights_desc());
  auto raw_f = [&] { ctx::execute(fwd, {{DNNL_ARG_SRC, x.memory()}, {DNNL_ARG_WEIGHTS, wb.memory()}, {DNNL_ARG_DST, y.memory()}}, "fwd"); };
  auto raw_fb = [&] {
    raw_f();
    ctx::execute(bdata, {{DNNL_ARG_DIFF_DST, dy.memory()}, {DNNL_ARG_WEIGHTS, wb.memory()}, {DNNL_ARG_DIFF_SRC, dx.memory()}}, "bwd data");
    ctx::execute(bweights, {{DNNL_ARG_DIFF_DST, dy.memory()}, {DNNL_ARG_SRC, x.memory()}, {DNNL_ARG_DIFF_WEIGHTS, dw.memory()}}, "bwd weights");
  };
  Var xv(x, true), wv = Var::parameter(w);
  auto ours_f = [&] {
    NoGrad ng;
    conv2d(xv, wv, Var(), p);
  };
  auto ours_fb = [&] {
    xv.zero_grad(), wv.zero_grad();
    conv2d(xv, wv, Var(), p).backward(dy);
  };
  report("conv2d", fmt::format("x({},{},{},{}) w({},{},{},{}) stride {}", N, C, H, H, OC, C, K, K, stride),
         alg == dnnl::algorithm::convolution_winograd ? "oneDNN Winograd convolution primitives"
                                                      : "oneDNN direct convolution primitives", time_pairs(reps, ours_f, ours_fb, raw_f, raw_fb));
}

void bn_case(int64_t N, int64_t C, int64_t H, bool relu, int reps, Generator& g) {
  auto& eng = ctx::engine();
  const Shape xs{N, C, H, H};
  // The layout a convolution would hand over.
  dnnl::convolution_forward::desc cd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                     any({N, C, H, H}), any({C, C, 3, 3}), memory::desc(), any({N, C, H, H}), {1, 1},
                                     {1, 1}, {1, 1});
  const memory::desc md = dnnl::convolution_forward::primitive_desc(cd, eng).dst_desc();
  auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  if (relu) flags = flags | dnnl::normalization_flags::fuse_norm_relu;
  dnnl::batch_normalization_forward::primitive_desc fpd({dnnl::prop_kind::forward_training, md, 1e-5f, flags}, eng);
  dnnl::batch_normalization_backward::primitive_desc bpd({dnnl::prop_kind::backward, md, md, 1e-5f, flags}, eng, fpd);
  dnnl::batch_normalization_forward fwd(fpd);
  dnnl::batch_normalization_backward bwd(bpd);
  Tensor x = random_in(xs, md, g), y = Tensor::with_desc(xs, md), dy = random_in(xs, md, g), dx = Tensor::with_desc(xs, md);
  Tensor scale = Tensor::full({C}, 1.f), shift = Tensor::zeros({C}), mean = Tensor::empty({C}), var = Tensor::empty({C});
  Tensor dscale = Tensor::empty({C}), dshift = Tensor::empty({C});
  memory ws = fpd.workspace_desc().get_size() ? memory(fpd.workspace_desc(), eng) : memory();
  auto raw_f = [&] {
    std::unordered_map<int, memory> a{{DNNL_ARG_SRC, x.memory()},       {DNNL_ARG_DST, y.memory()},
                                      {DNNL_ARG_SCALE, scale.memory()}, {DNNL_ARG_SHIFT, shift.memory()},
                                      {DNNL_ARG_MEAN, mean.memory()},   {DNNL_ARG_VARIANCE, var.memory()}};
    if (ws) a[DNNL_ARG_WORKSPACE] = ws;
    ctx::execute(fwd, a, "bn fwd");
  };
  auto raw_fb = [&] {
    raw_f();
    std::unordered_map<int, memory> a{
        {DNNL_ARG_SRC, x.memory()},       {DNNL_ARG_DIFF_DST, dy.memory()},       {DNNL_ARG_SCALE, scale.memory()},
        {DNNL_ARG_SHIFT, shift.memory()}, {DNNL_ARG_MEAN, mean.memory()},         {DNNL_ARG_VARIANCE, var.memory()},
        {DNNL_ARG_DIFF_SRC, dx.memory()}, {DNNL_ARG_DIFF_SCALE, dscale.memory()}, {DNNL_ARG_DIFF_SHIFT, dshift.memory()}};
    if (ws) a[DNNL_ARG_WORKSPACE] = ws;
    ctx::execute(bwd, a, "bn bwd");
  };
  Var xv(x, true), wv = Var::parameter(Tensor::full({C}, 1.f)), bv = Var::parameter(Tensor::zeros({C}));
  Tensor rm = Tensor::zeros({C}), rv = Tensor::full({C}, 1.f);
  auto ours_f = [&] {
    NoGrad ng;
    batch_norm2d(xv, wv, bv, rm, rv, {.training = true, .relu = relu});
  };
  auto ours_fb = [&] {
    xv.zero_grad(), wv.zero_grad(), bv.zero_grad();
    batch_norm2d(xv, wv, bv, rm, rv, {.training = true, .relu = relu}).backward(dy);
  };
  report(relu ? "batch_norm2d+relu" : "batch_norm2d", fmt::format("({},{},{},{})", N, C, H, H),
         "oneDNN batch normalization primitives", time_pairs(reps, ours_f, ours_fb, raw_f, raw_fb));
}

void pool_case(int64_t N, int64_t C, int64_t H, int reps, Generator& g) {
  auto& eng = ctx::engine();
  const int64_t Ho = (H + 2 - 3) / 2 + 1;
  const Shape xs{N, C, H, H}, ys{N, C, Ho, Ho};
  dnnl::convolution_forward::desc cd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                     any({N, 3, 2 * H, 2 * H}), any({C, 3, 7, 7}), memory::desc(), any({N, C, H, H}),
                                     {2, 2}, {3, 3}, {2, 2});
  const memory::desc md = dnnl::convolution_forward::primitive_desc(cd, eng).dst_desc();  // the stem's layout
  const memory::desc ymd = any({N, C, Ho, Ho});
  dnnl::pooling_forward::primitive_desc fpd(
      {dnnl::prop_kind::forward_training, dnnl::algorithm::pooling_max, md, ymd, {2, 2}, {3, 3}, {1, 1}, {1, 1}}, eng);
  dnnl::pooling_backward::primitive_desc bpd(
      {dnnl::algorithm::pooling_max, md, fpd.dst_desc(), {2, 2}, {3, 3}, {1, 1}, {1, 1}}, eng, fpd);
  dnnl::pooling_forward fwd(fpd);
  dnnl::pooling_backward bwd(bpd);
  Tensor x = random_in(xs, md, g), y = Tensor::with_desc(ys, fpd.dst_desc()), dy = random_in(ys, fpd.dst_desc(), g);
  Tensor dx = Tensor::with_desc(xs, bpd.diff_src_desc());
  memory ws(fpd.workspace_desc(), eng);
  auto raw_f = [&] { ctx::execute(fwd, {{DNNL_ARG_SRC, x.memory()}, {DNNL_ARG_DST, y.memory()}, {DNNL_ARG_WORKSPACE, ws}}, "pool"); };
  auto raw_fb = [&] {
    raw_f();
    ctx::execute(bwd, {{DNNL_ARG_DIFF_DST, dy.memory()}, {DNNL_ARG_DIFF_SRC, dx.memory()}, {DNNL_ARG_WORKSPACE, ws}}, "pool bwd");
  };
  Var xv(x, true);
  const Pool2dParams p{.kernel = 3, .stride = 2, .pad = 1};
  auto ours_f = [&] {
    NoGrad ng;
    max_pool2d(xv, p);
  };
  auto ours_fb = [&] {
    xv.zero_grad();
    max_pool2d(xv, p).backward(dy);
  };
  report("max_pool2d", fmt::format("({},{},{},{}) 3x3 stride 2", N, C, H, H), "oneDNN pooling primitives",
         time_pairs(reps, ours_f, ours_fb, raw_f, raw_fb));
}

void cbam_case(int64_t N, int64_t C, int64_t H, int reps, Generator& g) {
  auto& eng = ctx::engine();
  dnnl::convolution_forward::desc cd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                     any({N, C, H, H}), any({C, C, 3, 3}), memory::desc(), any({N, C, H, H}), {1, 1},
                                     {1, 1}, {1, 1});
  const memory::desc md = dnnl::convolution_forward::primitive_desc(cd, eng).dst_desc();
  const Shape xs{N, C, H, H};
  const int64_t hidden = std::max<int64_t>(C / 16, 1);
  Tensor x = random_in(xs, md, g), dy = random_in(xs, md, g);
  CbamWeights w{Var::parameter(Tensor::randn({hidden, C}, g, 0.f, 0.1f)), Var::parameter(Tensor::zeros({hidden})),
                Var::parameter(Tensor::randn({C, hidden}, g, 0.f, 0.1f)), Var::parameter(Tensor::zeros({C})),
                Var::parameter(Tensor::randn({1, 2, 7, 7}, g, 0.f, 0.1f)), Var::parameter(Tensor::full({1}, 1.f)),
                Var::parameter(Tensor::zeros({1}))};
  Tensor rm = Tensor::zeros({1}), rv = Tensor::full({1}, 1.f);
  Var xv(x, true);
  auto run = [&](bool fused, bool backward) {
    if (!backward) {
      NoGrad ng;
      fused ? cbam(xv, w, rm, rv) : cbam_composed(xv, w, rm, rv);
      return;
    }
    xv.zero_grad();
    (fused ? cbam(xv, w, rm, rv) : cbam_composed(xv, w, rm, rv)).backward(dy);
  };
  report("cbam", fmt::format("({},{},{},{}) reduction 16, 7x7", N, C, H, H),
         "the same block composed from dermis ops (no oneDNN primitive exists)",
         time_pairs(
             reps, [&] { run(true, false); }, [&] { run(true, true); }, [&] { run(false, false); },
             [&] { run(false, true); }));
}

int run(int argc, char** argv) {
  cli::Args args("usage: bench/ops [flags]\nPer-op forward and forward+backward time of dermis against the raw oneDNN "
                 "primitives\n(resnet18_cbam shapes at 112x112); one JSON object per op.");
  args.add("batch", "32", "batch size N");
  args.add("threads", "2", "OpenMP threads");
  args.add("reps", "20", "timed repetitions per op and side (medians are reported)");
  args.add("conv", "auto",
           "dermis's convolution algorithm: auto, direct, winograd (dermis's) or onednn-winograd; the baseline is "
           "oneDNN's direct convolution, or its Winograd with onednn-winograd");
  args.add("only", "", "run only the ops whose name contains this (conv2d, batch_norm, max_pool, cbam)");
  if (!args.parse(argc, argv)) return 0;
  set_num_threads(static_cast<int>(args.integer("threads", 1, 1024)));
  set_conv_algorithm(cli::conv_algorithm_flag(args.str("conv")));
  const int64_t N = args.integer("batch", 1, 4096);
  const int reps = static_cast<int>(args.integer("reps", 1, 100000));
  bench::print_cpu_header("bench/ops");
  Generator g(0);
  const std::string only = args.str("only");
  auto want = [&](const char* op) { return std::string(op).find(only) != std::string::npos; };
  if (want("conv2d")) {
    conv_case(N, 3, 64, 112, 7, 2, reps, g);    // stem
    conv_case(N, 64, 64, 28, 3, 1, reps, g);    // layer1
    conv_case(N, 128, 128, 14, 3, 1, reps, g);  // layer2
    conv_case(N, 256, 256, 7, 3, 1, reps, g);   // layer3
    conv_case(N, 512, 512, 4, 3, 1, reps, g);   // layer4
  }
  if (want("batch_norm")) {
    bn_case(N, 64, 28, false, reps, g);
    bn_case(N, 64, 28, true, reps, g);
  }
  if (want("max_pool")) pool_case(N, 64, 56, reps, g);
  if (want("cbam")) {
    cbam_case(N, 64, 28, reps, g);
    cbam_case(N, 256, 7, reps, g);
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) { return dermis::cli::run_main("bench/ops", [&] { return run(argc, argv); }); }
