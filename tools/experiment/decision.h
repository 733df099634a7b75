// The decision rule's class prior. A model trained on a class-balanced stream predicts as if every
// class were equally likely; deployed where classes come with other frequencies (a clinic's, or
// HAM10000's own 67% nevi), its probabilities can be moved to that prior at test time without
// retraining (Saerens et al. 2002):  p'(k|x) ~ p(k|x) * target_k / trained_k.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "config.h"

namespace dermis::experiment {

// The prior a model's probabilities were trained towards: the sampled class mix
// (n_k^class_power), times the loss's class weights, with the logit adjustment's share (tau)
// taken out, normalised: q_k ~ w_k * s_k^(1 - tau). Classes without images get the share half an
// image would have. Uniform for balanced sampling without weights; the class frequencies for the
// natural mix.
std::vector<double> trained_class_prior(const std::vector<int64_t>& counts, double class_power,
                                        const std::vector<float>& class_weights, double tau);
// The training set's class frequencies (classes without images as above).
std::vector<double> frequency_prior(const std::vector<int64_t>& counts);

// The target prior of `rule` for a checkpoint: empty for none (no shift); an error naming
// `source` when the checkpoint records no priors (written before they were recorded).
std::vector<double> target_prior(const CheckpointInfo& info, DecisionPrior rule, const std::string& source);

// Rows of N x K probabilities moved from prior `from` to prior `to` (each K positive entries);
// rows stay normalised. Nothing happens when `to` is empty.
void shift_prior(std::vector<float>& probs, const std::vector<double>& from, const std::vector<double>& to);

}  // namespace dermis::experiment
