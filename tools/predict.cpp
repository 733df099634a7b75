// tools/predict: class probabilities for JPEG images from a checkpoint, and optionally attention
// heatmaps (Grad-CAM, or the last CBAM block's spatial attention) as JPEG overlays.
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "framework/data/loader.h"
#include "framework/io/atomic_file.h"
#include "framework/io/json.h"
#include "framework/ops.h"
#include "framework/cli.h"
#include "tools/experiment/checkpoint.h"
#include "tools/experiment/evaluation.h"
#include "tools/experiment/heatmap.h"

int main(int argc, char** argv) {
  using namespace dermis;
  namespace fs = std::filesystem;
  return dermis::cli::run_main("predict", [&]() -> int {
    cli::Args args(
        "usage: predict --checkpoint FILE [flags] IMAGE.jpg...\n"
        "Prints the most likely classes per image (JSON with --json); --heatmap DIR writes\n"
        "DIR/<image>_heatmap.jpg showing where the model looked.");
    args.add("checkpoint", "", "a checkpoint written by train");
    args.add("top", "3", "classes to print per image");
    args.add_bool("json", "print one JSON object per image");
    args.add("heatmap", "", "folder for heatmap overlays");
    args.add("heatmap-method", "grad_cam", "grad_cam (top class, last feature map) or attention (last CBAM spatial gate)");
    args.add("weights", "auto", experiment::kWeightsFlagHelp);
    args.add("threads", "0", "OpenMP threads (0: all cores)");
    std::vector<std::string> images;
    std::vector<char*> flags = {argv[0]};
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a.rfind("--", 0) == 0 || a == "-h") {
        flags.push_back(argv[i]);
        const bool boolean = a == "--json" || a == "--help" || a == "-h" || a.find('=') != std::string::npos;
        if (!boolean && i + 1 < argc) flags.push_back(argv[++i]);
      } else {
        images.push_back(a);
      }
    }
    if (!args.parse(static_cast<int>(flags.size()), flags.data())) return 0;
    DERMIS_CHECK(!args.str("checkpoint").empty(), "flag --checkpoint is required");
    DERMIS_CHECK(!images.empty(), "no images given; usage: predict --checkpoint FILE IMAGE.jpg...");
    args.reject_unless("heatmap-method", !args.str("heatmap").empty(), "applies only with --heatmap DIR");
    args.reject_unless("top", !args.flag("json"), "does not apply with --json (which prints every class)");
    if (const long t = args.integer("threads", 0, 1024); t > 0) set_num_threads(static_cast<int>(t));
    const long top = args.integer("top", 1, 1000);
    const experiment::HeatmapMethod method = experiment::parse_heatmap_method(args.str("heatmap-method"));
    auto ck = experiment::load_checkpoint(args.str("checkpoint"));
    experiment::select_weights(ck, args.str("weights"));
    const std::string hdir = args.str("heatmap");
    if (!hdir.empty()) fs::create_directories(hdir);
    std::vector<data::Item> items;
    for (auto& p : images) items.push_back({p, 0});
    data::LoaderOptions o;
    o.train = false, o.shuffle = false, o.batch = 1, o.threads = 1, o.height = ck.info.height, o.width = ck.info.width;
    o.norm = ck.info.norm, o.num_classes = static_cast<int>(ck.info.classes.size());
    data::Loader loader(items, o);
    auto ep = loader.epoch(0);
    size_t k = 0;
    while (auto b = ep.next()) {
      const std::string& path = images[k++];
      experiment::Heatmap h = experiment::attention_heatmap(*ck.model, b->images, ck.info.norm, 2, method);
      std::vector<int> order(h.probs.size());
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int a, int c) { return h.probs[a] > h.probs[c]; });
      std::string heat_path;
      if (!hdir.empty()) {
        heat_path = (fs::path(hdir) / (fs::path(path).stem().string() + "_heatmap.jpg")).string();
        io::write_file_atomic(heat_path, data::encode_jpeg(h.overlay, 90));
      }
      if (args.flag("json")) {
        json::Object probs;
        for (size_t c = 0; c < h.probs.size(); ++c) probs[ck.info.classes[c]] = static_cast<double>(h.probs[c]);
        json::Object line{{"image", path}, {"prediction", ck.info.classes[order[0]]}, {"probabilities", probs}};
        if (!heat_path.empty()) line["heatmap"] = heat_path, line["heatmap_method"] = h.method;
        std::printf("%s\n", json::dump(line).c_str());
      } else {
        std::printf("%s:", path.c_str());
        for (long t = 0; t < std::min<long>(top, static_cast<long>(order.size())); ++t)
          std::printf("  %s %.1f%%", ck.info.classes[order[t]].c_str(), 100.0 * h.probs[order[t]]);
        if (!heat_path.empty()) std::printf("  (heatmap: %s)", heat_path.c_str());
        std::printf("\n");
      }
    }
    return 0;
  });
}
