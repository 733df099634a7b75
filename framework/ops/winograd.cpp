// dermis's Winograd F(4x4, 3x3) convolution: tile transforms from winograd_kernels.inc (one build
// per instruction set), filter transforms here, the per-point products on oneDNN's batched matmul.
#include "winograd.h"

#include "../cpu.h"
#include "../dnnl/context.h"
#include "winograd_kernels.inc"

DERMIS_WINOGRAD_DECLARE(avx2)
DERMIS_WINOGRAD_DECLARE(avx512)

namespace dermis::winograd {

namespace {
using dnnl::memory;
using tag = memory::format_tag;
namespace ctx = dnnl_ctx;
constexpr int64_t P = 36;  // points of a 6x6 tile

struct Kernels {
  int lanes;
  decltype(&avx2::input_transform) input;
  decltype(&avx2::output_transform) output;
  decltype(&avx2::gradient_transform) gradient;
  decltype(&avx2::filter_transform) filters;
  decltype(&avx2::filter_gradient) filter_gradient;
  decltype(&avx2::channel_sum) sum;
};
constexpr Kernels k_avx2{8, avx2::input_transform, avx2::output_transform, avx2::gradient_transform,
                         avx2::filter_transform, avx2::filter_gradient, avx2::channel_sum};
constexpr Kernels k_avx512{16, avx512::input_transform, avx512::output_transform, avx512::gradient_transform,
                           avx512::filter_transform, avx512::filter_gradient, avx512::channel_sum};

// The kernels for the instruction set oneDNN dispatches to (so ONEDNN_MAX_CPU_ISA caps them).
const Kernels* kernels() {
  static const Kernels* k = [] () -> const Kernels* {
    const cpu::Isa isa = cpu::info().isa;
    if (isa == cpu::Isa::other || isa < cpu::Isa::avx2) return nullptr;
    return isa >= cpu::Isa::avx512_core ? &k_avx512 : &k_avx2;
  }();
  return k;
}
const Kernels& need_kernels() {
  const Kernels* k = kernels();
  DERMIS_CHECK(k, "Winograd convolution needs AVX2 or AVX-512; this CPU runs oneDNN at {}", cpu::info().isa_name);
  return *k;
}

memory::desc blocked(int64_t N, int64_t C, int64_t H, int64_t W, int lanes) {
  return memory::desc({N, C, H, W}, memory::data_type::f32, lanes == 16 ? tag::nChw16c : tag::nChw8c);
}
float* fp(const Tensor& t) { return static_cast<float*>(t.raw()); }

// w (K, C, 3, 3) rearranged to (C, 9, K) (to_ck) or (K, 9, C) (to_kc): the filters' taps in rows,
// channels innermost, for the vectorised filter transforms.
Tensor taps(const Tensor& w, bool to_ck) {
  const int64_t K = w.dim(0), C = w.dim(1);
  const memory::desc dst({K, C, 9}, memory::data_type::f32,
                         to_ck ? memory::dims{1, 9 * K, K} : memory::dims{9 * C, 1, C});
  return w.plain().reshape({K, C, 9}).to_desc(dst);
}

// The transformed filters for forward (u (36, C, K): from input channel c to output channel k) or
// for backward data (u (36, K, C): from dy's channel k to dx's channel c, w[k][c] rotated by 180
// degrees).
Tensor filters(const Kernels& ks, const Tensor& w, bool backward) {
  const int64_t K = w.dim(0), C = w.dim(1);
  const int64_t in = backward ? K : C, out = backward ? C : K;
  const Tensor wt = taps(w, !backward);
  Tensor u = Tensor::empty({P, in, out});
  ks.filters(fp(wt), fp(u), in, out, backward);
  return u;
}

using Matmul = ctx::Prim<dnnl::matmul::primitive_desc, dnnl::matmul>;

// 36 products dst[p] (M x N) = a[p] (M x Kd) * b[p] (Kd x N); a is stored (36, Kd, M) when
// a_transposed.
memory::desc a_desc(int64_t M, int64_t Kd, bool a_transposed) {
  return memory::desc({P, M, Kd}, memory::data_type::f32, a_transposed ? tag::acb : tag::abc);
}
void batched_matmul(const float* a, const float* b, float* dst, int64_t M, int64_t Kd, int64_t N, bool a_transposed,
                    const char* what) {
  const auto mm = ctx::cached<Matmul>(ctx::Key("winograd_matmul")(M, Kd, N, a_transposed), [&] {
    const memory::desc bd({P, Kd, N}, memory::data_type::f32, tag::abc);
    const memory::desc dd({P, M, N}, memory::data_type::f32, tag::abc);
    Matmul m(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_desc(M, Kd, a_transposed), bd, dd), ctx::engine()));
    ctx::note_impl("winograd_matmul", m.pd.impl_info_str());
    return m;
  });
  auto& e = ctx::engine();
  ctx::execute(mm->prim,
               {{DNNL_ARG_SRC, memory(mm->pd.src_desc(), e, const_cast<float*>(a))},
                {DNNL_ARG_WEIGHTS, memory(mm->pd.weights_desc(), e, const_cast<float*>(b))},
                {DNNL_ARG_DST, memory(mm->pd.dst_desc(), e, dst)}},
               what);
}

// y (N, K, Ho, Wo) blocked = Winograd of x (N, C, H, W) with transformed filters u (36, C, K).
Tensor run(const Tensor& x, const Tensor& u, int64_t K, const Tensor& b, int64_t pad, bool relu, const char* what) {
  const Kernels& ks = need_kernels();
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t Ho = H + 2 * pad - 2, Wo = W + 2 * pad - 2;
  DERMIS_CHECK(Ho >= 1 && Wo >= 1 && C % ks.lanes == 0 && K % ks.lanes == 0 && u.numel() == P * C * K,
               "winograd: unsupported convolution {} -> {} channels, pad {}", to_string(x.shape()), K, pad);
  const Tensor xb = x.to_dtype(DType::f32).to_desc(blocked(N, C, H, W, ks.lanes));
  const Tiles in{N, C, H, W, pad, (Ho + 3) / 4, (Wo + 3) / 4};
  const int64_t T = in.count();
  Tensor v = Tensor::empty({P, T, C});
  ks.input(fp(xb), fp(v), in);
  Tensor m = Tensor::empty({P, T, K});
  batched_matmul(fp(v), fp(u), fp(m), T, C, K, false, what);
  Tensor y = Tensor::with_desc({N, K, Ho, Wo}, blocked(N, K, Ho, Wo, ks.lanes));
  const Tensor bp = b.defined() ? b.plain() : Tensor();
  ks.output(fp(m), fp(y), bp.defined() ? fp(bp) : nullptr, relu, {N, K, Ho, Wo, 0, in.tH, in.tW});
  return y;
}
}  // namespace

int lanes() {
  const Kernels* k = kernels();
  return k ? k->lanes : 0;
}

bool supported(int64_t C, int64_t K, int64_t pad) {
  const int l = lanes();
  return l > 0 && C % l == 0 && K % l == 0 && pad >= 0 && pad <= 2;
}

Tensor forward(const Tensor& x, const Tensor& w, const Tensor& b, int64_t pad, bool relu) {
  return run(x, filters(need_kernels(), w, false), w.dim(0), b, pad, relu, "winograd forward");
}

Tensor forward_filters(const Tensor& w) { return filters(need_kernels(), w, false); }

Tensor forward_transformed(const Tensor& x, const Tensor& u, int64_t K, const Tensor& b, int64_t pad, bool relu) {
  DERMIS_CHECK(u.shape() == Shape({P, x.dim(1), K}), "winograd forward: filters {} do not fit input {} and {} outputs",
               to_string(u.shape()), to_string(x.shape()), K);
  return run(x, u, K, b, pad, relu, "winograd forward");
}

Tensor backward_data(const Tensor& dy, const Tensor& w, int64_t pad, const Shape& x_shape) {
  Tensor dx = run(dy, filters(need_kernels(), w, true), w.dim(1), Tensor(), 2 - pad, false, "winograd backward data");
  DERMIS_CHECK(dx.shape() == x_shape, "winograd backward data: got {} for input {}", to_string(dx.shape()),
               to_string(x_shape));
  return dx;
}

void backward_weights(const Tensor& x, const Tensor& dy, int64_t pad, Tensor& dw, Tensor* db) {
  const Kernels& ks = need_kernels();
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t K = dy.dim(1), Ho = dy.dim(2), Wo = dy.dim(3);
  DERMIS_CHECK(Ho == H + 2 * pad - 2 && Wo == W + 2 * pad - 2 && C % ks.lanes == 0 && K % ks.lanes == 0,
               "winograd backward weights: unsupported shapes {} and {}, pad {}", to_string(x.shape()),
               to_string(dy.shape()), pad);
  const Tensor xb = x.to_dtype(DType::f32).to_desc(blocked(N, C, H, W, ks.lanes));
  const Tensor gb = dy.to_dtype(DType::f32).to_desc(blocked(N, K, Ho, Wo, ks.lanes));
  const Tiles in{N, C, H, W, pad, (Ho + 3) / 4, (Wo + 3) / 4};
  const int64_t T = in.count();
  Tensor v = Tensor::empty({P, T, C}), z = Tensor::empty({P, T, K}), du = Tensor::empty({P, C, K});
  ks.input(fp(xb), fp(v), in);
  ks.gradient(fp(gb), fp(z), {N, K, Ho, Wo, 0, in.tH, in.tW});
  batched_matmul(fp(v), fp(z), fp(du), C, T, K, true, "winograd backward weights");  // V^T Z
  // G^T dU G into (C, 9, K), then to the plain (K, C, 3, 3) layout.
  Tensor dwt = Tensor::with_desc({K, C, 9}, memory::desc({K, C, 9}, memory::data_type::f32, memory::dims{1, 9 * K, K}));
  ks.filter_gradient(fp(du), fp(dwt), C, K);
  dw = dwt.plain().reshape({K, C, 3, 3});
  if (db) {
    *db = Tensor::empty({K});
    ks.sum(fp(gb), fp(*db), N, K, Ho * Wo);
  }
}

}  // namespace dermis::winograd
