// Learning-rate schedules, with PyTorch's semantics:
//   step       StepLR:            lr = base * gamma^floor(epoch / step_size)
//   multistep  MultiStepLR:       lr = base * gamma^(number of milestones <= epoch)
//   cosine     CosineAnnealingLR: lr = min_lr + (base - min_lr) * (1 + cos(pi * t)) / 2, t = progress in [0, 1]
//              (progress is epochs done / epochs, or elapsed / budget for time-limited runs)
//   plateau    ReduceLROnPlateau: lr *= factor when the monitored metric has not improved by more
//              than `threshold` (relative) for more than `patience` epochs; then `cooldown` epochs
//              of rest; never below min_lr
// plus an optional linear warm-up over the first warmup_epochs (fractional epochs, per step), and an
// optional SWA tail (Izmailov et al. 2018, as torch.optim.swa_utils.SWALR): from progress swa_start
// on, the LR is held at swa_lr, so the weights averaged there keep exploring; cosine then anneals to
// swa_lr over [0, swa_start] instead of to min_lr over the whole run, the other schedules switch to
// swa_lr there.
#pragma once

#include <string>
#include <vector>

#include "../choice.h"

namespace dermis::optim {

enum class ScheduleKind { step, multistep, cosine, plateau, constant };

struct ScheduleOptions {
  ScheduleKind kind = ScheduleKind::cosine;
  double base_lr = 0.05;
  double gamma = 0.1;                // step, multistep
  int step_size = 10;                // step (epochs)
  std::vector<int> milestones{};       // multistep (epochs)
  double min_lr = 0.0;               // cosine floor, plateau floor
  double plateau_factor = 0.1;
  int plateau_patience = 10;
  double plateau_threshold = 1e-4;   // relative ("rel" threshold mode)
  int plateau_cooldown = 0;
  bool plateau_maximize = true;      // true: a metric to maximise (balanced accuracy); false: a loss
  double warmup_epochs = 0.0;
  double swa_lr = 0.0;               // the LR held from progress swa_start on (0: no SWA tail)
  double swa_start = 0.0;            // in (0, 1) with swa_lr
  void validate() const;             // throws naming the bad option
};

class Schedule {
 public:
  explicit Schedule(ScheduleOptions o);
  // The learning rate for the step at fractional epoch `epoch` (e.g. 2.5 = halfway through the
  // third epoch); `progress` in [0, 1] drives cosine.
  double lr(double epoch, double progress) const;
  // End of an epoch with its validation metric (plateau only; ignored otherwise).
  void epoch_end(double metric);
  const ScheduleOptions& options() const { return o_; }

  // State for checkpoints (plateau's counters and current level).
  struct State {
    double plateau_lr = 0, best = 0;
    int bad_epochs = 0, cooldown_left = 0;
    bool has_best = false;
  };
  State state() const { return s_; }
  void set_state(const State& s) { s_ = s; }

 private:
  ScheduleOptions o_;
  State s_;
};

}  // namespace dermis::optim

template <>
struct dermis::Choices<dermis::optim::ScheduleKind> {
  using K = optim::ScheduleKind;
  static constexpr std::array<Choice<K>, 5> list{{{K::step, "step"},
                                                  {K::multistep, "multistep"},
                                                  {K::cosine, "cosine"},
                                                  {K::plateau, "plateau"},
                                                  {K::constant, "constant"}}};
};
