// CBAM: the fused op against (1) a PyTorch reference (golden file from tests/make_cbam_golden.py),
// (2) the same block composed from primitive ops, forward and every gradient, and (3) finite
// differences for x and every parameter.
#define BOOST_TEST_MODULE cbam
#include <array>
#include <cmath>
#include <string>

#include "framework/io/json.h"
#include "framework/io/safetensors.h"
#include "gradcheck.h"
#include "testing.h"

using namespace dermis;

#ifndef DERMIS_TEST_DATA
#error "DERMIS_TEST_DATA must point at tests/"
#endif

namespace {

// Max-norm relative error: max_i |a_i - b_i| / max_i |b_i|.
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0 ? num / den : num;
}

Tensor formula(const Shape& s, double a, double b, double scale, bool cosine) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] = static_cast<float>(scale * (cosine ? std::cos(a * i + b) : std::sin(a * i + b)));
  return t;
}

struct Block {
  CbamWeights w;
  Tensor rm, rv;
};

Block random_block(int64_t C, int64_t Cr, int64_t k, Generator& g) {
  Block b;
  b.w.fc1_w = Var::parameter(Tensor::randn({Cr, C}, g, 0, 0.5f));
  b.w.fc1_b = Var::parameter(Tensor::randn({Cr}, g, 0, 0.2f));
  b.w.fc2_w = Var::parameter(Tensor::randn({C, Cr}, g, 0, 0.5f));
  b.w.fc2_b = Var::parameter(Tensor::randn({C}, g, 0, 0.2f));
  b.w.conv_w = Var::parameter(Tensor::randn({1, 2, k, k}, g, 0, 0.2f));
  b.w.bn_w = Var::parameter(Tensor::full({1}, 0.9f));
  b.w.bn_b = Var::parameter(Tensor::full({1}, 0.1f));
  b.rm = Tensor::zeros({1});
  b.rv = Tensor::full({1}, 1.f);
  return b;
}

std::vector<Var> params_of(const CbamWeights& w) {
  return {w.fc1_w, w.fc1_b, w.fc2_w, w.fc2_b, w.conv_w, w.bn_w, w.bn_b};
}

}  // namespace

BOOST_AUTO_TEST_CASE(matches_pytorch_golden) {
  // Tolerance: 1e-4 relative in the max norm (|a - b| <= 1e-4 * max|b| per tensor). dermis runs in
  // f32, the golden values come from float64; the measured error is printed.
  const auto f = io::load_safetensors(std::string(DERMIS_TEST_DATA) + "/golden/cbam_torch.safetensors");
  const json::Value cases = json::parse(f.metadata.at("cases"), "golden metadata");
  for (const auto& [name, c] : cases.object()) {
    Shape shape;
    for (auto& d : c.find("shape")->array()) shape.push_back(d.integer());
    const bool channel_only = c.find("channel_only")->boolean();
    const std::string p = name + ".param.";
    CbamWeights w;
    w.fc1_w = Var::parameter(f.at(p + "ChannelGate.mlp.1.weight").clone());
    w.fc1_b = Var::parameter(f.at(p + "ChannelGate.mlp.1.bias").clone());
    w.fc2_w = Var::parameter(f.at(p + "ChannelGate.mlp.3.weight").clone());
    w.fc2_b = Var::parameter(f.at(p + "ChannelGate.mlp.3.bias").clone());
    Tensor rm = Tensor::zeros({1}), rv = Tensor::full({1}, 1.f);
    if (!channel_only) {
      w.conv_w = Var::parameter(f.at(p + "SpatialGate.conv.weight").clone());
      w.bn_w = Var::parameter(f.at(p + "SpatialGate.bn.weight").clone());
      w.bn_b = Var::parameter(f.at(p + "SpatialGate.bn.bias").clone());
    }
    Var x = Var::parameter(formula(shape, 0.37, 0.1, 2.0, false));
    Var y = cbam(x, w, rm, rv, {.channel_only = channel_only, .training = true, .bn_momentum = 0.01f});
    y.backward(formula(shape, 0.11, 0.0, 1.0, true));
    std::vector<std::pair<std::string, Var>> grads = {{"x", x},
                                                      {"ChannelGate.mlp.1.weight", w.fc1_w},
                                                      {"ChannelGate.mlp.1.bias", w.fc1_b},
                                                      {"ChannelGate.mlp.3.weight", w.fc2_w},
                                                      {"ChannelGate.mlp.3.bias", w.fc2_b}};
    if (!channel_only)
      grads.insert(grads.end(),
                   {{"SpatialGate.conv.weight", w.conv_w}, {"SpatialGate.bn.weight", w.bn_w}, {"SpatialGate.bn.bias", w.bn_b}});
    const double e_out = max_rel(y.value().to_vector(), f.at(name + ".out").to_vector());
    BOOST_TEST_MESSAGE("case " << name << " " << to_string(shape) << " out: max-norm relative error " << e_out);
    BOOST_TEST(e_out <= 1e-4, "case " << name << " output error " << e_out);
    for (auto& [g, v] : grads) {
      const double e = max_rel(v.grad().to_vector(), f.at(name + ".grad." + g).to_vector());
      BOOST_TEST_MESSAGE("case " << name << " grad " << g << ": " << e);
      BOOST_TEST(e <= 1e-4, "case " << name << " gradient of " << g << " error " << e);
    }
    if (!channel_only) {
      BOOST_TEST(max_rel(rm.to_vector(), f.at(name + ".buffer.SpatialGate.bn.running_mean").to_vector()) <= 1e-4);
      BOOST_TEST(max_rel(rv.to_vector(), f.at(name + ".buffer.SpatialGate.bn.running_var").to_vector()) <= 1e-4);
    }
  }
}

BOOST_AUTO_TEST_CASE(fused_equals_composed) {
  // Forward, every gradient and the running statistics, for plain and blocked inputs (a conv
  // output with 16 or 20 channels is nChw16c, padded for 20), training and eval, channel-only.
  // Both compute in f32 with different summation orders: 1e-5 max-norm relative. Each case runs
  // twice more with synchronised batch norm as two replicas holding the same batch (a reducer that
  // doubles every sum): fused and composed must agree there too, and normalise as without it.
  struct Case {
    int64_t N, C, H, W, Cr, k;
    bool via_conv, training, channel_only;
  };
  const std::vector<Case> cases = {
      {2, 8, 5, 6, 2, 7, false, true, false},  {3, 16, 7, 7, 1, 7, true, true, false},
      {2, 20, 6, 5, 4, 3, true, true, false},  {2, 16, 4, 4, 2, 7, true, false, false},
      {2, 12, 5, 5, 3, 7, false, true, true},  {4, 32, 3, 3, 2, 5, true, true, false},
  };
  for (const auto& c : cases) {
    Generator g(100 + c.C);
    Tensor x0 = Tensor::randn({c.N, c.via_conv ? 3 : c.C, c.H, c.W}, g);
    Tensor cw = Tensor::randn({c.C, 3, 3, 3}, g, 0, 0.3f);
    Block blk = random_block(c.C, c.Cr, c.k, g);
    auto run = [&](bool fused, const StatsReducer& sync) {
      const CbamParams p{.channel_only = c.channel_only, .training = c.training, .sync = sync};
      Var x = Var::parameter(x0.clone()), w = Var::parameter(cw.clone());
      Block b = blk;
      CbamWeights wts;
      for (auto [dst, src] : {std::pair{&wts.fc1_w, &b.w.fc1_w}, {&wts.fc1_b, &b.w.fc1_b}, {&wts.fc2_w, &b.w.fc2_w},
                              {&wts.fc2_b, &b.w.fc2_b}, {&wts.conv_w, &b.w.conv_w}, {&wts.bn_w, &b.w.bn_w},
                              {&wts.bn_b, &b.w.bn_b}})
        *dst = Var::parameter(src->value().clone());
      Tensor rm = b.rm.clone(), rv = b.rv.clone();
      Var in = c.via_conv ? conv2d(x, w, {}, {.pad = 1}) : x;
      Var y = fused ? cbam(in, wts, rm, rv, p) : cbam_composed(in, wts, rm, rv, p);
      Generator gr(7);
      y.backward(Tensor::randn(y.shape(), gr));
      std::vector<std::vector<float>> out = {y.value().to_vector(), x.grad().to_vector(), rm.to_vector(), rv.to_vector()};
      if (c.via_conv) out.push_back(w.grad().to_vector());
      for (auto& v : params_of(wts))
        if (v.grad().defined()) out.push_back(v.grad().to_vector());
      return std::make_pair(out, !y.value().is_plain());
    };
    const StatsReducer twins = [](double* d, int64_t n) {
      for (int64_t i = 0; i < n; ++i) d[i] *= 2;
    };
    auto [fused, fused_blocked] = run(true, {});
    auto [composed, composed_blocked] = run(false, {});
    const auto fused_sync = run(true, twins).first;
    const auto composed_sync = run(false, twins).first;
    BOOST_TEST_CONTEXT("N=" << c.N << " C=" << c.C << " " << c.H << "x" << c.W << " conv-input=" << c.via_conv
                            << " training=" << c.training << " channel_only=" << c.channel_only) {
      BOOST_REQUIRE(fused.size() == composed.size());
      if (c.via_conv) BOOST_TEST(fused_blocked, "a blocked input should give a blocked output");
      for (size_t i = 0; i < fused.size(); ++i) {
        const double e = max_rel(fused[i], composed[i]);
        BOOST_TEST(e <= 1e-5, "result " << i << " differs: max-norm relative error " << e);
        const double es = max_rel(fused_sync[i], composed_sync[i]);
        BOOST_TEST(es <= 1e-5, "with sync BN, result " << i << " differs: max-norm relative error " << es);
      }
      // Output and input gradient: the same normalisation with and without the twin replica.
      for (size_t i : {size_t{0}, size_t{1}})
        BOOST_TEST(max_rel(fused_sync[i], fused[i]) <= 1e-5, "sync BN changed result " << i);
    }
  }
}

BOOST_AUTO_TEST_CASE(fused_gradcheck) {
  // Finite differences (gradcheck.h) for x and every parameter. x takes spaced values, so no ties in
  // the max poolings. Training-mode BN over N*H*W = 40 values.
  for (bool channel_only : {false, true}) {
    Generator g(5);
    Block b = random_block(12, 3, 7, g);
    std::vector<Tensor> in = {gradcheck::spaced_values({2, 12, 4, 5}, 3, 0.02f)};
    for (auto& v : params_of(b.w)) in.push_back(v.value().clone());
    if (channel_only) in.resize(5);
    Tensor rm = b.rm, rv = b.rv;
    gradcheck::check(
        channel_only ? "cbam channel-only" : "cbam",
        [&](const std::vector<Var>& v) {
          CbamWeights w{v[1], v[2], v[3], v[4], {}, {}, {}};
          if (!channel_only) w.conv_w = v[5], w.bn_w = v[6], w.bn_b = v[7];
          return cbam(v[0], w, rm, rv, {.channel_only = channel_only});
        },
        in, {.eps = 1e-3, .rtol = 2e-2, .atol = 5e-3});
  }
}

BOOST_AUTO_TEST_CASE(bad_weights_are_reported) {
  Generator g(1);
  Block b = random_block(8, 2, 7, g);
  Var x(Tensor::randn({2, 6, 4, 4}, g));
  try {
    cbam(x, b.w, b.rm, b.rv);
    BOOST_ERROR("expected an error for a channel mismatch");
  } catch (const Error& e) {
    BOOST_TEST(std::string(e.what()).find("input has 6 channels") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(fused_residual_blocked_and_refused_with_gradients) {
  // relu(cbam(x) + r) in one pass for a blocked (nChw16c) input too; with gradients it is refused.
  Generator g(41);
  Block blk = random_block(32, 4, 7, g);
  const Tensor x = Tensor::randn({2, 32, 6, 6}, g).to_desc(
      dnnl::memory::desc({2, 32, 6, 6}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::nChw16c));
  const Tensor r = Tensor::randn({2, 32, 6, 6}, g);
  CbamParams p{.training = false};
  Tensor rm = blk.rm.clone(), rv = blk.rv.clone();
  std::vector<float> want, got;
  {
    NoGrad ng;
    want = add_relu(cbam(Var(x), blk.w, rm, rv, p), Var(r)).value().plain().to_vector();
    p.residual = r;
    const Var y = cbam(Var(x), blk.w, rm, rv, p);
    BOOST_TEST((y.value().desc() == x.desc()));
    got = y.value().plain().to_vector();
  }
  BOOST_TEST(max_rel(got, want) <= 1e-6);
  testing::expect_error([&] { cbam(Var::parameter(x), blk.w, rm, rv, p); }, "for inference only");
  testing::expect_error([&] { cbam_composed(Var(x), blk.w, rm, rv, p); }, "no fused residual");
}

BOOST_AUTO_TEST_CASE(nhwc_inference_equals_plain) {
  // Inference reads NHWC (oneDNN's acdb, what its bf16 convolutions output) in place and writes
  // NHWC; the result must be the plain-layout one, in f32 and bf16, with and without the spatial gate.
  for (const DType dt : {DType::f32, DType::bf16})
    for (const bool channel_only : {false, true})
      for (const auto [N, C, H, W] : {std::array<int64_t, 4>{2, 16, 5, 6}, {3, 24, 7, 7}, {1, 64, 4, 4}}) {
        Generator g(300 + C);
        Block blk = random_block(C, std::max<int64_t>(1, C / 8), 7, g);
        blk.rm = Tensor::full({1}, 0.05f);
        blk.rv = Tensor::full({1}, 0.8f);
        // Values exact in bf16, so both layouts start from the same numbers.
        const Tensor plain = Tensor::randn({N, C, H, W}, g).to_dtype(dt);
        const dnnl::memory::dims d{N, C, H, W};
        const Tensor nhwc = plain.to_desc(dnnl::memory::desc(d, plain.desc().data_type(),
                                                             dnnl::memory::format_tag::acdb));
        BOOST_TEST_REQUIRE(!nhwc.is_plain());
        const CbamParams p{.channel_only = channel_only, .training = false};
        NoGrad ng;
        Tensor rm = blk.rm.clone(), rv = blk.rv.clone();
        const Var a = cbam(Var(plain), blk.w, rm, rv, p);
        const Var b = cbam(Var(nhwc), blk.w, rm, rv, p);
        // The residual block's add and ReLU fused into the last pass: relu(cbam(x) + r), for a
        // residual in the same layout and in another one.
        const Tensor r = Tensor::randn({N, C, H, W}, g).to_dtype(dt);
        const std::vector<float> want = add_relu(a, Var(r)).value().to_dtype(DType::f32).plain().to_vector();
        for (const Tensor& x_in : {plain, nhwc})
          for (const Tensor& r_in : {r, r.to_desc(nhwc.desc())}) {
            CbamParams pr = p;
            pr.residual = r_in;
            const Var fused = cbam(Var(x_in), blk.w, rm, rv, pr);
            BOOST_TEST((fused.value().desc() == x_in.desc()));
            const double er = max_rel(fused.value().to_dtype(DType::f32).plain().to_vector(), want);
            BOOST_TEST(er <= (dt == DType::f32 ? 1e-6 : 8e-3),
                       "fused residual, input " << (x_in.is_plain() ? "plain" : "NHWC") << ", residual "
                                                << (r_in.is_plain() ? "plain" : "NHWC") << ": error " << er);
          }
        BOOST_TEST_CONTEXT("dtype " << (dt == DType::f32 ? "f32" : "bf16") << " channel_only=" << channel_only << " "
                                    << N << "x" << C << "x" << H << "x" << W) {
          BOOST_TEST((b.value().desc() == nhwc.desc()), "an NHWC input should give an NHWC output");
          const double e = max_rel(b.value().to_dtype(DType::f32).plain().to_vector(),
                                   a.value().to_dtype(DType::f32).plain().to_vector());
          // f32: summation order only; bf16: the outputs are rounded to bf16 once each.
          BOOST_TEST(e <= (dt == DType::f32 ? 1e-6 : 8e-3), "max-norm relative error " << e);
        }
      }
}
