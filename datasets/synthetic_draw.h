// Drawing of one synthetic dermatoscopy image (internal to the synthetic HAM10000 generator, see
// synthetic_ham.h): a lesion's appearance is a pure function of (class, lesion seed), one photo of
// it a pure function of (lesion, image seed).
#pragma once

#include <cstdint>
#include <vector>

namespace dermis::datasets::synth {

// Renders one RGB image (height x width x 3 bytes, row-major) into `rgb`.
void draw_lesion_image(int label, uint64_t lesion_seed, uint64_t image_seed, int width, int height,
                       std::vector<uint8_t>& rgb);

}  // namespace dermis::datasets::synth
