// dermis's command-line tools as library functions. Each parses argv as its tool does (argv[0] is
// the program name), runs, and returns the exit code (2 with one line on stderr for any error).
// A program with models of its own registers them (models::register_model) and calls these: it is
// then train/evaluate/predict with --model, --help and checkpoint loading knowing its models.
//
//   static const dermis::models::ModelRegistration reg{"mynet", [](int k) { return make_mynet(k); }};
//   int main(int argc, char** argv) { return dermis::experiment::tool_main(argc, argv); }
//   // ./mytool train --model mynet ...; ./mytool evaluate --checkpoint ...; ./mytool predict ...;
//   // ./mytool export --checkpoint ... --onnx mynet.onnx
#pragma once

namespace dermis::experiment {

int train_main(int argc, char** argv);     // tools/train (calls dist::init: run it under mpirun too)
int evaluate_main(int argc, char** argv);  // tools/evaluate
int predict_main(int argc, char** argv);   // tools/predict
// tools/export (ONNX); in a build without the ONNX libraries (libonnx-dev), an error saying so.
int export_main(int argc, char** argv);
// argv[1] is train, evaluate, predict or export; the rest goes to that tool.
int tool_main(int argc, char** argv);

}  // namespace dermis::experiment
