// Starting from published weights: torch.save (.pth) and safetensors files written by PyTorch and
// torchvision (tests/golden/torchvision/make_golden.py) load into dermis models, give torchvision's
// logits, map onto the CBAM variants and other class counts, and damaged files fail clearly.
#define BOOST_TEST_MODULE torch_import
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "framework/autograd.h"
#include "framework/data/jpeg.h"
#include "framework/io/torch_file.h"
#include "models/pretrained.h"
#include "models/registry.h"
#include "testing.h"

using namespace dermis;
using testing::expect_error;
using namespace std::string_literals;

#ifndef DERMIS_TORCH_DATA
#error "DERMIS_TORCH_DATA must point at the build folder holding the decompressed golden files"
#endif

namespace {
const std::string kGolden = std::string(DERMIS_TEST_DATA) + "/golden/torchvision/";
const std::string kData = DERMIS_TORCH_DATA;

// max |a - b| / max |b|
double maxnorm_rel(const Tensor& a, const Tensor& b) {
  const Tensor pa = a.plain(), pb = b.plain();
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < pb.numel(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(pa.data()[i] - pb.data()[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(pb.data()[i])));
  }
  return diff / scale;
}

Tensor logits_of(models::Classifier& m, const Tensor& x) {
  NoGrad ng;
  m.eval();
  return m.forward(Var(x)).value().plain();
}

std::string read(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// A stored (uncompressed) zip archive, as torch.save writes, of the given entries.
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  auto u16 = [](std::string& s, uint32_t v) { s += char(v & 0xff), s += char((v >> 8) & 0xff); };
  auto u32 = [&](std::string& s, uint32_t v) { u16(s, v & 0xffff), u16(s, v >> 16); };
  std::string out, cd;
  for (auto& [name, data] : entries) {
    const uint32_t off = static_cast<uint32_t>(out.size());
    u32(out, 0x04034b50), u16(out, 20), u16(out, 0), u16(out, 0), u32(out, 0), u32(out, 0);
    u32(out, static_cast<uint32_t>(data.size())), u32(out, static_cast<uint32_t>(data.size()));
    u16(out, static_cast<uint32_t>(name.size())), u16(out, 0);
    out += name + data;
    u32(cd, 0x02014b50), u16(cd, 20), u16(cd, 20), u16(cd, 0), u16(cd, 0), u32(cd, 0), u32(cd, 0);
    u32(cd, static_cast<uint32_t>(data.size())), u32(cd, static_cast<uint32_t>(data.size()));
    u16(cd, static_cast<uint32_t>(name.size())), u16(cd, 0), u16(cd, 0), u16(cd, 0), u16(cd, 0), u32(cd, 0), u32(cd, off);
    cd += name;
  }
  const uint32_t cd_off = static_cast<uint32_t>(out.size());
  out += cd;
  u32(out, 0x06054b50), u16(out, 0), u16(out, 0), u16(out, static_cast<uint32_t>(entries.size()));
  u16(out, static_cast<uint32_t>(entries.size())), u32(out, static_cast<uint32_t>(cd.size())), u32(out, cd_off), u16(out, 0);
  return out;
}

std::string temp(const std::string& name) { return kData + "/torch_import_" + name; }
}  // namespace

BOOST_AUTO_TEST_CASE(torchvision_resnet18_pth_and_safetensors_give_torchvisions_logits) {
  const io::TensorFile golden = io::load_safetensors(kGolden + "resnet18_golden.safetensors");
  BOOST_TEST_MESSAGE("written by torch " << golden.metadata.at("torch") << ", torchvision "
                                         << golden.metadata.at("torchvision"));
  for (const char* file : {"resnet18.pth", "resnet18.safetensors"}) {
    BOOST_TEST_CONTEXT(file) {
      const io::TensorFile f = io::load_weights_file(kData + "/" + file);
      BOOST_TEST(f.tensors.size() == 122u);  // 102 parameters and running statistics, 20 num_batches_tracked
      auto model = models::create("resnet18", 1000);
      const models::PretrainedReport r = models::load_pretrained(*model, f);
      BOOST_TEST(r.loaded.size() == 102u);
      BOOST_TEST(r.initialised.empty());
      BOOST_TEST(r.replaced.empty());
      BOOST_TEST(r.ignored == 20);
      BOOST_TEST(r.summary() == "loaded 102 tensors, ignored 20 (num_batches_tracked, optimiser state)");
      const double rel = maxnorm_rel(logits_of(*model, golden.at("input")), golden.at("logits"));
      BOOST_TEST_MESSAGE(file << ": max-norm relative difference to torchvision's logits " << rel);
      BOOST_TEST(rel < 1e-4);
    }
  }
}

BOOST_AUTO_TEST_CASE(resnet18_file_maps_onto_cbam_variants_and_other_class_counts) {
  const io::TensorFile f = io::load_weights_file(kData + "/resnet18.pth");
  auto model = models::create("resnet18_cbam", 7);
  const Tensor before = model->state().front().second.plain().clone();  // conv1.weight, as initialised
  models::PretrainedReport r = models::load_pretrained(*model, f);
  BOOST_TEST(r.loaded.size() == 100u);  // everything but fc.weight and fc.bias
  BOOST_TEST(r.replaced.size() == 2u);
  BOOST_TEST(r.file_classes == 1000);
  BOOST_TEST(r.classes == 7);
  BOOST_TEST(!r.initialised.empty());
  for (auto& n : r.initialised) BOOST_TEST(n.find(".cbam.") != std::string::npos, n);
  BOOST_TEST_MESSAGE(r.summary());
  BOOST_TEST(r.summary().find("replaced fc 1000->7") != std::string::npos);
  BOOST_TEST(r.summary().find("not in the file (layer*.*.cbam)") != std::string::npos);
  // The loaded values are the file's.
  const Tensor w = model->state().front().second.plain(), fw = f.at("conv1.weight").plain();
  BOOST_TEST(maxnorm_rel(w, fw) == 0.0);
  BOOST_TEST(maxnorm_rel(before, fw) > 0.1);
  // resnet34_cbam needs blocks a resnet18 file does not have.
  auto big = models::create("resnet34_cbam", 7);
  expect_error([&] { models::load_pretrained(*big, f); }, {"resnet18.pth", "has no tensor 'layer1.2.conv1.weight'"});
  // cbam_small has other names altogether.
  auto small = models::create("cbam_small", 7);
  expect_error([&] { models::load_pretrained(*small, f); }, {"resnet18.pth", "tensor 'conv1.weight' has no counterpart"});
}

BOOST_AUTO_TEST_CASE(shape_mismatch_outside_the_head_names_the_tensor) {
  io::TensorFile f = io::load_weights_file(kData + "/resnet18.safetensors");
  for (auto& [n, t] : f.tensors)
    if (n == "layer2.0.conv1.weight") t = Tensor::zeros({128, 64, 1, 1});
  auto model = models::create("resnet18", 7);
  expect_error([&] { models::load_pretrained(*model, f); },
               {"tensor 'layer2.0.conv1.weight' has shape (128, 64, 1, 1) in the file and (128, 64, 3, 3) in the model"});
}

BOOST_AUTO_TEST_CASE(training_checkpoint_with_other_dtypes_and_strides) {
  const io::TensorFile f = io::load_torch(kGolden + "dtypes_checkpoint.pth");
  BOOST_TEST(f.metadata.at("torch.state_dict_key") == "state_dict");
  std::vector<float> base(24);
  for (int i = 0; i < 24; ++i) base[static_cast<size_t>(i)] = static_cast<float>(i) / 8 - 1;
  for (const char* n : {"a.f16", "a.bf16", "a.f64"}) {
    const Tensor t = f.at(n).plain();
    BOOST_TEST((t.shape() == Shape{4, 6}), n);
    for (int i = 0; i < 24; ++i) BOOST_TEST(t.data()[i] == base[static_cast<size_t>(i)], n << " " << i);
  }
  const Tensor tr = f.at("a.transposed").plain();
  BOOST_TEST((tr.shape() == Shape{6, 4}));
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 4; ++c) BOOST_TEST(tr.data()[r * 4 + c] == base[static_cast<size_t>(c * 6 + r)]);
  const Tensor off = f.at("a.offset").plain();
  BOOST_TEST((off.shape() == Shape{6}));
  for (int i = 0; i < 6; ++i) BOOST_TEST(off.data()[i] == base[static_cast<size_t>(5 + i)]);
  const Tensor i64 = f.at("a.i64").plain();
  for (int i = 0; i < 5; ++i) BOOST_TEST(i64.data()[i] == static_cast<float>(i - 2));
  BOOST_TEST(f.at("a.scalar").plain().data()[0] == 3.5f);
  // Pickle protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE) reads as protocol 2 does.
  const std::string corpus = std::string(DERMIS_TEST_DATA) + "/fuzz/corpus/torch/";
  const io::TensorFile p2 = io::load_torch(corpus + "sequential_p2.pth"), p4 = io::load_torch(corpus + "sequential_p4.pth");
  BOOST_REQUIRE(p2.tensors.size() == 9u);  // conv weight, bias; BN weight, bias, mean, var, count; linear weight, bias
  BOOST_REQUIRE(p4.tensors.size() == p2.tensors.size());
  for (auto& [n, t] : p2.tensors) {
    const Tensor a = p4.at(n).plain(), b = t.plain();
    BOOST_TEST((a.shape() == b.shape()), n);
    BOOST_TEST(std::memcmp(a.data(), b.data(), static_cast<size_t>(b.numel()) * 4) == 0, n);
  }
}

BOOST_AUTO_TEST_CASE(damaged_and_foreign_files_fail_with_the_file_named) {
  const std::string pth = read(kData + "/resnet18.pth");
  BOOST_REQUIRE(pth.size() > 1000000);
  write(temp("truncated.pth"), pth.substr(0, pth.size() / 2));
  expect_error([] { io::load_weights_file(temp("truncated.pth")); }, {temp("truncated.pth"), "damaged"});
  write(temp("tail_cut.pth"), pth.substr(0, pth.size() - 10));
  expect_error([] { io::load_weights_file(temp("tail_cut.pth")); }, {temp("tail_cut.pth")});
  // A storage entry cut short: the directory is intact, the data is not.
  const std::string pkl_ok = "\x80\x02}q\x00(X\x05\x00\x00\x00" "epochK\x03u."s;
  write(temp("no_tensors.pth"), make_zip({{"archive/data.pkl", pkl_ok}, {"archive/version", "3\n"}}));
  expect_error([] { io::load_torch(temp("no_tensors.pth")); }, {"holds no tensors", "[epoch]"});
  write(temp("list.pth"), make_zip({{"archive/data.pkl", "\x80\x02]q\x00."s}}));
  expect_error([] { io::load_torch(temp("list.pth")); }, {temp("list.pth"), "holds a list, not a state dict"});
  write(temp("opcode.pth"), make_zip({{"archive/data.pkl", "\x80\x02}\xfe."s}}));
  expect_error([] { io::load_torch(temp("opcode.pth")); }, {"archive/data.pkl, byte 3", "unsupported pickle opcode 0xfe"});
  write(temp("underflow.pth"), make_zip({{"archive/data.pkl", "\x80\x02s."s}}));
  expect_error([] { io::load_torch(temp("underflow.pth")); }, {"stack underflow"});
  // A tensor whose storage is not in the archive.
  const std::string tensor_pkl =
      "\x80\x02}(X\x01\x00\x00\x00w"
      "ctorch._utils\n_rebuild_tensor_v2\n"
      "((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQ"
      "K\x00K\x04\x85K\x01\x85\x89)tRu."s;
  write(temp("no_storage.pth"), make_zip({{"archive/data.pkl", tensor_pkl}}));
  expect_error([] { io::load_torch(temp("no_storage.pth")); }, {"storage '0' has no data/0 in the archive"});
  write(temp("short_storage.pth"), make_zip({{"archive/data.pkl", tensor_pkl}, {"archive/data/0", std::string(12, '\0')}}));
  expect_error([] { io::load_torch(temp("short_storage.pth")); }, {"holds 12 bytes, too few for 4 f32 elements"});
  // The same pickle with its storage is a valid one-tensor state dict.
  std::string four(16, '\0');
  const float vals[4] = {1, -2, 3.5f, 0.25f};
  std::memcpy(four.data(), vals, 16);
  write(temp("ok.pth"), make_zip({{"archive/data.pkl", tensor_pkl}, {"archive/data/0", four}}));
  const io::TensorFile ok = io::load_torch(temp("ok.pth"));
  BOOST_REQUIRE(ok.tensors.size() == 1u);
  BOOST_TEST(ok.tensors[0].first == "w");
  BOOST_TEST(ok.at("w").plain().data()[2] == 3.5f);
  // Legacy torch.save and other files.
  write(temp("legacy.pth"), "\x80\x02\x8a\x0a"s + std::string(100, '\0'));
  expect_error([] { io::load_weights_file(temp("legacy.pth")); }, {"legacy (before PyTorch 1.6) format"});
  write(temp("text.pth"), "hello, this is not a weights file at all");
  expect_error([] { io::load_weights_file(temp("text.pth")); }, {temp("text.pth"), "neither a torch.save file"});
  write(temp("zip_only.pth"), make_zip({{"readme.txt", "hi"}}));
  expect_error([] { io::load_torch(temp("zip_only.pth")); }, {"without data.pkl"});
  expect_error([] { io::load_weights_file(temp("missing.pth")); }, {"cannot open", "missing.pth"});
  for (const char* n : {"truncated", "tail_cut", "no_tensors", "list", "opcode", "underflow", "no_storage", "short_storage",
                        "ok", "legacy", "text", "zip_only"})
    std::remove(temp(std::string(n) + ".pth").c_str());
}

BOOST_AUTO_TEST_CASE(standard_decode_gives_pils_pixels) {
  const std::vector<uint8_t> jpg = data::read_file(kGolden + "pil_decode.jpg");
  const std::string ppm = read(kGolden + "pil_decode.ppm");
  const std::string head = "P6\n83 61\n255\n";
  BOOST_REQUIRE(ppm.compare(0, head.size(), head) == 0);
  const std::string pil = ppm.substr(head.size());
  BOOST_REQUIRE(pil.size() == 83u * 61 * 3);
  const data::Image standard = data::decode_jpeg(jpg, "pil_decode.jpg", 40, 30, data::standard_decode());
  BOOST_TEST(standard.width == 83);  // full size although 40x30 would do
  BOOST_TEST(standard.height == 61);
  BOOST_TEST(std::memcmp(standard.rgb.data(), pil.data(), pil.size()) == 0);
  // Training's fast decode is close but not the same.
  const data::Image fast = data::decode_jpeg(jpg, "pil_decode.jpg");
  int differ = 0, worst = 0;
  for (size_t i = 0; i < pil.size(); ++i) {
    const int d = std::abs(static_cast<int>(fast.rgb[i]) - static_cast<uint8_t>(pil[i]));
    differ += d > 0, worst = std::max(worst, d);
  }
  BOOST_TEST_MESSAGE("fast decode: " << differ << " of " << pil.size() << " values differ from PIL's, by at most " << worst);
  BOOST_TEST(differ > 0);
}
