// Training-step throughput of a config with each GEMM backend, attention kind and precision, side by side in
// one run: tokens/s, ms/step (median of the timed steps), MFU against the probed fp32 peak and the
// activation memory the model allocates.
//   build/release/bench/bench_train_step configs/gpt2-124m.yaml [--steps 6] [--warmup 2]
//       [--backends openblas,onednn] [--attention flash,gemm] [--precisions fp32,bf16] [--threads 2] [--csv]
// A precision other than fp32 is train.precision's step: the products' inputs rounded, on the
// CPU's 16-bit unit where the probe finds it faster than fp32 FMAs (kernels::fastest_isa), else
// emulated (the line names the path); fp16 is loss scaled.
#include <CLI/CLI.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
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
  bool csv = false;
  app.add_option("config", config_path, "YAML config")->required();
  app.add_option("--set", sets, "Config override (repeatable)");
  app.add_option("--steps", steps, "Timed steps per backend")->capture_default_str();
  app.add_option("--warmup", warmup, "Untimed steps first")->capture_default_str();
  app.add_option("--backends", backends, "Comma-separated GEMM backends")->capture_default_str();
  app.add_option("--attention", attentions, "Comma-separated attention kinds (flash, gemm)")->capture_default_str();
  app.add_option("--precisions", precisions, "Comma-separated precisions (fp32, bf16, fp16)")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
  app.add_flag("--csv", csv,
               "One CSV row per run: backend,attention,precision,threads,tokens_per_s,step_ms,mfu,activation_mib");
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
    for (const auto& [name, attention, precision] : runs) {
      ComputeContext ctx;
      kernels::GemmWorkspace ws;
      ctx.gemm.backend = parse_name<kernels::GemmBackend>(name);
      ctx.gemm.threads = threads;
      ctx.gemm.workspace = &ws;
      ctx.gemm.precision = precision;
      ctx.gemm.isa = kernels::fastest_isa(precision, peak);  // the trainer's choice of unit
      const std::string path = kernels::gemm_precision_path(ctx.gemm);  // throws for a library in 16 bits
      // fp16: the config's loss scale (train.loss_scale) on the loss gradient, taken off before clipping.
      const float loss_scale = precision == kernels::Precision::fp16 ? float(cfg.train.loss_scale) : 1.0f;
      Model<float> model(dims, B, T, 1, Recompute::none, attention, precision,  // as the trainer keeps them
                         cfg.kernels.huge_pages);
      model.init(cfg.train.seed);
      AdamW adam(model.table(), cfg.optimizer, cfg.kernels.huge_pages);
      std::vector<double> ms;
      for (int s = 0; s < warmup + steps; ++s) {
        const auto t0 = std::chrono::steady_clock::now();
        model.zero_grads();
        const float dloss = loss_scale / float(B * T);  // the trainer's head pass: the gradient in forward
        model.forward(ctx, tokens.data(), targets.data(), B, T, 0, 0, HeadPass::gradient, dloss);
        model.backward(ctx, tokens.data(), targets.data(), dloss);
        if (loss_scale != 1.0f) kernels::scale(model.grads().data(), 1.0f / loss_scale, int64_t(model.grads().size()));
        const double norm = std::sqrt(kernels::sum_squares(model.grads().data(), int64_t(model.grads().size())));
        adam.step(model.params().data(), model.grads().data(), 1e-4, clip_scale(norm, 1.0));  // the trainer's clip
        const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (s >= warmup) ms.push_back(dt);
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      const double tok_s = double(B * T) / (med / 1e3);
      const double mfu = flops_per_token * tok_s / (peak.peak_gflops() * 1e9);
      const double act_mib = double(model.activation_bytes()) / double(1 << 20);
      const std::string att(name_of(attention)), prec(name_of(precision));
      if (csv)
        std::printf("%s,%s,%s,%d,%.1f,%.2f,%.4f,%.1f\n", name.c_str(), att.c_str(), prec.c_str(), threads, tok_s, med,
                    mfu, act_mib);
      else
        std::printf("  %-9s %-6s %-5s %9.1f tokens/s  %8.1f ms/step (median of %d)  MFU %5.1f%% of fp32 peak  "
                    "(%.1f GFLOP/s)  activations %.0f MiB  [%s]\n",
                    name.c_str(), att.c_str(), prec.c_str(), tok_s, med, steps, 100 * mfu,
                    flops_per_token * tok_s / 1e9, act_mib, path.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
