// dermis's command-line tools as library functions (see tools.h). tools/train, tools/evaluate and
// tools/predict are one-line mains around them; a program that registers models of its own calls
// them to be those tools with its models added.
#include "tools.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <string>

#include "datasets/csv.h"
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
#include "clinical.h"
#include "decision.h"
#include "config.h"
#include "evaluation.h"
#include "heatmap.h"
#include "train_support.h"
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
        "  train --data ../shared/data/ham10000 --images images_200x150 --size 150x200 --minutes 60\n"
        "  train --resume runs/NAME/last.safetensors                 # continue a run exactly\n"
        "  mpirun -np 4 train --data DIR ...                         # data-parallel over 4 processes");
    add_train_flags(args);
    if (!args.parse(argc, argv)) return 0;
    TrainConfig cfg = train_config_from_flags(args);
    std::string command = "train";
    for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
    const auto r = train(cfg, command);
    if (r.interrupted_by) return 128 + r.interrupted_by;  // the shell's convention for "ended by signal N"
    const auto& v = r.selected_val;
    const auto& vp = r.selected_val_train_prior;
    fmt::print("\nhanded out: {} ({}): validation balanced accuracy {:.4f}, accuracy {:.4f}, macro F1 {:.4f} ({} images); "
               "with the training set's class prior: balanced accuracy {:.4f}, accuracy {:.4f}\n",
               r.selected, r.selected_checkpoint, v.balanced_accuracy, v.accuracy, v.macro_f1, v.images,
               vp.balanced_accuracy, vp.accuracy);
    fmt::print("best epoch {}: validation balanced accuracy {:.4f} (picked on the same images: optimistic)\n",
               r.best_epoch, r.best_val.balanced_accuracy);
    fmt::print("checkpoint: {}\nlast:       {}\nbest:       {}\nreport:     {}\nresult:     {}\nmetrics:    {}/metrics.jsonl\n"
               "predictions: {}/val_predictions.csv\n",
               r.model_checkpoint, r.last_checkpoint, r.best_checkpoint, r.report, r.result_json, r.out_dir, r.out_dir);
    return 0;
  });
}

namespace {

// The class priors train records, for a checkpoint of an older version: from the training side of
// its split of `ds` (the dataset it was trained on) and its stored settings.
void fill_priors(Member& m, const datasets::Dataset& ds) {
  if (m.ck.info.classes != class_list()) return;
  const auto sp = run_split(ds, m.cfg);
  std::vector<int64_t> counts(m.ck.info.classes.size(), 0);
  for (size_t i : sp.train) counts[static_cast<size_t>(ds.samples[i].label)]++;
  std::array<int64_t, datasets::kNumClasses> ca{};
  std::copy(counts.begin(), counts.end(), ca.begin());
  std::vector<float> w;
  if (m.cfg.class_weights != ClassWeights::none)
    w = datasets::class_weights(ca, m.cfg.class_weights == ClassWeights::inverse ? 1.0 : 0.5);
  m.ck.info.train_prior = frequency_prior(counts);
  m.ck.info.trained_prior = trained_class_prior(counts, m.cfg.class_power(), w, m.cfg.logit_adjust);
}

// Stops when `rows`, side `split` of m's split recomputed from the data given, are not the images
// the run had on that side: by the checkpoint's record, or for a checkpoint of an older version by
// the split.csv beside it. Other metadata (rows added, removed or reordered) or missing images give
// another split, whose validation or test side would hold training images.
void check_same_split(const Member& m, const datasets::Dataset& ds, const std::vector<size_t>& rows,
                      const std::string& split, const std::string& data) {
  std::string where;
  const auto sides = recorded_split(m.ck.info.split, std::filesystem::path(m.path).parent_path().string(), where);
  if (sides.empty()) {
    fmt::print(stderr,
               "evaluate: note: {} (an older version's) records no split and has no split.csv beside it, so its {} "
               "images are not checked against the run's\n",
               m.path, split);
    return;
  }
  const std::string recorded = sides.count(split) ? sides.at(split) : datasets::images_fingerprint({});  // none listed
  const std::string now = datasets::images_fingerprint(ds, rows);
  auto said = [](const std::string& fp) {  // "count:hash" -> "N images (fingerprint H)"
    const size_t c = fp.find(':');
    return c == std::string::npos ? fp : fmt::format("{} images (fingerprint {})", fp.substr(0, c), fp.substr(c + 1));
  };
  DERMIS_CHECK(now == recorded,
               "flag --split {}: with the data in {}, the {} side of {} is {}, not the run's {} according to {}: the "
               "metadata CSV or the image folder is not the run's (rows added, removed or reordered, images missing "
               "or skipped), so it would mix in training images; evaluate with the data the run was trained on, or "
               "score every image with --split all",
               split, data, split, m.path, said(now), said(recorded), where);
}

// The members' probabilities for rule `prior` (each moved from its own trained prior), averaged.
std::vector<float> combine(const std::vector<Member>& members, const std::vector<Predictions>& preds, DecisionPrior prior) {
  std::vector<float> sum(preds.front().probs.size(), 0.f);
  for (size_t m = 0; m < members.size(); ++m) {
    std::vector<float> p = preds[m].probs;
    shift_prior(p, members[m].ck.info.trained_prior, target_prior(members[m].ck.info, prior, members[m].path));
    for (size_t i = 0; i < p.size(); ++i) sum[i] += p[i] / static_cast<float>(members.size());
  }
  return sum;
}

double mean_log_loss(const std::vector<int>& labels, const std::vector<float>& probs, size_t K) {
  double s = 0;
  for (size_t i = 0; i < labels.size(); ++i) s -= std::log(std::max(probs[i * K + labels[i]], 1e-12f));
  return labels.empty() ? 0 : s / static_cast<double>(labels.size());
}

}  // namespace

int evaluate_main(int argc, char** argv) {
  return cli::run_main("evaluate", [&]() -> int {
    cli::Args args(
        "usage: evaluate --checkpoint FILE[,FILE...] --data DIR [--images SUBDIR | --ground-truth CSV] [flags]\n"
        "Prints accuracy, balanced accuracy, per-class recall/precision, macro F1, AUC, the confusion matrix\n"
        "and the clinical operating points (malignant vs benign sensitivity and specificity, melanoma\n"
        "sensitivity at 80% and 90% specificity, ROC curves per class) as one JSON object. Several\n"
        "checkpoints (comma-separated) are a snapshot ensemble: their probabilities are averaged.\n"
        "--split val scores only the checkpoint's own validation split, --split test its held-out test set\n"
        "(train --test-fraction); an ensemble's members must share that split.");
    args.add("checkpoint", "", "a checkpoint written by train (model.safetensors, swa/best/last.safetensors), or several "
             "comma-separated (an ensemble)");
    args.add("data", "", "HAM10000 folder, or the image folder when --ground-truth is given");
    args.add("images", "", "image subfolder of --data (HAM10000 layout; default: the checkpoint's training folder "
             "when --data has it, else HAM10000_images_part_1/2)");
    args.add("ground-truth", "", "ISIC 2018 Task 3 ground-truth CSV (images in --data)");
    args.add("split", "all",
             "all | val | train | test (the checkpoint's lesion-grouped split or fold; test: the set held out with "
             "train --test-fraction, which neither training nor checkpoint selection saw)");
    args.add("size", "", "input HxW (default: the checkpoint's training size; a larger one counters the zoom of "
             "training's random crops, as FixRes)");
    args.add_bool("tta", "average the predictions over horizontal and vertical flips");
    args.add_bool("skip-bad-images", "warn about and skip unreadable images");
    args.add("weights", "auto", kWeightsFlagHelp);
    args.add("prior", "auto", kPriorFlagHelp);
    args.add("decode", "standard", kDecodeFlagHelp);
    args.add("out", "", "also write the JSON to this file");
    args.add("predictions", "", "also write a CSV with one row per image: image_id, lesion_id, label, predicted (class names) "
             "and each class's probability under --prior, for paired comparisons and your own analyses");
    args.add("threads", "0", "OpenMP threads (0: all cores)");
    args.add("batch", "64", "batch size");
    if (!args.parse(argc, argv)) return 0;
    DERMIS_CHECK(!args.str("checkpoint").empty(), "flag --checkpoint is required");
    for (const char* f : {"out", "predictions"}) io::check_output_path(f, args.str(f));
    DERMIS_CHECK(args.str("predictions").empty() || args.str("out").empty() ||
                     !io::same_file(args.str("out"), args.str("predictions")),
                 "flags --out and --predictions name the same file {}; give two", args.str("out"));
    DERMIS_CHECK(!args.str("data").empty(), "flag --data is required");
    const bool ground_truth = !args.str("ground-truth").empty();
    args.reject_unless("images", !ground_truth,
                       "does not apply with --ground-truth (the images of a ground-truth CSV are in --data)");
    args.reject_unless("split", !ground_truth,
                       "does not apply with --ground-truth (the checkpoint's lesion-grouped split is of its HAM10000 "
                       "training set)");
    if (const long t = args.integer("threads", 0, 1024); t > 0) set_num_threads(static_cast<int>(t));
    std::vector<Member> members = load_members(args.str("checkpoint"), args.str("weights"));
    const Member& first = members.front();
    const DecisionPrior prior = resolve_prior(args.str("prior"), first);
    const data::DecodeOptions decode = parse_decode(args.str("decode"));
    const bool skip = args.flag("skip-bad-images");
    const TrainConfig& cfg = first.cfg;  // how the (first) model was trained
    // Without --images, the folder the model was trained on, where --data has one of that name.
    std::string images = args.str("images");
    if (images.empty() && !ground_truth && !cfg.images.empty() &&
        std::filesystem::is_directory(std::filesystem::path(args.str("data")) / cfg.images))
      images = cfg.images;
    datasets::Dataset ds = !ground_truth
                               ? datasets::read_ham10000(args.str("data"), {images, skip})
                               : datasets::read_isic_ground_truth(args.str("ground-truth"), args.str("data"), skip);
    const std::string split = args.str("split");
    DERMIS_CHECK(split == "all" || split == "val" || split == "train" || split == "test",
                 "flag --split: expected all, val, train or test, got '{}'", split);
    for (const auto& m : members)
      DERMIS_CHECK(split != "test" || m.cfg.test_fraction > 0,
                   "flag --split test: {} was trained without a held-out test set (train --test-fraction); use "
                   "--split val, train or all",
                   m.path);
    // Checkpoints of older versions record no class priors; on their own HAM10000 folder they follow
    // from the stored settings and split, as train computes them.
    for (auto& m : members)
      if (m.ck.info.train_prior.empty() && !ground_truth && ds.samples.size() > 0) fill_priors(m, ds);
    for (auto& m : members) target_prior(m.ck.info, prior, m.path);  // still none: stop before the work
    if (split != "all") {
      auto side = [&](const TrainConfig& c) {
        auto sp = run_split(ds, c);
        return split == "val" ? std::move(sp.val) : split == "test" ? std::move(sp.test) : std::move(sp.train);
      };
      const std::vector<size_t> rows = side(cfg);
      // An ensemble is scored on one set of images, which must be that side for every member: a
      // member trained on another split has seen some of the first one's validation images.
      for (size_t m = 1; m < members.size(); ++m)
        DERMIS_CHECK(side(members[m].cfg) == rows,
                     "flag --split {}: {} and {} were trained on different splits (--seed, --val-fraction, "
                     "--folds/--fold, --test-fraction or --test-seed differ), so there is no {} set of both; score "
                     "such an ensemble on a held-out test set they share (train --test-fraction, same --test-seed: "
                     "--split test) or score the checkpoints one at a time",
                     split, first.path, members[m].path, split);
      for (const auto& m : members) check_same_split(m, ds, rows, split, args.str("data"));
      ds = datasets::subset(ds, rows);
    }
    const std::vector<data::Item> items = ds.items();
    const size_t K = first.ck.info.classes.size();
    std::vector<Predictions> preds;
    int64_t bad = 0;
    std::string input_size;
    const bool tty = isatty(fileno(stderr));
    for (size_t m = 0; m < members.size(); ++m) {
      data::LoaderOptions o = members[m].eval_options(decode);
      o.batch = args.integer("batch", 1, 4096), o.skip_bad_images = skip;
      o.warn_skipped = m == 0;  // the first model's loader warns; the others skip the same images
      if (!args.str("size").empty()) parse_size(args.str("size"), "size", o.height, o.width);
      input_size += fmt::format("{}{}x{}", m ? "," : "", o.height, o.width);
      data::Loader loader(items, o);
      preds.push_back(predict(*members[m].ck.model, loader, args.flag("tta"), [&](int64_t done, int64_t total) {
        if (!tty) return;  // a log file gets one line per model, below
        std::fprintf(stderr, "\revaluating %s%ld/%ld images",
                     members.size() > 1 ? fmt::format("model {}/{}: ", m + 1, members.size()).c_str() : "",
                     static_cast<long>(done), static_cast<long>(total));
      }));
      if (!tty)
        fmt::print(stderr, "evaluated {}{} images\n",
                   members.size() > 1 ? fmt::format("model {}/{}: ", m + 1, members.size()) : "",
                   preds.back().labels.size());
      DERMIS_CHECK(preds.back().items == preds.front().items, "the ensemble's members read different images");
      bad = std::max(bad, loader.bad_images());
    }
    if (tty) std::fprintf(stderr, "\n");
    const std::vector<int>& labels = preds.front().labels;
    const std::vector<float> probs = combine(members, preds, prior);
    auto r = metrics::evaluate(labels, probs, static_cast<int>(K));
    r.loss = mean_log_loss(labels, probs, K);
    json::Object o2 = r.to_json(first.ck.info.classes);
    json::Array paths;
    for (auto& m : members) paths.push_back(m.path);
    o2["checkpoint"] = members.size() == 1 ? json::Value(first.path) : json::Value(paths);
    o2["split"] = split;
    json::Array weights;
    for (auto& m : members) weights.push_back(m.weights);
    o2["weights"] = members.size() == 1 ? json::Value(first.weights) : json::Value(weights);
    o2["prior"] = std::string(name_of(prior));
    o2["decode"] = args.str("decode");
    o2["input_size"] = input_size;
    o2["tta"] = args.flag("tta");
    o2["skipped_images"] = bad;
    std::vector<ImageId> ids;
    for (const int64_t item : preds.front().items) {
      const datasets::Sample& s = ds.samples.at(static_cast<size_t>(item));
      ids.push_back({s.image_id, s.lesion_id});
    }
    if (!ground_truth) {  // HAM10000 names each image's lesion: the standard error over lesions
      const double se = metrics::balanced_accuracy_se_grouped(labels, probs, lesion_groups(ids), static_cast<int>(K));
      o2["balanced_accuracy_se_lesions"] = std::isnan(se) ? json::Value(nullptr) : json::Value(se);
    }
    o2["clinical"] = clinical_report(labels, probs, first.ck.info.classes).to_json(first.ck.info.classes);
    bool have_priors = true;
    for (auto& m : members) have_priors = have_priors && !m.ck.info.train_prior.empty();
    if (have_priors) {  // every decision prior, for comparison
      json::Object by;
      for (DecisionPrior q : {DecisionPrior::none, DecisionPrior::train, DecisionPrior::uniform}) {
        const auto rq = metrics::evaluate(labels, combine(members, preds, q), static_cast<int>(K));
        by[std::string(name_of(q))] =
            json::Object{{"accuracy", rq.accuracy},
                         {"balanced_accuracy", rq.balanced_accuracy},
                         {"balanced_accuracy_se", rq.balanced_accuracy_se},
                         {"macro_f1", rq.macro_f1}};
      }
      o2["by_prior"] = by;
    }
    const std::string text = json::dump(o2);
    std::printf("%s\n", text.c_str());
    if (!args.str("out").empty())
      io::write_file_atomic(args.str("out"), std::vector<uint8_t>(text.begin(), text.end()));
    if (!args.str("predictions").empty()) {
      const std::string csv = predictions_csv(ids, labels, probs, first.ck.info.classes);
      io::write_file_atomic(args.str("predictions"), std::vector<uint8_t>(csv.begin(), csv.end()));
    }
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
    args.add("checkpoint", "", "a checkpoint written by train (model.safetensors), or several comma-separated (a "
             "snapshot ensemble: probabilities averaged; the heatmap is the first model's)");
    args.add("top", "3", "classes to print per image");
    args.add_bool("json", "print one JSON object per image");
    args.add("heatmap", "", "folder for heatmap overlays");
    args.add("heatmap-method", "grad_cam", "grad_cam (top class, last feature map) or attention (last CBAM spatial gate)");
    args.add("weights", "auto", kWeightsFlagHelp);
    args.add("prior", "auto", kPriorFlagHelp);
    args.add("decode", "standard", kDecodeFlagHelp);
    args.add_bool("skip-bad-images", "warn on stderr about a missing or unreadable image and go on with the others "
                  "(exit 0 when at least one image was read); without it the first such image stops predict");
    args.add("threads", "0", "OpenMP threads (0: all cores)");
    std::vector<std::string> images;
    std::vector<char*> flags = {argv[0]};
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a.rfind("--", 0) == 0 || a == "-h") {
        flags.push_back(argv[i]);
        const bool boolean = a == "--json" || a == "--skip-bad-images" || a == "--help" || a == "-h" ||
                             a.find('=') != std::string::npos;
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
    std::vector<Member> members = load_members(args.str("checkpoint"), args.str("weights"));
    const DecisionPrior prior = resolve_prior(args.str("prior"), members.front());
    const data::DecodeOptions decode = parse_decode(args.str("decode"));
    std::vector<std::vector<double>> targets;
    for (auto& m : members) targets.push_back(target_prior(m.ck.info, prior, m.path));
    const auto& classes = members.front().ck.info.classes;
    const std::string hdir = args.str("heatmap");
    const bool skip = args.flag("skip-bad-images");
    const size_t given = images.size();
    // Every image present, and no two heatmaps on one file, before the first result is printed.
    std::map<std::string, std::string> heat_of;  // heatmap file -> image
    std::vector<std::string> heat_files;
    std::vector<std::string> present;
    for (const auto& p : images) {
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) {
        const std::string why = fs::is_directory(p, ec) ? "is a folder, not an image file"
                                : ec && ec != std::errc::no_such_file_or_directory ? ec.message()
                                                                                    : "no such file";
        DERMIS_CHECK(skip, "{}: {}; give existing image files (or --skip-bad-images to go on without it)", p, why);
        std::fprintf(stderr, "warning: skipping a bad image: %s: %s\n", p.c_str(), why.c_str());
        continue;
      }
      present.push_back(p);
      if (hdir.empty()) continue;
      const std::string name = fs::path(p).stem().string() + "_heatmap.jpg";
      const auto [it, fresh] = heat_of.emplace(name, p);
      DERMIS_CHECK(fresh, "flag --heatmap: {} and {} would both write {}/{}; run predict on them separately (or with "
                   "separate --heatmap folders)", it->second, p, hdir, name);
      heat_files.push_back((fs::path(hdir) / name).string());
    }
    images = std::move(present);
    DERMIS_CHECK(!images.empty(), "none of the {} image(s) given exists", given);
    const bool new_hdir = !hdir.empty() && !fs::exists(hdir);
    if (!hdir.empty()) {
      std::error_code ec;
      fs::create_directories(hdir, ec);
      DERMIS_CHECK(!ec && fs::is_directory(hdir), "flag --heatmap: cannot create the folder {}: {}; give another folder",
                   hdir, ec ? ec.message() : "a file of that name exists");
    }
    std::vector<data::Item> items;
    for (auto& p : images) items.push_back({p, 0});
    std::vector<std::unique_ptr<data::Loader>> loaders;
    std::vector<data::Loader::Epoch> epochs;
    for (auto& m : members) {
      data::LoaderOptions o = m.eval_options(decode);
      o.batch = 1, o.skip_bad_images = skip;
      o.warn_skipped = loaders.empty();  // the first model's loader warns; the others skip the same images
      loaders.push_back(std::make_unique<data::Loader>(items, o));
      epochs.push_back(loaders.back()->epoch(0));
    }
    // One image per batch; with --skip-bad-images an unreadable image's batch is passed over by
    // every model's loader (the first one warns), so each batch says which image it holds. A batch
    // a model read ahead of the others waits in `pending`.
    size_t printed = 0;
    std::vector<std::optional<data::Batch>> pending(members.size());
    const auto index = [](const data::Batch& b) { return static_cast<size_t>(b.items.at(0)); };
    while (true) {
      pending[0] = epochs[0].next();
      if (!pending[0]) break;
      const size_t k = index(*pending[0]);
      const std::string& path = images[k];
      size_t unread = 0;  // a model (1-based) that could not read the image, 0 if all did
      for (size_t m = 1; m < members.size() && !unread; ++m) {
        if (!pending[m] || index(*pending[m]) < k) pending[m] = epochs[m].next();
        while (pending[m] && index(*pending[m]) < k) pending[m] = epochs[m].next();  // skipped by the first model
        if (!pending[m] || index(*pending[m]) != k) unread = m + 1;
      }
      if (unread) {  // only with --skip-bad-images: without it that model's loader stopped with the reason
        std::fprintf(stderr, "warning: skipping a bad image: %s: model %zu of the ensemble (%s) could not read it; "
                     "predict with that checkpoint alone for the reason\n", path.c_str(), unread,
                     members[unread - 1].path.c_str());
        continue;
      }
      Heatmap h;
      std::vector<float> probs(classes.size(), 0.f);
      for (size_t m = 0; m < members.size(); ++m) {
        const data::Batch& b = *pending[m];  // image k, checked above
        std::vector<float> p;
        if (m == 0) {  // the first model draws the heatmap
          h = attention_heatmap(*members[m].ck.model, b.images, members[m].ck.info.norm, 2, method);
          p = h.probs;
        } else {
          members[m].ck.model->freeze();
          NoGrad ng;
          p = softmax_rows(members[m].ck.model->forward(Var(b.images)).value());
        }
        shift_prior(p, members[m].ck.info.trained_prior, targets[m]);
        for (size_t c = 0; c < p.size(); ++c) probs[c] += p[c] / static_cast<float>(members.size());
      }
      std::vector<int> order(probs.size());
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int a, int c) { return probs[a] > probs[c]; });
      std::string heat_path;
      if (!hdir.empty()) {
        heat_path = heat_files[k];
        io::write_file_atomic(heat_path, data::encode_jpeg(h.overlay, 90));
      }
      if (args.flag("json")) {
        json::Object pj;
        for (size_t c = 0; c < probs.size(); ++c) pj[classes[c]] = static_cast<double>(probs[c]);
        json::Object line{{"image", path}, {"prediction", classes[order[0]]}, {"probabilities", pj},
                          {"prior", std::string(name_of(prior))}};
        if (!heat_path.empty()) line["heatmap"] = heat_path, line["heatmap_method"] = h.method;
        std::printf("%s\n", json::dump(line).c_str());
      } else {
        std::printf("%s:", path.c_str());
        for (long t = 0; t < std::min<long>(top, static_cast<long>(order.size())); ++t)
          std::printf("  %s %.1f%%", classes[order[t]].c_str(), 100.0 * probs[order[t]]);
        if (!heat_path.empty()) std::printf("  (heatmap: %s)", heat_path.c_str());
        std::printf("\n");
      }
      std::fflush(stdout);
      ++printed;
    }
    if (printed == 0 && new_hdir) {
      std::error_code ec;
      fs::remove(hdir, ec);  // only if still empty
    }
    DERMIS_CHECK(printed > 0, "none of the {} image(s) given could be read", given);
    if (printed < given) std::fprintf(stderr, "predict: %zu of %zu images skipped (missing or unreadable)\n", given - printed, given);
    return 0;
  });
}

#ifndef DERMIS_HAVE_ONNX
int export_main(int, char**) {
  std::fprintf(stderr, "export: error: this dermis was built without ONNX support; install libonnx-dev and "
                       "libprotobuf-dev and rebuild (./dermis build)\n");
  return 2;
}
#endif

int tool_main(int argc, char** argv) {
  const std::string usage =
      "usage: {} train|evaluate|predict|export [flags]   (each with --help)\n"
      "dermis's train, evaluate, predict and export, with this program's own models registered beside dermis's.";
  const std::string prog = argc > 0 ? std::filesystem::path(argv[0]).filename().string() : "dermis";
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "train") return train_main(argc - 1, argv + 1);
  if (cmd == "evaluate") return evaluate_main(argc - 1, argv + 1);
  if (cmd == "predict") return predict_main(argc - 1, argv + 1);
  if (cmd == "export") return export_main(argc - 1, argv + 1);
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
