// Training-step throughput of a config with each GEMM backend, attention kind and precision, side by side in
// one run: tokens/s, ms/step (median of the timed steps), MFU against the probed fp32 peak and the
// activation memory the model allocates.
//   build/release/bench/bench_train_step configs/gpt2-124m.yaml [--steps 6] [--warmup 2]
//       [--backends openblas,onednn] [--attention flash,gemm] [--precisions fp32,bf16] [--threads 2] [--csv]
//       [--interleave]
// --interleave builds every run's model first and times them a step each in turn, so that the
// phases of a shared machine (tens of seconds, +-20% here) fall on all runs alike; it adds each
// run's median per-round tokens/s ratio to the first run's (bf16 / fp32: the step ratio the
// precision goal is stated in). Memory: every model at once.
// A precision other than fp32 is train.precision's step: the products' inputs rounded, on the
// CPU's 16-bit unit where the probe finds it faster than fp32 FMAs (kernels::fastest_isa), else
// emulated (the line names the path); fp16 is loss scaled.
#include <CLI/CLI.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>

#include "hokusai/config.hpp"
#include "hokusai/data.hpp"
#include "hokusai/model.hpp"
#include "hokusai/train.hpp"
#include "kernels/ops.hpp"
#include "kernels/peak.hpp"

using namespace hokusai;

int main(int argc, char** argv) {
  CLI::App app{"hokusai training-step benchmark"};
  std::string config_path, backends = "openblas,onednn", attentions = "flash", precisions = "fp32";
  std::vector<std::string> sets;
  int steps = 6, warmup = 2, threads = 0;
  bool csv = false, interleave = false;
  app.add_option("config", config_path, "YAML config")->required();
  app.add_option("--set", sets, "Config override (repeatable)");
  app.add_option("--steps", steps, "Timed steps per backend")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--backends", backends, "Comma-separated GEMM backends")->capture_default_str();
  app.add_option("--attention", attentions, "Comma-separated attention kinds (flash, gemm)")->capture_default_str();
  app.add_option("--precisions", precisions, "Comma-separated precisions (fp32, bf16, fp16)")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
  app.add_flag("--csv", csv,
               "One CSV row per run: backend,attention,precision,threads,tokens_per_s,step_ms,mfu,activation_mib");
  app.add_flag("--interleave", interleave,
               "All runs' models at once, one step each in turn (order reversed every round); adds each run's "
               "median per-round ratio to the first run");
  CLI11_PARSE(app, argc, argv);
  try {
    Config cfg = load_config(config_path);
    for (const auto& s : sets) apply_override(cfg, s);
    resolve(cfg);
    validate(cfg);
    if (threads <= 0) threads = omp_get_max_threads();
    omp_set_num_threads(threads);
    const auto peak = kernels::probe_peak_fp32(threads);
    const ModelDims dims = ModelDims::from(cfg.model, comm::ParallelGrid::single());
    const int64_t B = cfg.train.micro_batch, T = cfg.train.seq_len;
    const double flops_per_token = train_flops_per_token(cfg.model, T);
    // Synthetic tokens: throughput does not depend on the text.
    std::vector<int32_t> tokens(size_t(B * T)), targets(size_t(B * T));
    for (int64_t i = 0; i < B * T; ++i) tokens[i] = int32_t(i * 7919 % 257), targets[i] = int32_t((i + 1) * 7919 % 257);
    if (csv)
      std::printf("backend,attention,precision,threads,tokens_per_s,step_ms,mfu,activation_mib\n");
    else
      std::printf("%s: %s L=%lld C=%lld, micro-batch %lld x %lld, %d threads, peak %.1f GFLOP/s "
                  "(%s probe: %.1f per core; %.1f measured on all threads together)\n",
                  config_path.c_str(), std::string(name_of(cfg.model.family)).c_str(), (long long)dims.L, (long long)dims.C,
                  (long long)B, (long long)T, threads, peak.peak_gflops(), peak.isa.c_str(), peak.per_core_gflops,
                  peak.all_gflops);
    struct Run {
      std::string backend;
      Attention attention;
      kernels::Precision precision;
    };
    std::vector<Run> runs;
    std::stringstream list(backends);
    for (std::string b; std::getline(list, b, ',');) {
      std::stringstream kinds(attentions);
      for (std::string a; std::getline(kinds, a, ',');) {
        std::stringstream precs(precisions);
        for (std::string p; std::getline(precs, p, ',');)
          runs.push_back({b, parse_name<Attention>(a), parse_name<kernels::Precision>(p)});
      }
    }
    // One run's model, optimizer and GEMM context; step() is one training step as the trainer takes it.
    struct Runner {
      Runner(const Run& r, const Config& cfg, const ModelDims& dims, int64_t B, int64_t T, int threads,
             const kernels::PeakFlops& peak)
          : run(r),
            model(dims, B, T, 1, Recompute::none, r.attention, r.precision,  // as the trainer keeps them
                  cfg.kernels.huge_pages),
            adam(model.table(), cfg.optimizer, cfg.kernels.huge_pages) {
        ctx.gemm.backend = parse_name<kernels::GemmBackend>(r.backend);
        ctx.gemm.threads = threads;
        ctx.gemm.workspace = &ws;
        ctx.gemm.precision = r.precision;
        ctx.gemm.isa = kernels::fastest_isa(r.precision, peak);  // the trainer's choice of unit
        path = kernels::gemm_precision_path(ctx.gemm);          // throws for a library in 16 bits
        // fp16: the config's loss scale (train.loss_scale) on the loss gradient, taken off before clipping.
        loss_scale = r.precision == kernels::Precision::fp16 ? float(cfg.train.loss_scale) : 1.0f;
        model.init(cfg.train.seed);
      }
      double step(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T) {  // milliseconds
        const auto t0 = std::chrono::steady_clock::now();
        model.zero_grads();
        const float dloss = loss_scale / float(B * T);  // the trainer's head pass: the gradient in forward
        model.forward(ctx, tokens, targets, B, T, 0, 0, HeadPass::gradient, dloss);
        model.backward(ctx, tokens, targets, dloss);
        if (loss_scale != 1.0f) kernels::scale(model.grads().data(), 1.0f / loss_scale, int64_t(model.grads().size()));
        const double norm = std::sqrt(kernels::sum_squares(model.grads().data(), int64_t(model.grads().size())));
        adam.step(model.params().data(), model.grads().data(), 1e-4, clip_scale(norm, 1.0));  // the trainer's clip
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      }
      Run run;
      ComputeContext ctx;
      kernels::GemmWorkspace ws;
      std::string path;
      float loss_scale = 1.0f;
      Model<float> model;
      AdamW adam;
      std::vector<double> ms;  // timed steps
    };
    const auto report = [&](const Runner& r) {
      std::vector<double> ms = r.ms;
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      const double tok_s = double(B * T) / (med / 1e3);
      const double mfu = flops_per_token * tok_s / (peak.peak_gflops() * 1e9);
      const double act_mib = double(r.model.activation_bytes()) / double(1 << 20);
      const std::string att(name_of(r.run.attention)), prec(name_of(r.run.precision));
      if (csv)
        std::printf("%s,%s,%s,%d,%.1f,%.2f,%.4f,%.1f\n", r.run.backend.c_str(), att.c_str(), prec.c_str(), threads,
                    tok_s, med, mfu, act_mib);
      else
        std::printf("  %-9s %-6s %-5s %9.1f tokens/s  %8.1f ms/step (median of %d)  MFU %5.1f%% of fp32 peak  "
                    "(%.1f GFLOP/s)  activations %.0f MiB  [%s]\n",
                    r.run.backend.c_str(), att.c_str(), prec.c_str(), tok_s, med, int(ms.size()), 100 * mfu,
                    flops_per_token * tok_s / 1e9, act_mib, r.path.c_str());
    };
    if (!interleave) {
      for (const Run& run : runs) {
        Runner r(run, cfg, dims, B, T, threads, peak);
        for (int s = 0; s < warmup + steps; ++s) {
          const double dt = r.step(tokens.data(), targets.data(), B, T);
          if (s >= warmup) r.ms.push_back(dt);
        }
        report(r);
      }
    } else {
      // Every run's model at once, taking turns step by step (the order reversed every round), so
      // that a slow or fast phase of a shared machine falls on all of them alike; each run's
      // speed beside the first run's is the median over rounds of the round's ratio.
      std::vector<std::unique_ptr<Runner>> rs;
      for (const Run& run : runs) rs.push_back(std::make_unique<Runner>(run, cfg, dims, B, T, threads, peak));
      for (auto& r : rs)
        for (int s = 0; s < warmup; ++s) r->step(tokens.data(), targets.data(), B, T);
      for (int s = 0; s < steps; ++s)
        for (size_t i = 0; i < rs.size(); ++i) {
          Runner& r = *rs[s % 2 ? rs.size() - 1 - i : i];
          r.ms.push_back(r.step(tokens.data(), targets.data(), B, T));
        }
      for (const auto& r : rs) report(*r);
      if (!csv)
        for (size_t i = 1; i < rs.size(); ++i) {
          std::vector<double> ratio;
          for (int s = 0; s < steps; ++s) ratio.push_back(rs[0]->ms[size_t(s)] / rs[i]->ms[size_t(s)]);
          std::sort(ratio.begin(), ratio.end());
          std::printf("  %s %s %s / %s %s %s, tokens/s: median of %d rounds' ratios %.3f (%.3f-%.3f)\n",
                      rs[i]->run.backend.c_str(), std::string(name_of(rs[i]->run.attention)).c_str(),
                      std::string(name_of(rs[i]->run.precision)).c_str(), rs[0]->run.backend.c_str(),
                      std::string(name_of(rs[0]->run.attention)).c_str(),
                      std::string(name_of(rs[0]->run.precision)).c_str(), steps, ratio[ratio.size() / 2],
                      ratio.front(), ratio.back());
        }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
