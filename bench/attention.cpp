// Causal attention alone, forward + backward, side by side in one run: the GEMM path (the T x T
// scores through the GEMM, probabilities saved) and flash attention at several tile shapes, per
// sequence length; milliseconds as the median of the timed repetitions and the bytes each saves
// for backward. The contenders run in turn, one call each per round (the first round untimed), so
// a phase of the machine falls on all of them alike.
//   build/release/bench/bench_attention [--batch 1] [--heads 12] [--kv-heads 12] [--head-size 64]
//       [--seq 256,1024,2048] [--tiles 64x128,128x256,256x256/256] [--precision bf16] [--reps 5] [--threads 2]
//       [--no-gemm] [--qkv values,patterns]
#include <CLI/CLI.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>

#include "model/layers.hpp"

using namespace hokusai;

namespace {

// Median milliseconds of each contender, timed in turn: round 0 warms every one up, then each
// round calls each once.
std::vector<double> medians_in_turn(int reps, const std::vector<std::function<void()>>& contenders) {
  std::vector<std::vector<double>> ms(contenders.size());
  for (int r = 0; r < reps + 1; ++r)
    for (size_t c = 0; c < contenders.size(); ++c) {
      const auto t0 = std::chrono::steady_clock::now();
      contenders[c]();
      const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) ms[c].push_back(dt);
    }
  std::vector<double> out;
  for (auto& m : ms) {
    std::sort(m.begin(), m.end());
    out.push_back(m[m.size() / 2]);
  }
  return out;
}

std::vector<int64_t> ints(const std::string& list) {
  std::vector<int64_t> out;
  std::stringstream s(list);
  for (std::string x; std::getline(s, x, ',');) out.push_back(std::stoll(x));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hokusai attention benchmark: GEMM path vs flash"};
  int64_t B = 1, NH = 12, KV = 0, HS = 64;
  std::string seqs = "256,1024,2048", tiles = "0x0,128x128,256x256";
  std::string precision = "fp32", qkv_forms = "values";
  int reps = 5, threads = 0;
  bool no_gemm = false;
  app.add_option("--batch", B)->capture_default_str();
  app.add_option("--heads", NH)->capture_default_str();
  app.add_option("--kv-heads", KV, "0 = heads");
  app.add_option("--head-size", HS)->capture_default_str();
  app.add_option("--seq", seqs, "Sequence lengths")->capture_default_str();
  app.add_option("--tiles", tiles,
                 "Flash tile shapes QxK or QxK/BAND (0x0: the default for the length; BAND: query rows per "
                 "product where the diagonal crosses a tile, 0 = whole tiles)")
      ->capture_default_str();
  app.add_option("--precision", precision, "The tile products' precision (train.precision)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  app.add_option("--reps", reps, "Timed repetitions (median)")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
  app.add_flag("--no-gemm", no_gemm, "Flash only (e.g. under perf); no ratio to the GEMM path");
  app.add_option("--qkv", qkv_forms,
                 "Flash's Q, K and V as fp32 values and/or as the 16-bit patterns a bf16/fp16 run keeps "
                 "(values,patterns; patterns need --precision bf16 or fp16)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (KV == 0) KV = NH;
  if (threads <= 0) threads = omp_get_max_threads();
  omp_set_num_threads(threads);
  kernels::GemmContext ctx{kernels::GemmBackend::native, threads};
  ctx.precision = parse_name<kernels::Precision>(precision);
  std::vector<model::FlashTiles> shapes;
  {
    std::stringstream s(tiles);
    for (std::string x; std::getline(s, x, ',');) {
      const auto at = x.find('x'), slash = x.find('/');
      try {
        if (at == std::string::npos) throw std::invalid_argument("no x");
        model::FlashTiles t{std::stoll(x.substr(0, at)), std::stoll(x.substr(at + 1, slash - at - 1))};
        if (slash != std::string::npos) t.band = std::stoll(x.substr(slash + 1));
        shapes.push_back(t);
      } catch (const std::logic_error&) {
        std::fprintf(stderr, "bench_attention: --tiles '%s': expected QxK or QxK/BAND (integers, e.g. 256x256/64)\n",
                     x.c_str());
        return 2;
      }
    }
  }
  std::vector<bool> as_patterns;  // per flash form: read the 16-bit patterns
  {
    std::stringstream s(qkv_forms);
    for (std::string x; std::getline(s, x, ',');) {
      if (x != "values" && x != "patterns") {
        std::fprintf(stderr, "bench_attention: --qkv '%s': expected values and/or patterns\n", x.c_str());
        return 2;
      }
      if (x == "patterns" && ctx.precision == kernels::Precision::fp32) {
        std::fprintf(stderr, "bench_attention: --qkv patterns: fp32 products have no 16-bit form (--precision bf16 or fp16)\n");
        return 2;
      }
      as_patterns.push_back(x == "patterns");
    }
  }
  std::printf("causal attention fwd+bwd, B=%lld heads=%lld kv_heads=%lld head size %lld, %s products, %d threads (median "
              "of %d)\n",
              (long long)B, (long long)NH, (long long)KV, (long long)HS, precision.c_str(), threads, reps);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (const int64_t T : ints(seqs)) {
    const int64_t W = (NH + 2 * KV) * HS, N = B * T;
    // On cache lines, as the model's arena places its tensors.
    CacheLineVector<float> qkv(size_t(N * W)), dy(size_t(N * NH * HS)), out(size_t(N * NH * HS)), dqkv(size_t(N * W));
    for (auto& x : qkv) x = normal(rng);
    for (auto& x : dy) x = normal(rng);
    std::vector<uint16_t> bits(ctx.precision == kernels::Precision::fp32 ? 0 : qkv.size());
    if (!bits.empty()) kernels::narrow(ctx.precision, qkv.data(), bits.data(), int64_t(qkv.size()));
    CacheLineVector<float> probs(no_gemm ? 0 : size_t(B * NH * T * T)), lse(size_t(B * NH * T));
    std::vector<std::function<void()>> contenders;
    if (!no_gemm)
      contenders.push_back([&] {
        model::attention_forward(ctx, out.data(), probs.data(), qkv.data(), B, T, NH, KV, HS);
        std::fill(dqkv.begin(), dqkv.end(), 0.0f);
        model::attention_backward(ctx, dqkv.data(), dy.data(), probs.data(), qkv.data(), B, T, NH, KV, HS);
      });
    // The key chunks' dQ parts in a buffer kept across calls, as the model keeps them in its scratch.
    std::vector<CacheLineVector<float>> parts;
    for (const auto& t : shapes) parts.emplace_back(size_t(model::flash_backward_parts(B, T, NH, KV, HS, t)));
    for (size_t i = 0; i < shapes.size(); ++i)
      for (const bool pat : as_patterns)
        contenders.push_back([&, i, pat] {
          const model::FlashTiles t = shapes[i];
          const uint16_t* const b = pat ? bits.data() : nullptr;
          model::flash_attention_forward(ctx, out.data(), lse.data(), qkv.data(), B, T, NH, KV, HS, t, b);
          std::fill(dqkv.begin(), dqkv.end(), 0.0f);
          model::flash_attention_backward(ctx, dqkv.data(), dy.data(), out.data(), lse.data(), qkv.data(), B, T, NH,
                                          KV, HS, t, std::span<float>(parts[i]), b);
        });
    const std::vector<double> ms = medians_in_turn(reps, contenders);
    const double gemm_ms = no_gemm ? 0.0 : ms[0];
    if (!no_gemm)
      std::printf("  T=%-5lld gemm              %9.2f ms   saves %8.1f MiB (probabilities)\n", (long long)T, gemm_ms,
                  double(probs.size()) * 4 / (1 << 20));
    for (size_t i = 0; i < shapes.size(); ++i)
      for (size_t f = 0; f < as_patterns.size(); ++f) {
        const model::FlashTiles& t = shapes[i];
        const model::FlashTiles used = t.q > 0 ? t : model::FlashTiles::for_length(T);
        const double flash_ms = ms[i * as_patterns.size() + f + (no_gemm ? 0 : 1)];
        std::printf("  T=%-5lld flash %3lldx%-4lld/%-4lld%s%s %9.2f ms   saves %8.3f MiB (log-sum-exp)", (long long)T,
                    (long long)used.q, (long long)used.k, (long long)used.band, t.q > 0 ? " " : "*",
                    as_patterns.size() > 1 ? (as_patterns[f] ? " qkv patterns" : " qkv values  ") : "", flash_ms,
                    double(lse.size()) * 4 / (1 << 20));
        if (no_gemm)
          std::printf("\n");
        else
          std::printf("   %.2fx the gemm path\n", gemm_ms / flash_ms);
      }
  }
  return 0;
}
