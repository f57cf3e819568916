// Config loading, overrides and validation: one test per class of bad config, each asserting the
// message names the file/line and the key.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "hokusai/config.hpp"

namespace hokusai {
namespace {

namespace fs = std::filesystem;

std::string write_yaml(const std::string& name, const std::string& text) {
  const fs::path dir = fs::temp_directory_path() / "hokusai_test_config";
  fs::create_directories(dir);
  const fs::path p = dir / name;
  std::ofstream(p) << text;
  return p.string();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

Config load_and_check(const std::string& path, const std::vector<std::string>& sets = {}) {
  Config c = load_config(path);
  for (const auto& s : sets) apply_override(c, s);
  resolve(c);
  validate(c);
  return c;
}

TEST(Config, LoadsTypedFieldsAndOverrides) {
  const auto p = write_yaml("ok.yaml", "model:\n  family: llama\n  hidden: 128\n  heads: 4\n"
                                       "train:\n  steps: 7\n  seq_len: 64\noptimizer:\n  lr: 1e-3\n"
                                       "data:\n  paths: [a.txt, {path: b, weight: 0.25}]\n");
  Config c = load_and_check(p, {"optimizer.lr=3e-4", "parallel.dp=1", "logging.progress=false"});
  EXPECT_EQ(c.model.family, Family::llama);
  EXPECT_EQ(c.model.hidden, 128);
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-4);
  EXPECT_FALSE(c.logging.progress);
  EXPECT_EQ(c.data.paths, (std::vector<DataSource>{{"a.txt", 1.0}, {"b", 0.25}}));
  EXPECT_EQ(c.model.ffn_hidden, 384);  // llama default: 8/3 * 128 rounded up to 64
}

TEST(Config, UnknownKeyNamesFileLineAndNearestKey) {
  const auto p = write_yaml("unknown.yaml", "model:\n  layers: 2\noptimizer:\n  lrr: 0.1\n");
  const auto msg = error_of([&] { load_config(p); });
  EXPECT_NE(msg.find("unknown.yaml:4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'optimizer.lrr'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'optimizer.lr'"), std::string::npos) << msg;
}

TEST(Config, MisspelledSectionSuggestsTheField) {
  const auto p = write_yaml("section.yaml", "optimzer:\n  lr: 0.1\n");
  const auto msg = error_of([&] { load_config(p); });
  EXPECT_NE(msg.find("section.yaml:1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'optimzer'"), std::string::npos) << msg;
}

TEST(Config, UnknownOverrideKey) {
  Config c;
  const auto msg = error_of([&] { apply_override(c, "train.step=10"); });
  EXPECT_NE(msg.find("'train.step'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'train.steps'"), std::string::npos) << msg;
}

TEST(Config, WrongTypeNamesKeyAndLine) {
  const auto p = write_yaml("type.yaml", "train:\n  steps: 10\n  micro_batch: eight\n");
  const auto msg = error_of([&] { load_config(p); });
  EXPECT_NE(msg.find("type.yaml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.micro_batch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;
  Config c;
  EXPECT_NE(error_of([&] { apply_override(c, "optimizer.lr=fast"); }).find("optimizer.lr"), std::string::npos);
  EXPECT_NE(error_of([&] { apply_override(c, "model.family=bert"); }).find("gpt2, llama"), std::string::npos);
  EXPECT_NE(error_of([&] { apply_override(c, "train.steps=1.5"); }).find("expected an integer"), std::string::npos);
  EXPECT_NE(error_of([&] { apply_override(c, "data.paths=[{file: a}]"); }).find("unknown field 'file'"),
            std::string::npos);
}

TEST(Config, ImpossibleValuesNameTheField) {
  struct Bad {
    std::string set, field;
  };
  const Bad cases[] = {
      {"model.hidden=250", "model.hidden"},          // not divisible by heads=8
      {"optimizer.lr=-0.1", "optimizer.lr"},         // negative
      {"train.seq_len=4096", "train.seq_len"},       // longer than the position table
      {"train.global_batch=12", "train.global_batch"},  // not a multiple of micro_batch=8
      {"parallel.tp=3", "parallel.tp"},              // does not divide heads=8
      {"optimizer.beta2=1.0", "optimizer.beta2"},
      {"model.vocab_size=100", "model.vocab_size"},  // byte tokenizer needs 257
      {"data.paths=[{path: a, weight: -1}]", "data.paths"},
      {"data.tokenizer=sentencepiece", "data.tokenizer_model"},
      {"parallel.stage_layers=[2, 2]", "parallel.stage_layers"},  // two stages for pp=1
      {"parallel.stage_layers=[3]", "parallel.stage_layers"},     // sums to 3 of 4 layers
      {"parallel.stage_layers=[a]", "parallel.stage_layers"},     // not an integer
      {"parallel.recompute_stages=[1]", "parallel.recompute_stages"},  // no stage 1 with pp=1
      {"parallel.recompute=some", "parallel.recompute"},
      {"parallel.virtual_stages=2", "parallel.virtual_stages"},  // interleaving needs pp > 1
      {"parallel.virtual_stages=0", "parallel.virtual_stages"},
  };
  const auto p = write_yaml("base.yaml", "model:\n  hidden: 256\n  heads: 8\n");
  for (const auto& c : cases) {
    const auto msg = error_of([&] { load_and_check(p, {c.set}); });
    EXPECT_NE(msg.find(c.field), std::string::npos) << c.set << " -> " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
  // The location of a value from the file is part of the message.
  const auto p2 = write_yaml("bad_hidden.yaml", "model:\n  hidden: 250\n  heads: 8\n");
  const auto msg = error_of([&] { load_and_check(p2); });
  EXPECT_NE(msg.find("bad_hidden.yaml:2: model.hidden=250"), std::string::npos) << msg;
}

// Sizes whose products overflowed 32-bit arithmetic and crashed (SIGFPE, SIGSEGV) are one line
// naming the field.
TEST(Config, SizesThatWouldOverflowAreRefused) {
  struct Bad {
    std::vector<std::string> sets;
    std::string field;
  };
  const Bad cases[] = {
      {{"train.micro_batch=65536", "parallel.dp=65536"}, "train.global_batch"},  // micro*dp = 2^32
      {{"model.vocab_pad_multiple=2147483647"}, "model.vocab_pad_multiple"},
      {{"model.vocab_pad_multiple=65536", "parallel.tp=65536", "model.heads=65536"}, "model."},
      {{"kernels.threads=65536"}, "kernels.threads"},
      {{"parallel.tp=1048576", "parallel.pp=1048576"}, "parallel."},
      {{"model.hidden=2147483647"}, "model.hidden"},
  };
  const auto p = write_yaml("big.yaml", "model:\n  hidden: 256\n  heads: 8\n");
  for (const auto& c : cases) {
    const auto msg = error_of([&] { load_and_check(p, c.sets); });
    EXPECT_NE(msg.find(c.field), std::string::npos) << c.sets.front() << " -> " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

TEST(Config, MissingFileAndSyntaxError) {
  auto msg = error_of([&] { load_config("/nonexistent/run.yaml"); });
  EXPECT_NE(msg.find("'/nonexistent/run.yaml' not found"), std::string::npos) << msg;
  const auto p = write_yaml("syntax.yaml", "model:\n  layers: [1, 2\n");
  msg = error_of([&] { load_config(p); });
  EXPECT_NE(msg.find("syntax.yaml"), std::string::npos) << msg;
}

TEST(Config, DumpRoundTrips) {
  Config c = load_and_check(write_yaml("rt.yaml", "model:\n  layers: 3\noptimizer:\n  lr: 0.00123\n"));
  const auto p = write_yaml("dumped.yaml", dump_config(c));
  Config d = load_and_check(p);
  EXPECT_EQ(dump_config(c), dump_config(d));
  EXPECT_EQ(d.model.layers, 3);
  EXPECT_DOUBLE_EQ(d.optimizer.lr, 0.00123);
}

TEST(Config, ShippedConfigsValidate) {
  const std::string src = std::getenv("HOKUSAI_SOURCE_DIR") ? std::getenv("HOKUSAI_SOURCE_DIR") : ".";
  int n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(src) / "configs")) {
    if (e.path().extension() != ".yaml") continue;
    EXPECT_NO_THROW(load_and_check(e.path().string())) << e.path();
    ++n;
  }
  EXPECT_GE(n, 2);
}

TEST(Config, ReferenceDocIsCurrent) {
  const std::string src = std::getenv("HOKUSAI_SOURCE_DIR") ? std::getenv("HOKUSAI_SOURCE_DIR") : ".";
  std::ifstream in(fs::path(src) / "docs" / "configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md missing";
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(doc, config_reference_markdown())
      << "docs/configuration.md is stale: regenerate with `hokusai config --reference > docs/configuration.md`";
  for (const auto& key : config_keys()) EXPECT_NE(doc.find("`" + key + "`"), std::string::npos) << key;
}

}  // namespace
}  // namespace hokusai
