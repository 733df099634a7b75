// tools/export: a dermis checkpoint as an ONNX model (onnxruntime, OpenCV DNN), with the class
// names, input size, normalisation and decision prior in its metadata_props.
// (The tool is experiment::export_main, tools/experiment/export_tool.cpp.)
#include "tools/experiment/tools.h"

int main(int argc, char** argv) { return dermis::experiment::export_main(argc, argv); }
