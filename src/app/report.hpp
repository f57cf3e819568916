// `hokusai report RUN [RUN...]`: one self-contained HTML file (inline SVG, no script, no network)
// of one or several runs overlaid: loss and validation loss, learning rate, tokens/s and MFU over
// steps, each rank's time per phase as stacked bars, memory accounted at start against peak RSS,
// and each run's resolved config.
//
// Input: a run directory's metrics.jsonl (rank 0's records: one per log step with loss, lr,
// tokens_per_s, mfu and time_ms per phase and rank; {"step","val_loss"}; the end-of-run memory
// record) and config.yaml. Every chart is drawn by `Chart`, whose linear mapping is written into
// the SVG (data-x0/x1/y0/y1 over the plot box), so a test can read each point back as the metric
// it came from.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace hokusai {

struct RunMetrics {
  std::string name;  // the run directory's name (made unique by the caller)
  std::string dir;
  std::vector<double> step, loss, lr, tokens_per_s, mfu;
  std::vector<double> val_step, val_loss;
  // phase -> mean ms per step of each rank over the logged steps (compute, tp_comm, pp_wait,
  // dp_exposed, optimizer).
  std::vector<std::pair<std::string, std::vector<double>>> phase_ms;
  double memory_accounted_mib = 0, peak_rss_mib = 0;  // 0: the run did not end normally
  std::string config_yaml;
  std::string config_summary;  // "gpt2 L=4 C=256, tp 1 x pp 1 x dp 2"
};

// Reads RUN/metrics.jsonl and RUN/config.yaml. Throws ConfigError naming the file (and line) when
// the directory has no metrics or a line is not a metrics record.
RunMetrics read_run_metrics(const std::string& run_dir);

// The report of the runs, as one HTML document.
std::string render_report(const std::vector<RunMetrics>& runs);

}  // namespace hokusai
