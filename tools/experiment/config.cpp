// TrainConfig: one table of options (see config.h) makes the flags, --help, the JSON and the checks.
#include "config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>
#include <type_traits>

#include "models/registry.h"

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

namespace {

using optim::ScheduleKind;

// One setting: its flag, its JSON key in checkpoints ("" = not stored), --help, how to read it
// from the command line and from JSON, how to write it, its range check, and when it applies.
// `label` in read/load/check is how errors name it: "flag --lr" or "setting lr".
struct Option {
  std::string flag{}, key{}, help{};
  bool is_bool = false;  // a switch: --flag alone means true
  std::function<std::string()> default_text{};
  std::function<void(TrainConfig&, const cli::Args&)> read{};
  std::function<void(const TrainConfig&, json::Object&)> save{};
  std::function<void(TrainConfig&, const json::Value&, const std::string& label)> load{};
  std::function<void(const TrainConfig&, const std::string& label)> check = [](const TrainConfig&, const std::string&) {};
  // When the run uses the setting; giving its flag otherwise is an error ("applies only with ...").
  std::function<bool(const TrainConfig&)> applies = [](const TrainConfig&) { return true; };
  std::string applies_when{};
  std::string values{};  // for --help: "1 to 4096", "step | cosine", ...
  bool with_resume = false;  // may be given with --resume (does not change what the run computes)
};

// What --help shows as each flag's default: where train starts without --recipe.
const TrainConfig kDefaults = recipe_settings(Recipe::recommended);

// FIELD(m) is an accessor for member m that works on const and non-const configs.
#define FIELD(m) [](auto& c) -> auto& { return c.m; }

template <class T>
std::string text_of(const T& v) {
  if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
  else if constexpr (std::is_enum_v<T>) return std::string(name_of(v));
  else return fmt::format("{}", v);
}

// A number in [lo, hi] (integers for integral members).
template <class F>
Option number(std::string flag, std::string key, F field, double lo, double hi, std::string help) {
  using T = std::remove_reference_t<decltype(field(std::declval<TrainConfig&>()))>;
  Option o{.flag = flag, .key = key, .help = std::move(help)};
  o.values = fmt::format("{} to {}", lo, hi);
  o.default_text = [field] { return text_of(field(kDefaults)); };
  auto in_range = [lo, hi](double v, const std::string& label) {
    DERMIS_CHECK(std::isfinite(v) && v >= lo && v <= hi, "{}: {} is out of range [{}, {}]", label, v, lo, hi);
  };
  o.check = [field, in_range](const TrainConfig& c, const std::string& label) {
    in_range(static_cast<double>(field(c)), label);
  };
  if constexpr (std::is_integral_v<T>) {
    o.read = [field, flag, lo, hi](TrainConfig& c, const cli::Args& a) {
      field(c) = static_cast<T>(a.integer(flag, static_cast<long>(lo), static_cast<long>(hi)));
    };
    o.load = [field, key, in_range](TrainConfig& c, const json::Value& v, const std::string& label) {
      const int64_t x = v.find(key)->integer(label.c_str());
      in_range(static_cast<double>(x), label);  // before narrowing
      field(c) = static_cast<T>(x);
    };
  } else {
    o.read = [field, flag, lo, hi](TrainConfig& c, const cli::Args& a) { field(c) = a.real(flag, lo, hi); };
    o.load = [field, key](TrainConfig& c, const json::Value& v, const std::string& label) {
      field(c) = v.find(key)->number(label.c_str());
    };
  }
  o.save = [field, key](const TrainConfig& c, json::Object& j) { j[key] = field(c); };
  return o;
}

// One of the names of a Choices<E> table; the help lists them.
template <class F>
Option choice(std::string flag, std::string key, F field, std::string help) {
  using E = std::remove_reference_t<decltype(field(std::declval<TrainConfig&>()))>;
  Option o{.flag = flag, .key = key, .help = std::move(help)};
  o.values = choice_names<E>(" | ", " | ");
  o.default_text = [field] { return text_of(field(kDefaults)); };
  o.read = [field, flag](TrainConfig& c, const cli::Args& a) { field(c) = parse_choice<E>(a.str(flag), "flag --" + flag); };
  o.load = [field, key](TrainConfig& c, const json::Value& v, const std::string& label) {
    field(c) = parse_choice<E>(v.find(key)->string(label.c_str()), label);
  };
  o.save = [field, key](const TrainConfig& c, json::Object& j) { j[key] = std::string(name_of(field(c))); };
  return o;
}

template <class F>
Option text(std::string flag, std::string key, F field, std::string help) {
  Option o{.flag = flag, .key = key, .help = std::move(help)};
  o.default_text = [field] { return field(kDefaults); };
  o.read = [field, flag](TrainConfig& c, const cli::Args& a) { field(c) = a.str(flag); };
  o.load = [field, key](TrainConfig& c, const json::Value& v, const std::string& label) {
    field(c) = v.find(key)->string(label.c_str());
  };
  o.save = [field, key](const TrainConfig& c, json::Object& j) { j[key] = field(c); };
  return o;
}

template <class F>
Option boolean(std::string flag, std::string key, F field, std::string help) {
  Option o{.flag = flag, .key = key, .help = std::move(help), .is_bool = !field(kDefaults)};
  o.default_text = [field] { return text_of(field(kDefaults)); };
  o.read = [field, flag](TrainConfig& c, const cli::Args& a) { field(c) = a.flag(flag); };
  o.load = [field, key](TrainConfig& c, const json::Value& v, const std::string& label) {
    field(c) = v.find(key)->boolean(label.c_str());
  };
  o.save = [field, key](const TrainConfig& c, json::Object& j) { j[key] = field(c); };
  return o;
}

// HxW stored as two keys; `none` is the flag's text for 0x0.
template <class H, class W>
Option size(std::string flag, std::string hkey, std::string wkey, H h, W w, std::string none, std::string help) {
  Option o{.flag = flag, .key = hkey, .help = std::move(help)};
  o.default_text = [none] { return none; };
  o.read = [=](TrainConfig& c, const cli::Args& a) {
    if (a.str(flag) != none) parse_size(a.str(flag), flag.c_str(), h(c), w(c));
  };
  o.load = [=](TrainConfig& c, const json::Value& v, const std::string& label) {
    h(c) = v.find(hkey)->integer(label.c_str());
    if (auto* x = v.find(wkey)) w(c) = x->integer(label.c_str());
  };
  o.save = [=](const TrainConfig& c, json::Object& j) { j[hkey] = h(c), j[wkey] = w(c); };
  o.check = [=](const TrainConfig& c, const std::string& label) {
    DERMIS_CHECK((h(c) == 0 && w(c) == 0) || (h(c) >= 32 && w(c) >= 32 && h(c) <= 4096 && w(c) <= 4096),
                 "{}: {}x{} is not a size like 112x150 (height x width, each 32 to 4096)", label, h(c), w(c));
  };
  return o;
}

bool uses(const TrainConfig& c, std::initializer_list<ScheduleKind> kinds) {
  return std::find(kinds.begin(), kinds.end(), c.schedule.kind) != kinds.end();
}

Option when(Option o, std::function<bool(const TrainConfig&)> applies, std::string applies_when) {
  o.applies = std::move(applies), o.applies_when = std::move(applies_when);
  return o;
}

Option run_setting(Option o) {
  o.with_resume = true;
  return o;
}

Option milestones() {
  Option o{.flag = "milestones", .key = "milestones", .help = "multistep: comma-separated epochs, e.g. 15,25"};
  o.default_text = [] { return std::string(); };
  o.read = [](TrainConfig& c, const cli::Args& a) {
    std::stringstream ms(a.str("milestones"));
    for (std::string t; std::getline(ms, t, ',');) {
      char* end = nullptr;
      const long v = std::strtol(t.c_str(), &end, 10);
      DERMIS_CHECK(!t.empty() && *end == '\0' && v >= 1 && v <= 100000,
                   "flag --milestones: '{}' is not a positive epoch", t);
      c.schedule.milestones.push_back(static_cast<int>(v));
    }
  };
  o.load = [](TrainConfig& c, const json::Value& v, const std::string& label) {
    for (auto& e : v.find("milestones")->array(label.c_str())) {
      const int64_t m = e.integer(label.c_str());
      DERMIS_CHECK(m >= 1 && m <= 100000, "{}: {} is not a positive epoch", label, m);
      c.schedule.milestones.push_back(static_cast<int>(m));
    }
  };
  o.save = [](const TrainConfig& c, json::Object& j) {
    json::Array ms;
    for (int m : c.schedule.milestones) ms.push_back(m);
    j["milestones"] = ms;
  };
  return o;
}

// --balanced-sampling, the older spelling of --class-sampling balanced (and the JSON key older
// versions read and wrote).
Option balanced_sampling() {
  Option o{.flag = "balanced-sampling", .key = "balanced_sampling", .help = "the same as --class-sampling balanced",
           .is_bool = true};
  o.default_text = [] { return std::string("false"); };
  o.read = [](TrainConfig& c, const cli::Args& a) {
    if (!a.flag("balanced-sampling")) return;
    DERMIS_CHECK(c.class_sampling == ClassSampling::natural || c.class_sampling == ClassSampling::balanced,
                 "flag --balanced-sampling contradicts --class-sampling {}; give one of them", name_of(c.class_sampling));
    c.class_sampling = ClassSampling::balanced;
  };
  o.load = [](TrainConfig& c, const json::Value& v, const std::string& label) {
    if (v.find("balanced_sampling")->boolean(label.c_str())) c.class_sampling = ClassSampling::balanced;
  };
  o.save = [](const TrainConfig& c, json::Object& j) { j["balanced_sampling"] = c.class_sampling == ClassSampling::balanced; };
  return o;
}

Option seed() {
  Option o{.flag = "seed", .key = "seed", .help = "random seed (split, weights, order, augmentation, dropout)"};
  o.default_text = [] { return std::string("0"); };
  o.read = [](TrainConfig& c, const cli::Args& a) { c.seed = static_cast<uint64_t>(a.integer("seed", 0, (1L << 62))); };
  o.load = [](TrainConfig& c, const json::Value& v, const std::string& label) {  // a string: JSON numbers are doubles
    const std::string& s = v.find("seed")->string(label.c_str());
    char* end = nullptr;
    errno = 0;
    c.seed = std::strtoull(s.c_str(), &end, 10);
    DERMIS_CHECK(!s.empty() && *end == '\0' && errno == 0 && s[0] != '-', "{}: '{}' is not a seed", label, s);
  };
  o.save = [](const TrainConfig& c, json::Object& j) { j["seed"] = std::to_string(c.seed); };
  return o;
}

// --recipe: read first, by train_config_from_flags (the settings the other flags start from); not
// stored, since a checkpoint stores every setting the recipe made.
Option recipe() {
  const TrainConfig ref = recipe_settings(Recipe::reference);
  Option o{.flag = "recipe",
           .help = fmt::format(
               "the settings the other flags start from: recommended (the defaults shown here: the recipe measured best "
               "on HAM10000, docs/results.md) or reference (bench/torch_reference_train's: --class-sampling {} "
               "--class-weights {} --label-smoothing {} --warmup-epochs {} --swa-start {} --mix {})",
               name_of(ref.class_sampling), name_of(ref.class_weights), ref.label_smoothing,
               ref.schedule.warmup_epochs, ref.swa_start, name_of(ref.mix))};
  o.values = choice_names<Recipe>(" | ", " | ");
  o.default_text = [] { return std::string("recommended"); };
  o.read = [](TrainConfig&, const cli::Args&) {};
  return o;
}

const std::vector<Option>& options() {
  static const std::vector<Option> table = [] {
    const auto data = [](const TrainConfig& c) { return !c.data.empty(); };
    const auto synthetic = [](const TrainConfig& c) { return c.data.empty(); };
    return std::vector<Option>{
        recipe(),
        run_setting(text("data", "data", FIELD(data),
                         "HAM10000 folder (metadata CSV + images); default: the built-in synthetic dataset; with "
                         "--resume: where the run's data is now, if it moved (it must split into the same images)")),
        run_setting(when(text("images", "images", FIELD(images),
                              "image subfolder of --data (default: HAM10000_images_part_1 and _part_2)"),
                         data, "--data")),
        when(boolean("skip-bad-images", "skip_bad_images", FIELD(skip_bad_images),
                     "warn about and skip missing or unreadable images instead of stopping"),
             data, "--data"),
        text("model", "model", FIELD(model), "the network: " + models::model_choices()),
        size("size", "height", "width", FIELD(height), FIELD(width), "auto",
             "input HxW, e.g. 112x150 (auto: 72x96 on the synthetic set, 112x150 otherwise)"),
        size("early-size", "early_height", "early_width", FIELD(early_height), FIELD(early_width), "",
             "progressive resizing: a smaller input HxW (e.g. 112x150 with --size 150x200) for the training epochs of "
             "the run's first part (see --early-fraction), then --size; validation, checkpoints and the report always "
             "use --size (default: none, every epoch at --size)"),
        when(number("early-fraction", "early_fraction", FIELD(early_fraction), 0, 0.99,
                    "with --early-size: epochs that start within this share of the run (of --minutes if given, else "
                    "of --epochs) train at the early size, e.g. 2 of 3 epochs with 0.5; in [0, 1)"),
             [](const TrainConfig& c) { return c.early_height > 0; }, "--early-size"),
        number("batch", "batch", FIELD(batch), 1, 4096, "batch size"),
        number("epochs", "epochs", FIELD(epochs), 0, 100000, "epochs (0: 12 on the synthetic set, 30 otherwise)"),
        number("minutes", "minutes", FIELD(minutes), 0, 1e6,
               "wall-clock budget in minutes; training stops in time to evaluate and save (0: none)"),
        number("lr", "lr", FIELD(lr), 1e-8, 10, "base learning rate"),
        number("momentum", "momentum", FIELD(momentum), 0, 0.999, "SGD momentum"),
        boolean("nesterov", "nesterov", FIELD(nesterov), "Nesterov momentum (true/false)"),
        number("weight-decay", "weight_decay", FIELD(weight_decay), 0, 1, "L2 weight decay"),
        choice("schedule", "schedule", FIELD(schedule.kind), "the learning-rate schedule"),
        when(number("step-size", "step_size", FIELD(schedule.step_size), 1, 100000, "step: epochs between decays"),
             [](const TrainConfig& c) { return uses(c, {ScheduleKind::step}); }, "--schedule step"),
        when(number("gamma", "gamma", FIELD(schedule.gamma), 1e-6, 1, "step/multistep decay factor"),
             [](const TrainConfig& c) { return uses(c, {ScheduleKind::step, ScheduleKind::multistep}); },
             "--schedule step or multistep"),
        when(milestones(), [](const TrainConfig& c) { return uses(c, {ScheduleKind::multistep}); },
             "--schedule multistep"),
        when(number("plateau-factor", "plateau_factor", FIELD(schedule.plateau_factor), 1e-6, 0.999999,
                    "plateau: factor applied to the LR"),
             [](const TrainConfig& c) { return uses(c, {ScheduleKind::plateau}); }, "--schedule plateau"),
        when(number("plateau-patience", "plateau_patience", FIELD(schedule.plateau_patience), 0, 100000,
                    "plateau: epochs without improvement before reducing"),
             [](const TrainConfig& c) { return uses(c, {ScheduleKind::plateau}); }, "--schedule plateau"),
        when(number("plateau-threshold", "plateau_threshold", FIELD(schedule.plateau_threshold), 0, 1,
                    "plateau: relative improvement that counts"),
             [](const TrainConfig& c) { return uses(c, {ScheduleKind::plateau}); }, "--schedule plateau"),
        when(number("plateau-cooldown", "plateau_cooldown", FIELD(schedule.plateau_cooldown), 0, 100000,
                    "plateau: epochs to wait after a reduction"),
             [](const TrainConfig& c) { return uses(c, {ScheduleKind::plateau}); }, "--schedule plateau"),
        when(choice("plateau-metric", "plateau_metric", FIELD(plateau_metric),
                    "plateau: the metric watched (balanced accuracy maximised, loss minimised)"),
             [](const TrainConfig& c) { return uses(c, {ScheduleKind::plateau}); }, "--schedule plateau"),
        when(number("min-lr", "min_lr", FIELD(schedule.min_lr), 0, 10, "lower bound of the LR (cosine, plateau)"),
             [](const TrainConfig& c) { return uses(c, {ScheduleKind::cosine, ScheduleKind::plateau}); },
             "--schedule cosine or plateau"),
        number("warmup-epochs", "warmup_epochs", FIELD(schedule.warmup_epochs), 0, 1000,
               "linear LR warm-up over this many epochs"),
        choice("class-weights", "class_weights", FIELD(class_weights),
               "loss weights against class imbalance (1, 1/n or 1/sqrt(n) per class of n images)"),
        number("label-smoothing", "label_smoothing", FIELD(label_smoothing), 0, 0.999, "label smoothing in [0, 1)"),
        choice("class-sampling", "class_sampling", FIELD(class_sampling),
               "class mix of a training epoch: natural (every image once, shuffled), sqrt (draw classes with "
               "probability proportional to the square root of their counts, with replacement) or balanced "
               "(uniform over classes, with replacement)"),
        balanced_sampling(),
        number("logit-adjust", "logit_adjust", FIELD(logit_adjust), 0, 10,
               "logit-adjusted loss (Menon et al. 2021): add TAU * log(class prior of the sampled training stream) to "
               "the logits inside the loss, which balances the classes the sampling leaves unbalanced (1: the "
               "balanced-error optimum; 0: off; not with balanced sampling)"),
        boolean("sync-bn", "sync_bn", FIELD(sync_bn),
                "data-parallel (mpirun): BatchNorm statistics over the global batch of all ranks instead of each "
                "rank's own"),
        number("ema", "ema", FIELD(ema), 0, 0.999999,
               "validate and keep as best an exponential moving average of the weights with this per-step decay "
               "(e.g. 0.999; 0: off)"),
        when(number("val-fraction", "val_fraction", FIELD(val_fraction), 0.01, 0.9,
                    "share of lesions held out for validation (grouped by lesion_id; with --test-fraction, a share "
                    "of the rest)"),
             [](const TrainConfig& c) { return c.folds == 0; }, "a train/validation split (not with --folds)"),
        number("folds", "folds", FIELD(folds), 0, 20,
               "lesion-grouped, class-stratified k-fold cross-validation: split the lesions into this many folds and "
               "validate on fold --fold (0: off, a --val-fraction split instead; 2 to 20)"),
        when(number("fold", "fold", FIELD(fold), 0, 19, "with --folds K: the validation fold, 0 to K-1"),
             [](const TrainConfig& c) { return c.folds > 0; }, "--folds"),
        number("test-fraction", "test_fraction", FIELD(test_fraction), 0, 0.5,
               "share of lesions held out as a test set before the train/validation split or folds (grouped by "
               "lesion_id, stratified by class): training, validation and checkpoint selection never see it; score "
               "it with evaluate --split test. Drawn with --test-seed alone, so runs of every --seed and --fold share "
               "it (0: none)"),
        when(number("test-seed", "test_seed", FIELD(test_seed), 0, 1L << 31, "the seed of the --test-fraction set"),
             [](const TrainConfig& c) { return c.test_fraction > 0; }, "--test-fraction"),
        number("swa-start", "swa_start", FIELD(swa_start), 0, 0.99,
               "stochastic weight averaging: average the weights at the end of every epoch that ends after this share "
               "of the run (of --minutes if given, else of --epochs), recompute the average's BatchNorm statistics on "
               "training batches, validate it each epoch and save it as swa.safetensors (e.g. 0.75; 0: off)"),
        when(number("swa-lr", "swa_lr", FIELD(schedule.swa_lr), 0, 10,
                    "SWA learning rate (Izmailov et al. 2018; torch's SWALR): hold the LR at this value from "
                    "--swa-start on, so the averaged weights keep exploring instead of settling; cosine then anneals "
                    "to it by --swa-start instead of to --min-lr by the end; at most --lr (0: the schedule runs to its "
                    "end)"),
             [](const TrainConfig& c) { return c.swa_start > 0; }, "--swa-start"),
        choice("select", "select", FIELD(select),
               "the checkpoint the run hands out (the \"checkpoint:\" line, copied to model.safetensors, scored in "
               "result.json and report.html): swa, last (the final weights) or best (the best validation epoch: an "
               "optimistic pick among noisy scores); auto: swa with --swa-start, else last"),
        choice("mix", "mix", FIELD(mix),
               "batch mixing: mixup (blend two images and their labels), cutmix (paste a box of one image into "
               "another, labels by area) or both (half the mixed batches each)"),
        when(number("mixup-alpha", "mixup_alpha", FIELD(mixup_alpha), 0.01, 10, "mixup: Beta(a, a) of the blend weight"),
             [](const TrainConfig& c) { return c.mix == Mixing::mixup || c.mix == Mixing::both; },
             "--mix mixup or both"),
        when(number("cutmix-alpha", "cutmix_alpha", FIELD(cutmix_alpha), 0.01, 10,
                    "cutmix: Beta(a, a) of the kept area"),
             [](const TrainConfig& c) { return c.mix == Mixing::cutmix || c.mix == Mixing::both; },
             "--mix cutmix or both"),
        when(number("mix-prob", "mix_prob", FIELD(mix_prob), 0, 1, "share of batches that are mixed"),
             [](const TrainConfig& c) { return c.mix != Mixing::none; }, "--mix"),
        number("color-constancy", "color_constancy", FIELD(color_constancy), 0, 64,
               "shades-of-grey colour constancy with this Minkowski power (6 is usual; 0: off), on every training "
               "image and, recorded in the checkpoint, in evaluate and predict"),
        choice("decision-prior", "decision_prior", FIELD(decision_prior),
               "the class prior evaluate and predict apply to this model's probabilities unless told otherwise (their --prior): "
               "none (as trained), train (shifted to the training set's class frequencies: with class-balanced "
               "training, the deployment prior of HAM10000-like data) or uniform (with natural sampling: a balanced "
               "decision); train validates, picks the best epoch and reports with it too"),
        text("init", "init", FIELD(init),
             "start from published weights: a torch.save .pth/.pt or .safetensors file of a torchvision, timm or dermis "
             "model with PyTorch names (torchvision's resnet18 for resnet18, resnet18_cbam; resnet34 for "
             "resnet34_cbam); CBAM blocks the file lacks, and a head of another class count, keep their "
             "initialisation; default: none (random initialisation)"),
        when(number("init-lr-scale", "init_lr_scale", FIELD(init_lr_scale), 0, 1,
                    "learning-rate multiplier of the parameters loaded by --init (the new head and CBAM blocks train "
                    "at the full rate)"),
             [](const TrainConfig& c) { return !c.init.empty(); }, "--init"),
        when(number("freeze-epochs", "freeze_epochs", FIELD(freeze_epochs), 0, 100000,
                    "keep the loaded parameters of the stem and the first --freeze-stages stages fixed for this many "
                    "epochs (0: none)"),
             [](const TrainConfig& c) { return !c.init.empty(); }, "--init"),
        when(number("freeze-stages", "freeze_stages", FIELD(freeze_stages), 0, 16,
                    "with --freeze-epochs: how many stages (layer1.., stage1..) after the stem stay fixed"),
             [](const TrainConfig& c) { return c.freeze_epochs > 0; }, "--freeze-epochs"),
        choice("normalization", "normalization", FIELD(normalization),
               "input normalisation, recorded in the checkpoint for evaluate and predict: dataset (the training "
               "images' channel statistics) or imagenet (what published pretrained weights expect); auto: imagenet "
               "with --init, else dataset"),
        number("crop-scale", "crop_scale_min", FIELD(crop_scale_min), 0.05, 1, "random resized crop: smallest area fraction"),
        number("rotate", "rotate_degrees", FIELD(rotate_degrees), 0, 180,
               "random rotation range in degrees (plus flips and 90-degree turns)"),
        number("jitter", "jitter", FIELD(jitter), 0, 0.9, "brightness/contrast/saturation jitter"),
        number("hue", "hue", FIELD(hue), 0, 0.5, "hue jitter (turns)"),
        seed(),
        run_setting(number("threads", "threads", FIELD(threads), 0, 1024, "OpenMP threads for the model (0: automatic)")),
        choice("precision", "precision", FIELD(precision),
               "bf16: mixed precision (bf16 activations and convolutions, f32 weights; needs AVX-512); f32 works on "
               "every CPU"),
        choice("conv", "conv", FIELD(conv),
               "convolution algorithm for f32 3x3 stride-1 convolutions: auto (oneDNN's Winograd where it has one, "
               "else dermis's, else direct), fastest (of the three, timed once per shape; reruns may round "
               "differently), direct, winograd (dermis's) or onednn-winograd"),
        choice("nonfinite", "nonfinite", FIELD(nonfinite),
               "a NaN/Inf loss or gradient: stop (naming the step and tensor) or skip (drop the step; stops after 10 "
               "in a row)"),
        run_setting(number("loader-threads", "loader_threads", FIELD(loader_threads), 0, 1024,
                           "JPEG loader threads (0: automatic)")),
        boolean("cache", "cache", FIELD(cache), "keep decoded images in memory after the first epoch"),
        text("out", "out", FIELD(out), "run folder (default: runs/<model>-<date>-<time>)"),
        run_setting(text("resume", "", FIELD(resume), "continue from a checkpoint (e.g. RUN/last.safetensors)")),
        when(number("synthetic-count", "synthetic_count", FIELD(synthetic_count), 50, 10000000,
                    "images in the built-in synthetic dataset"),
             synthetic, "the built-in synthetic dataset (no --data)"),
        number("report-images", "report_images", FIELD(report_images), 0, 1000,
               "validation images with heatmaps in report.html"),
        run_setting(number("stop-after", "", FIELD(stop_after), 0, 1000000,
                           "stop after this many epochs (continue later with --resume; 0: run to the end)")),
    };
  }();
  return table;
}

const Option& option(const std::string& flag) {
  for (const auto& o : options())
    if (o.flag == flag) return o;
  DERMIS_FAIL("internal: no option --{}", flag);
}

// The settings' ranges (table) and combinations; `stored` names settings by JSON key.
void check(const TrainConfig& c, bool stored) {
  auto name = [stored](const std::string& flag) {
    return stored ? fmt::format("setting {}", option(flag).key) : fmt::format("flag --{}", flag);
  };
  for (const auto& o : options()) o.check(c, name(o.flag));
  DERMIS_CHECK(models::has_model(c.model), "{}: {}", name("model"), models::unknown_model_message(c.model));
  DERMIS_CHECK(!(c.logit_adjust > 0 && c.class_sampling == ClassSampling::balanced),
               "{}: the classes of a balanced-sampling stream (the recommended recipe's) are already uniform, so there "
               "is nothing to adjust; add --class-sampling natural or sqrt",
               name("logit-adjust"));
  DERMIS_CHECK(!(c.logit_adjust > 0 && c.class_weights != ClassWeights::none),
               "{}: it already balances the loss, and --class-weights {} would correct the imbalance a second time; "
               "add --class-weights none",
               name("logit-adjust"), name_of(c.class_weights));
  DERMIS_CHECK(c.early_height == 0 || c.height == 0 ||
                   (c.early_height <= c.height && c.early_width <= c.width &&
                    c.early_height * c.early_width < c.height * c.width),
               "{}: {}x{} is not smaller than the input size {}x{} (--size); the early size is the smaller one",
               name("early-size"), c.early_height, c.early_width, c.height, c.width);
  DERMIS_CHECK(c.folds == 0 || (c.folds >= 2 && c.fold < c.folds),
               "{} {} with {} {}: give --folds 2 to 20 and --fold 0 to K-1", name("folds"), c.folds, name("fold"),
               c.fold);
  DERMIS_CHECK(!(c.select == Select::swa && c.swa_start <= 0),
               "{}: swa needs --swa-start (e.g. 0.75), which makes the weight average", name("select"));
  try {
    c.schedule_options().validate();
  } catch (const Error& e) {
    DERMIS_FAIL("schedule {}: {}", stored ? "settings" : "flags", e.what());
  }
}

}  // namespace

#undef FIELD

void add_train_flags(cli::Args& a) {
  for (const auto& o : options()) {
    std::string help = o.help;
    if (!o.values.empty() || !o.applies_when.empty())
      help += fmt::format(" [{}{}{}]", o.values, o.values.empty() || o.applies_when.empty() ? "" : "; ",
                          o.applies_when.empty() ? "" : "only with " + o.applies_when);
    if (o.is_bool) a.add_bool(o.flag, help);
    else a.add(o.flag, o.default_text(), help);
  }
}

TrainConfig train_config_from_flags(const cli::Args& a) {
  TrainConfig c = recipe_settings(parse_choice<Recipe>(a.str("recipe"), "flag --recipe"));
  for (const auto& o : options())
    if (a.given(o.flag)) o.read(c, a);
  for (const auto& o : options()) {
    if (!c.resume.empty() && !o.with_resume)
      a.reject_unless(o.flag, false,
                      "cannot be given with --resume: a resumed run continues with the settings stored in its "
                      "checkpoint (only --stop-after, --threads, --loader-threads, and --data/--images for data that has "
                      "moved, may change); to change settings, start a new run");
    a.reject_unless(o.flag, o.applies(c), "applies only with " + o.applies_when);
  }
  c.validate();
  return c;
}

TrainConfig recipe_settings(Recipe recipe) {
  TrainConfig c;
  if (recipe == Recipe::reference) return c;
  c.class_sampling = ClassSampling::balanced;
  c.class_weights = ClassWeights::none;
  c.label_smoothing = 0;
  c.schedule.warmup_epochs = 1;
  c.swa_start = 0.7;
  c.mix = Mixing::mixup;
  return c;
}

double TrainConfig::class_power() const {
  switch (class_sampling) {
    case ClassSampling::balanced: return 0.0;
    case ClassSampling::sqrt: return 0.5;
    case ClassSampling::natural: break;
  }
  return 1.0;
}

void TrainConfig::validate() const { check(*this, false); }

json::Value TrainConfig::to_json() const {
  json::Object j;
  for (const auto& o : options())
    if (!o.key.empty()) o.save(*this, j);
  return j;
}

TrainConfig TrainConfig::from_json(const json::Value& v, const std::string& source) {
  TrainConfig c;
  try {
    for (const auto& o : options()) {
      // Settings absent from older checkpoints keep their defaults.
      if (!o.key.empty() && v.find(o.key)) o.load(c, v, fmt::format("setting {}", o.key));
    }
    check(c, true);
  } catch (const Error& e) {
    DERMIS_FAIL("{}: the training settings stored in it are invalid ({}); it is damaged, or was written by a newer "
                "dermis or another program",
                source, e.what());
  }
  return c;
}

}  // namespace dermis::experiment
