// text / JSONL -> Megatron .bin/.idx, streaming: one line in memory at a time.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "hokusai/data.hpp"
#include "hokusai/log.hpp"

namespace hokusai {

namespace fs = std::filesystem;

namespace {

std::string fmt_progress(int64_t bytes, int64_t total, int64_t docs, int64_t tokens, double seconds) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "preprocess: %.1f/%.1f MB (%.0f%%), %lld documents, %lld tokens, %.1f MB/s",
                double(bytes) / 1e6, double(total) / 1e6, total ? 100.0 * double(bytes) / double(total) : 100.0,
                static_cast<long long>(docs), static_cast<long long>(tokens),
                seconds > 0 ? double(bytes) / 1e6 / seconds : 0.0);
  return buf;
}

bool is_jsonl(const std::string& path, const std::string& format) {
  if (format == "jsonl") return true;
  if (format == "text") return false;
  if (format != "auto") throw DataError("preprocess: --format '" + format + "': expected auto, text or jsonl");
  const std::string ext = fs::path(path).extension().string();
  return ext == ".jsonl" || ext == ".json" || ext == ".ndjson";
}

}  // namespace

PreprocessStats preprocess(const PreprocessOptions& opts, const Tokenizer& tok) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  if (opts.inputs.empty()) throw DataError("preprocess: no input files");
  int64_t total_bytes = 0;
  for (const auto& in : opts.inputs) {
    if (!fs::is_regular_file(in)) throw DataError("preprocess: input '" + in + "' not found");
    total_bytes += int64_t(fs::file_size(in));
  }
  IndexedDatasetWriter writer(opts.output_prefix, dtype_for_vocab(tok.vocab_size()));
  PreprocessStats st;
  ProgressLine progress(opts.progress);
  auto last_report = t0;
  const auto report = [&](bool final) {
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    const std::string line =
        fmt_progress(st.input_bytes, total_bytes, writer.documents(), writer.tokens(), dt);
    if (progress.enabled()) {
      progress.draw(line);
      if (final) progress.clear();
    } else {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
  };
  std::vector<int32_t> ids;
  for (const auto& in : opts.inputs) {
    const bool json = is_jsonl(in, opts.format);
    std::ifstream file(in, std::ios::binary);
    if (!file) throw DataError("preprocess: cannot open '" + in + "'");
    std::string line;
    int64_t line_no = 0;
    while (std::getline(file, line)) {
      ++line_no;
      st.input_bytes += int64_t(line.size()) + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      std::string text;
      if (json) {
        nlohmann::json obj;
        try {
          obj = nlohmann::json::parse(line);
        } catch (const nlohmann::json::parse_error& e) {
          throw DataError("preprocess: '" + in + "' line " + std::to_string(line_no) + ": invalid JSON (" +
                          e.what() + ")");
        }
        const auto it = obj.find(opts.json_key);
        if (it == obj.end() || !it->is_string())
          throw DataError("preprocess: '" + in + "' line " + std::to_string(line_no) + ": no string field '" +
                          opts.json_key + "' (choose it with --json-key)");
        text = it->get<std::string>();
      } else {
        text = std::move(line);
      }
      ids = tok.encode(text);
      if (ids.empty()) continue;  // empty documents are skipped, as Megatron's preprocessing does
      ids.push_back(tok.end_of_document());
      writer.add_sequence(ids);
      writer.end_document();
      const auto now = clock::now();
      if (now - last_report > std::chrono::milliseconds(progress.enabled() ? 200 : 10000)) {
        last_report = now;
        report(false);
      }
    }
    if (file.bad()) throw DataError("preprocess: read error in '" + in + "'");
  }
  writer.finish();
  st.documents = writer.documents();
  st.tokens = writer.tokens();
  st.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  if (opts.progress) report(true);
  return st;
}

}  // namespace hokusai
