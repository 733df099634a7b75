// Fixed-seed training test: cbam_small learns the synthetic 7-class images with SGD+momentum;
// the loss must fall and held-out accuracy must rise far above chance (1/7).
#define BOOST_TEST_MODULE training
#include <boost/test/unit_test.hpp>

#include "synthetic_training.h"

using namespace dermis;

BOOST_AUTO_TEST_CASE(loss_drops_on_generated_data) {
  const testing::TrainOutcome r = testing::train_cbam_small_on_synthetic(false);
  BOOST_TEST_MESSAGE("mean loss, first 10 steps " << r.first_loss << ", last 10 steps " << r.last_loss);
  BOOST_TEST(r.last_loss < 0.6f * r.first_loss);
  BOOST_TEST_MESSAGE("held-out accuracy " << r.held_out_accuracy);
  // Eval mode (BatchNorm running statistics) after a cosine schedule's 200 steps.
  BOOST_TEST(r.held_out_accuracy > 0.8);
}
