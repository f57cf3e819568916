// Data path throughput, beside what training consumes: preprocessing MB/s (byte-level and
// SentencePiece) and the loader's tokens/s for gpt2-124m-shaped batches.
//   build/release/bench/bench_data [--corpus data/corpus-en.txt] [--spm-model M.model]
//       [--consume-tokens-per-s 297]
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "hokusai/config.hpp"
#include "hokusai/data.hpp"

using namespace hokusai;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"hokusai data benchmark"};
  std::string corpus = std::string(HOKUSAI_SOURCE_DIR) + "/data/corpus-en.txt", spm_model, work = "/tmp/hokusai_bench_data";
  double consume = 297.3;  // gpt2-124m tokens/s at 2 threads (docs/performance.md)
  int reps = 5;
  app.add_option("--corpus", corpus, "Text corpus (one document per line)")->capture_default_str();
  app.add_option("--spm-model", spm_model, "SentencePiece model to time as well");
  app.add_option("--work-dir", work, "Scratch directory")->capture_default_str();
  app.add_option("--consume-tokens-per-s", consume, "Training consumption to compare with")->capture_default_str();
  app.add_option("--reps", reps, "Repetitions (median)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    fs::remove_all(work);
    fs::create_directories(work);
    const auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    const auto time_preprocess = [&](const Tokenizer& tok, const std::string& tag) {
      std::vector<double> mbs;
      PreprocessStats st;
      for (int r = 0; r < reps; ++r) {
        PreprocessOptions o;
        o.inputs = {corpus};
        o.output_prefix = work + "/" + tag;
        o.progress = false;
        st = preprocess(o, tok);
        mbs.push_back(double(st.input_bytes) / 1e6 / st.seconds);
      }
      std::printf("preprocess %-14s %8.1f MB/s  (%lld documents, %lld tokens; median of %d)\n", tag.c_str(),
                  median(mbs), (long long)st.documents, (long long)st.tokens, reps);
    };
    time_preprocess(ByteTokenizer(), "byte");
    if (!spm_model.empty()) time_preprocess(*make_tokenizer(TokenizerKind::sentencepiece, spm_model), "sentencepiece");

    // Loader: gpt2-124m batch shape (micro-batch 4 x 256), samples drawn as a training run does.
    Config cfg;
    cfg.data.paths = {{work + "/byte", 1.0}};
    cfg.data.cache_dir = work + "/cache";
    cfg.train.seq_len = 256;
    cfg.model.max_seq_len = 256;
    cfg.train.micro_batch = 4;
    cfg.train.global_batch = 4;
    resolve(cfg);
    const int64_t steps = 4000;
    const int64_t samples[3] = {steps * 4, 0, 0};
    const auto t0 = std::chrono::steady_clock::now();
    const DataLoader loader(cfg, {}, samples, [](const std::string&) {});
    const double index_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<int32_t> tok(4 * 256), tgt(4 * 256);
    std::vector<double> rates;
    for (int r = 0; r < reps; ++r) {
      const auto t1 = std::chrono::steady_clock::now();
      for (int64_t s = 0; s < steps; ++s) loader.fill_micro_batch(s * cfg.train.global_batch, 0, 0, tok.data(), tgt.data());
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      rates.push_back(double(steps * 4 * 256) / dt);
    }
    const double rate = median(rates);
    std::printf("loader (gpt2-124m batches 4x256): %.3g tokens/s = %.0fx the %.1f tokens/s training consumes "
                "(index build %.2f s)\n", rate, rate / consume, consume, index_s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    return 1;
  }
  return 0;
}
