// The bf16 storage format on every CPU: dermis's f32 -> bf16 conversion (framework/bf16.h) bit for
// bit against a table of what round-to-nearest-even specifies (signed zeros, infinities, NaNs, ties,
// overflow, subnormals), the same values converted by oneDNN's reorder compared by value (oneDNN's
// reorders may drop the sign of zero on some ISAs), and adds that mix bf16 and f32 tensors.
#define BOOST_TEST_MODULE bf16_format
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "framework/bf16.h"
#include "framework/random.h"
#include "framework/tensor.h"

using namespace dermis;
using tag = dnnl::memory::format_tag;

namespace {
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

struct Row {
  uint32_t f32;   // input bits
  uint16_t bf16;  // the round-to-nearest-even result
  const char* what;
};
// Round to nearest, ties to even, on the upper 16 bits; NaNs stay NaN (quiet, sign and high
// payload kept) and never round into infinity; overflow past the largest bf16 gives infinity.
const Row kSpec[] = {
    {0x00000000u, 0x0000u, "+0"},
    {0x80000000u, 0x8000u, "-0 keeps its sign"},
    {0x7f800000u, 0x7f80u, "+inf"},
    {0xff800000u, 0xff80u, "-inf"},
    {0x7fc00000u, 0x7fc0u, "quiet NaN"},
    {0xffc00000u, 0xffc0u, "negative quiet NaN"},
    {0x7f800001u, 0x7fc0u, "signalling NaN with a low payload: quiet NaN, not inf"},
    {0x7f80ffffu, 0x7fc0u, "NaN whose low half would round up: stays NaN"},
    {0x7fa00000u, 0x7fe0u, "signalling NaN with a high payload: quieted, payload kept"},
    {0x3f800000u, 0x3f80u, "1"},
    {0xbfc00000u, 0xbfc0u, "-1.5"},
    {0x3f808000u, 0x3f80u, "1 + 2^-8: a tie, to even (down)"},
    {0x3f818000u, 0x3f82u, "1 + 3 * 2^-8: a tie, to even (up)"},
    {0xbf818000u, 0xbf82u, "negative tie, to even (away from zero)"},
    {0x3f808001u, 0x3f81u, "just above a tie: up"},
    {0x3f807fffu, 0x3f80u, "just below a tie: down"},
    {0x3f80ffffu, 0x3f81u, "nearly the next value: up"},
    {0x7f7f7fffu, 0x7f7fu, "below the largest bf16's upper tie: the largest finite bf16"},
    {0x7f7f8000u, 0x7f80u, "tie above the largest finite bf16 (odd): overflows to +inf"},
    {0x7f7fffffu, 0x7f80u, "largest finite f32: overflows to +inf"},
    {0xff7fffffu, 0xff80u, "most negative finite f32: overflows to -inf"},
    {0x00000001u, 0x0000u, "smallest f32 subnormal: to +0"},
    {0x80000001u, 0x8000u, "smallest negative subnormal: to -0"},
    {0x00008000u, 0x0000u, "subnormal tie, to even (0)"},
    {0x00018000u, 0x0002u, "subnormal tie, to even (up)"},
    {0x00008001u, 0x0001u, "above a subnormal tie: the smallest bf16 subnormal"},
    {0x007fffffu, 0x0080u, "largest f32 subnormal: up to the smallest normal"},
    {0x807f0000u, 0x807fu, "negative subnormal, exact"},
    {0x00800000u, 0x0080u, "smallest normal"},
};
}  // namespace

BOOST_AUTO_TEST_CASE(conversion_follows_round_to_nearest_even_bit_for_bit) {
  for (const Row& r : kSpec) {
    const bf16 b = to_bf16(from_bits(r.f32));
    BOOST_TEST(b.bits == r.bf16, std::hex << "0x" << r.f32 << " (" << r.what << "): got 0x" << b.bits << ", want 0x"
                                          << r.bf16);
    // Back to f32 is exact: the upper half with a zero lower half.
    uint32_t back;
    const float f = to_f32(b);
    std::memcpy(&back, &f, sizeof back);
    BOOST_TEST(back == static_cast<uint32_t>(r.bf16) << 16, r.what);
  }
}

BOOST_AUTO_TEST_CASE(conversion_matches_onednn_by_value) {
  // oneDNN's f32 -> bf16 reorder (which Tensor::to_dtype runs) on random values and every row of the
  // table: the same value as dermis's conversion (both NaN for NaN; +0 and -0 count as equal, as
  // some of oneDNN's reorder kernels do not keep the sign of zero), and back to f32 exactly. The
  // one documented difference: oneDNN treats f32 subnormal inputs (below 2^-126, far under any
  // activation or gradient that matters) as zero, where dermis rounds them.
  Generator g(1);
  Tensor x = Tensor::randn({4096}, g, 0.f, 100.f);
  float* p = x.data();
  size_t i = 0;
  for (const Row& r : kSpec) p[i++] = from_bits(r.f32);
  const Tensor b = x.to_dtype(DType::bf16);
  BOOST_TEST((b.dtype() == DType::bf16 && b.bytes() == 4096 * 2));
  const bf16* pb = static_cast<const bf16*>(b.raw());
  int flushed = 0;
  for (int k = 0; k < 4096; ++k) {
    const float ours = to_f32(to_bf16(p[k])), theirs = to_f32(pb[k]);
    bool same = std::isnan(ours) ? std::isnan(theirs) : ours == theirs;
    if (!same && std::fpclassify(p[k]) == FP_SUBNORMAL && theirs == 0.f) same = true, ++flushed;
    BOOST_TEST_REQUIRE(same, "element " << k << " = " << p[k] << ": oneDNN gives " << theirs << ", dermis " << ours);
  }
  BOOST_TEST_MESSAGE(flushed << " subnormal inputs became zero in oneDNN's reorder");
  const std::vector<float> back = b.to_vector();
  for (int k = 0; k < 4096; ++k) {
    const float want = to_f32(pb[k]);  // by value again: oneDNN may turn -0 into +0
    BOOST_TEST_REQUIRE((std::isnan(want) ? std::isnan(back[k]) : back[k] == want), "element " << k << " back to f32");
  }
}

BOOST_AUTO_TEST_CASE(add_accumulates_across_dtypes_and_layouts) {
  Generator g(2);
  Tensor a = Tensor::randn({2, 20, 5, 5}, g), b = Tensor::randn({2, 20, 5, 5}, g);
  const std::vector<float> av = a.to_vector(), bv = b.to_vector();
  // f32 += bf16 (blocked): the bf16 values are added unrounded.
  Tensor bb = b.to_desc(dnnl::memory::desc({2, 20, 5, 5}, dnnl::memory::data_type::bf16, tag::nChw16c));
  Tensor acc = a.clone();
  acc.add_(bb);
  const std::vector<float> bq = bb.to_vector(), r = acc.to_vector();
  for (size_t i = 0; i < r.size(); ++i) BOOST_TEST_REQUIRE(r[i] == av[i] + bq[i]);
  // bf16 += f32: one rounding of the sum.
  Tensor ab = a.to_dtype(DType::bf16);
  const std::vector<float> aq = ab.to_vector();
  ab.add_(b, 2.f);
  const std::vector<float> r2 = ab.to_vector();
  for (size_t i = 0; i < r2.size(); ++i) BOOST_TEST_REQUIRE(r2[i] == to_f32(to_bf16(aq[i] + 2.f * bv[i])));
}

