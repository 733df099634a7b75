// The functional API of dermis: every differentiable op, one line of doc and its shapes each.
// Forward and backward of each op live side by side in ops/<op>.cpp.
//
// Shapes: N batch, C channels, H/W height/width, K classes, IC/OC input/output features.
// Ops accept tensors in plain or oneDNN blocked layouts; oneDNN-backed ops keep blocked layouts.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "autograd.h"
#include "choice.h"

namespace dermis {

// ---- convolution ---------------------------------------------------------------------------
struct Conv2dParams {
  int64_t stride = 1;
  int64_t pad = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool relu = false;  // relu(conv(x)) with oneDNN's eltwise post-op; backward masks dy by the output
};
// x (N, C, H, W), w (OC, C/groups, KH, KW), b (OC) or undefined  ->  (N, OC, Ho, Wo),
// Ho = (H + 2*pad - dilation*(KH-1) - 1) / stride + 1.
Var conv2d(const Var& x, const Var& w, const Var& b = {}, Conv2dParams p = {});

// The convolution algorithm, for f32 3x3 stride-1 convolutions (no dilation, no groups; all others
// are direct convolution):
//   automatic (the default): oneDNN's Winograd F(4x4, 3x3) where it has one (AVX-512, channels in
//     multiples of 16, padding <= 1), else dermis's own Winograd F(4x4, 3x3) where it applies (AVX2
//     and AVX-512, channels in multiples of 8 or 16, padding <= 2), else direct. A fixed rule, so
//     reruns and resumed runs compute bit for bit alike.
//   fastest: per shape and pass, the fastest of the three, timed once on the first call of each
//     shape. The choice is per process: two runs can choose differently and so round differently
//     (about 1e-6 relative).
//   direct: always oneDNN's direct convolution.
//   winograd: dermis's Winograd wherever it applies, direct elsewhere.
//   onednn_winograd: oneDNN's Winograd wherever it applies, direct elsewhere.
// Process-wide; set it before the first convolution (primitives and choices are cached per
// algorithm, so switching later is safe).
enum class ConvAlgorithm { automatic, fastest, direct, winograd, onednn_winograd };
template <>
struct Choices<ConvAlgorithm> {
  static constexpr std::array<Choice<ConvAlgorithm>, 5> list{{{ConvAlgorithm::automatic, "auto"},
                                                              {ConvAlgorithm::fastest, "fastest"},
                                                              {ConvAlgorithm::direct, "direct"},
                                                              {ConvAlgorithm::winograd, "winograd"},
                                                              {ConvAlgorithm::onednn_winograd, "onednn-winograd"}}};
};
void set_conv_algorithm(ConvAlgorithm a);
ConvAlgorithm conv_algorithm();

// ---- pooling -------------------------------------------------------------------------------
struct Pool2dParams {
  int64_t kernel = 2;
  int64_t stride = 0;  // 0: same as kernel
  int64_t pad = 0;
  bool count_include_pad = true;  // avg_pool2d only (PyTorch's default)
};
// x (N, C, H, W) -> (N, C, Ho, Wo), Ho = (H + 2*pad - kernel) / stride + 1.
Var max_pool2d(const Var& x, Pool2dParams p);
Var avg_pool2d(const Var& x, Pool2dParams p);
// x (N, C, H, W) -> (N, C, 1, 1): mean / max over H and W.
Var global_avg_pool2d(const Var& x);
Var global_max_pool2d(const Var& x);

// ---- dense ---------------------------------------------------------------------------------
// x (N, IC), w (OC, IC), b (OC) or undefined -> (N, OC): x w^T + b (oneDNN inner product).
Var linear(const Var& x, const Var& w, const Var& b = {});

// ---- normalisation -------------------------------------------------------------------------
// Synchronised batch norm (data-parallel training): sums `n` doubles in place over every replica
// of the job, e.g. an MPI allreduce; nn::set_sync_batch_norm installs one in a model's modules.
// Empty (the default): each process normalises with its own batch. The ops know no MPI.
using StatsReducer = std::function<void(double* data, int64_t n)>;

struct BatchNormParams {
  bool training = true;   // batch statistics (and running-stat update) vs running statistics
  float momentum = 0.1f;  // running = (1 - momentum) * running + momentum * batch (PyTorch's rule)
  float eps = 1e-5f;
  bool relu = false;  // relu(bn(x)) in one primitive (oneDNN fuse_norm_relu; backward uses its mask)
  // Training: the statistics and backward's two sums over every replica (a hand-written f32 path,
  // taken whenever it is set, with one replica too, so results do not depend on the replica count).
  StatsReducer sync = {};
};
// x (N, C, H, W), weight/bias (C), running_mean/var (C) updated in place when training
// (running_var takes the unbiased batch variance, as PyTorch does) -> (N, C, H, W).
Var batch_norm2d(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
                 BatchNormParams p = {});

// ---- elementwise ---------------------------------------------------------------------------
Var relu(const Var& x);     // any shape
Var sigmoid(const Var& x);  // any shape
// a + b and a * b with broadcasting: equal ranks, each dimension equal or 1 in one of them,
// e.g. (N, C, H, W) with (N, C, 1, 1) or (N, 1, H, W).
Var add(const Var& a, const Var& b);
// relu(a + b) for equal shapes in one pass (the end of a residual block); any layout, the result
// takes a's. Backward routes dy where the output is positive to both operands.
Var add_relu(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }

// ---- shape ---------------------------------------------------------------------------------
// xs[i] (N, Ci, H, W) -> (N, sum Ci, H, W).
Var concat_channels(const std::vector<Var>& xs);
// x (N, C, H, W) -> (N, 1, H, W): mean / max over channels (keepdim).
Var channel_mean(const Var& x);
Var channel_max(const Var& x);
// Same elements, new shape (one -1 may be inferred); flatten keeps dim 0: (N, ...) -> (N, rest).
Var reshape(const Var& x, const Shape& shape);
Var flatten(const Var& x);

// ---- regularisation ------------------------------------------------------------------------
// Zeroes each element with probability p and scales the rest by 1/(1-p) when training; identity
// otherwise. Masks come from the default generator (seeded by manual_seed), so runs repeat exactly.
Var dropout(const Var& x, float p, bool training);

// ---- loss ----------------------------------------------------------------------------------
struct CrossEntropyParams {
  std::vector<float> class_weights = {};  // empty, or one weight per class
  float label_smoothing = 0.f;       // in [0, 1)
  // Empty, or one offset per class added to every row of logits inside the loss only (logit
  // adjustment, Menon et al. 2021: offsets tau * log(prior) make the loss balanced-error
  // consistent while predictions stay argmax of the plain logits).
  std::vector<float> logit_offsets = {};
};
// logits (N, K), targets N ints in [0, K) -> scalar mean loss, with PyTorch's F.cross_entropy
// semantics for weights and label smoothing (weighted mean over sum of target weights); with
// logit_offsets, the loss of logits + offsets (the gradient with respect to the logits is the same).
Var softmax_cross_entropy(const Var& logits, const std::vector<int>& targets, const CrossEntropyParams& p = {});

// ---- attention ------------------------------------------------------------------------------
// CBAM (Woo et al., ECCV 2018), with the semantics of the official implementation
// (Jongchan/attention-module, MODELS/cbam.py):
//   channel gate: a = MLP(avgpool_hw(x)) + MLP(maxpool_hw(x)), MLP = fc2(relu(fc1(.))),
//                 x1 = x * sigmoid(a)                              (N, C, 1, 1) broadcast
//   spatial gate: s = concat(max_c(x1), mean_c(x1))                (N, 2, H, W)
//                 out = x1 * sigmoid(bn(conv_kxk(s)))              (N, 1, H, W) broadcast
// fc1 (Cr, C) + bias (Cr), fc2 (C, Cr) + bias (C), conv (1, 2, k, k) without bias, bn over one
// channel with weight/bias (1) and running statistics (1) updated in place when training.
struct CbamWeights {
  Var fc1_w{}, fc1_b{}, fc2_w{}, fc2_b{};  // channel gate MLP
  Var conv_w{}, bn_w{}, bn_b{};          // spatial gate (unused when channel_only)
};
struct CbamParams {
  bool channel_only = false;  // skip the spatial gate
  bool training = true;       // spatial-gate BN: batch statistics (and running update) vs running stats
  float bn_momentum = 0.01f;  // the official BasicConv's BatchNorm2d momentum
  float bn_eps = 1e-5f;
  Tensor* attention_out = nullptr;  // if set: receives the spatial attention map (N, 1, H, W)
  StatsReducer sync = {};           // training: the spatial-gate BN statistics over every replica
  // Inference only (no gradients): out = relu(cbam(x) + residual), the residual block's add and
  // ReLU in CBAM's last pass. residual has x's shape (any layout and dtype; converted to x's).
  Tensor residual = Tensor();
};
// Fused forward and hand-written backward: x (N, C, H, W) in plain or nChw8c/nChw16c layout ->
// same shape and layout.
Var cbam(const Var& x, const CbamWeights& w, Tensor& bn_running_mean, Tensor& bn_running_var, const CbamParams& p = {});
// The same block composed from the primitive ops above (for tests and benchmarks).
Var cbam_composed(const Var& x, const CbamWeights& w, Tensor& bn_running_mean, Tensor& bn_running_var,
                  const CbamParams& p = {});

// ---- precision -----------------------------------------------------------------------------
// bf16 mixed precision, like torch.autocast on CPU. While an AutocastBF16 guard lives, conv2d
// computes in bf16: its input is converted to bf16, the f32 weights are converted on the fly, the
// output is bf16, and weight and bias gradients come back in f32. The ops after a convolution
// follow their input's dtype: batch norm (f32 statistics), ReLU, pooling, CBAM and add_relu keep
// bf16 activations and compute in f32 arithmetic. linear, the loss, parameters, gradients of
// parameters and optimiser state are f32. A bf16 tensor reaching conv2d outside the guard also
// runs in bf16.
class AutocastBF16 {
 public:
  explicit AutocastBF16(bool enabled = true);
  ~AutocastBF16();
  AutocastBF16(const AutocastBF16&) = delete;
  AutocastBF16& operator=(const AutocastBF16&) = delete;

 private:
  bool prev_;
};
bool autocast_bf16();

// ---- threads -------------------------------------------------------------------------------
// The OpenMP thread count used by every op (default: OMP_NUM_THREADS or the core count).
void set_num_threads(int n);
int num_threads();

}  // namespace dermis
