// The report's charts read back as the metrics they were drawn from: every point of every line and
// every bar, through the linear mapping each chart writes into its SVG.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>

#include "app/report.hpp"
#include "hokusai/config.hpp"
#include "scratch.hpp"

namespace hokusai {
namespace {

struct Mapping {
  double x0, x1, y0, y1, left, top, width, height;
  double x(double px) const { return x0 + (px - left) / width * (x1 - x0); }
  double y(double py) const { return y0 + (1.0 - (py - top) / height) * (y1 - y0); }
  double value(double height_px) const { return height_px / height * (y1 - y0); }
};

std::string attr(const std::string& tag, const std::string& name) {
  std::smatch m;
  const std::regex re(" " + name + "=\"([^\"]*)\"");
  if (!std::regex_search(tag, m, re)) return "";
  return m[1];
}

// The <svg id=ID> element's text.
std::string chart(const std::string& html, const std::string& id) {
  const size_t at = html.find("<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  return html.substr(at, html.find("</svg>", at) - at);
}

Mapping mapping(const std::string& svg) {
  const size_t at = svg.find("<g class=\"plot\"");
  const std::string tag = svg.substr(at, svg.find('>', at) - at);
  return {std::stod(attr(tag, "data-x0")),   std::stod(attr(tag, "data-x1")),  std::stod(attr(tag, "data-y0")),
          std::stod(attr(tag, "data-y1")),   std::stod(attr(tag, "data-left")), std::stod(attr(tag, "data-top")),
          std::stod(attr(tag, "data-width")), std::stod(attr(tag, "data-height"))};
}

// Points of the polyline (run, series), read back in data coordinates.
std::vector<std::pair<double, double>> points(const std::string& svg, int run, const std::string& series) {
  const Mapping m = mapping(svg);
  const std::string key = "data-run=\"" + std::to_string(run) + "\" data-series=\"" + series + "\"";
  const size_t at = svg.find("<polyline class=\"series\" " + key);
  if (at == std::string::npos) return {};
  const std::string tag = svg.substr(at, svg.find("/>", at) - at);
  std::vector<std::pair<double, double>> out;
  std::istringstream in(attr(tag, "points"));
  std::string xy;
  while (in >> xy) {
    const size_t comma = xy.find(',');
    out.emplace_back(m.x(std::stod(xy.substr(0, comma))), m.y(std::stod(xy.substr(comma + 1))));
  }
  return out;
}

// Bars: data-* key -> value read back from the rectangle's height.
std::map<std::string, double> bars(const std::string& svg) {
  const Mapping m = mapping(svg);
  std::map<std::string, double> out;
  const std::regex rect("<rect class=\"bar\" ([^>]*)/>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), rect); it != std::sregex_iterator(); ++it) {
    const std::string tag = " " + (*it)[1].str();
    const std::string key = attr(tag, "data-run") + "/" + attr(tag, "data-rank") + attr(tag, "data-phase") +
                            attr(tag, "data-memory");
    out[key] = m.value(std::stod(attr(tag, "height")));
  }
  return out;
}

void write(const std::filesystem::path& p, const std::string& text) { std::ofstream(p) << text; }

std::filesystem::path sample_run(const std::string& name) {
  const auto dir = testing::scratch_dir("report", name);
  // Two ranks; step 20 logged twice (a run resumed from step 10 logs 20 again: the later one counts).
  write(dir / "metrics.jsonl",
        R"({"step":10,"loss":4.5,"lr":1.0e-04,"grad_norm":3.0,"tokens_per_s":8000.0,"step_ms":250,"mfu":0.40,"time_ms":{"compute":[200.0,180.0],"tp_comm":[0.0,0.0],"pp_wait":[0.0,0.0],"dp_exposed":[10.0,30.0],"optimizer":[3.0,5.0]}}
{"step":10,"val_loss":4.25}
{"step":20,"loss":9.9,"lr":2.0e-04,"tokens_per_s":1.0,"mfu":0.01,"time_ms":{"compute":[0,0],"tp_comm":[0,0],"pp_wait":[0,0],"dp_exposed":[0,0],"optimizer":[0,0]}}
{"step":10,"checkpoint_blocked_s":0.2,"checkpoint_write_s":0.2}
{"step":20,"loss":3.25,"lr":2.0e-04,"grad_norm":2.0,"tokens_per_s":8400.0,"step_ms":240,"mfu":0.42,"time_ms":{"compute":[220.0,200.0],"tp_comm":[0.0,0.0],"pp_wait":[0.0,0.0],"dp_exposed":[20.0,10.0],"optimizer":[5.0,7.0]}}
{"step":30,"loss":2.75,"lr":3.0e-04,"tokens_per_s":8200.0,"mfu":0.41,"time_ms":{"compute":[210.0,190.0],"tp_comm":[0.0,0.0],"pp_wait":[0.0,0.0],"dp_exposed":[0.0,20.0],"optimizer":[4.0,6.0]}}
{"step":30,"val_loss":2.5}
{"step":30,"memory_accounted_mib":100.5,"peak_rss_mib":134.25}
)");
  write(dir / "config.yaml", "model:\n  family: llama\n  layers: 4\n  hidden: 256\n  heads: 8\nparallel:\n  tp: 1\n  pp: 1\n  dp: 2\n");
  return dir;
}

TEST(Report, ChartsReadBackAsTheMetrics) {
  const RunMetrics a = read_run_metrics(sample_run("a").string());
  RunMetrics b = a;  // a second run, its loss shifted, overlaid
  for (double& l : b.loss) l += 1.0;
  b.name = "b";
  const std::string html = render_report({a, b});

  const std::vector<double> steps{10, 20, 30}, loss{4.5, 3.25, 2.75}, lr{1e-4, 2e-4, 3e-4}, tps{8000, 8400, 8200},
      mfu{40, 42, 41};
  const auto check = [&](const std::string& id, int run, const std::string& series, const std::vector<double>& xs,
                         const std::vector<double>& ys) {
    const std::string svg = chart(html, id);
    ASSERT_FALSE(svg.empty()) << "no chart " << id;
    const Mapping m = mapping(svg);
    const auto p = points(svg, run, series);
    ASSERT_EQ(p.size(), xs.size()) << id << " run " << run << " " << series;
    for (size_t i = 0; i < p.size(); ++i) {
      EXPECT_NEAR(p[i].first, xs[i], 1e-3 * (m.x1 - m.x0)) << id << " point " << i;
      EXPECT_NEAR(p[i].second, ys[i], 1e-3 * (m.y1 - m.y0)) << id << " point " << i;
    }
  };
  check("loss", 0, "loss", steps, loss);
  check("loss", 1, "loss", steps, {5.5, 4.25, 3.75});
  check("loss", 0, "val_loss", {10, 30}, {4.25, 2.5});
  check("lr", 0, "lr", steps, lr);
  check("tokens", 0, "tokens_per_s", steps, tps);
  check("mfu", 1, "mfu", steps, mfu);

  // Per rank, the mean over the three logged steps (the replaced step 20 not counted).
  const auto phase = bars(chart(html, "phases"));
  const Mapping pm = mapping(chart(html, "phases"));
  const double tol = 1e-3 * (pm.y1 - pm.y0);
  EXPECT_NEAR(phase.at("0/0compute"), 210.0, tol);
  EXPECT_NEAR(phase.at("0/1compute"), 190.0, tol);
  EXPECT_NEAR(phase.at("0/0dp_exposed"), 10.0, tol);
  EXPECT_NEAR(phase.at("0/1dp_exposed"), 20.0, tol);
  EXPECT_NEAR(phase.at("1/1optimizer"), 6.0, tol);
  EXPECT_NEAR(phase.at("1/0tp_comm"), 0.0, tol);
  const auto mem = bars(chart(html, "memory"));
  EXPECT_NEAR(mem.at("0/accounted"), 100.5, 1e-3 * 150);
  EXPECT_NEAR(mem.at("1/peak_rss"), 134.25, 1e-3 * 150);
  EXPECT_NE(html.find("family: llama"), std::string::npos) << "the config is not in the report";
  EXPECT_EQ(html.find("<script"), std::string::npos) << "the report must need no script";
}

TEST(Report, BadRunDirectoriesNameTheFile) {
  const auto dir = testing::scratch_dir("report", "bad");
  const auto fails_with = [&](const std::string& text, const std::string& expect) {
    write(dir / "metrics.jsonl", text);
    try {
      read_run_metrics(dir.string());
      ADD_FAILURE() << "no error for " << text;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("metrics.jsonl"), std::string::npos) << e.what();
    }
  };
  fails_with("", "no step records");
  fails_with("{\"step\":1,\"loss\":2}\nnot json\n{\"step\":2,\"loss\":2}\n", ":2: not a metrics record");
  fails_with("{\"loss\":2}\n", ":1: a metrics record without a step");
  // A cut last line (a killed run) is not an error: the records before it are read.
  write(dir / "metrics.jsonl", "{\"step\":1,\"loss\":2.5,\"lr\":0.1}\n{\"step\":2,\"lo");
  EXPECT_EQ(read_run_metrics(dir.string()).loss, std::vector<double>{2.5});
  EXPECT_THROW(read_run_metrics((dir / "missing").string()), ConfigError);
}

}  // namespace
}  // namespace hokusai
