// ONNX export (see onnx_export.h): trace one eval forward, translate each step to ONNX nodes.
#include "onnx_export.h"

#include <fmt/format.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <exception>
#include <set>
#include <unordered_map>

#include "framework/random.h"
#include "framework/trace.h"

namespace dermis::experiment {

namespace {

constexpr int kOpset = 13;
constexpr int64_t kTraceBatch = 2;

class Builder {
 public:
  Builder(models::Classifier& model, const OnnxExportOptions& o) : o_(o) {
    for (const auto& [name, v] : model.named_parameters()) params_[v.node().get()] = name;
    for (const auto& [name, t] : model.named_buffers()) buffers_[t->raw()] = name;
    g_ = model_.mutable_graph();
  }

  onnx::ModelProto& model() { return model_; }
  onnx::GraphProto& graph() { return *g_; }
  OnnxExportSummary& summary() { return summary_; }

  // Names a Var the graph reads: a traced op's output, a parameter (an initializer under its
  // state-dict name) or a constant leaf; anything else came from an op that records no trace.
  std::string value(const Var& v) {
    const Node* n = v.node().get();
    if (auto it = names_.find(n); it != names_.end()) return it->second;
    std::string name;
    if (auto p = params_.find(n); p != params_.end()) name = p->second;
    else if (n->inputs.empty() && !n->backward && !(v.ndim() >= 2 && v.dim(0) == kTraceBatch))
      name = fmt::format("constant_{}", ++constants_);
    else
      // A batch-shaped leaf came from the input through something that recorded nothing (a frozen
      // or hand-written path): not a constant to bake in.
      throw Error(fmt::format("export: the model runs op '{}' (output {}), which has no ONNX form; export supports the "
                              "ops of framework/ops.h in eval mode",
                              n->op, to_string(v.shape())));
    initializer(name, v.value());
    names_[n] = name;
    return name;
  }
  // The name of a plain tensor an op read (batch norm statistics): its buffer name, or a constant.
  std::string tensor(const Tensor& t) {
    auto it = buffers_.find(t.raw());
    const std::string name = it != buffers_.end() ? it->second : fmt::format("constant_{}", ++constants_);
    if (!inits_.count(name)) initializer(name, t);
    return name;
  }
  // The Var's parameter name, or `fallback` (names of derived initializers).
  std::string param_name(const Var& v, const std::string& fallback) const {
    auto p = params_.find(v.node().get());
    return p != params_.end() ? p->second : fallback;
  }

  void initializer(const std::string& name, const Tensor& t0, Shape shape = {}) {
    const Tensor t = t0.to_dtype(DType::f32).plain();
    floats(name, shape.empty() ? t.shape() : shape, std::vector<float>(t.data(), t.data() + t.numel()));
  }
  void floats(const std::string& name, const Shape& shape, const std::vector<float>& v) {
    DERMIS_CHECK(inits_.insert(name).second, "export: internal: initializer '{}' twice", name);
    auto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : shape) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
    summary_.parameters += static_cast<int64_t>(v.size());
  }
  void int64s(const std::string& name, const std::vector<int64_t>& v) {
    DERMIS_CHECK(inits_.insert(name).second, "export: internal: initializer '{}' twice", name);
    auto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(v.size()));
    for (int64_t x : v) t->add_int64_data(x);
  }

  std::string fresh(const std::string& base) { return fmt::format("{}_{}", base, ++values_); }
  // The output name of a step's result: "logits" for the model's output.
  std::string output(const Var& v) {
    const std::string name = v.node().get() == final_ ? "logits" : fresh("t");
    names_[v.node().get()] = name;
    return name;
  }
  void alias(const Var& out, const std::string& name) { names_[out.node().get()] = name; }
  void set_final(const Node* n) { final_ = n; }
  const std::string* name_of(const Node* n) const {
    auto it = names_.find(n);
    return it == names_.end() ? nullptr : &it->second;
  }

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& in, const std::string& out) {
    auto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(fmt::format("{}_{}", op, ++summary_.op_counts[op]));
    for (const auto& i : in) n->add_input(i);
    n->add_output(out);
    ++summary_.nodes;
    return n;
  }
  // A node with a fresh output name, returned.
  std::string apply(const std::string& op, const std::vector<std::string>& in) {
    const std::string out = fresh("t");
    node(op, in, out);
    return out;
  }
  static void ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void integer(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void real(onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }

  const OnnxExportOptions& options() const { return o_; }

 private:
  const OnnxExportOptions& o_;
  onnx::ModelProto model_;
  onnx::GraphProto* g_;
  std::unordered_map<const Node*, std::string> params_;
  std::unordered_map<const void*, std::string> buffers_;
  std::unordered_map<const Node*, std::string> names_;
  std::set<std::string> inits_;
  const Node* final_ = nullptr;
  int constants_ = 0, values_ = 0;
  OnnxExportSummary summary_;
};

// A convolution's weights and bias with a batch norm folded in: w * s, (b - mean) * s + beta,
// s = gamma / sqrt(var + eps), in double.
std::pair<std::vector<float>, std::vector<float>> fold(const Tensor& w0, const Tensor& b0, const Tensor& gamma0,
                                                       const Tensor& beta0, const Tensor& mean0, const Tensor& var0,
                                                       double eps) {
  const Tensor w = w0.plain(), gamma = gamma0.plain(), beta = beta0.plain(), mean = mean0.plain(), var = var0.plain();
  const int64_t oc = w.dim(0), per = w.numel() / oc;
  std::vector<float> wf(static_cast<size_t>(w.numel())), bf(static_cast<size_t>(oc));
  for (int64_t o = 0; o < oc; ++o) {
    const double s = gamma.data()[o] / std::sqrt(static_cast<double>(var.data()[o]) + eps);
    for (int64_t i = 0; i < per; ++i) wf[o * per + i] = static_cast<float>(w.data()[o * per + i] * s);
    const double b = b0.defined() ? b0.plain().data()[o] : 0.0;
    bf[o] = static_cast<float>((b - mean.data()[o]) * s + beta.data()[o]);
  }
  return {wf, bf};
}

onnx::NodeProto* conv_node(Builder& b, const std::vector<std::string>& in, const std::string& out, const Shape& w,
                           int64_t stride, int64_t pad, int64_t dilation, int64_t groups) {
  auto* n = b.node("Conv", in, out);
  Builder::ints(n, "kernel_shape", {w[2], w[3]});
  Builder::ints(n, "strides", {stride, stride});
  Builder::ints(n, "pads", {pad, pad, pad, pad});
  Builder::ints(n, "dilations", {dilation, dilation});
  Builder::integer(n, "group", groups);
  return n;
}

// relu(x) as a node when `relu`, else x; the result is named `out` (fresh when empty).
std::string maybe_relu(Builder& b, bool relu, const std::string& x, const std::string& out) {
  if (!relu) return x;
  b.node("Relu", {x}, out);
  return out;
}

// CBAM (ops.h's definition) as standard ONNX ops.
void export_cbam(Builder& b, const trace::Step& s) {
  DERMIS_CHECK(s.attr("training") == 0, "export: a CBAM block ran in training mode (export traces eval mode)");
  DERMIS_CHECK(s.attr("residual") == 0, "export: CBAM's fused residual (inference only) is not traced; trace without it");
  const Var& x = s.inputs[0];
  const std::string xin = b.value(x);
  const int64_t C = x.dim(1), Cr = s.inputs[1].dim(0);
  // The channel MLP as 1x1 convolutions on the pooled (N, C, 1, 1) maps, weights shared by both branches.
  const std::string fc1_w = b.param_name(s.inputs[1], b.fresh("cbam_fc1_weight"));
  const std::string fc1_b = b.param_name(s.inputs[2], b.fresh("cbam_fc1_bias"));
  const std::string fc2_w = b.param_name(s.inputs[3], b.fresh("cbam_fc2_weight"));
  const std::string fc2_b = b.param_name(s.inputs[4], b.fresh("cbam_fc2_bias"));
  b.initializer(fc1_w, s.inputs[1].value(), {Cr, C, 1, 1});
  b.initializer(fc1_b, s.inputs[2].value());
  b.initializer(fc2_w, s.inputs[3].value(), {C, Cr, 1, 1});
  b.initializer(fc2_b, s.inputs[4].value());
  auto mlp = [&](const std::string& pooled) {
    const std::string h = b.fresh("t");
    conv_node(b, {pooled, fc1_w, fc1_b}, h, {Cr, C, 1, 1}, 1, 0, 1, 1);
    const std::string o = b.fresh("t");
    conv_node(b, {b.apply("Relu", {h}), fc2_w, fc2_b}, o, {C, Cr, 1, 1}, 1, 0, 1, 1);
    return o;
  };
  const std::string a = mlp(b.apply("GlobalAveragePool", {xin}));
  const std::string m = mlp(b.apply("GlobalMaxPool", {xin}));
  const std::string gate_c = b.apply("Sigmoid", {b.apply("Add", {a, m})});
  const bool channel_only = s.attr("channel_only") != 0;
  if (channel_only) {
    b.node("Mul", {xin, gate_c}, b.output(s.output));
    return;
  }
  const std::string x1 = b.apply("Mul", {xin, gate_c});
  auto reduce = [&](const char* op) {
    const std::string out = b.fresh("t");
    auto* n = b.node(op, {x1}, out);
    Builder::ints(n, "axes", {1});
    Builder::integer(n, "keepdims", 1);
    return out;
  };
  const std::string mx = reduce("ReduceMax"), mean = reduce("ReduceMean");
  const std::string pooled = b.fresh("t");
  Builder::integer(b.node("Concat", {mx, mean}, pooled), "axis", 1);  // (max, mean): the official order
  const Var& conv_w = s.inputs[5];
  const int64_t k = conv_w.dim(2);
  const std::string z = b.fresh("t");
  const double eps = s.attr("eps", 1e-5);
  if (b.options().fold_batch_norm) {
    auto [wf, bf] = fold(conv_w.value(), Tensor(), s.inputs[6].value(), s.inputs[7].value(), s.tensors[0],
                         s.tensors[1], eps);
    const std::string base = b.param_name(conv_w, b.fresh("cbam_spatial_conv"));
    b.floats(base + "_folded", conv_w.shape(), wf);
    b.floats(base + "_folded_bias", {1}, bf);
    conv_node(b, {pooled, base + "_folded", base + "_folded_bias"}, z, conv_w.shape(), 1, k / 2, 1, 1);
    b.summary().batch_norms_folded++;
  } else {
    const std::string zc = b.fresh("t");
    conv_node(b, {pooled, b.value(conv_w)}, zc, conv_w.shape(), 1, k / 2, 1, 1);
    auto* n = b.node("BatchNormalization",
                     {zc, b.value(s.inputs[6]), b.value(s.inputs[7]), b.tensor(s.tensors[0]), b.tensor(s.tensors[1])}, z);
    Builder::real(n, "epsilon", static_cast<float>(eps));
  }
  b.node("Mul", {x1, b.apply("Sigmoid", {z})}, b.output(s.output));
}

}  // namespace

std::string export_onnx(models::Classifier& model, const OnnxExportOptions& o, OnnxExportSummary* summary) {
  DERMIS_CHECK(o.height >= 1 && o.width >= 1, "export: input size {}x{} is not positive", o.height, o.width);
  model.eval();
  // Trace in gradient mode: every op result then knows its op, so an op that records no trace
  // cannot pass for a constant; and eval-mode layers take their plain (unfused, unfolded) paths.
  Generator gen(12345);
  Var x(Tensor::randn({kTraceBatch, 3, o.height, o.width}, gen), true);
  std::vector<trace::Step> steps;
  Var logits;
  {
    trace::Recorder rec;
    logits = model.forward(x);
    steps = std::move(rec.steps);
  }
  const int64_t K = logits.ndim() == 2 ? logits.dim(1) : -1;
  DERMIS_CHECK(logits.ndim() == 2 && logits.dim(0) == kTraceBatch,
               "export: the model's output is {}, not (batch, classes)", to_string(logits.shape()));

  Builder b(model, o);
  b.alias(x, "input");
  b.set_final(logits.node().get());
  std::unordered_map<const Node*, int> uses;
  for (const auto& s : steps)
    for (const auto& v : s.inputs)
      if (v.defined()) uses[v.node().get()]++;
  std::vector<bool> done(steps.size(), false);

  for (size_t i = 0; i < steps.size(); ++i) {
    if (done[i]) continue;
    const trace::Step& s = steps[i];
    const std::string& op = s.op;
    auto in = [&](size_t k) { return b.value(s.inputs[k]); };
    if (op == "conv2d") {
      const Var& w = s.inputs[1];
      const bool relu = s.attr("relu") != 0;
      const auto stride = static_cast<int64_t>(s.attr("stride")), pad = static_cast<int64_t>(s.attr("pad"));
      const auto dil = static_cast<int64_t>(s.attr("dilation")), groups = static_cast<int64_t>(s.attr("groups"));
      // The batch norm reading this convolution's output, when it is its only reader.
      size_t j = steps.size();
      if (o.fold_batch_norm && !relu && uses[s.output.node().get()] == 1 && s.output.node().get() != logits.node().get())
        for (size_t k = i + 1; k < steps.size(); ++k)
          if (!steps[k].inputs.empty() && steps[k].inputs[0].node() == s.output.node()) {
            if (steps[k].op == "batch_norm2d" && steps[k].attr("training") == 0) j = k;
            break;
          }
      if (j < steps.size()) {
        const trace::Step& bn = steps[j];
        auto [wf, bf] = fold(w.value(), s.inputs[2].defined() ? s.inputs[2].value() : Tensor(), bn.inputs[1].value(),
                             bn.inputs[2].value(), bn.tensors[0], bn.tensors[1], bn.attr("eps", 1e-5));
        const std::string base = b.param_name(w, b.fresh("conv_weight"));
        b.floats(base + "_folded", w.shape(), wf);
        b.floats(base + "_folded_bias", {w.dim(0)}, bf);
        const bool bn_relu = bn.attr("relu") != 0;
        const std::string out = bn_relu ? b.fresh("t") : b.output(bn.output);
        conv_node(b, {in(0), base + "_folded", base + "_folded_bias"}, out, w.shape(), stride, pad, dil, groups);
        if (bn_relu) b.node("Relu", {out}, b.output(bn.output));
        b.summary().batch_norms_folded++;
        done[j] = true;
        continue;
      }
      std::vector<std::string> ins = {in(0), in(1)};
      if (s.inputs[2].defined()) ins.push_back(in(2));
      const std::string out = relu ? b.fresh("t") : b.output(s.output);
      conv_node(b, ins, out, w.shape(), stride, pad, dil, groups);
      if (relu) b.node("Relu", {out}, b.output(s.output));
    } else if (op == "batch_norm2d") {
      DERMIS_CHECK(s.attr("training") == 0, "export: a batch norm ran in training mode (export traces eval mode)");
      const bool relu = s.attr("relu") != 0;
      const std::string out = relu ? b.fresh("t") : b.output(s.output);
      auto* n = b.node("BatchNormalization", {in(0), in(1), in(2), b.tensor(s.tensors[0]), b.tensor(s.tensors[1])}, out);
      Builder::real(n, "epsilon", static_cast<float>(s.attr("eps", 1e-5)));
      maybe_relu(b, relu, out, relu ? b.output(s.output) : out);
    } else if (op == "relu" || op == "sigmoid") {
      b.node(op == "relu" ? "Relu" : "Sigmoid", {in(0)}, b.output(s.output));
    } else if (op == "add" || op == "mul") {
      b.node(op == "add" ? "Add" : "Mul", {in(0), in(1)}, b.output(s.output));
    } else if (op == "add_relu") {
      b.node("Relu", {b.apply("Add", {in(0), in(1)})}, b.output(s.output));
    } else if (op == "max_pool2d" || op == "avg_pool2d") {
      const auto k = static_cast<int64_t>(s.attr("kernel")), st = static_cast<int64_t>(s.attr("stride"));
      const auto pad = static_cast<int64_t>(s.attr("pad"));
      auto* n = b.node(op == "max_pool2d" ? "MaxPool" : "AveragePool", {in(0)}, b.output(s.output));
      Builder::ints(n, "kernel_shape", {k, k});
      Builder::ints(n, "strides", {st, st});
      Builder::ints(n, "pads", {pad, pad, pad, pad});
      if (op == "avg_pool2d") Builder::integer(n, "count_include_pad", static_cast<int64_t>(s.attr("count_include_pad")));
    } else if (op == "global_avg_pool2d" || op == "global_max_pool2d") {
      b.node(op == "global_avg_pool2d" ? "GlobalAveragePool" : "GlobalMaxPool", {in(0)}, b.output(s.output));
    } else if (op == "linear") {
      std::vector<std::string> ins = {in(0), in(1)};
      if (s.inputs[2].defined()) ins.push_back(in(2));
      Builder::integer(b.node("Gemm", ins, b.output(s.output)), "transB", 1);
    } else if (op == "flatten") {
      Builder::integer(b.node("Flatten", {in(0)}, b.output(s.output)), "axis", 1);
    } else if (op == "reshape") {
      // The traced batch becomes 0 (Reshape's "as the input"), so the batch stays dynamic.
      DERMIS_CHECK(s.output.dim(0) == kTraceBatch && s.inputs[0].dim(0) == kTraceBatch,
                   "export: reshape to {} mixes the batch dimension with others; ONNX export needs the batch kept "
                   "as dimension 0",
                   to_string(s.output.shape()));
      std::vector<int64_t> dims = {0};
      for (int d = 1; d < s.output.ndim(); ++d) dims.push_back(s.output.dim(d));
      const std::string shape = b.fresh("shape");
      b.int64s(shape, dims);
      b.node("Reshape", {in(0), shape}, b.output(s.output));
    } else if (op == "concat_channels") {
      std::vector<std::string> ins;
      for (size_t k = 0; k < s.inputs.size(); ++k) ins.push_back(in(k));
      Builder::integer(b.node("Concat", ins, b.output(s.output)), "axis", 1);
    } else if (op == "channel_mean" || op == "channel_max") {
      auto* n = b.node(op == "channel_mean" ? "ReduceMean" : "ReduceMax", {in(0)}, b.output(s.output));
      Builder::ints(n, "axes", {1});
      Builder::integer(n, "keepdims", 1);
    } else if (op == "dropout") {
      DERMIS_CHECK(s.attr("training") == 0 || s.attr("p") == 0, "export: dropout ran in training mode");
      if (s.output.node() != s.inputs[0].node()) b.alias(s.output, in(0));
    } else if (op == "cbam") {
      export_cbam(b, s);
    } else {
      throw Error(fmt::format("export: op '{}' has no ONNX form", op));
    }
  }

  const std::string* last = b.name_of(logits.node().get());
  DERMIS_CHECK(last != nullptr, "export: the model's output was not produced by a traced op ({})", logits.node()->op);
  if (*last != "logits") b.node("Identity", {*last}, "logits");
  std::string scores = "logits";
  if (!o.logit_offsets.empty()) {
    DERMIS_CHECK(static_cast<int64_t>(o.logit_offsets.size()) == K, "export: {} prior offsets for {} classes",
                 o.logit_offsets.size(), K);
    b.floats("decision_prior_offsets", {K}, std::vector<float>(o.logit_offsets.begin(), o.logit_offsets.end()));
    scores = b.apply("Add", {"logits", "decision_prior_offsets"});
  }
  Builder::integer(b.node("Softmax", {scores}, "probabilities"), "axis", 1);

  auto& g = b.graph();
  g.set_name(o.graph_name);
  auto tensor_type = [](onnx::ValueInfoProto* v, const std::string& name, std::vector<int64_t> dims) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = t->mutable_shape();
    shape->add_dim()->set_dim_param("batch");
    for (int64_t d : dims) shape->add_dim()->set_dim_value(d);
  };
  tensor_type(g.add_input(), "input", {3, o.height, o.width});
  tensor_type(g.add_output(), "logits", {K});
  tensor_type(g.add_output(), "probabilities", {K});
  auto& m = b.model();
  m.set_ir_version(7);  // IR 7 goes with opset 13 (readers from ONNX 1.8 on)
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  m.set_producer_name("dermis");
  m.set_producer_version("0.1.0");
  m.set_doc_string("dermis skin-lesion classifier: input (batch, 3, H, W) normalised RGB; outputs logits and "
                   "probabilities (softmax with the decision prior); see metadata_props");
  for (const auto& [k, v] : o.metadata) {
    auto* p = m.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
  b.summary().initializers = g.initializer_size();
  std::string bytes;
  DERMIS_CHECK(m.SerializeToString(&bytes), "export: the ONNX model could not be serialised (over 2 GiB?)");
  check_onnx(bytes, "the exported model");
  if (summary) *summary = b.summary();
  return bytes;
}

void check_onnx(const std::string& bytes, const std::string& source) {
  onnx::ModelProto m;
  DERMIS_CHECK(m.ParseFromString(bytes), "{}: not an ONNX model (the protobuf does not parse)", source);
  try {
    onnx::checker::check_model(m);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: the ONNX checker rejects it: {}", source, e.what()));
  }
}

}  // namespace dermis::experiment
