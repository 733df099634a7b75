// dermis's command-line tools as library functions (see tools.h). tools/train, tools/evaluate and
// tools/predict are one-line mains around them; a program that registers models of its own calls
// them to be those tools with its models added.
#include "tools.h"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>

#include "datasets/ham10000.h"
#include "datasets/split.h"
#include "framework/cli.h"
#include "framework/data/jpeg.h"
#include "framework/data/loader.h"
#include "framework/io/atomic_file.h"
#include "framework/io/json.h"
#include "framework/metrics.h"
#include "framework/ops.h"
#include "checkpoint.h"
#include "config.h"
#include "evaluation.h"
#include "heatmap.h"
#include "trainer.h"

namespace dermis::experiment {

int train_main(int argc, char** argv) {
  // Under mpirun: data-parallel training; rank 0 alone prints (and writes the run's files).
  dist::init(&argc, &argv);
  if (!dist::is_root() && !std::freopen("/dev/null", "w", stdout)) return 2;
  return cli::run_main("train", [&]() -> int {
    cli::Args args(
        "usage: train [flags]\n"
        "Trains a skin-lesion classifier with SGD and an LR schedule. Without --data it uses the built-in\n"
        "synthetic dataset (HAM10000 layout). Examples:\n"
        "  train                                                     # built-in default run\n"
        "  train --data ../shared/data/ham10000 --images images_200x150 --model resnet18_cbam --minutes 60\n"
        "  train --resume runs/NAME/last.safetensors                 # continue a run exactly\n"
        "  mpirun -np 4 train --data DIR ...                         # data-parallel over 4 processes");
    add_train_flags(args);
    if (!args.parse(argc, argv)) return 0;
    TrainConfig cfg = train_config_from_flags(args);
    std::string command = "train";
    for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
    const auto r = train(cfg, command);
    if (r.interrupted_by) return 128 + r.interrupted_by;  // the shell's convention for "ended by signal N"
    fmt::print("\nbest epoch {}: validation balanced accuracy {:.4f}, accuracy {:.4f}, macro F1 {:.4f} ({} images)\n",
               r.best_epoch, r.best_val.balanced_accuracy, r.best_val.accuracy, r.best_val.macro_f1, r.best_val.images);
    fmt::print("checkpoint: {}\nlast:       {}\nreport:     {}\nmetrics:    {}/metrics.jsonl\n", r.best_checkpoint,
               r.last_checkpoint, r.report, r.out_dir);
    return 0;
  });
}

int evaluate_main(int argc, char** argv) {
  return cli::run_main("evaluate", [&]() -> int {
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
    args.add("weights", "auto", kWeightsFlagHelp);
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
    auto ck = load_checkpoint(args.str("checkpoint"));
    const std::string weights = select_weights(ck, args.str("weights"));
    const bool skip = args.flag("skip-bad-images");
    const auto cfg = TrainConfig::from_json(ck.info.config, args.str("checkpoint"));  // how the model was trained
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
    const std::vector<data::Item> items = ds.items();
    data::LoaderOptions o;
    o.train = false, o.shuffle = false, o.batch = args.integer("batch", 1, 4096), o.height = ck.info.height;
    o.width = ck.info.width;
    if (!args.str("size").empty()) parse_size(args.str("size"), "size", o.height, o.width);
    o.norm = ck.info.norm, o.skip_bad_images = skip,
    o.num_classes = static_cast<int>(ck.info.classes.size());
    data::Loader loader(items, o);
    auto p = predict(*ck.model, loader, args.flag("tta"), [&](int64_t done, int64_t total) {
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

int predict_main(int argc, char** argv) {
  namespace fs = std::filesystem;
  return cli::run_main("predict", [&]() -> int {
    cli::Args args(
        "usage: predict --checkpoint FILE [flags] IMAGE.jpg...\n"
        "Prints the most likely classes per image (JSON with --json); --heatmap DIR writes\n"
        "DIR/<image>_heatmap.jpg showing where the model looked.");
    args.add("checkpoint", "", "a checkpoint written by train");
    args.add("top", "3", "classes to print per image");
    args.add_bool("json", "print one JSON object per image");
    args.add("heatmap", "", "folder for heatmap overlays");
    args.add("heatmap-method", "grad_cam", "grad_cam (top class, last feature map) or attention (last CBAM spatial gate)");
    args.add("weights", "auto", kWeightsFlagHelp);
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
    const HeatmapMethod method = parse_heatmap_method(args.str("heatmap-method"));
    auto ck = load_checkpoint(args.str("checkpoint"));
    select_weights(ck, args.str("weights"));
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
      Heatmap h = attention_heatmap(*ck.model, b->images, ck.info.norm, 2, method);
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

int tool_main(int argc, char** argv) {
  const std::string usage =
      "usage: {} train|evaluate|predict [flags]   (each with --help)\n"
      "dermis's train, evaluate and predict, with this program's own models registered beside dermis's.";
  const std::string prog = argc > 0 ? std::filesystem::path(argv[0]).filename().string() : "dermis";
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "train") return train_main(argc - 1, argv + 1);
  if (cmd == "evaluate") return evaluate_main(argc - 1, argv + 1);
  if (cmd == "predict") return predict_main(argc - 1, argv + 1);
  if (cmd == "--help" || cmd == "-h") {
    fmt::print("{}\n", fmt::format(fmt::runtime(usage), prog));
    return 0;
  }
  std::fprintf(stderr, "%s: error: %s; %s\n", prog.c_str(),
               cmd.empty() ? "no command given" : fmt::format("unknown command '{}'", cmd).c_str(),
               fmt::format(fmt::runtime(usage), prog).c_str());
  return 2;
}

}  // namespace dermis::experiment
