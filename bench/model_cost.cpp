// bench/model_cost: parameter count and forward MACs per image of every model at given sizes
// (one JSON object per model and size).
#include <cstdio>

#include "framework/io/json.h"
#include "framework/profile.h"
#include "framework/random.h"
#include "models/registry.h"
#include "framework/cli.h"

using namespace dermis;

int main(int argc, char** argv) {
  return dermis::cli::run_main("bench/model_cost", [&]() -> int {
    cli::Args args("usage: bench/model_cost [flags]\nParameters and forward MACs per image of each model.");
    args.add("classes", "7", "output classes");
    args.add("sizes", "112,224", "comma-separated square input sizes");
    if (!args.parse(argc, argv)) return 0;
    const int classes = static_cast<int>(args.integer("classes", 2, 100000));
    std::vector<int64_t> sizes;
    std::vector<std::string> parts(1);
    for (char c : args.str("sizes")) {
      if (c == ',')
        parts.emplace_back();
      else
        parts.back() += c;
    }
    for (const auto& part : parts) {
      char* end = nullptr;
      const long v = std::strtol(part.c_str(), &end, 10);
      DERMIS_CHECK(!part.empty() && *end == '\0' && v >= 32, "flag --sizes: '{}' is not a size >= 32", part);
      sizes.push_back(v);
    }
    NoGrad ng;
    for (const auto& name : models::model_names()) {
      auto m = models::create(name, classes);
      m->eval();
      for (int64_t s : sizes) {
        Generator g(0);
        profile::MacCounter c;
        m->forward(Var(Tensor::randn({1, 3, s, s}, g)));
        json::Object o{{"model", name},
                       {"classes", classes},
                       {"size", s},
                       {"params", m->num_parameters()},
                       {"gmacs_per_image", static_cast<double>(c.macs()) / 1e9}};
        std::printf("%s\n", json::dump(o).c_str());
      }
    }
    return 0;
  });
}
