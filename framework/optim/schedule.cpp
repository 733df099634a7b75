// Learning-rate schedules (see schedule.h).
#include "schedule.h"

#include <algorithm>
#include <cmath>

#include "../error.h"

namespace dermis::optim {

void ScheduleOptions::validate() const {
  DERMIS_CHECK(std::isfinite(base_lr) && base_lr > 0, "learning rate must be a positive number, got {}", base_lr);
  DERMIS_CHECK(std::isfinite(gamma) && gamma > 0 && gamma <= 1, "gamma must be in (0, 1], got {}", gamma);
  DERMIS_CHECK(step_size >= 1, "step size must be at least 1 epoch, got {}", step_size);
  for (size_t i = 0; i < milestones.size(); ++i)
    DERMIS_CHECK(milestones[i] >= 1 && (i == 0 || milestones[i] > milestones[i - 1]),
                 "milestones must be increasing positive epochs");
  DERMIS_CHECK(kind != ScheduleKind::multistep || !milestones.empty(), "the multistep schedule needs milestones");
  DERMIS_CHECK(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= base_lr, "min lr must be in [0, lr], got {}", min_lr);
  DERMIS_CHECK(std::isfinite(plateau_factor) && plateau_factor > 0 && plateau_factor < 1,
               "plateau factor must be in (0, 1), got {}", plateau_factor);
  DERMIS_CHECK(plateau_patience >= 0 && plateau_cooldown >= 0, "plateau patience and cooldown must be >= 0");
  DERMIS_CHECK(std::isfinite(plateau_threshold) && plateau_threshold >= 0, "plateau threshold must be >= 0");
  DERMIS_CHECK(std::isfinite(warmup_epochs) && warmup_epochs >= 0, "warm-up epochs must be >= 0");
  DERMIS_CHECK(std::isfinite(swa_lr) && swa_lr >= 0 && swa_lr <= base_lr,
               "the SWA learning rate must be in [0, lr {}], got {}", base_lr, swa_lr);
  DERMIS_CHECK(swa_lr == 0 || (std::isfinite(swa_start) && swa_start > 0 && swa_start < 1),
               "the SWA learning rate needs the share of the run where averaging starts, in (0, 1); got {}", swa_start);
}

Schedule::Schedule(ScheduleOptions o) : o_(std::move(o)) {
  o_.validate();
  s_.plateau_lr = o_.base_lr;
}

double Schedule::lr(double epoch, double progress) const {
  double lr = o_.base_lr;
  const bool tail = o_.swa_lr > 0;
  const int e = static_cast<int>(std::floor(epoch + 1e-9));
  if (o_.kind == ScheduleKind::step) {
    lr = o_.base_lr * std::pow(o_.gamma, e / o_.step_size);
  } else if (o_.kind == ScheduleKind::multistep) {
    const auto passed = std::upper_bound(o_.milestones.begin(), o_.milestones.end(), e) - o_.milestones.begin();
    lr = o_.base_lr * std::pow(o_.gamma, static_cast<double>(passed));
  } else if (o_.kind == ScheduleKind::cosine) {
    const double t = std::clamp(tail ? progress / o_.swa_start : progress, 0.0, 1.0);
    const double floor = tail ? o_.swa_lr : o_.min_lr;
    lr = floor + (o_.base_lr - floor) * (1 + std::cos(M_PI * t)) / 2;
  } else if (o_.kind == ScheduleKind::plateau) {
    lr = s_.plateau_lr;
  }
  if (tail && progress >= o_.swa_start) lr = o_.swa_lr;
  if (o_.warmup_epochs > 0 && epoch < o_.warmup_epochs) lr *= std::max(epoch / o_.warmup_epochs, 1e-3);
  return lr;
}

void Schedule::epoch_end(double metric) {
  if (o_.kind != ScheduleKind::plateau) return;
  DERMIS_CHECK(std::isfinite(metric), "plateau schedule: the monitored metric is not finite ({})", metric);
  const bool better = !s_.has_best || (o_.plateau_maximize ? metric > s_.best * (1 + o_.plateau_threshold)
                                                           : metric < s_.best * (1 - o_.plateau_threshold));
  if (better) {
    s_.best = metric;
    s_.has_best = true;
    s_.bad_epochs = 0;
  } else {
    ++s_.bad_epochs;
  }
  if (s_.cooldown_left > 0) {
    --s_.cooldown_left;
    s_.bad_epochs = 0;
  }
  if (s_.bad_epochs > o_.plateau_patience) {
    const double next = std::max(s_.plateau_lr * o_.plateau_factor, o_.min_lr);
    if (s_.plateau_lr - next > 1e-8) s_.plateau_lr = next;  // PyTorch's eps
    s_.cooldown_left = o_.plateau_cooldown;
    s_.bad_epochs = 0;
  }
}

}  // namespace dermis::optim
