// TrainConfig: flags and JSON (see config.h).
#include "config.h"

#include <fmt/format.h>

#include <cmath>
#include <sstream>

namespace dermis::experiment {

void parse_size(const std::string& s, const char* flag, int64_t& h, int64_t& w) {
  long a = 0, b = 0;
  char x = 0, extra = 0;
  const int n = std::sscanf(s.c_str(), "%ld%c%ld%c", &a, &x, &b, &extra);
  if (n == 1) b = a;
  DERMIS_CHECK((n == 1 || (n == 3 && (x == 'x' || x == 'X'))) && a >= 32 && b >= 32 && a <= 4096 && b <= 4096,
               "flag --{}: '{}' is not a size like 112x150 (height x width, each 32 to 4096)", flag, s);
  h = a, w = b;
}

void add_train_flags(cli::Args& a) {
  a.add("data", "", "HAM10000 folder (metadata CSV + images); default: the built-in synthetic dataset");
  a.add("images", "", "image subfolder of --data (default: HAM10000_images_part_1 and _part_2)");
  a.add_bool("skip-bad-images", "warn about and skip missing or unreadable images instead of stopping");
  a.add("model", "cbam_small", "resnet18_cbam | resnet34_cbam | resnet18 | cbam_small");
  a.add("size", "auto", "input HxW, e.g. 112x150 (auto: 72x96 on the synthetic set, 112x150 otherwise)");
  a.add("early-size", "", "progressive resizing: a smaller input HxW (e.g. 112x150 with --size 150x200) for the "
        "training epochs of the run's first part (see --early-fraction), then --size; validation, checkpoints "
        "and the report always use --size (default: none, every epoch at --size)");
  a.add("early-fraction", "0.5", "with --early-size: epochs that start within this share of the run (of --minutes "
        "if given, else of --epochs) train at the early size, e.g. 2 of 3 epochs with 0.5; in [0, 1)");
  a.add("batch", "32", "batch size");
  a.add("epochs", "0", "epochs (0: 12 on the synthetic set, 30 otherwise)");
  a.add("minutes", "0", "wall-clock budget in minutes; training stops in time to evaluate and save (0: none)");
  a.add("lr", "0.05", "base learning rate");
  a.add("momentum", "0.9", "SGD momentum");
  a.add("nesterov", "true", "Nesterov momentum (true/false)");
  a.add("weight-decay", "5e-4", "L2 weight decay");
  a.add("schedule", "cosine", "step | multistep | plateau | cosine | constant");
  a.add("step-size", "10", "step schedule: epochs between decays");
  a.add("gamma", "0.1", "step/multistep decay factor");
  a.add("milestones", "", "multistep: comma-separated epochs, e.g. 15,25");
  a.add("plateau-factor", "0.1", "plateau: factor applied to the LR");
  a.add("plateau-patience", "3", "plateau: epochs without improvement before reducing");
  a.add("plateau-threshold", "1e-4", "plateau: relative improvement that counts");
  a.add("plateau-cooldown", "0", "plateau: epochs to wait after a reduction");
  a.add("plateau-metric", "balanced_accuracy", "plateau: balanced_accuracy (maximised) or loss (minimised)");
  a.add("min-lr", "0", "lower bound of the LR (cosine, plateau)");
  a.add("warmup-epochs", "0", "linear LR warm-up over this many epochs");
  a.add("class-weights", "sqrt", "none | inverse | sqrt (loss weights against class imbalance)");
  a.add("label-smoothing", "0.1", "label smoothing in [0, 1)");
  a.add("class-sampling", "natural", "class mix of a training epoch: natural (every image once, shuffled) | sqrt "
        "(draw classes with probability proportional to the square root of their counts, with replacement) | "
        "balanced (uniform over classes, with replacement)");
  a.add_bool("balanced-sampling", "the same as --class-sampling balanced");
  a.add("logit-adjust", "0", "logit-adjusted loss (Menon et al. 2021): add TAU * log(class prior of the sampled "
        "training stream) to the logits inside the loss, which balances the classes the sampling leaves "
        "unbalanced (1: the balanced-error optimum; 0: off; not with balanced sampling)");
  a.add_bool("sync-bn", "data-parallel (mpirun): BatchNorm statistics over the global batch of all ranks "
             "instead of each rank's own");
  a.add("ema", "0", "validate and keep as best an exponential moving average of the weights with this per-step "
        "decay (e.g. 0.999; 0: off)");
  a.add("val-fraction", "0.2", "share of lesions held out for validation (grouped by lesion_id)");
  a.add("crop-scale", "0.5", "random resized crop: smallest area fraction");
  a.add("rotate", "15", "random rotation range in degrees (plus flips and 90-degree turns)");
  a.add("jitter", "0.1", "brightness/contrast/saturation jitter");
  a.add("hue", "0.02", "hue jitter (turns)");
  a.add("seed", "0", "random seed (split, weights, order, augmentation, dropout)");
  a.add("threads", "0", "OpenMP threads for the model (0: automatic)");
  a.add("precision", "f32", "f32, or bf16: mixed precision (bf16 activations and convolutions, f32 weights)");
  a.add("conv", "auto", "convolution algorithm: auto (Winograd for f32 3x3 stride-1 convolutions, direct "
        "otherwise) | direct");
  a.add("nonfinite", "stop", "a NaN/Inf loss or gradient: stop (naming the step and tensor) | skip (drop the step; "
        "stops after 10 in a row)");
  a.add("loader-threads", "0", "JPEG loader threads (0: automatic)");
  a.add_bool("cache", "keep decoded images in memory after the first epoch");
  a.add("out", "", "run folder (default: runs/<model>-<date>-<time>)");
  a.add("resume", "", "continue from a checkpoint (e.g. RUN/last.safetensors)");
  a.add("synthetic-count", "1500", "images in the built-in synthetic dataset");
  a.add("report-images", "16", "validation images with heatmaps in report.html");
  a.add("stop-after", "0", "stop after this many epochs (continue later with --resume; 0: run to the end)");
}

TrainConfig train_config_from_flags(const cli::Args& a) {
  TrainConfig c;
  c.data = a.str("data");
  c.images = a.str("images");
  c.skip_bad_images = a.flag("skip-bad-images");
  c.model = a.str("model");
  if (a.str("size") != "auto") parse_size(a.str("size"), "size", c.height, c.width);
  if (!a.str("early-size").empty()) parse_size(a.str("early-size"), "early-size", c.early_height, c.early_width);
  c.early_fraction = a.real("early-fraction", 0, 0.99);
  c.batch = a.integer("batch", 1, 4096);
  c.epochs = a.integer("epochs", 0, 100000);
  c.minutes = a.real("minutes", 0, 1e6);
  c.lr = a.real("lr", 1e-8, 10);
  c.momentum = a.real("momentum", 0, 0.999);
  c.nesterov = a.flag("nesterov");
  c.weight_decay = a.real("weight-decay", 0, 1);
  c.schedule.kind = a.str("schedule");
  c.schedule.step_size = static_cast<int>(a.integer("step-size", 1, 100000));
  c.schedule.gamma = a.real("gamma", 1e-6, 1);
  std::stringstream ms(a.str("milestones"));
  for (std::string t; std::getline(ms, t, ',');) {
    char* end = nullptr;
    const long v = std::strtol(t.c_str(), &end, 10);
    DERMIS_CHECK(!t.empty() && *end == '\0' && v >= 1, "flag --milestones: '{}' is not a positive epoch", t);
    c.schedule.milestones.push_back(static_cast<int>(v));
  }
  c.schedule.plateau_factor = a.real("plateau-factor", 1e-6, 0.999999);
  c.schedule.plateau_patience = static_cast<int>(a.integer("plateau-patience", 0, 100000));
  c.schedule.plateau_threshold = a.real("plateau-threshold", 0, 1);
  c.schedule.plateau_cooldown = static_cast<int>(a.integer("plateau-cooldown", 0, 100000));
  c.plateau_metric = a.str("plateau-metric");
  DERMIS_CHECK(c.plateau_metric == "balanced_accuracy" || c.plateau_metric == "loss",
               "flag --plateau-metric: expected balanced_accuracy or loss, got '{}'", c.plateau_metric);
  c.schedule.min_lr = a.real("min-lr", 0, 10);
  c.schedule.warmup_epochs = a.real("warmup-epochs", 0, 1000);
  c.class_weights = a.str("class-weights");
  c.label_smoothing = a.real("label-smoothing", 0, 0.999);
  c.class_sampling = a.str("class-sampling");
  if (a.flag("balanced-sampling")) {
    DERMIS_CHECK(c.class_sampling == "natural" || c.class_sampling == "balanced",
                 "flag --balanced-sampling contradicts --class-sampling {}; give one of them", c.class_sampling);
    c.class_sampling = "balanced";
  }
  c.logit_adjust = a.real("logit-adjust", 0, 10);
  c.ema = a.real("ema", 0, 0.999999);
  c.sync_bn = a.flag("sync-bn");
  c.precision = a.str("precision");
  c.conv = a.str("conv");
  c.nonfinite = a.str("nonfinite");
  DERMIS_CHECK(c.nonfinite == "stop" || c.nonfinite == "skip", "flag --nonfinite: expected stop or skip, got '{}'",
               c.nonfinite);
  c.val_fraction = a.real("val-fraction", 0.01, 0.9);
  c.crop_scale_min = a.real("crop-scale", 0.05, 1);
  c.rotate_degrees = a.real("rotate", 0, 180);
  c.jitter = a.real("jitter", 0, 0.9);
  c.hue = a.real("hue", 0, 0.5);
  c.seed = static_cast<uint64_t>(a.integer("seed", 0, (1L << 62)));
  c.threads = static_cast<int>(a.integer("threads", 0, 1024));
  c.loader_threads = static_cast<int>(a.integer("loader-threads", 0, 1024));
  c.cache = a.flag("cache");
  c.out = a.str("out");
  c.resume = a.str("resume");
  c.synthetic_count = a.integer("synthetic-count", 50, 10000000);
  c.report_images = a.integer("report-images", 0, 1000);
  c.stop_after = a.integer("stop-after", 0, 1000000);
  c.validate();
  return c;
}

double TrainConfig::class_power() const {
  return class_sampling == "balanced" ? 0.0 : class_sampling == "sqrt" ? 0.5 : 1.0;
}

void TrainConfig::validate() const {
  DERMIS_CHECK(precision == "f32" || precision == "bf16", "flag --precision: expected f32 or bf16, got '{}'", precision);
  cli::conv_algorithm_flag(conv);  // validates
  DERMIS_CHECK(class_weights == "none" || class_weights == "inverse" || class_weights == "sqrt",
               "flag --class-weights: expected none, inverse or sqrt, got '{}'", class_weights);
  DERMIS_CHECK(class_sampling == "natural" || class_sampling == "sqrt" || class_sampling == "balanced",
               "flag --class-sampling: expected natural, sqrt or balanced, got '{}'", class_sampling);
  DERMIS_CHECK(!(logit_adjust > 0 && class_sampling == "balanced"),
               "flag --logit-adjust: the classes of a balanced-sampling stream are already uniform, so there is "
               "nothing to adjust; use one or the other");
  DERMIS_CHECK(!(logit_adjust > 0 && class_weights != "none"),
               "flag --logit-adjust: it already balances the loss, and --class-weights {} would correct the imbalance a "
               "second time; add --class-weights none", class_weights);
  DERMIS_CHECK((early_height == 0 && early_width == 0) || (early_height >= 32 && early_width >= 32),
               "flag --early-size: {}x{} is not a size like 112x150 (height x width, each 32 to 4096)", early_height,
               early_width);
  DERMIS_CHECK(early_height == 0 || height == 0 || (early_height <= height && early_width <= width &&
                                                    early_height * early_width < height * width),
               "flag --early-size: {}x{} is not smaller than the input size {}x{} (--size); the early size is the "
               "smaller one",
               early_height, early_width, height, width);
  DERMIS_CHECK(std::isfinite(early_fraction) && early_fraction >= 0 && early_fraction < 1,
               "flag --early-fraction must be in [0, 1): the run ends at --size");
  optim::ScheduleOptions s = schedule;
  s.base_lr = lr;
  try {
    s.validate();
  } catch (const Error& e) {
    DERMIS_FAIL("schedule flags: {}", e.what());
  }
  DERMIS_CHECK(std::isfinite(minutes) && minutes >= 0, "flag --minutes must be >= 0");
}

json::Value TrainConfig::to_json() const {
  json::Array ms;
  for (int m : schedule.milestones) ms.push_back(m);
  return json::Object{{"data", data},
                      {"images", images},
                      {"skip_bad_images", skip_bad_images},
                      {"val_fraction", val_fraction},
                      {"synthetic_count", synthetic_count},
                      {"model", model},
                      {"height", height},
                      {"width", width},
                      {"early_height", early_height},
                      {"early_width", early_width},
                      {"early_fraction", early_fraction},
                      {"batch", batch},
                      {"epochs", epochs},
                      {"minutes", minutes},
                      {"lr", lr},
                      {"momentum", momentum},
                      {"weight_decay", weight_decay},
                      {"nesterov", nesterov},
                      {"schedule", schedule.kind},
                      {"step_size", schedule.step_size},
                      {"gamma", schedule.gamma},
                      {"milestones", ms},
                      {"plateau_factor", schedule.plateau_factor},
                      {"plateau_patience", schedule.plateau_patience},
                      {"plateau_threshold", schedule.plateau_threshold},
                      {"plateau_cooldown", schedule.plateau_cooldown},
                      {"plateau_metric", plateau_metric},
                      {"min_lr", schedule.min_lr},
                      {"warmup_epochs", schedule.warmup_epochs},
                      {"class_weights", class_weights},
                      {"label_smoothing", label_smoothing},
                      {"class_sampling", class_sampling},
                      {"balanced_sampling", class_sampling == "balanced"},  // read by older versions
                      {"logit_adjust", logit_adjust},
                      {"ema", ema},
                      {"sync_bn", sync_bn},
                      {"precision", precision},
                      {"conv", conv},
                      {"nonfinite", nonfinite},
                      {"crop_scale_min", crop_scale_min},
                      {"rotate_degrees", rotate_degrees},
                      {"jitter", jitter},
                      {"hue", hue},
                      {"seed", std::to_string(seed)},
                      {"threads", threads},
                      {"loader_threads", loader_threads},
                      {"cache", cache},
                      {"out", out},
                      {"report_images", report_images}};
}

TrainConfig TrainConfig::from_json(const json::Value& v) {
  TrainConfig c;
  auto str = [&](const char* k, std::string& dst) {
    if (auto* x = v.find(k)) dst = x->string(k);
  };
  auto num = [&](const char* k, auto& dst) {
    if (auto* x = v.find(k)) dst = static_cast<std::remove_reference_t<decltype(dst)>>(x->number(k));
  };
  auto boolean = [&](const char* k, bool& dst) {
    if (auto* x = v.find(k)) dst = x->boolean(k);
  };
  str("data", c.data), str("images", c.images), boolean("skip_bad_images", c.skip_bad_images);
  num("val_fraction", c.val_fraction), num("synthetic_count", c.synthetic_count), str("model", c.model);
  num("height", c.height), num("width", c.width), num("early_height", c.early_height);
  num("early_width", c.early_width), num("early_fraction", c.early_fraction), num("batch", c.batch), num("epochs", c.epochs);
  num("minutes", c.minutes), num("lr", c.lr), num("momentum", c.momentum), num("weight_decay", c.weight_decay);
  boolean("nesterov", c.nesterov), str("schedule", c.schedule.kind), num("step_size", c.schedule.step_size);
  num("gamma", c.schedule.gamma);
  if (auto* m = v.find("milestones"))
    for (auto& e : m->array("milestones")) c.schedule.milestones.push_back(static_cast<int>(e.integer("milestone")));
  num("plateau_factor", c.schedule.plateau_factor), num("plateau_patience", c.schedule.plateau_patience);
  num("plateau_threshold", c.schedule.plateau_threshold), num("plateau_cooldown", c.schedule.plateau_cooldown);
  str("plateau_metric", c.plateau_metric), num("min_lr", c.schedule.min_lr);
  num("warmup_epochs", c.schedule.warmup_epochs), str("class_weights", c.class_weights);
  num("label_smoothing", c.label_smoothing), str("class_sampling", c.class_sampling);
  bool balanced = false;  // checkpoints written before --class-sampling existed
  boolean("balanced_sampling", balanced);
  if (balanced) c.class_sampling = "balanced";
  num("logit_adjust", c.logit_adjust), num("ema", c.ema), boolean("sync_bn", c.sync_bn);
  str("precision", c.precision), str("conv", c.conv), str("nonfinite", c.nonfinite);
  num("crop_scale_min", c.crop_scale_min), num("rotate_degrees", c.rotate_degrees), num("jitter", c.jitter);
  num("hue", c.hue);
  if (auto* s = v.find("seed")) c.seed = std::stoull(s->string("seed"));
  num("threads", c.threads), num("loader_threads", c.loader_threads), boolean("cache", c.cache), str("out", c.out);
  num("report_images", c.report_images);
  return c;
}

}  // namespace dermis::experiment
