#include "app/report.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hokusai/config.hpp"

namespace hokusai {
namespace {

namespace fs = std::filesystem;

// Phases of metrics.jsonl's time_ms, in the order of the log line and the stacked bars.
constexpr std::array<std::pair<const char*, const char*>, 5> kPhases{{{"compute", "compute"},
                                                                      {"tp_comm", "tp comm"},
                                                                      {"pp_wait", "pipeline wait"},
                                                                      {"dp_exposed", "dp comm not hidden"},
                                                                      {"optimizer", "optimizer"}}};
constexpr std::array<const char*, 8> kRunColours{"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                                 "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};
constexpr std::array<const char*, 5> kPhaseColours{"#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2"};

const char* run_colour(size_t i) { return kRunColours[i % kRunColours.size()]; }

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Tick step of about five ticks over [lo, hi]: 1, 2 or 5 times a power of ten.
double tick_step(double lo, double hi) {
  const double raw = (hi - lo) / 5.0;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (raw <= m * mag * 1.0000001) return m * mag;
  return 10.0 * mag;
}

std::string number(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e5 || a < 1e-3) return fmt::format("{:.0e}", v);
  if (a >= 100) return fmt::format("{:.0f}", v);
  return fmt::format("{:.4g}", v);
}

// A line or bar chart: the plot box, its linear mapping (written into the SVG) and axes with ticks.
class Chart {
 public:
  static constexpr double kWidth = 600, kHeight = 280, kLeft = 62, kRight = 14, kTop = 30, kBottom = 42;

  Chart(std::string id, std::string title, std::string x_label, std::string y_label)
      : id_(std::move(id)), title_(std::move(title)), x_label_(std::move(x_label)), y_label_(std::move(y_label)) {}

  void line(int run, const std::string& series, const std::vector<double>& xs, const std::vector<double>& ys,
            bool dashed) {
    lines_.push_back({run, series, xs, ys, dashed});
    for (size_t i = 0; i < xs.size(); ++i) fit(xs[i], ys[i]);
  }
  bool empty() const { return lines_.empty() && bars_.empty(); }

  // Stacked bars: bars[b] = (label, segments (class, value, colour)), x = bar index.
  struct Segment {
    std::string attrs;  // data-* attributes naming what the segment is
    double value;
    const char* colour;
  };
  void bar(const std::string& label, std::vector<Segment> segments) {
    double top = 0;
    for (const auto& s : segments) top += s.value;
    bars_.push_back({label, std::move(segments)});
    fit(double(bars_.size()), top);
    fit(0, 0);
  }

  std::string svg() const {
    double x0 = std::min(xmin_, 0.0), x1 = xmax_, y0 = ymin_, y1 = ymax_;  // steps from 0
    if (!bars_.empty()) {
      x0 = 0;
      x1 = double(bars_.size());
      y0 = 0;
    }
    if (!(x1 > x0)) x1 = x0 + 1;
    if (!(y1 > y0)) y1 = y0 + (y0 == 0 ? 1 : std::fabs(y0) * 0.1);
    const double step = tick_step(y0, y1);
    y0 = std::floor(y0 / step) * step;
    y1 = std::ceil(y1 / step) * step;
    const double w = kWidth - kLeft - kRight, h = kHeight - kTop - kBottom;
    const auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * w; };
    const auto py = [&](double y) { return kTop + (1.0 - (y - y0) / (y1 - y0)) * h; };
    std::string s = fmt::format(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{}\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
        "font-family=\"sans-serif\" font-size=\"11\">\n",
        id_, kWidth, kHeight, kWidth, kHeight);
    s += fmt::format("<text x=\"{}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>\n", kLeft, escape(title_));
    s += fmt::format(
        "<g class=\"plot\" data-x0=\"{:.17g}\" data-x1=\"{:.17g}\" data-y0=\"{:.17g}\" data-y1=\"{:.17g}\" "
        "data-left=\"{}\" data-top=\"{}\" data-width=\"{}\" data-height=\"{}\">\n",
        x0, x1, y0, y1, kLeft, kTop, w, h);
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fbfbfb\" stroke=\"#999\"/>\n", kLeft,
                     kTop, w, h);
    for (double y = y0; y <= y1 + step * 1e-6; y += step) {
      s += fmt::format("<line x1=\"{:.2f}\" x2=\"{:.2f}\" y1=\"{:.2f}\" y2=\"{:.2f}\" stroke=\"#e4e4e4\"/>", kLeft,
                       kLeft + w, py(y), py(y));
      s += fmt::format("<text x=\"{:.2f}\" y=\"{:.2f}\" text-anchor=\"end\">{}</text>\n", kLeft - 4, py(y) + 4,
                       number(std::fabs(y) < step * 1e-6 ? 0.0 : y));
    }
    if (bars_.empty()) {
      const double xs = tick_step(x0, x1);
      for (double x = std::ceil(x0 / xs) * xs; x <= x1 + xs * 1e-6; x += xs)
        s += fmt::format("<text x=\"{:.2f}\" y=\"{:.2f}\" text-anchor=\"middle\">{}</text>\n", px(x), kTop + h + 14,
                         number(x));
    }
    s += fmt::format("<text x=\"{:.2f}\" y=\"{:.2f}\" text-anchor=\"middle\">{}</text>\n", kLeft + w / 2,
                     kHeight - 6, escape(x_label_));
    s += fmt::format("<text transform=\"translate(13,{:.2f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     kTop + h / 2, escape(y_label_));
    for (const auto& l : lines_) {
      s += fmt::format("<polyline class=\"series\" data-run=\"{}\" data-series=\"{}\" fill=\"none\" stroke=\"{}\" "
                       "stroke-width=\"1.6\"{} points=\"",
                       l.run, l.series, run_colour(size_t(l.run)), l.dashed ? " stroke-dasharray=\"5,3\"" : "");
      for (size_t i = 0; i < l.xs.size(); ++i) s += fmt::format("{}{:.3f},{:.3f}", i ? " " : "", px(l.xs[i]), py(l.ys[i]));
      s += "\"/>\n";
      if (l.dashed)  // validation points are few: mark each
        for (size_t i = 0; i < l.xs.size(); ++i)
          s += fmt::format("<circle cx=\"{:.3f}\" cy=\"{:.3f}\" r=\"2.5\" fill=\"{}\"/>", px(l.xs[i]), py(l.ys[i]),
                           run_colour(size_t(l.run)));
    }
    const double slot = bars_.empty() ? 0 : w / double(bars_.size());
    for (size_t b = 0; b < bars_.size(); ++b) {
      double base = 0;
      const double left = kLeft + slot * (double(b) + 0.15), width = slot * 0.7;
      for (const auto& seg : bars_[b].second) {
        s += fmt::format("<rect class=\"bar\" {} data-value=\"{:.6g}\" x=\"{:.3f}\" y=\"{:.3f}\" width=\"{:.3f}\" "
                         "height=\"{:.3f}\" fill=\"{}\"/>\n",
                         seg.attrs, seg.value, left, py(base + seg.value), width, py(base) - py(base + seg.value),
                         seg.colour);
        base += seg.value;
      }
      s += fmt::format("<text x=\"{:.2f}\" y=\"{:.2f}\" text-anchor=\"middle\">{}</text>\n", left + width / 2,
                       kTop + h + 14, escape(bars_[b].first));
    }
    s += "</g>\n</svg>\n";
    return s;
  }

 private:
  void fit(double x, double y) {
    if (!std::isfinite(x) || !std::isfinite(y)) return;
    xmin_ = std::min(xmin_, x);
    xmax_ = std::max(xmax_, x);
    ymin_ = std::min(ymin_, y);
    ymax_ = std::max(ymax_, y);
  }
  struct Line {
    int run;
    std::string series;
    std::vector<double> xs, ys;
    bool dashed;
  };
  std::string id_, title_, x_label_, y_label_;
  std::vector<Line> lines_;
  std::vector<std::pair<std::string, std::vector<Segment>>> bars_;
  double xmin_ = 1e300, xmax_ = -1e300, ymin_ = 1e300, ymax_ = -1e300;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::string summary_of(const std::string& yaml_text, const std::string& path) {
  try {
    const YAML::Node c = YAML::Load(yaml_text);
    const auto get = [&](const char* a, const char* b) {
      return c[a] && c[a][b] ? c[a][b].as<std::string>() : std::string("?");
    };
    return fmt::format("{} L={} C={} heads={}, tp {} x pp {} x dp {}, micro-batch {} x {}, global batch {}",
                       get("model", "family"), get("model", "layers"), get("model", "hidden"), get("model", "heads"),
                       get("parallel", "tp"), get("parallel", "pp"), get("parallel", "dp"), get("train", "micro_batch"),
                       get("train", "seq_len"), get("train", "global_batch"));
  } catch (const YAML::Exception& e) {
    throw ConfigError(path + ": not a config written by hokusai (" + e.what() + ")");
  }
}

}  // namespace

RunMetrics read_run_metrics(const std::string& run_dir) {
  RunMetrics r;
  r.dir = run_dir;
  r.name = fs::path(run_dir).lexically_normal().filename().string();
  if (r.name.empty() || r.name == ".") r.name = fs::absolute(run_dir).lexically_normal().parent_path().filename().string();
  const std::string path = (fs::path(run_dir) / "metrics.jsonl").string();
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open it: give a run directory (logging.run_dir of a run)");
  // A resumed run logs the steps after its checkpoint again: the later record of a step wins.
  std::map<int64_t, nlohmann::json> steps, vals;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      // A run killed mid-write leaves a cut last line: everything before it is still good.
      if (in.peek() == EOF) break;
      throw ConfigError(fmt::format("{}:{}: not a metrics record ({})", path, lineno, e.what()));
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number())
      throw ConfigError(fmt::format("{}:{}: a metrics record without a step", path, lineno));
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains("loss")) steps[step] = j;
    if (j.contains("val_loss")) vals[step] = j;
    if (j.contains("memory_accounted_mib")) {
      r.memory_accounted_mib = j.value("memory_accounted_mib", 0.0);
      r.peak_rss_mib = j.value("peak_rss_mib", 0.0);
    }
  }
  if (steps.empty()) throw ConfigError(path + ": no step records (the run logged no step yet)");
  std::vector<std::vector<double>> sums(kPhases.size());
  std::vector<int> counts(kPhases.size(), 0);
  const auto num = [](const nlohmann::json& j, const char* key) {
    return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
  };
  for (const auto& [step, j] : steps) {
    r.step.push_back(double(step));
    r.loss.push_back(num(j, "loss"));
    r.lr.push_back(num(j, "lr"));
    r.tokens_per_s.push_back(num(j, "tokens_per_s"));
    r.mfu.push_back(100.0 * num(j, "mfu"));
    if (!j.contains("time_ms") || !j["time_ms"].is_object()) continue;
    for (size_t p = 0; p < kPhases.size(); ++p) {
      const auto it = j["time_ms"].find(kPhases[p].first);
      if (it == j["time_ms"].end() || !it->is_array()) continue;
      if (sums[p].size() < it->size()) sums[p].resize(it->size(), 0.0);
      for (size_t k = 0; k < it->size(); ++k) sums[p][k] += (*it)[k].is_number() ? (*it)[k].get<double>() : 0.0;
      ++counts[p];
    }
  }
  for (const auto& [step, j] : vals) {
    r.val_step.push_back(double(step));
    r.val_loss.push_back(num(j, "val_loss"));
  }
  for (size_t p = 0; p < kPhases.size(); ++p) {
    std::vector<double> mean = sums[p];
    for (double& v : mean) v /= std::max(counts[p], 1);
    r.phase_ms.emplace_back(kPhases[p].first, std::move(mean));
  }
  const std::string cfg_path = (fs::path(run_dir) / "config.yaml").string();
  std::ifstream cfg(cfg_path);
  if (cfg) {
    std::stringstream ss;
    ss << cfg.rdbuf();
    r.config_yaml = ss.str();
    r.config_summary = summary_of(r.config_yaml, cfg_path);
  } else {
    r.config_summary = "(no config.yaml)";
  }
  return r;
}

std::string render_report(const std::vector<RunMetrics>& runs) {
  Chart loss("loss", "Loss (solid: training, dashed: validation)", "step", "loss");
  Chart lr("lr", "Learning rate", "step", "learning rate");
  Chart tps("tokens", "Throughput", "step", "tokens/s");
  Chart mfu("mfu", "Model FLOP utilisation", "step", "MFU (%)");
  Chart phases("phases", "Time per step by phase, per rank (mean over logged steps)", "run / rank", "ms per step");
  Chart memory("memory", "Memory of rank 0: accounted at start vs peak RSS", "run", "MiB");
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunMetrics& r = runs[i];
    const int id = int(i);
    loss.line(id, "loss", r.step, r.loss, false);
    if (!r.val_step.empty()) loss.line(id, "val_loss", r.val_step, r.val_loss, true);
    lr.line(id, "lr", r.step, r.lr, false);
    tps.line(id, "tokens_per_s", r.step, r.tokens_per_s, false);
    mfu.line(id, "mfu", r.step, r.mfu, false);
    size_t ranks = 0;
    for (const auto& [name, v] : r.phase_ms) ranks = std::max(ranks, v.size());
    for (size_t k = 0; k < ranks; ++k) {
      std::vector<Chart::Segment> segs;
      for (size_t p = 0; p < r.phase_ms.size(); ++p) {
        const auto& v = r.phase_ms[p].second;
        segs.push_back({fmt::format("data-run=\"{}\" data-rank=\"{}\" data-phase=\"{}\"", i, k, r.phase_ms[p].first),
                        k < v.size() ? v[k] : 0.0, kPhaseColours[p]});
      }
      phases.bar(fmt::format("{}/{}", i + 1, k), std::move(segs));
    }
    if (r.peak_rss_mib > 0) {
      memory.bar(fmt::format("{} accounted", i + 1),
                 {{fmt::format("data-run=\"{}\" data-memory=\"accounted\"", i), r.memory_accounted_mib, "#9ecae1"}});
      memory.bar(fmt::format("{} peak RSS", i + 1),
                 {{fmt::format("data-run=\"{}\" data-memory=\"peak_rss\"", i), r.peak_rss_mib, "#3182bd"}});
    }
  }
  std::string h = R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hokusai report</title>
<style>
body { font-family: sans-serif; margin: 20px; color: #222; }
table { border-collapse: collapse; margin-bottom: 14px; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.swatch { display: inline-block; width: 14px; height: 10px; margin-right: 4px; }
pre { background: #f6f6f6; padding: 8px; font-size: 11px; max-height: 320px; overflow: auto; }
</style></head><body>
<h1>hokusai report</h1>
<table><tr><th>run</th><th>directory</th><th>model and layout</th><th>steps</th><th>final loss</th><th>final val loss</th>
<th>median tokens/s</th><th>median MFU</th><th>memory accounted / peak RSS (rank 0)</th></tr>
)";
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunMetrics& r = runs[i];
    h += fmt::format("<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{} {}</td><td>{}</td><td>{}</td>"
                     "<td>{}</td><td>{:.4f}</td><td>{}</td><td>{:.0f}</td><td>{:.1f}%</td><td>{}</td></tr>\n",
                     run_colour(i), i + 1, escape(r.name), escape(r.dir), escape(r.config_summary),
                     r.step.empty() ? 0 : int64_t(r.step.back()), r.loss.empty() ? 0.0 : r.loss.back(),
                     r.val_loss.empty() ? std::string("-") : fmt::format("{:.4f}", r.val_loss.back()),
                     median(r.tokens_per_s), median(r.mfu),
                     r.peak_rss_mib > 0 ? fmt::format("{:.1f} / {:.1f} MiB ({:+.0f}%)", r.memory_accounted_mib,
                                                      r.peak_rss_mib,
                                                      100.0 * (r.peak_rss_mib - r.memory_accounted_mib) /
                                                          std::max(r.memory_accounted_mib, 1e-9))
                                        : std::string("- (the run has not ended)"));
  }
  h += "</table>\n<p>Runs: ";
  for (size_t i = 0; i < runs.size(); ++i)
    h += fmt::format("<span class=\"swatch\" style=\"background:{}\"></span>{} {} &nbsp; ", run_colour(i), i + 1,
                     escape(runs[i].name));
  h += "<br>Phases: ";
  for (size_t p = 0; p < kPhases.size(); ++p)
    h += fmt::format("<span class=\"swatch\" style=\"background:{}\"></span>{} &nbsp; ", kPhaseColours[p],
                     kPhases[p].second);
  h += "</p>\n<div class=\"charts\">\n";
  for (const Chart* c : {&loss, &lr, &tps, &mfu, &phases, &memory})
    if (!c->empty()) h += c->svg();
  h += "</div>\n";
  for (size_t i = 0; i < runs.size(); ++i)
    h += fmt::format("<details><summary>config of run {} ({})</summary><pre>{}</pre></details>\n", i + 1,
                     escape(runs[i].name), escape(runs[i].config_yaml));
  h += "<p style=\"font-size:11px;color:#777\">Written by <code>hokusai report</code> from each run's metrics.jsonl "
       "(rank 0's log steps) and config.yaml.</p>\n</body></html>\n";
  return h;
}

}  // namespace hokusai
