// tools/evaluate: scores a checkpoint on a dataset (HAM10000 layout, or an ISIC 2018 Task 3
// ground-truth CSV) and prints one JSON object of metrics.
// (The tool is experiment::evaluate_main, tools/experiment/tools.cpp.)
#include "tools/experiment/tools.h"

int main(int argc, char** argv) { return dermis::experiment::evaluate_main(argc, argv); }
