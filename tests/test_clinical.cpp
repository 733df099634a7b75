// Clinical metrics: exact ROC curves against a naive reference (ties, perfect and inverted
// scorers, thinning), sensitivity at a required specificity against brute force, the clinical
// report on a hand-computed HAM10000 example, its JSON, and its section in report.html.
#define BOOST_TEST_MODULE clinical
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "framework/io/json.h"
#include "framework/metrics.h"
#include "testing.h"
#include "tools/experiment/clinical.h"
#include "tools/experiment/report.h"

using namespace dermis;
using testing::expect_error;

namespace {
const double kInf = std::numeric_limits<double>::infinity();
const std::vector<std::string> kHam = {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"};

// Random scores on a coarse grid (levels distinct values), so that many are tied.
void tied_scores(std::mt19937& rng, size_t n, int levels, double p_pos, std::vector<float>& s, std::vector<bool>& pos) {
  std::uniform_int_distribution<int> level(0, levels - 1);
  std::bernoulli_distribution b(p_pos);
  s.resize(n), pos.resize(n);
  for (size_t i = 0; i < n; ++i) {
    pos[i] = b(rng);
    s[i] = static_cast<float>(level(rng) + (pos[i] ? levels / 3 : 0)) / levels;
  }
}

// O(n^2) ROC: every distinct score (and +inf) as a threshold, counting by a full scan each.
metrics::RocCurve naive_roc(const std::vector<float>& s, const std::vector<bool>& pos) {
  std::vector<double> t = {kInf};
  for (float x : s) t.push_back(x);
  std::sort(t.begin() + 1, t.end(), std::greater<>());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  int64_t P = 0, N = 0;
  for (bool p : pos) (p ? P : N)++;
  metrics::RocCurve c;
  for (double th : t) {
    int64_t tp = 0, fp = 0;
    for (size_t i = 0; i < s.size(); ++i)
      if (s[i] >= th) (pos[i] ? tp : fp)++;
    c.threshold.push_back(th), c.fpr.push_back(static_cast<double>(fp) / N), c.tpr.push_back(static_cast<double>(tp) / P);
  }
  return c;
}

// Brute force: every score value (and +inf) as a threshold.
metrics::OperatingPoint naive_sens_at_spec(const std::vector<float>& s, const std::vector<bool>& pos, double min_spec) {
  int64_t P = 0, N = 0;
  for (bool p : pos) (p ? P : N)++;
  std::vector<double> t = {kInf};
  for (float x : s) t.push_back(x);
  metrics::OperatingPoint best;
  for (double th : t) {
    int64_t tp = 0, tn = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (pos[i] && s[i] >= th) ++tp;
      if (!pos[i] && s[i] < th) ++tn;
    }
    const double sens = static_cast<double>(tp) / P, spec = static_cast<double>(tn) / N;
    if (spec < min_spec) continue;
    if (std::isnan(best.sensitivity) || sens > best.sensitivity ||
        (sens == best.sensitivity && spec > best.specificity) ||
        (sens == best.sensitivity && spec == best.specificity && th > best.threshold))
      best = {th, sens, spec};
  }
  return best;
}

bool contains(const metrics::RocCurve& c, double fpr, double tpr) {
  for (size_t i = 0; i < c.size(); ++i)
    if (c.fpr[i] == fpr && c.tpr[i] == tpr) return true;
  return false;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The hand-made HAM10000 example: 10 images, probabilities chosen so that every count is obvious.
struct Example {
  std::vector<int> labels;
  std::vector<float> probs;
  void add(int label, std::vector<std::pair<int, float>> p) {
    labels.push_back(label);
    std::vector<float> row(7, 0.f);
    for (auto [k, v] : p) row[k] = v;
    probs.insert(probs.end(), row.begin(), row.end());
  }
};
enum { akiec, bcc, bkl, df, mel, nv, vasc };
Example ham_example() {
  Example e;
  e.add(mel, {{mel, 0.7f}, {nv, 0.3f}});                 // malignant, predicted malignant
  e.add(mel, {{mel, 0.4f}, {nv, 0.6f}});                 // malignant, predicted benign
  e.add(bcc, {{akiec, 0.5f}, {bcc, 0.3f}, {nv, 0.2f}});  // malignant, predicted malignant (other class)
  e.add(akiec, {{bkl, 0.6f}, {akiec, 0.4f}});            // malignant, predicted benign
  e.add(nv, {{nv, 0.9f}, {mel, 0.1f}});                  // benign, predicted benign
  e.add(nv, {{mel, 0.55f}, {nv, 0.45f}});                // benign, predicted malignant
  e.add(bkl, {{bkl, 0.8f}, {mel, 0.2f}});
  e.add(df, {{df, 1.0f}});
  e.add(vasc, {{vasc, 0.7f}, {bcc, 0.3f}});
  e.add(nv, {{nv, 1.0f}});
  return e;
}
}  // namespace

BOOST_AUTO_TEST_CASE(roc_curve_matches_naive_reference_with_ties) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<float> s;
    std::vector<bool> pos;
    tied_scores(rng, 5 + trial * 7, 2 + trial % 9, 0.1 + 0.02 * trial, s, pos);
    const int P = static_cast<int>(std::count(pos.begin(), pos.end(), true));
    if (P == 0 || P == static_cast<int>(pos.size())) continue;
    const metrics::RocCurve c = metrics::roc_curve(s, pos), ref = naive_roc(s, pos);
    BOOST_TEST(c.fpr == ref.fpr);
    BOOST_TEST(c.tpr == ref.tpr);
    BOOST_TEST(c.threshold == ref.threshold);
    BOOST_TEST(c.threshold.front() == kInf);
    BOOST_TEST(c.fpr.front() == 0.0);
    BOOST_TEST(c.tpr.front() == 0.0);
    BOOST_TEST(c.fpr.back() == 1.0);
    BOOST_TEST(c.tpr.back() == 1.0);
    BOOST_TEST(std::is_sorted(c.threshold.rbegin(), c.threshold.rend()));
    BOOST_TEST(metrics::roc_curve_area(c) == metrics::roc_auc(s, pos), boost::test_tools::tolerance(1e-12));
  }
}

BOOST_AUTO_TEST_CASE(roc_curve_perfect_inverted_and_undefined) {
  const std::vector<float> s = {0.9f, 0.8f, 0.7f, 0.3f, 0.2f, 0.1f};
  const std::vector<bool> perfect = {true, true, true, false, false, false};
  const std::vector<bool> inverted = {false, false, false, true, true, true};
  const auto c = metrics::roc_curve(s, perfect);
  BOOST_TEST(contains(c, 0.0, 1.0));
  BOOST_TEST(metrics::roc_curve_area(c) == 1.0);
  BOOST_TEST(metrics::roc_auc(s, perfect) == 1.0);
  const auto d = metrics::roc_curve(s, inverted);
  BOOST_TEST(contains(d, 1.0, 0.0));
  BOOST_TEST(metrics::roc_curve_area(d) == 0.0);
  // One tie across all images: a single diagonal step.
  const auto t = metrics::roc_curve({0.5f, 0.5f, 0.5f}, {true, false, true});
  BOOST_TEST(t.size() == 2u);
  BOOST_TEST(metrics::roc_curve_area(t) == 0.5);
  BOOST_TEST(metrics::roc_curve(s, std::vector<bool>(6, true)).empty());
  BOOST_TEST(metrics::roc_curve(s, std::vector<bool>(6, false)).empty());
  BOOST_TEST(metrics::roc_curve({}, {}).empty());
  BOOST_TEST(std::isnan(metrics::roc_curve_area(metrics::RocCurve{})));
  expect_error([&] { metrics::roc_curve(s, perfect, 1); }, {"max_points", "at least 2"});
  expect_error([&] { metrics::roc_curve(s, {true}); }, {"6 scores", "1 labels"});
}

BOOST_AUTO_TEST_CASE(roc_curve_thinning_keeps_end_points_and_shape) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> s(3000);
  std::vector<bool> pos(s.size());
  for (size_t i = 0; i < s.size(); ++i) pos[i] = i % 3 == 0, s[i] = g(rng) + (pos[i] ? 1.f : 0.f);
  const auto full = metrics::roc_curve(s, pos);
  BOOST_TEST(full.size() > 1000u);
  for (int m : {2, 3, 10, 101, 500}) {
    const auto c = metrics::roc_curve(s, pos, m);
    BOOST_TEST(c.size() <= static_cast<size_t>(m));
    BOOST_TEST(c.size() >= 2u);
    BOOST_TEST(c.fpr.front() == 0.0);
    BOOST_TEST(c.tpr.front() == 0.0);
    BOOST_TEST(c.threshold.front() == kInf);
    BOOST_TEST(c.fpr.back() == 1.0);
    BOOST_TEST(c.tpr.back() == 1.0);
    BOOST_TEST(std::is_sorted(c.fpr.begin(), c.fpr.end()));
    BOOST_TEST(std::is_sorted(c.tpr.begin(), c.tpr.end()));
    for (size_t i = 0; i < c.size(); ++i) BOOST_TEST(contains(full, c.fpr[i], c.tpr[i]));  // points of the curve
    if (m >= 10) {  // the area under the thinned curve stays close: its shape is kept
      const double tol = m >= 101 ? 0.002 : 0.03;
      BOOST_TEST(metrics::roc_curve_area(c) == metrics::roc_auc(s, pos), boost::test_tools::tolerance(tol));
      BOOST_TEST(c.size() == static_cast<size_t>(m));  // a curve with many corners uses the whole budget
    }
  }
  // A perfect scorer's curve is three corners; thinning drops the points on its straight legs only.
  std::vector<float> ps(200);
  std::vector<bool> pp(200);
  for (int i = 0; i < 200; ++i) ps[i] = static_cast<float>(i), pp[i] = i >= 100;
  const auto corners = metrics::roc_curve(ps, pp, 10);
  BOOST_TEST(corners.size() == 3u);
  BOOST_TEST(contains(corners, 0.0, 1.0));
  BOOST_TEST(metrics::roc_curve_area(corners) == 1.0);
  // Short curves come back unchanged.
  const auto short_curve = metrics::roc_curve({0.1f, 0.4f, 0.35f, 0.8f}, {false, false, true, true});
  const auto same = metrics::thin_roc_curve(short_curve, 10);
  BOOST_TEST(same.fpr == short_curve.fpr);
  BOOST_TEST(same.tpr == short_curve.tpr);
}

BOOST_AUTO_TEST_CASE(sensitivity_at_specificity_matches_brute_force) {
  std::mt19937 rng(3);
  int checked = 0;
  for (int trial = 0; trial < 60; ++trial) {
    std::vector<float> s;
    std::vector<bool> pos;
    tied_scores(rng, 4 + trial * 3, 2 + trial % 12, 0.15 + 0.01 * trial, s, pos);
    const auto P = std::count(pos.begin(), pos.end(), true);
    if (P == 0 || P == static_cast<long>(pos.size())) continue;
    for (double spec : {0.0, 0.5, 0.8, 0.9, 0.95, 1.0}) {
      const auto got = metrics::sensitivity_at_specificity(s, pos, spec), ref = naive_sens_at_spec(s, pos, spec);
      BOOST_TEST(got.threshold == ref.threshold, "trial " << trial << " min_spec " << spec);
      BOOST_TEST(got.sensitivity == ref.sensitivity, "trial " << trial << " min_spec " << spec);
      BOOST_TEST(got.specificity == ref.specificity, "trial " << trial << " min_spec " << spec);
      BOOST_TEST(got.specificity >= spec);
      ++checked;
    }
  }
  BOOST_TEST(checked > 200);
  // The decision rule is score >= threshold: at 100% specificity with a positive on top.
  const auto top = metrics::sensitivity_at_specificity({0.9f, 0.5f, 0.4f, 0.1f}, {true, false, true, false}, 1.0);
  BOOST_TEST(top.threshold == 0.9f);
  BOOST_TEST(top.sensitivity == 0.5);
  BOOST_TEST(top.specificity == 1.0);
  const auto none = metrics::sensitivity_at_specificity({0.9f, 0.1f}, {true, true}, 0.8);
  BOOST_TEST((std::isnan(none.threshold) && std::isnan(none.sensitivity) && std::isnan(none.specificity)));
  expect_error([] { metrics::sensitivity_at_specificity({0.5f}, {true}, 1.5); }, {"min_specificity", "[0, 1]"});
}

BOOST_AUTO_TEST_CASE(clinical_report_on_hand_computed_example) {
  const Example e = ham_example();
  const auto r = experiment::clinical_report(e.labels, e.probs, kHam, 0);
  BOOST_TEST(r.has_malignant);
  BOOST_TEST(r.malignant_classes == (std::vector<int>{akiec, bcc, mel}));
  // Malignant images 1-4, predicted malignant: 1 and 3. Benign images 5-10, predicted benign: all but 6.
  BOOST_TEST(r.malignant_sensitivity == 2.0 / 4.0);
  BOOST_TEST(r.malignant_specificity == 5.0 / 6.0);
  // Summed malignant probability: positives 0.7 0.4 0.8 0.4, negatives 0.1 0.55 0.2 0 0.3 0;
  // 0.7 and 0.8 beat all 6 negatives, each 0.4 beats 5: 22 of 24 pairs.
  BOOST_TEST(r.malignant_auc == 22.0 / 24.0);
  BOOST_TEST(metrics::roc_curve_area(r.malignant_roc) == 22.0 / 24.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.has_melanoma);
  // p(mel): positives 0.7 and 0.4; negatives 0 0 0.1 0.55 0.2 0 0 0 -> 0.7 beats 8, 0.4 beats 7.
  BOOST_TEST(r.melanoma_auc == 15.0 / 16.0);
  // At >= 80% specificity: threshold 0.4 catches both melanomas with one false positive (7/8).
  BOOST_TEST(r.melanoma_at_spec80.threshold == 0.4f);
  BOOST_TEST(r.melanoma_at_spec80.sensitivity == 1.0);
  BOOST_TEST(r.melanoma_at_spec80.specificity == 7.0 / 8.0);
  // At >= 90%: only threshold 0.7 (one melanoma, no false positive).
  BOOST_TEST(r.melanoma_at_spec90.threshold == 0.7f);
  BOOST_TEST(r.melanoma_at_spec90.sensitivity == 0.5);
  BOOST_TEST(r.melanoma_at_spec90.specificity == 1.0);
  BOOST_TEST(r.roc.size() == 7u);
  BOOST_TEST(r.auc.size() == 7u);
  BOOST_TEST(r.auc[df] == 1.0);
  BOOST_TEST(r.auc[mel] == r.melanoma_auc);
  for (int k = 0; k < 7; ++k) {
    BOOST_TEST(!r.roc[k].empty());
    BOOST_TEST(metrics::roc_curve_area(r.roc[k]) == r.auc[k], boost::test_tools::tolerance(1e-12));
  }
  // ISIC's upper-case names count too.
  std::vector<std::string> upper = {"AKIEC", "BCC", "BKL", "DF", "MEL", "NV", "VASC"};
  const auto u = experiment::clinical_report(e.labels, e.probs, upper);
  BOOST_TEST(u.malignant_sensitivity == r.malignant_sensitivity);
  BOOST_TEST(u.has_melanoma);
  expect_error([&] { experiment::clinical_report(e.labels, {0.5f}, kHam); }, {"probabilities", "10 images"});
  expect_error([&] { experiment::clinical_report({9}, std::vector<float>(7, 0.1f), kHam); }, {"label 9"});
}

BOOST_AUTO_TEST_CASE(clinical_report_without_malignant_classes) {
  const std::vector<std::string> classes = {"cat", "dog", "bird"};
  const std::vector<int> labels = {0, 1, 2, 0};
  const std::vector<float> probs = {0.8f, 0.1f, 0.1f, 0.2f, 0.7f, 0.1f, 0.3f, 0.3f, 0.4f, 0.5f, 0.4f, 0.1f};
  const auto r = experiment::clinical_report(labels, probs, classes);
  BOOST_TEST(!r.has_malignant);
  BOOST_TEST(!r.has_melanoma);
  BOOST_TEST(std::isnan(r.malignant_sensitivity));
  BOOST_TEST(r.roc.size() == 3u);
  const json::Object o = r.to_json(classes);
  BOOST_TEST(o.count("roc") == 1u);
  BOOST_TEST(o.count("malignant_vs_benign") == 0u);
  BOOST_TEST(o.count("malignant_classes") == 0u);
  BOOST_TEST(o.count("melanoma") == 0u);
  // Only malignant classes: nothing benign to compare against.
  const auto all_malignant = experiment::clinical_report({0, 1}, {0.9f, 0.1f, 0.2f, 0.8f}, {"mel", "bcc"});
  BOOST_TEST(!all_malignant.has_malignant);
  BOOST_TEST(all_malignant.has_melanoma);
}

BOOST_AUTO_TEST_CASE(clinical_json_has_keys_and_writes_nan_as_null) {
  Example e = ham_example();
  // Without any df or mel image: df's curve and the melanoma figures are undefined.
  Example no_df;
  for (size_t i = 0; i < e.labels.size(); ++i)
    if (e.labels[i] != df && e.labels[i] != mel)
      no_df.labels.push_back(e.labels[i]), no_df.probs.insert(no_df.probs.end(), e.probs.begin() + i * 7, e.probs.begin() + (i + 1) * 7);
  const auto r = experiment::clinical_report(no_df.labels, no_df.probs, kHam);
  BOOST_TEST(r.roc[df].empty());
  BOOST_TEST(std::isnan(r.melanoma_auc));
  const std::string text = json::dump(json::Value(r.to_json(kHam)));
  BOOST_TEST_MESSAGE(text);
  const json::Value v = json::parse(text);
  const auto& cls = v.at("malignant_classes").array();
  BOOST_TEST(cls.size() == 3u);
  BOOST_TEST(cls[0].string() == "akiec");
  BOOST_TEST(cls[1].string() == "bcc");
  BOOST_TEST(cls[2].string() == "mel");
  const auto& mvb = v.at("malignant_vs_benign");
  for (const char* k : {"sensitivity", "specificity", "auc"}) BOOST_TEST(mvb.at(k).is_number(), k);
  BOOST_TEST(mvb.at("roc").at("fpr").array().size() == mvb.at("roc").at("tpr").array().size());
  BOOST_TEST(mvb.at("roc").at("fpr").array().front().number() == 0.0);
  const auto& m = v.at("melanoma");
  BOOST_TEST(m.at("auc").is_null());
  for (const char* k : {"sensitivity_at_specificity_0.80", "sensitivity_at_specificity_0.90"})
    for (const char* f : {"sensitivity", "specificity", "threshold"}) BOOST_TEST(m.at(k).at(f).is_null(), k << "." << f);
  for (const auto& name : kHam) {
    const auto& c = v.at("roc").at(name);
    BOOST_TEST(c.at("fpr").is_array());
    BOOST_TEST(c.at("tpr").is_array());
    BOOST_TEST(c.find("auc") != nullptr);
  }
  BOOST_TEST(v.at("roc").at("df").at("auc").is_null());
  BOOST_TEST(v.at("roc").at("df").at("fpr").array().empty());
  BOOST_TEST(v.at("roc").at("nv").at("auc").is_number());
  BOOST_TEST(text.find("\"auc\":null") != std::string::npos);

  // Full curves are thinned to at most 101 points in the JSON.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<int> labels(2000);
  std::vector<float> probs(labels.size() * 7);
  for (size_t i = 0; i < labels.size(); ++i) {
    labels[i] = static_cast<int>(i % 7);
    float sum = 0;
    for (int k = 0; k < 7; ++k) sum += probs[i * 7 + k] = u(rng) + (k == labels[i] ? 0.5f : 0.f);
    for (int k = 0; k < 7; ++k) probs[i * 7 + k] /= sum;
  }
  const auto big = experiment::clinical_report(labels, probs, kHam, 0);
  BOOST_TEST(big.roc[nv].size() > 101u);
  const json::Value bj = json::parse(json::dump(json::Value(big.to_json(kHam))));
  BOOST_TEST(bj.at("roc").at("nv").at("fpr").array().size() <= 101u);
  BOOST_TEST(bj.at("malignant_vs_benign").at("roc").at("tpr").array().size() <= 101u);
}

BOOST_AUTO_TEST_CASE(report_html_has_clinical_section) {
  testing::TempDir dir;
  const Example e = ham_example();
  experiment::ReportInput in;
  in.title = "clinical test";
  in.classes = kHam;
  in.final_val = metrics::evaluate(e.labels, e.probs, 7);
  in.best_epoch = 1;
  const std::string plain = dir / "plain.html";
  experiment::write_report(plain, in);
  BOOST_TEST(read_text(plain).find("Clinical operating points") == std::string::npos);

  in.clinical = experiment::clinical_report(e.labels, e.probs, kHam);
  const std::string path = dir / "report.html";
  experiment::write_report(path, in);
  const std::string h = read_text(path);
  const size_t at = h.find("<h2>Clinical operating points</h2>");
  BOOST_TEST(at != std::string::npos);
  BOOST_TEST(h.find("ROC curves (one vs rest)", at) != std::string::npos);
  BOOST_TEST(h.find("<svg", at) != std::string::npos);
  BOOST_TEST(h.find("false positive rate (1 - specificity)", at) != std::string::npos);
  BOOST_TEST(h.find("true positive rate (sensitivity)", at) != std::string::npos);
  BOOST_TEST(h.find("mel (AUC 0.938)", at) != std::string::npos);
  BOOST_TEST(h.find("malignant vs benign (AUC 0.917)", at) != std::string::npos);
  BOOST_TEST(h.find("0.833", at) != std::string::npos);  // malignant specificity 5/6
  BOOST_TEST(h.find("0.875", at) != std::string::npos);  // melanoma specificity achieved at >= 80%
  BOOST_TEST(h.find("src='http") == std::string::npos);  // self-contained
  BOOST_TEST(h.find("href='http") == std::string::npos);
}
