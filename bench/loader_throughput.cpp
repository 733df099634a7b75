// bench/loader_throughput: images/s of the threaded loader (decode + training augmentations +
// normalisation into NCHW batches) on a folder of JPEGs, against libjpeg-turbo's bare decode at the
// same DCT scales and threads, and against the PyTorch peer (PIL + torchvision + DataLoader) run
// alternately in the same process tree: ours, decode, peer, ours, decode, peer, ...
// Prints one JSON object with medians and ratios.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "bench/cpu_report.h"
#include "framework/data/loader.h"
#include "framework/io/json.h"
#include "framework/cli.h"

using namespace dermis;
namespace fs = std::filesystem;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The loader: one warm-up epoch, then `epochs` timed epochs.
double run_loader(const std::vector<data::Item>& items, const data::LoaderOptions& o, int epochs) {
  data::Loader L(items, o);
  auto drain = [&](int64_t e) {
    int64_t n = 0;
    auto ep = L.epoch(e);
    while (auto b = ep.next()) n += b->images.dim(0);
    return n;
  };
  drain(0);
  const double t = now();
  int64_t n = 0;
  for (int e = 1; e <= epochs; ++e) n += drain(e);
  return n / (now() - t);
}

// Bare libjpeg-turbo decode of the same files at the scales the loader picks for its crops,
// split over `threads` threads (files read beforehand: decode only).
double run_decode(const std::vector<std::vector<uint8_t>>& files, const data::LoaderOptions& o, int epochs) {
  std::vector<std::array<int, 2>> need(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    const auto info = data::jpeg_info(files[i], "bench");
    Generator rng(static_cast<uint64_t>(i));
    const auto w = data::sample_train_warp(info.width, info.height, static_cast<int>(o.width),
                                           static_cast<int>(o.height), o.augment, rng);
    const double f = std::max(o.width, o.height) / std::min(w.crop_w, w.crop_h);
    need[i] = {static_cast<int>(std::ceil(info.width * f)), static_cast<int>(std::ceil(info.height * f))};
  }
  auto pass = [&] {
    std::atomic<size_t> next{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < o.threads; ++t)
      ts.emplace_back([&] {
        for (size_t i; (i = next.fetch_add(1)) < files.size();)
          data::decode_jpeg(files[i], "bench", need[i][0], need[i][1], o.decode);
      });
    for (auto& t : ts) t.join();
  };
  pass();
  const double t = now();
  for (int e = 0; e < epochs; ++e) pass();
  return static_cast<double>(files.size()) * epochs / (now() - t);
}

double run_peer(const std::string& script, const std::string& dir, const data::LoaderOptions& o, int epochs) {
  const std::string cmd = fmt::format("/usr/bin/python3 '{}' --images '{}' --size {} --batch {} --workers {} --epochs {}",
                                      script, dir, o.height, o.batch, o.threads, epochs);
  FILE* p = popen(cmd.c_str(), "r");
  DERMIS_CHECK(p != nullptr, "cannot run the peer: {}", cmd);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = pclose(p);
  DERMIS_CHECK(rc == 0, "the peer failed (exit {}): {}\n{}", rc, cmd, out);
  const auto line = out.substr(out.rfind('{'));
  return json::parse(line, "peer output").find("img_s")->number("img_s");
}

int run(int argc, char** argv) {
  cli::Args args(
      "usage: bench/loader_throughput --images DIR [flags]\n"
      "Loader images/s (training augmentations) vs bare decode vs the PyTorch peer, alternating.");
  args.add("images", "", "folder of .jpg files");
  args.add("size", "112", "output size (square)");
  args.add("threads", "2", "loader threads (and peer DataLoader workers)");
  args.add("batch", "32", "batch size");
  args.add("epochs", "2", "timed epochs per run (after a warm-up epoch)");
  args.add("rounds", "3", "alternating rounds (medians reported)");
  args.add("peer", "", "peer script (e.g. ../shared/peers/torch_loader_bench.py); empty: no peer");
  args.add_bool("accurate-dct", "use libjpeg-turbo's accurate integer IDCT instead of the fast one");
  args.add_bool("smooth-upsample", "use libjpeg-turbo's smoothing chroma upsampling instead of the fast one");
  args.add_bool("no-decode", "skip the bare-decode measurement");
  if (!args.parse(argc, argv)) return 0;
  const std::string dir = args.str("images");
  DERMIS_CHECK(!dir.empty(), "flag --images is required (a folder of JPEG files)");
  DERMIS_CHECK(fs::is_directory(dir), "flag --images: {} is not a folder", dir);
  std::vector<data::Item> items;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".jpg") items.push_back({e.path().string(), 0});
  std::sort(items.begin(), items.end(), [](auto& a, auto& b) { return a.path < b.path; });
  DERMIS_CHECK(!items.empty(), "flag --images: no .jpg files in {}", dir);

  data::LoaderOptions o;
  o.height = o.width = args.integer("size", 16, 4096);
  o.threads = static_cast<int>(args.integer("threads", 1, 256));
  o.batch = args.integer("batch", 1, 4096);
  o.drop_last = true;  // as the peer
  o.num_classes = 1;
  o.augment.rot90 = false;  // the peer's pipeline: RandomResizedCrop(0.5-1), H and V flips, ColorJitter(0.1 x3)
  o.decode.fast_dct = !args.flag("accurate-dct");
  o.decode.fast_upsample = !args.flag("smooth-upsample");
  const int epochs = static_cast<int>(args.integer("epochs", 1, 1000)), rounds = static_cast<int>(args.integer("rounds", 1, 100));
  const std::string peer = args.str("peer");
  const bool decode = !args.flag("no-decode");
  std::vector<std::vector<uint8_t>> files;
  if (decode)
    for (auto& it : items) files.push_back(data::read_file(it.path));

  bench::print_cpu_header("bench/loader_throughput");
  std::vector<double> ours, dec, theirs;
  for (int r = 0; r < rounds; ++r) {
    ours.push_back(run_loader(items, o, epochs));
    if (decode) dec.push_back(run_decode(files, o, epochs));
    if (!peer.empty()) theirs.push_back(run_peer(peer, dir, o, epochs));
  }
  json::Object out{{"bench", "loader_throughput"}, {"images_dir", dir},
                   {"images", static_cast<int64_t>(items.size())},
                   {"size", o.height}, {"threads", o.threads}, {"batch", o.batch}, {"epochs", epochs},
                   {"rounds", rounds}, {"fast_dct", o.decode.fast_dct},
                   {"fast_upsample", o.decode.fast_upsample}, {"img_s", median(ours)}, {"cpu", bench::cpu_json()}};
  json::Array runs;
  for (double v : ours) runs.push_back(v);
  out["img_s_runs"] = runs;
  if (decode) {
    out["bare_decode_img_s"] = median(dec);
    out["fraction_of_bare_decode"] = median(ours) / median(dec);
  }
  if (!peer.empty()) {
    out["peer_img_s"] = median(theirs);
    out["ratio_vs_peer"] = median(ours) / median(theirs);
  }
  std::printf("%s\n", json::dump(out).c_str());
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return dermis::cli::run_main("bench/loader_throughput", [&] { return run(argc, argv); });
}
