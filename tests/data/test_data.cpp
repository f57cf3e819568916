// Megatron indexed datasets (round trip, an independent writer's files, every class of bad
// file), the GPT sample index, blending proportions, data-parallel sharding and resume.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <cstring>
#include <fstream>
#include <map>

#include "hokusai/config.hpp"
#include "hokusai/data.hpp"
#include "scratch.hpp"

namespace hokusai {
namespace {

namespace fs = std::filesystem;

fs::path scratch(const std::string& name) { return testing::scratch_dir("data", name); }

std::vector<int32_t> read_all(const IndexedDataset& d, int64_t seq) {
  std::vector<int32_t> out(size_t(d.length(seq)));
  d.read(seq, 0, d.length(seq), out.data());
  return out;
}

// A tokenizer whose ids need int32 storage: byte b -> 70000 + b.
class WideTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    auto ids = ByteTokenizer().encode(text);
    for (auto& id : ids) id += 70000;
    return ids;
  }
  std::string decode(std::span<const int32_t>) const override { return {}; }
  int32_t vocab_size() const override { return 70257; }
  int32_t end_of_document() const override { return 70256; }
  std::string name() const override { return "wide"; }
};

const std::vector<std::string> kDocs = {"In the beginning", "God created the heavens", "x",
                                        "and the earth \xe2\x80\x94 unicode too"};

std::string write_text(const fs::path& dir, const std::vector<std::string>& docs) {
  const fs::path p = dir / "docs.txt";
  std::ofstream out(p);
  for (const auto& d : docs) out << d << "\n\n";  // blank lines between documents are skipped
  return p.string();
}

TEST(IndexedDataset, PreprocessRoundTripBothDtypes) {
  const fs::path dir = scratch("roundtrip");
  const std::string txt = write_text(dir, kDocs);
  const ByteTokenizer byte;
  const WideTokenizer wide;
  for (const Tokenizer* tok : {static_cast<const Tokenizer*>(&byte), static_cast<const Tokenizer*>(&wide)}) {
    PreprocessOptions o;
    o.inputs = {txt};
    o.output_prefix = (dir / tok->name()).string();
    o.progress = false;
    const auto st = preprocess(o, *tok);
    EXPECT_EQ(st.documents, int64_t(kDocs.size()));
    const IndexedDataset d(o.output_prefix);
    EXPECT_EQ(d.dtype(), tok == &byte ? 8 : 4) << "uint16 below 65,500 ids, int32 above";
    ASSERT_EQ(d.documents(), int64_t(kDocs.size()));
    ASSERT_EQ(d.sequences(), int64_t(kDocs.size()));
    for (size_t i = 0; i < kDocs.size(); ++i) {
      auto want = tok->encode(kDocs[i]);
      want.push_back(tok->end_of_document());
      EXPECT_EQ(read_all(d, int64_t(i)), want) << tok->name() << " document " << i;
      EXPECT_EQ(d.document_start(int64_t(i)), int64_t(i));
    }
    // A partial read from the middle of a sequence.
    std::vector<int32_t> part(3);
    d.read(1, 4, 3, part.data());
    EXPECT_EQ(part, tok->encode("cre"));
  }
}

TEST(IndexedDataset, JsonlInputAndItsErrors) {
  const fs::path dir = scratch("jsonl");
  std::ofstream(dir / "a.jsonl") << "{\"text\": \"first\", \"id\": 1}\n{\"body\": \"x\", \"text\": \"second\"}\n";
  PreprocessOptions o;
  o.inputs = {(dir / "a.jsonl").string()};
  o.output_prefix = (dir / "a").string();
  o.progress = false;
  preprocess(o, ByteTokenizer());
  const IndexedDataset d(o.output_prefix);
  EXPECT_EQ(ByteTokenizer().decode(read_all(d, 1)), "second\n");
  o.json_key = "missing";
  try {
    preprocess(o, ByteTokenizer());
    ADD_FAILURE();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("line 1: no string field 'missing'"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "bad.jsonl") << "{\"text\": \"ok\"}\n{not json\n";
  o.inputs = {(dir / "bad.jsonl").string()};
  o.json_key = "text";
  try {
    preprocess(o, ByteTokenizer());
    ADD_FAILURE();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl' line 2: invalid JSON"), std::string::npos) << e.what();
  }
}

// Files written by tests/data/megatron_fixture.py (ctest runs it first; see tests/CMakeLists.txt).
TEST(IndexedDataset, ReadsAnIndependentWritersFiles) {
  const char* dir = std::getenv("HOKUSAI_FIXTURE_DIR");
  if (!dir) GTEST_SKIP() << "HOKUSAI_FIXTURE_DIR not set (run through ctest)";
  const std::vector<std::vector<int32_t>> seqs = {{1, 2, 3}, {4, 5}, {6}, {}, {7, 8, 9, 10}, {65000, 0, 257}};
  const std::vector<int64_t> doc_starts = {0, 2, 2, 3, 5, 6};  // document 1 is empty
  for (const std::string name : {"fixture_u16", "fixture_i32"}) {
    const IndexedDataset d((fs::path(dir) / name).string());
    EXPECT_EQ(d.dtype(), name == "fixture_u16" ? 8 : 4);
    ASSERT_EQ(d.sequences(), 6);
    ASSERT_EQ(d.documents(), 5);
    for (int64_t s = 0; s < 6; ++s) EXPECT_EQ(read_all(d, s), seqs[size_t(s)]) << name << " sequence " << s;
    for (int64_t i = 0; i <= 5; ++i) EXPECT_EQ(d.document_start(i), doc_starts[size_t(i)]) << name << " doc " << i;
    EXPECT_EQ(d.total_tokens(), 13);
  }
}

// Every class of bad file: one clear DataError naming the file and the field, no crash.
TEST(IndexedDataset, BadFilesAreRejectedWithTheField) {
  const fs::path dir = scratch("bad");
  PreprocessOptions o;
  o.inputs = {write_text(dir, kDocs)};
  o.output_prefix = (dir / "good").string();
  o.progress = false;
  preprocess(o, ByteTokenizer());
  const auto idx_bytes = [&] {
    std::ifstream in(dir / "good.idx", std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }();
  const auto make = [&](const std::string& name, std::string idx, int64_t bin_cut) {
    std::ofstream(dir / (name + ".idx"), std::ios::binary) << idx;
    fs::copy_file(dir / "good.bin", dir / (name + ".bin"), fs::copy_options::overwrite_existing);
    if (bin_cut > 0) fs::resize_file(dir / (name + ".bin"), fs::file_size(dir / "good.bin") - uint64_t(bin_cut));
    return (dir / name).string();
  };
  const auto expect = [&](const std::string& prefix, const std::string& fragment) {
    try {
      IndexedDataset d(prefix);
      ADD_FAILURE() << "opened a bad dataset: " << prefix;
    } catch (const DataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
      EXPECT_NE(msg.find(fs::path(prefix).filename().string()), std::string::npos) << "names the file: " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    }
  };
  std::string s = idx_bytes;
  s[0] = 'X';
  expect(make("magic", s, 0), "magic: expected \"MMIDIDX");
  s = idx_bytes;
  s[9] = 2;
  expect(make("version", s, 0), "version: 2, expected 1");
  s = idx_bytes;
  s[17] = 9;
  expect(make("dtype", s, 0), "dtype: code 9, expected 1..8");
  expect(make("truncated_idx", idx_bytes.substr(0, idx_bytes.size() - 5), 0), "(truncated)");
  expect(make("tiny_idx", idx_bytes.substr(0, 20), 0), "truncated: 20 bytes");
  expect(make("short_bin", idx_bytes, 3), "the .bin is truncated");
  s = idx_bytes;
  s[26] = 99;  // D = 99 documents: the index cannot hold them
  expect(make("counts", s, 0), "counts: N=4 sequences, D=99 cannot fit");
  expect((dir / "absent").string(), "absent.idx' not found");
  // An offset near 2^63: the bounds check must not overflow (it crashed once).
  s = idx_bytes;
  const int64_t huge = 0x7ffffffffffffff0;
  std::memcpy(&s[34 + 4 * 4 + 8], &huge, 8);  // offsets[1]: header 34 bytes, then N = 4 lengths
  expect(make("huge_offset", s, 0), "ends beyond it");
}

// The sample-index caches are keyed by the dataset's fingerprint: it must change when any entry
// of the .idx changes, not only the entries a sample would visit (an .idx rewritten in place once
// reused a stale cache and read past a buffer).
TEST(IndexedDataset, FingerprintCoversEveryEntry) {
  const fs::path dir = scratch("fingerprint");
  std::vector<std::string> docs;
  for (int i = 0; i < 9000; ++i) docs.push_back(std::string(size_t(1 + i % 13), char('a' + i % 26)));
  PreprocessOptions o;
  o.inputs = {write_text(dir, docs)};
  o.output_prefix = (dir / "many").string();
  o.progress = false;
  preprocess(o, ByteTokenizer());
  const uint64_t before = IndexedDataset(o.output_prefix).fingerprint();
  std::string idx;
  {
    std::ifstream in(dir / "many.idx", std::ios::binary);
    idx.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  int64_t n = 0;
  std::memcpy(&n, &idx[18], 8);
  // Swap sequences 1 and 3 (lengths and offsets): still a valid index, a different dataset.
  const auto swap_bytes = [&](size_t a, size_t b, size_t len) {
    for (size_t k = 0; k < len; ++k) std::swap(idx[a + k], idx[b + k]);
  };
  swap_bytes(34 + 4 * 1, 34 + 4 * 3, 4);
  swap_bytes(size_t(34 + 4 * n + 8 * 1), size_t(34 + 4 * n + 8 * 3), 8);
  std::ofstream(dir / "many.idx", std::ios::binary | std::ios::trunc) << idx;
  EXPECT_NE(IndexedDataset(o.output_prefix).fingerprint(), before);
}

TEST(IndexedDataset, WriterRejectsTokensThatDoNotFit) {
  const fs::path dir = scratch("fit");
  IndexedDatasetWriter w((dir / "u16").string(), 8);
  const std::vector<int32_t> too_big = {1, 70000};
  EXPECT_THROW(w.add_sequence(too_big), DataError);
}

Config loader_config(const std::vector<DataSource>& paths, const fs::path& cache, int dp) {
  Config c;
  c.data.paths = paths;
  c.data.cache_dir = cache.string();
  c.data.split = "90,10,0";
  c.train.seq_len = 16;
  c.model.max_seq_len = 16;
  c.train.micro_batch = 2;
  c.train.global_batch = 8;
  c.parallel.dp = dp;
  c.train.seed = 5;
  resolve(c);
  return c;
}

std::string corpus() {
  const char* src = std::getenv("HOKUSAI_SOURCE_DIR");
  return (fs::path(src ? src : ".") / "data" / "corpus-en.txt").string();
}

TEST(DataLoader, RanksTileTheGlobalBatchAndResumeIsExact) {
  const fs::path dir = scratch("shard");
  const int64_t steps = 6, G = 8, B = 2, T = 16;
  const int64_t samples[3] = {steps * G, 4, 0};
  const auto quiet = [](const std::string&) {};
  const DataLoader one(loader_config({{corpus(), 1}}, dir, 1), {}, samples, quiet);
  for (int dp : {1, 2, 4}) {
    const DataLoader loader(loader_config({{corpus(), 1}}, dir, dp), {}, samples, quiet);
    for (int64_t step = 0; step < steps; ++step) {
      std::vector<int32_t> whole(size_t(G * T)), whole_y(size_t(G * T));
      one.fill(DataLoader::train, step * G, G, whole.data(), whole_y.data());
      // Every rank's micro-batches, in rank order, concatenate to the dp=1 global batch.
      std::vector<int32_t> joined, tok(size_t(B * T)), tgt(size_t(B * T));
      for (int r = 0; r < dp; ++r)
        for (int m = 0; m < G / (B * dp); ++m) {
          loader.fill_micro_batch(step * G, m, r, tok.data(), tgt.data());
          joined.insert(joined.end(), tok.begin(), tok.end());
        }
      EXPECT_EQ(joined, whole) << "dp=" << dp << " step " << step;
    }
  }
  // A new loader (a restarted job) at step 4 reads what the first one read at step 4.
  const DataLoader restarted(loader_config({{corpus(), 1}}, dir, 1), {}, samples, quiet);
  std::vector<int32_t> a(size_t(B * T)), b(size_t(B * T)), y(size_t(B * T));
  one.fill_micro_batch(4 * G, 3, 0, a.data(), y.data());
  restarted.fill_micro_batch(4 * G, 3, 0, b.data(), y.data());
  EXPECT_EQ(a, b);
}

// kDocs preprocessed with the byte tokenizer into dir/d.{bin,idx}.
std::shared_ptr<const IndexedDataset> byte_dataset(const fs::path& dir) {
  PreprocessOptions o;
  o.inputs = {write_text(dir, kDocs)};
  o.output_prefix = (dir / "d").string();
  o.progress = false;
  preprocess(o, ByteTokenizer());
  return std::make_shared<const IndexedDataset>(o.output_prefix);
}

// A longer run (more samples) or a resumed one reads the same samples in the same order: sample i
// does not depend on how many samples the index was built for.
TEST(GptDataset, SampleOrderDoesNotDependOnTheRunLength) {
  const fs::path dir = scratch("gpt_prefix");
  auto data = byte_dataset(dir);
  const int64_t T = 7, n = data->total_tokens() / T / 3;  // a third of an epoch
  const GptDataset short_run(data, 0, data->sequences(), T, n, 5, (dir / "cache").string());
  for (int64_t longer : {n + 1, 2 * n + 3, 7 * n}) {
    const GptDataset long_run(data, 0, data->sequences(), T, longer, 5, (dir / "cache").string());
    ASSERT_GE(long_run.size(), longer);
    std::vector<int32_t> a(size_t(T + 1)), b(size_t(T + 1));
    for (int64_t i = 0; i < short_run.size(); ++i) {
      short_run.sample(i, a.data());
      long_run.sample(i, b.data());
      ASSERT_EQ(a, b) << "sample " << i << " of an index for " << longer << " samples";
    }
  }
}

// A sample-index cache damaged in place (same name, same size) is one error naming it when a
// sample reads a bad entry, never a read outside the dataset (found by tests/fuzz).
TEST(GptDataset, DamagedCacheIsAnErrorNamingIt) {
  const fs::path dir = scratch("gpt_damaged");
  auto data = byte_dataset(dir);
  std::string cache;
  int64_t n = 0;
  {
    const GptDataset g(data, 0, data->sequences(), 5, 40, 3, (dir / "cache").string());
    cache = g.cache_file();
    n = g.size();
  }
  {
    std::fstream f(cache, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-4, std::ios::end);  // the last shuffle entry (4-byte columns at this size)
    const int32_t bad = 1 << 30;
    f.write(reinterpret_cast<const char*>(&bad), 4);
  }
  const GptDataset g(data, 0, data->sequences(), 5, 40, 3, (dir / "cache").string());
  std::vector<int32_t> out(6);
  try {
    for (int64_t i = 0; i < n; ++i) g.sample(i, out.data());
    FAIL() << "a damaged cache file was read without an error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(cache), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("delete it to rebuild"), std::string::npos) << e.what();
  }
}

TEST(GptDataset, SamplesTileTheShuffledStreamAcrossEpochs) {
  const fs::path dir = scratch("gpt");
  auto data = byte_dataset(dir);
  const int64_t T = 5, total = data->total_tokens();
  const int64_t n = 3 * total / T;  // needs several epochs
  const GptDataset g(data, 0, data->sequences(), T, n, 11, (dir / "cache").string());
  EXPECT_GE(g.epochs(), 3);
  // The index holds whole blocks of samples (at least n); their inputs are the first m*T tokens
  // of the shuffled multi-epoch stream, each once: every complete epoch contributes every
  // document's tokens once.
  const int64_t m = g.size();
  EXPECT_GE(m, n);
  std::map<int32_t, int64_t> inputs, per_epoch;
  for (int64_t i = 0; i < m; ++i) {
    std::vector<int32_t> s(size_t(T + 1));
    g.sample(i, s.data());
    for (int64_t k = 0; k < T; ++k) ++inputs[s[size_t(k)]];
  }
  for (int64_t s = 0; s < data->sequences(); ++s)
    for (int32_t t : read_all(*data, s)) ++per_epoch[t];
  const int64_t full_epochs = (m * T) / total;
  int64_t counted = 0;
  for (const auto& [t, c] : inputs) counted += c;
  EXPECT_EQ(counted, m * T);
  for (const auto& [t, c] : per_epoch) {
    EXPECT_GE(inputs[t], full_epochs * c) << "token " << t;
    EXPECT_LE(inputs[t], (full_epochs + 1) * c) << "token " << t;
  }
  // Same arguments, same cache file, same samples; another seed, another order.
  const GptDataset again(data, 0, data->sequences(), T, n, 11, (dir / "cache").string());
  EXPECT_FALSE(again.built_cache());
  const GptDataset other(data, 0, data->sequences(), T, n, 12, (dir / "cache").string());
  std::vector<int32_t> a(size_t(T + 1)), b(size_t(T + 1));
  bool differs = false;
  for (int64_t i = 0; i < n; ++i) {
    g.sample(i, a.data());
    again.sample(i, b.data());
    EXPECT_EQ(a, b);
    other.sample(i, b.data());
    differs = differs || a != b;
  }
  EXPECT_TRUE(differs);
}

TEST(BlendedDataset, ProportionsWithinOnePercentOverEveryWindow) {
  const fs::path dir = scratch("blend");
  std::vector<std::shared_ptr<GptDataset>> parts;
  const std::vector<double> weights = {0.5, 0.3, 0.2};
  const int64_t N = 60000;
  for (size_t k = 0; k < weights.size(); ++k) {
    PreprocessOptions o;
    o.inputs = {write_text(dir, {kDocs[k] + " part " + std::to_string(k)})};
    o.output_prefix = (dir / ("part" + std::to_string(k))).string();
    o.progress = false;
    preprocess(o, ByteTokenizer());
    auto data = std::make_shared<const IndexedDataset>(o.output_prefix);
    parts.push_back(std::make_shared<GptDataset>(data, 0, 1, 8, int64_t(weights[k] * N * 1.005) + 1, 3,
                                                 (dir / "cache").string()));
  }
  const BlendedDataset blend(parts, weights, N, (dir / "cache").string());
  constexpr int64_t kWindow = 10000;
  std::vector<int64_t> prefix(3, 0);
  std::vector<std::vector<int64_t>> counts(size_t(N + 1), std::vector<int64_t>(3, 0));
  for (int64_t i = 0; i < N; ++i) {
    counts[size_t(i + 1)] = counts[size_t(i)];
    ++counts[size_t(i + 1)][size_t(blend.dataset_of(i))];
  }
  for (int64_t start = 0; start + kWindow <= N; start += 997)
    for (size_t k = 0; k < 3; ++k) {
      const double share = double(counts[size_t(start + kWindow)][k] - counts[size_t(start)][k]) / kWindow;
      EXPECT_NEAR(share, weights[k], 0.01) << "dataset " << k << " window at " << start;
    }
}

TEST(Tokenizer, SentencePieceModelLoadsAndRoundTrips) {
  const fs::path dir = scratch("spm");
  // Training SentencePiece models is not hokusai's job; the test makes one to load.
  std::ofstream(dir / "train.txt") << std::ifstream(corpus()).rdbuf();
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + (dir / "train.txt").string() + " --model_prefix=" + (dir / "m").string() +
      " --vocab_size=300 --model_type=bpe --input_sentence_size=2000 --shuffle_input_sentence=false"
      " --minloglevel=2");
  ASSERT_TRUE(status.ok()) << status.ToString();
  const auto tok = make_tokenizer(TokenizerKind::sentencepiece, (dir / "m.model").string());
  EXPECT_EQ(tok->vocab_size(), 300);
  const std::string text = "In the beginning God created the heavens and the earth.";
  const auto ids = tok->encode(text);
  EXPECT_LT(ids.size(), text.size());  // pieces, not bytes
  EXPECT_EQ(tok->decode(ids), text);
  PreprocessOptions o;
  o.inputs = {write_text(dir, {text})};
  o.output_prefix = (dir / "sp").string();
  o.progress = false;
  preprocess(o, *tok);
  const IndexedDataset d(o.output_prefix);
  auto want = ids;
  want.push_back(tok->end_of_document());
  EXPECT_EQ(read_all(d, 0), want);
  EXPECT_THROW(make_tokenizer(TokenizerKind::sentencepiece, (dir / "none.model").string()), DataError);
}

}  // namespace
}  // namespace hokusai
