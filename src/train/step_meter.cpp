#include "train/step_meter.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "comm/grid_comm.hpp"
#include "hokusai/log.hpp"

namespace hokusai {

MetricsFile::MetricsFile(std::string path) : path_(std::move(path)), out_(path_, std::ios::app) {}

void MetricsFile::write(const std::string& line) {
  out_ << line << '\n' << std::flush;
  if (out_ || warned_) return;
  warned_ = true;
  std::fprintf(stderr, "hokusai: warning: cannot write '%s' (disk full?): metrics are lost until it can; training goes on\n",
               path_.c_str());
  out_.clear();
}

StepTime& StepTime::operator+=(const StepTime& o) {
  compute += o.compute;
  tp_comm += o.tp_comm;
  pp_wait += o.pp_wait;
  dp_exposed += o.dp_exposed;
  optimizer += o.optimizer;
  return *this;
}

StepMeter::StepMeter(Rates rates, Stragglers stragglers, const comm::GridComms& comms, MetricsFile* metrics,
                     std::shared_ptr<spdlog::logger> lg, ProgressLine& progress)
    : rates_(rates), stragglers_(stragglers), comms_(comms), metrics_(metrics), lg_(std::move(lg)), progress_(progress) {
  coords_ = comms_.world.gather({double(comms_.tp.rank()), double(comms_.pp.rank()), double(comms_.dp.rank())}, 0);
  slow_for_.assign(size_t(rates_.ranks), 0);
}

// A rank's own work per step (compute and optimizer: the time it is not waiting for others)
// against the median of the ranks on the same pipeline stage (stages differ legitimately: the
// first holds the embeddings, the last the head). A stage of one rank has nobody to compare with.
// The excess over the median must also cost the job: at least kStragglerShare of the slowest
// rank's step. Without that floor a millisecond of scheduling jitter in a step of a few
// milliseconds of work reads as "2.4x the median" while another rank's 300 ms sets the step.
constexpr double kStragglerShare = 0.05;

std::vector<int> StepMeter::find_stragglers(const std::vector<double>& all) {
  std::vector<int> found;
  if (stragglers_.factor <= 0) return found;
  const int ranks = rates_.ranks, F = StepTime::fields;
  const auto work = [&](int r) { return all[size_t(r * F)] + all[size_t(r * F + 4)]; };
  double step = 0;  // the slowest rank's whole step, waits included
  for (int r = 0; r < ranks; ++r) {
    double t = 0;
    for (int f = 0; f < F; ++f) t += all[size_t(r * F + f)];
    step = std::max(step, t);
  }
  const auto stage = [&](int r) { return int(coords_[size_t(3 * r + 1)]); };
  for (int r = 0; r < ranks; ++r) {
    std::vector<double> peers;
    for (int q = 0; q < ranks; ++q)
      if (stage(q) == stage(r)) peers.push_back(work(q));
    if (peers.size() < 2) continue;
    // The lower median: of two ranks, the faster one is the norm.
    const size_t mid = (peers.size() - 1) / 2;
    std::nth_element(peers.begin(), peers.begin() + std::ptrdiff_t(mid), peers.end());
    const double median = peers[mid];
    const bool slow = median > 0 && work(r) > stragglers_.factor * median && work(r) - median >= kStragglerShare * step;
    slow_for_[size_t(r)] = slow ? slow_for_[size_t(r)] + steps_ : 0;
    if (slow_for_[size_t(r)] < stragglers_.steps) continue;
    found.push_back(r);
    lg_->warn("straggler: rank {} (tp {}, pp {}, dp {}) works {:.1f} ms per step, {:.1f}x the median {:.1f} ms of "
              "pipeline stage {}, for the last {} steps; its ms per step: compute {:.1f} | tp comm {:.1f} | pipeline "
              "wait {:.1f} | dp comm not hidden {:.1f} | optimizer {:.1f}",
              r, coords_[size_t(3 * r)], stage(r), coords_[size_t(3 * r + 2)], work(r), work(r) / median, median,
              stage(r), slow_for_[size_t(r)], all[size_t(r * F)], all[size_t(r * F + 1)], all[size_t(r * F + 2)],
              all[size_t(r * F + 3)], all[size_t(r * F + 4)]);
    slow_for_[size_t(r)] = 0;  // named again only if it stays slow another comm.straggler_steps steps
  }
  return found;
}

void StepMeter::add(const StepStats& st, double seconds) {
  seconds_ += seconds;
  all_seconds_ += seconds;
  ++all_steps_;
  if (!st.skipped) {  // a skipped step's loss may be NaN: the interval's mean is of the others
    loss_ += st.loss;
    ++loss_steps_;
  }
  time_ += st.time;
  ++steps_;
}

void StepMeter::log(int64_t step, int64_t steps, const StepStats& last) {
  const double tok_s = rates_.tokens_per_step * steps_ / seconds_;
  const double step_ms = 1e3 * seconds_ / steps_;
  const double tflops = rates_.flops_per_token * tok_s / 1e12;
  const double mfu = tflops * 1e3 / (rates_.peak_gflops * rates_.ranks);  // peak is per rank
  // Every rank's time per step by phase, gathered on rank 0: [phase][rank] in ms.
  std::vector<double> mine = {time_.compute, time_.tp_comm, time_.pp_wait, time_.dp_exposed, time_.optimizer};
  for (double& x : mine) x *= 1e3 / steps_;
  const std::vector<double> all = comms_.world.gather(mine, 0);
  if (metrics_) {  // rank 0: the gathered times are here only; the other ranks log nothing
    static constexpr const char* phases[StepTime::fields] = {"compute", "tp_comm", "pp_wait", "dp_exposed",
                                                             "optimizer"};
    const int ranks = rates_.ranks;
    std::string per_rank;
    double max_wait = 0.0;
    for (int f = 0; f < StepTime::fields; ++f) {
      per_rank += fmt::format("{}\"{}\":[", f ? "," : "", phases[f]);
      for (int r = 0; r < ranks; ++r) per_rank += fmt::format("{}{:.2f}", r ? "," : "", all[size_t(r * StepTime::fields + f)]);
      per_rank += "]";
    }
    for (int r = 0; r < ranks; ++r) max_wait = std::max(max_wait, all[size_t(r * StepTime::fields + 2)]);
    progress_.clear();
    std::string stragglers;
    for (int r : find_stragglers(all)) stragglers += fmt::format("{}{}", stragglers.empty() ? "" : ",", r);
    if (!stragglers.empty()) per_rank += "},\"stragglers\":[" + stragglers + "]";
    else per_rank += "}";
    // JSON has no NaN: a non-finite value (a skipped step) is null.
    const auto num = [](double x, int digits) { return std::isfinite(x) ? fmt::format("{:.{}f}", x, digits) : "null"; };
    metrics_->write(fmt::format("{{\"step\":{},\"loss\":{},\"lr\":{:.6e},\"grad_norm\":{},"
                             "\"tokens_per_s\":{:.1f},\"step_ms\":{:.2f},\"tflops\":{:.4f},\"mfu\":{:.4f},"
                             "\"dp_exposed_ms\":{:.3f},\"skipped_steps\":{},{}\"time_ms\":{{{}}}",
                             step, num(last.loss, 8), last.lr, num(last.grad_norm, 6), tok_s, step_ms, tflops, mfu,
                             1e3 * last.time.dp_exposed, last.skipped_total,
                             last.loss_scale > 0 ? fmt::format("\"loss_scale\":{},\"overflow_steps\":{},", last.loss_scale,
                                                               last.overflow_total)
                                                 : "",
                             per_rank));
    progress_.clear();
    lg_->info("step {:>6}/{} | loss {:.4f} | lr {:.3e} | grad_norm {:.3f} | {:.0f} tok/s | {:.1f} ms/step | "
              "{:.3f} TFLOP/s | MFU {:.1f}%{}",
              step, steps, loss_steps_ ? loss_ / loss_steps_ : last.loss, last.lr, last.grad_norm, tok_s, step_ms, tflops,
              100.0 * mfu, last.loss_scale > 0 ? fmt::format(" | loss scale {:g}", last.loss_scale) : "");
    if (ranks > 1)
      lg_->info("time per step (rank 0, ms): compute {:.1f} | tp comm {:.1f} | pipeline wait {:.1f} (max over ranks "
                "{:.1f}) | dp comm not hidden {:.1f} | optimizer {:.1f}",
                mine[0], mine[1], mine[2], max_wait, mine[3], mine[4]);
  }
  time_ = StepTime{};
  seconds_ = loss_ = 0.0;
  steps_ = loss_steps_ = 0;
}

}  // namespace hokusai
