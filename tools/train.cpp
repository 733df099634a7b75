// tools/train: trains a CBAM classifier on HAM10000 (or, without --data, on the built-in synthetic
// dataset, generated on first use), validating every epoch on a lesion-grouped split; writes
// best/last checkpoints, metrics.jsonl, result.json, val_predictions.csv and report.html into the
// run folder.
// (The tool is experiment::train_main, tools/experiment/tools.cpp.)
#include "tools/experiment/tools.h"

int main(int argc, char** argv) { return dermis::experiment::train_main(argc, argv); }
