// tools/evaluate: scores a checkpoint on a dataset (HAM10000 layout, or an ISIC 2018 Task 3
// ground-truth CSV) and prints one JSON object of metrics.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>

#include "datasets/ham10000.h"
#include "datasets/split.h"
#include "framework/data/jpeg.h"
#include "framework/io/atomic_file.h"
#include "framework/metrics.h"
#include "framework/ops.h"
#include "framework/cli.h"
#include "tools/experiment/checkpoint.h"
#include "tools/experiment/config.h"
#include "tools/experiment/evaluation.h"

int main(int argc, char** argv) {
  using namespace dermis;
  return dermis::cli::run_main("evaluate", [&]() -> int {
    cli::Args args(
        "usage: evaluate --checkpoint FILE --data DIR [--images SUBDIR | --ground-truth CSV] [flags]\n"
        "Prints accuracy, balanced accuracy, per-class recall/precision, macro F1, AUC and the confusion\n"
        "matrix as one JSON object. --split val scores only the checkpoint's own validation split.");
    args.add("checkpoint", "", "a checkpoint written by train (best.safetensors or last.safetensors)");
    args.add("data", "", "HAM10000 folder, or the image folder when --ground-truth is given");
    args.add("images", "", "image subfolder of --data (HAM10000 layout; default: the checkpoint's training folder "
             "when --data has it, else HAM10000_images_part_1/2)");
    args.add("ground-truth", "", "ISIC 2018 Task 3 ground-truth CSV (images in --data)");
    args.add("split", "all", "all | val | train (val/train: the checkpoint's lesion-grouped split)");
    args.add("size", "", "input HxW (default: the checkpoint's training size; a larger one counters the zoom of "
             "training's random crops, as FixRes)");
    args.add_bool("tta", "average the predictions over horizontal and vertical flips");
    args.add_bool("skip-bad-images", "warn about and skip unreadable images");
    args.add("weights", "auto", experiment::kWeightsFlagHelp);
    args.add("out", "", "also write the JSON to this file");
    args.add("threads", "0", "OpenMP threads (0: all cores)");
    args.add("batch", "64", "batch size");
    if (!args.parse(argc, argv)) return 0;
    DERMIS_CHECK(!args.str("checkpoint").empty(), "flag --checkpoint is required");
    DERMIS_CHECK(!args.str("data").empty(), "flag --data is required");
    const bool ground_truth = !args.str("ground-truth").empty();
    args.reject_unless("images", !ground_truth,
                       "does not apply with --ground-truth (the images of a ground-truth CSV are in --data)");
    args.reject_unless("split", !ground_truth,
                       "does not apply with --ground-truth (the checkpoint's lesion-grouped split is of its HAM10000 "
                       "training set)");
    if (const long t = args.integer("threads", 0, 1024); t > 0) set_num_threads(static_cast<int>(t));
    auto ck = experiment::load_checkpoint(args.str("checkpoint"));
    const std::string weights = experiment::select_weights(ck, args.str("weights"));
    const bool skip = args.flag("skip-bad-images");
    const auto cfg = experiment::TrainConfig::from_json(ck.info.config, args.str("checkpoint"));  // how the model was trained
    // Without --images, the folder the model was trained on, where --data has one of that name.
    std::string images = args.str("images");
    if (images.empty() && !ground_truth && !cfg.images.empty() &&
        std::filesystem::is_directory(std::filesystem::path(args.str("data")) / cfg.images))
      images = cfg.images;
    datasets::Dataset ds = !ground_truth
                               ? datasets::read_ham10000(args.str("data"), {images, skip})
                               : datasets::read_isic_ground_truth(args.str("ground-truth"), args.str("data"), skip);
    const std::string split = args.str("split");
    DERMIS_CHECK(split == "all" || split == "val" || split == "train", "flag --split: expected all, val or train, got '{}'",
                 split);
    if (split != "all") {
      const auto sp = datasets::grouped_split(ds, cfg.val_fraction, cfg.seed);
      ds = datasets::subset(ds, split == "val" ? sp.val : sp.train);
    }
    std::vector<data::Item> items;
    for (auto& s : ds.samples) items.push_back({s.path, s.label});
    data::LoaderOptions o;
    o.train = false, o.shuffle = false, o.batch = args.integer("batch", 1, 4096), o.height = ck.info.height;
    o.width = ck.info.width;
    if (!args.str("size").empty()) experiment::parse_size(args.str("size"), "size", o.height, o.width);
    o.norm = ck.info.norm, o.skip_bad_images = skip,
    o.num_classes = static_cast<int>(ck.info.classes.size());
    data::Loader loader(items, o);
    auto p = experiment::predict(*ck.model, loader, args.flag("tta"), [&](int64_t done, int64_t total) {
      std::fprintf(stderr, "\revaluating %ld/%ld images", static_cast<long>(done), static_cast<long>(total));
    });
    std::fprintf(stderr, "\n");
    auto r = metrics::evaluate(p.labels, p.probs, static_cast<int>(ck.info.classes.size()));
    r.loss = p.loss;
    json::Object o2 = r.to_json(ck.info.classes);
    o2["checkpoint"] = args.str("checkpoint");
    o2["split"] = split;
    o2["weights"] = weights;
    o2["input_size"] = fmt::format("{}x{}", o.height, o.width);
    o2["tta"] = args.flag("tta");
    o2["skipped_images"] = loader.bad_images();
    const std::string text = json::dump(o2);
    std::printf("%s\n", text.c_str());
    if (!args.str("out").empty())
      io::write_file_atomic(args.str("out"), std::vector<uint8_t>(text.begin(), text.end()));
    return 0;
  });
}
