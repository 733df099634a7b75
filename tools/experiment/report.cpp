// report.html writer (see report.h).
#include "report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "framework/data/jpeg.h"
#include "framework/io/atomic_file.h"

namespace dermis::experiment {

std::string base64(const std::vector<uint8_t>& b) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  o.reserve((b.size() + 2) / 3 * 4);
  for (size_t i = 0; i < b.size(); i += 3) {
    const uint32_t v = (b[i] << 16) | ((i + 1 < b.size() ? b[i + 1] : 0) << 8) | (i + 2 < b.size() ? b[i + 2] : 0);
    o += t[(v >> 18) & 63];
    o += t[(v >> 12) & 63];
    o += i + 1 < b.size() ? t[(v >> 6) & 63] : '=';
    o += i + 2 < b.size() ? t[v & 63] : '=';
  }
  return o;
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

namespace {
struct Series {
  std::string name, colour;
  std::vector<std::pair<double, double>> pts;
};

std::string fmt_num(double v) {
  if (v == 0) return "0";
  if (std::abs(v) >= 100) return fmt::format("{:.0f}", v);
  if (std::abs(v) >= 1) return fmt::format("{:.2f}", v);
  return fmt::format("{:.3g}", v);
}

// Axis ranges (NaN: from the data, widened to include a finite hint), labels and legend layout.
struct ChartStyle {
  double xmin = NAN, xmax = NAN, ymin = NAN, ymax = NAN;
  std::string ylabel{};
  bool legend_column = false;  // legend as a column right of the plot instead of a row above it
  bool diagonal = false;       // a dashed y = x reference line
  bool markers = true;         // dots on series of up to 60 points
  double width = 460, height = 260;
};

// A line chart with axes, ticks and a legend.
std::string line_chart(const std::string& title, const std::vector<Series>& series, const std::string& xlabel,
                       const ChartStyle& st = {}) {
  const double W = st.width, H = st.height, L = st.ylabel.empty() ? 56 : 62, R = st.legend_column ? 230 : 14, T = 30,
               B = 40;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (auto& s : series)
    for (auto [x, y] : s.pts)
      if (std::isfinite(y)) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  std::string o = fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' class='chart'>", W, H);
  o += fmt::format("<text x='{}' y='18' class='ct'>{}</text>", W / 2, html_escape(title));
  if (x0 > x1) return o + "<text x='40' y='120'>no data yet</text></svg>";
  if (std::isfinite(st.xmin)) x0 = std::min(x0, st.xmin);
  if (std::isfinite(st.xmax)) x1 = std::max(x1, st.xmax);
  if (std::isfinite(st.ymin)) y0 = std::min(y0, st.ymin);
  if (std::isfinite(st.ymax)) y1 = std::max(y1, st.ymax);
  if (y1 - y0 < 1e-12) y1 = y0 + 1;
  if (x1 - x0 < 1e-12) x1 = x0 + 1;
  auto X = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
  o += fmt::format("<line x1='{}' y1='{}' x2='{}' y2='{}' class='ax'/>", L, H - B, W - R, H - B);
  o += fmt::format("<line x1='{}' y1='{}' x2='{}' y2='{}' class='ax'/>", L, T, L, H - B);
  for (int i = 0; i <= 4; ++i) {
    const double yv = y0 + (y1 - y0) * i / 4, xv = x0 + (x1 - x0) * i / 4;
    o += fmt::format("<line x1='{}' y1='{:.1f}' x2='{}' y2='{:.1f}' class='grid'/>", L, Y(yv), W - R, Y(yv));
    o += fmt::format("<text x='{}' y='{:.1f}' class='tl' text-anchor='end'>{}</text>", L - 4, Y(yv) + 4, fmt_num(yv));
    o += fmt::format("<text x='{:.1f}' y='{}' class='tl' text-anchor='middle'>{}</text>", X(xv), H - B + 16, fmt_num(xv));
  }
  o += fmt::format("<text x='{}' y='{}' class='tl' text-anchor='middle'>{}</text>", (L + W - R) / 2, H - 6,
                   html_escape(xlabel));
  if (!st.ylabel.empty())
    o += fmt::format("<text x='12' y='{:.1f}' class='tl' text-anchor='middle' transform='rotate(-90 12 {:.1f})'>{}</text>",
                     (T + H - B) / 2, (T + H - B) / 2, html_escape(st.ylabel));
  if (st.diagonal) {
    const double lo = std::max(x0, y0), hi = std::min(x1, y1);
    if (lo < hi)
      o += fmt::format("<line x1='{:.1f}' y1='{:.1f}' x2='{:.1f}' y2='{:.1f}' stroke='#aaa' stroke-dasharray='4 4'/>",
                       X(lo), Y(lo), X(hi), Y(hi));
  }
  double lx = L + 8, ly = T + 2;
  for (auto& s : series) {
    std::string d;
    for (auto [x, y] : s.pts)
      if (std::isfinite(y)) d += fmt::format("{}{:.1f},{:.1f}", d.empty() ? "M" : " L", X(x), Y(y));
    if (!d.empty()) o += fmt::format("<path d='{}' fill='none' stroke='{}' stroke-width='2'/>", d, s.colour);
    if (st.markers && s.pts.size() <= 60)
      for (auto [x, y] : s.pts)
        if (std::isfinite(y)) o += fmt::format("<circle cx='{:.1f}' cy='{:.1f}' r='2.5' fill='{}'/>", X(x), Y(y), s.colour);
    if (st.legend_column) lx = W - R + 12;
    o += fmt::format("<rect x='{:.0f}' y='{:.0f}' width='10' height='10' fill='{}'/><text x='{:.0f}' y='{:.0f}' class='tl'>{}</text>",
                     lx, ly, s.colour, lx + 14, ly + 9, html_escape(s.name));
    if (st.legend_column) ly += 18;
    else lx += 20 + 7.0 * s.name.size();
  }
  return o + "</svg>";
}

std::string bar_chart(const std::string& title, const std::vector<std::string>& names,
                      const std::vector<std::pair<std::string, std::vector<double>>>& groups) {
  const double W = 460, H = 260, L = 40, T = 30, B = 40;
  const std::string colours[] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
  std::string o = fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' class='chart'>", W, H);
  o += fmt::format("<text x='{}' y='18' class='ct'>{}</text>", W / 2, html_escape(title));
  const double slot = (W - L - 10) / std::max<size_t>(names.size(), 1), bw = slot * 0.8 / std::max<size_t>(groups.size(), 1);
  auto Y = [&](double v) { return H - B - v * (H - T - B); };
  for (int i = 0; i <= 4; ++i)
    o += fmt::format("<line x1='{}' y1='{:.1f}' x2='{}' y2='{:.1f}' class='grid'/><text x='{}' y='{:.1f}' class='tl' "
                     "text-anchor='end'>{:.2f}</text>",
                     L, Y(i / 4.0), W - 10, Y(i / 4.0), L - 4, Y(i / 4.0) + 4, i / 4.0);
  for (size_t k = 0; k < names.size(); ++k) {
    for (size_t g = 0; g < groups.size(); ++g) {
      const double v = k < groups[g].second.size() ? groups[g].second[k] : NAN;
      const double x = L + slot * k + slot * 0.1 + bw * g;
      if (std::isfinite(v))
        o += fmt::format("<rect x='{:.1f}' y='{:.1f}' width='{:.1f}' height='{:.1f}' fill='{}'><title>{} {}: {:.3f}</title></rect>",
                         x, Y(v), bw, v * (H - T - B), colours[g % 3], html_escape(names[k]), groups[g].first, v);
    }
    o += fmt::format("<text x='{:.1f}' y='{}' class='tl' text-anchor='middle'>{}</text>", L + slot * (k + 0.5), H - B + 16,
                     html_escape(names[k]));
  }
  double lx = L + 8;
  for (size_t g = 0; g < groups.size(); ++g) {
    o += fmt::format("<rect x='{:.0f}' y='{}' width='10' height='10' fill='{}'/><text x='{:.0f}' y='{}' class='tl'>{}</text>",
                     lx, T - 8, colours[g % 3], lx + 14, T + 1, groups[g].first);
    lx += 90;
  }
  return o + "</svg>";
}

std::string confusion_table(const metrics::Report& r, const std::vector<std::string>& names) {
  std::string o = "<table class='cm'><tr><th>true \\ predicted</th>";
  for (auto& n : names) o += "<th>" + html_escape(n) + "</th>";
  o += "<th>recall</th></tr>";
  for (size_t i = 0; i < r.confusion.size(); ++i) {
    int64_t row = 0;
    for (auto c : r.confusion[i]) row += c;
    o += "<tr><th>" + html_escape(i < names.size() ? names[i] : std::to_string(i)) + "</th>";
    for (size_t j = 0; j < r.confusion[i].size(); ++j) {
      const double f = row ? static_cast<double>(r.confusion[i][j]) / row : 0;
      const int shade = static_cast<int>(255 - 170 * f);
      o += fmt::format("<td style='background:rgb({},{},255)' title='{:.1f}% of {}'>{}</td>", shade, shade, 100 * f,
                       html_escape(names[i]), r.confusion[i][j]);
    }
    o += fmt::format("<td>{}</td></tr>", std::isnan(r.recall[i]) ? "-" : fmt::format("{:.3f}", r.recall[i]));
  }
  return o + "</table>";
}

std::string fmt_metric(double v) { return std::isnan(v) ? "-" : fmt::format("{:.3f}", v); }

// The clinical table and the one-vs-rest ROC chart.
std::string clinical_section(const ClinicalReport& c, const std::vector<std::string>& names) {
  static const char* colours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  std::string o = "<h2>Clinical operating points</h2>";
  auto name = [&](size_t k) { return html_escape(k < names.size() ? names[k] : std::to_string(k)); };
  if (c.has_malignant || c.has_melanoma) {
    o += "<table class='kv'><tr><th>decision</th><th>sensitivity</th><th>specificity</th><th>AUC</th></tr>";
    if (c.has_malignant) {
      std::string mal;
      for (int k : c.malignant_classes) mal += (mal.empty() ? "" : ", ") + name(k);
      o += fmt::format("<tr><td>malignant ({}) vs benign, predicted (argmax) class</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                       mal, fmt_metric(c.malignant_sensitivity), fmt_metric(c.malignant_specificity),
                       fmt_metric(c.malignant_auc));
    }
    if (c.has_melanoma) {
      const auto row = [&](const char* what, const metrics::OperatingPoint& p, double auc) {
        return fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", what, fmt_metric(p.sensitivity),
                           fmt_metric(p.specificity), fmt_metric(auc));
      };
      o += row("melanoma, p(mel) at &ge; 80% specificity", c.melanoma_at_spec80, c.melanoma_auc);
      o += row("melanoma, p(mel) at &ge; 90% specificity", c.melanoma_at_spec90, c.melanoma_auc);
    }
    o += "</table><p>Malignant AUC scores the summed probability of the malignant classes; melanoma rows report "
         "the highest sensitivity whose specificity reaches the target, and the specificity achieved there.</p>";
  } else {
    o += "<p>The class list names no malignant (mel, bcc, akiec) and benign classes to compare.</p>";
  }
  std::vector<Series> curves;
  auto add = [&](const std::string& label, const std::string& colour, const metrics::RocCurve& r, double auc) {
    Series s{fmt::format("{} (AUC {})", label, fmt_metric(auc)), colour, {}};
    for (size_t i = 0; i < r.size(); ++i) s.pts.emplace_back(r.fpr[i], r.tpr[i]);
    curves.push_back(std::move(s));
  };
  for (size_t k = 0; k < c.roc.size(); ++k)
    add(k < names.size() ? names[k] : std::to_string(k), colours[k % 10], c.roc[k], k < c.auc.size() ? c.auc[k] : NAN);
  if (c.has_malignant) add("malignant vs benign", "#000", c.malignant_roc, c.malignant_auc);
  o += "<div class='grid2'>";
  o += line_chart("ROC curves (one vs rest)", curves, "false positive rate (1 - specificity)",
                  {.xmin = 0, .xmax = 1, .ymin = 0, .ymax = 1, .ylabel = "true positive rate (sensitivity)",
                   .legend_column = true, .diagonal = true, .markers = false, .width = 680, .height = 460});
  return o + "</div>";
}
}  // namespace

void write_report(const std::string& path, const ReportInput& in) {
  std::vector<Series> loss = {{"train loss", "#1f77b4", {}}, {"validation loss", "#d62728", {}}};
  std::vector<Series> acc = {{"val accuracy", "#2ca02c", {}}, {"val balanced accuracy", "#9467bd", {}}};
  for (auto& e : in.epochs) {
    loss[0].pts.emplace_back(e.epoch, e.train_loss);
    loss[1].pts.emplace_back(e.epoch, e.val.loss);
    acc[0].pts.emplace_back(e.epoch, e.val.accuracy);
    acc[1].pts.emplace_back(e.epoch, e.val.balanced_accuracy);
  }
  std::vector<Series> lr = {{"learning rate", "#ff7f0e", in.lr_trace}};
  const auto& f = in.final_val;
  std::string h;
  h += "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>" + html_escape(in.title) + "</title><style>";
  h += "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}"
       "h1{font-size:22px}h2{font-size:18px;margin-top:28px}.chart{border:1px solid #ddd;margin:6px;background:#fff}"
       ".ct{font-size:13px;font-weight:600;text-anchor:middle}.tl{font-size:11px;fill:#444}.ax{stroke:#444}"
       ".grid{stroke:#eee}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
       "text-align:right}.kv td:first-child{text-align:left}.grid2{display:flex;flex-wrap:wrap}"
       "figure{margin:6px;width:230px;font-size:12px}figure img{width:230px;border:1px solid #ccc}"
       ".ok{color:#2a7d2a}.bad{color:#b22}code{background:#f4f4f4;padding:2px 4px;word-break:break-all}";
  h += "</style></head><body>";
  h += "<h1>" + html_escape(in.title) + "</h1>";
  h += fmt::format(
      "<table class='kv'><tr><td>handed-out checkpoint</td><td>{}</td></tr><tr><td>best epoch</td><td>{}</td></tr>"
      "<tr><td>validation images</td><td>{}</td></tr>"
      "<tr><td>balanced accuracy</td><td>{:.4f}</td></tr><tr><td>accuracy</td><td>{:.4f}</td></tr>"
      "<tr><td>macro F1</td><td>{:.4f}</td></tr><tr><td>mean one-vs-rest AUC</td><td>{:.4f}</td></tr>"
      "<tr><td>with the training set's class prior: balanced accuracy / accuracy</td><td>{:.4f} / {:.4f}</td></tr>"
      "</table>",
      html_escape(in.selected), in.best_epoch, f.images, f.balanced_accuracy, f.accuracy, f.macro_f1, f.mean_auc,
      in.final_val_train_prior.balanced_accuracy, in.final_val_train_prior.accuracy);
  if (in.test) {
    h += fmt::format(
        "<h2>Held-out test set</h2><p>{} images set aside before the split (<code>--test-fraction</code>): no choice "
        "of the run saw them.</p><table><tr><th>checkpoint</th><th>balanced accuracy</th><th>accuracy</th>"
        "<th>accuracy, training set's prior</th></tr><tr><td>{} (handed out)</td><td>{:.4f}</td><td>{:.4f}</td>"
        "<td>{:.4f}</td></tr>",
        in.test->images, html_escape(in.selected), in.test->balanced_accuracy, in.test->accuracy,
        in.test_train_prior ? in.test_train_prior->accuracy : NAN);
    for (const auto& [name, r] : in.test_by_checkpoint)
      if (name != in.selected)
        h += fmt::format("<tr><td>{}</td><td>{:.4f}</td><td>{:.4f}</td><td></td></tr>", html_escape(name),
                         r.balanced_accuracy, r.accuracy);
    h += "</table>";
  }
  h += "<p>Checkpoint: <code>" + html_escape(in.checkpoint) + "</code></p>";
  if (!in.command.empty()) h += "<p>Command: <code>" + html_escape(in.command) + "</code></p>";
  h += "<h2>Training curves</h2><div class='grid2'>";
  h += line_chart("Loss", loss, "epoch");
  h += line_chart("Validation accuracy", acc, "epoch", {.ymin = 0.0, .ymax = 1.0});
  h += line_chart("Learning rate", lr, "epoch", {.ymin = 0.0});
  h += "</div><h2>Validation results of the handed-out checkpoint</h2>";
  h += confusion_table(f, in.classes);
  h += "<div class='grid2'>" + bar_chart("Per-class recall and precision", in.classes,
                                         {{"recall", f.recall}, {"precision", f.precision}}) + "</div>";
  if (in.clinical) h += clinical_section(*in.clinical, in.classes);
  if (!in.images.empty()) {
    const bool cam = in.images.front().method == "grad_cam";
    h += cam ? "<h2>Validation images: Grad-CAM heatmaps and predictions</h2><p>Red marks the regions of the last "
               "feature map that raised the predicted class's score most (Grad-CAM).</p><div class='grid2'>"
             : "<h2>Validation images: attention heatmaps and predictions</h2><p>Red marks where the model's last "
               "CBAM spatial attention map is highest.</p><div class='grid2'>";
    for (auto& im : in.images) {
      const int pred = metrics::decide(im.probs.data(), im.probs.size());
      const bool ok = pred == im.label;
      h += "<figure><img alt='" + html_escape(im.name) + "' src='data:image/jpeg;base64," + base64(im.jpeg) + "'>";
      h += fmt::format("<figcaption>{}<br>true <b>{}</b>, predicted <b class='{}'>{}</b> ({:.0f}%)</figcaption></figure>",
                       html_escape(im.name), html_escape(in.classes[im.label]), ok ? "ok" : "bad",
                       html_escape(in.classes[pred]), 100 * im.probs[pred]);
    }
    h += "</div>";
  }
  h += "<h2>Configuration</h2><pre style='white-space:pre-wrap;word-break:break-all;font-size:12px'>" + html_escape(in.config_json) +
       "</pre></body></html>\n";
  io::write_file_atomic(path, std::vector<uint8_t>(h.begin(), h.end()));
}

}  // namespace dermis::experiment
