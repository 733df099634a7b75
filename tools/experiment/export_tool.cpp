// tools/export as a library function (export_main, tools.h): a checkpoint as an ONNX model.
#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "framework/cli.h"
#include "framework/io/atomic_file.h"
#include "framework/io/json.h"
#include "checkpoint.h"
#include "decision.h"
#include "evaluation.h"
#include "onnx_export.h"
#include "tools.h"

namespace dermis::experiment {

namespace {

std::string json_list(const std::vector<std::string>& v) {
  json::Array a;
  for (const auto& s : v) a.push_back(json::Value(s));
  return json::dump(json::Value(a));
}

std::string json_numbers(const std::vector<double>& v) {
  json::Array a;
  for (double x : v) a.push_back(json::Value(x));
  return json::dump(json::Value(a));
}

}  // namespace

int export_main(int argc, char** argv) {
  return cli::run_main("export", [&]() -> int {
    cli::Args args(
        "usage: export --checkpoint FILE --onnx OUT.onnx [flags]\n"
        "Writes the checkpoint's model as an ONNX file (opset 13, standard ops, CBAM included; dynamic batch):\n"
        "input 'input' (batch, 3, H, W), normalised RGB as metadata_props 'mean'/'std' say; outputs 'logits'\n"
        "and 'probabilities' (softmax with the decision prior predict uses). The file passes the ONNX checker\n"
        "before it is written. Example:\n"
        "  export --checkpoint runs/NAME/model.safetensors --onnx lesions.onnx");
    args.add("checkpoint", "", "a checkpoint written by train (model.safetensors, best/last/swa.safetensors)");
    args.add("onnx", "", "the ONNX file to write (replaced atomically)");
    args.add("weights", "auto", kWeightsFlagHelp);
    args.add("prior", "auto", kPriorFlagHelp);
    args.add_bool("keep-batch-norm", "keep BatchNormalization nodes instead of folding them into the convolutions");
    if (!args.parse(argc, argv)) return 0;
    DERMIS_CHECK(!args.str("checkpoint").empty(), "flag --checkpoint is required (a checkpoint written by train)");
    DERMIS_CHECK(!args.str("onnx").empty(), "flag --onnx is required (the file to write, e.g. model.onnx)");
    io::check_output_path("onnx", args.str("onnx"));
    std::vector<Member> members = load_members(args.str("checkpoint"), args.str("weights"));
    DERMIS_CHECK(members.size() == 1, "flag --checkpoint: export takes one checkpoint, not an ensemble");
    DERMIS_CHECK(!io::same_file(args.str("onnx"), members.front().path),
                 "flag --onnx: {} is the checkpoint itself; give another file name for the ONNX model", args.str("onnx"));
    Member& m = members.front();
    const CheckpointInfo& info = m.ck.info;
    const DecisionPrior prior = resolve_prior(args.str("prior"), m);
    const std::vector<double> target = target_prior(info, prior, m.path);

    OnnxExportOptions o;
    o.height = info.height;
    o.width = info.width;
    o.fold_batch_norm = !args.flag("keep-batch-norm");
    o.graph_name = info.model;
    if (!target.empty())
      for (size_t k = 0; k < target.size(); ++k) o.logit_offsets.push_back(std::log(target[k] / info.trained_prior[k]));
    const auto& n = info.norm;
    o.metadata = {
        {"model", info.model},
        {"classes", json_list(info.classes)},
        {"input_height", std::to_string(info.height)},
        {"input_width", std::to_string(info.width)},
        {"input_layout", "NCHW RGB float32: (pixel / 255 - mean) / std"},
        {"mean", json_numbers({n.mean[0], n.mean[1], n.mean[2]})},
        {"std", json_numbers({n.std[0], n.std[1], n.std[2]})},
        {"resize", "whole image, area-weighted (box filter) resize to input_width x input_height"},
        {"color_constancy", m.cfg.color_constancy > 0
                                ? fmt::format("shades of grey, Minkowski power {} (applied before normalising)",
                                              m.cfg.color_constancy)
                                : "none"},
        {"decision_prior", std::string(name_of(prior))},
        {"decision_prior_offsets", json_numbers(o.logit_offsets)},
        {"weights", m.weights},
        {"source_checkpoint", m.path},
    };
    OnnxExportSummary s;
    const std::string bytes = export_onnx(*m.ck.model, o, &s);
    io::write_file_atomic(args.str("onnx"), std::vector<uint8_t>(bytes.begin(), bytes.end()));
    std::string ops;
    for (const auto& [op, count] : s.op_counts) ops += fmt::format("{}{} {}", ops.empty() ? "" : ", ", op, count);
    fmt::print("export: {} ({}, {} classes, input 3x{}x{}) -> {}: {} nodes ({}), {} initializers, {:.2f} M parameters, "
               "{:.1f} MB; {} batch norms folded; decision prior {}; passes the ONNX checker\n",
               m.path, info.model, info.classes.size(), info.height, info.width, args.str("onnx"), s.nodes, ops,
               s.initializers, static_cast<double>(s.parameters) / 1e6, static_cast<double>(bytes.size()) / 1e6,
               s.batch_norms_folded, name_of(prior));
    return 0;
  });
}

}  // namespace dermis::experiment
