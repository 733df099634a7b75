// tools/predict: class probabilities for JPEG images from a checkpoint, and optionally attention
// heatmaps (Grad-CAM, or the last CBAM block's spatial attention) as JPEG overlays.
// (The tool is experiment::predict_main, tools/experiment/tools.cpp.)
#include "tools/experiment/tools.h"

int main(int argc, char** argv) { return dermis::experiment::predict_main(argc, argv); }
