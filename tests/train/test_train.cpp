// End-to-end behaviour of the trainer on a small model: learning, bit-exact determinism,
// preemption + resume equal to an uninterrupted run, checkpoint integrity errors, generation.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "comm/grid_comm.hpp"
#include "hokusai/checkpoint.hpp"
#include "hokusai/data.hpp"
#include "hokusai/generate.hpp"
#include "hokusai/train.hpp"
#include "scratch.hpp"
#include "train/run_dir.hpp"

namespace hokusai {
namespace {

namespace fs = std::filesystem;

fs::path scratch(const std::string& name) { return testing::scratch_dir("train", name); }

Config small(const std::string& family, const fs::path& run_dir, int64_t steps) {
  Config c;
  c.model.family = parse_name<Family>(family);
  c.model.layers = 2;
  c.model.hidden = 64;
  c.model.heads = 4;
  c.model.max_seq_len = 32;
  c.model.tie_embeddings = family == "gpt2";
  c.train.steps = steps;
  c.train.micro_batch = 4;
  c.train.global_batch = 8;  // two micro-batches: exercises gradient accumulation
  c.train.seq_len = 32;
  c.optimizer.lr = 3e-3;
  c.schedule.warmup_steps = 2;
  c.logging.interval = 1000;
  c.logging.eval_interval = 0;
  c.logging.eval_batches = 2;
  c.logging.run_dir = run_dir.string();
  c.kernels.peak_gflops = 100;  // skip the probe
  c.data.cache_dir = (fs::temp_directory_path() / "hokusai_test_train" / "cache").string();
  c.checkpoint.keep = 10;
  resolve(c);
  return c;
}

// The one-rank job every test trains in, as `hokusai train` without mpirun builds it (MPI is
// initialised once for the test process and finalised at its exit).
const comm::GridComms& one_rank() {
  static const comm::Environment mpi(nullptr, nullptr);
  static const comm::GridComms comms = comm::GridComms::build({1, 1, 1}, comm::Communicator::world());
  return comms;
}

TrainOptions quiet() {
  TrainOptions o;
  o.quiet = true;
  return o;
}

TEST(Train, LossFallsForBothFamilies) {
  for (const std::string family : {"gpt2", "llama"}) {
    const auto s = train(small(family, scratch("learn_" + family), 40), one_rank(), quiet());
    ASSERT_EQ(s.losses.size(), 40u);
    EXPECT_NEAR(s.losses.front(), std::log(257.0), 0.3) << family;
    EXPECT_LT(s.losses.back(), s.losses.front() - 1.5) << family;
    EXPECT_GT(s.last_val_loss, 0.0);
  }
}

TEST(Train, SameSeedGivesBitIdenticalLosses) {
  const auto a = train(small("gpt2", scratch("det_a"), 8), one_rank(), quiet());
  const auto b = train(small("gpt2", scratch("det_b"), 8), one_rank(), quiet());
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_EQ(a.losses[i], b.losses[i]) << "step " << i + 1;
  Config other = small("gpt2", scratch("det_c"), 8);
  other.train.seed = 99;
  EXPECT_NE(train(other, one_rank(), quiet()).losses.front(), a.losses.front());
}

TEST(Train, PreemptedRunResumesExactly) {
  const auto full = train(small("llama", scratch("full"), 8), one_rank(), quiet());
  // A stop request (what SIGTERM sets) stops after the first step with a checkpoint...
  const fs::path dir = scratch("preempted");
  std::atomic<bool> stop{true};
  TrainOptions o = quiet();
  o.stop = &stop;
  const auto first = train(small("llama", dir, 8), one_rank(), o);
  EXPECT_TRUE(first.preempted);
  EXPECT_EQ(first.steps_done, 1);
  ASSERT_TRUE(latest_checkpoint(dir.string()));
  // ...and --resume continues to the same losses, bit for bit.
  TrainOptions r = quiet();
  r.resume = true;
  const auto rest = train(small("llama", dir, 8), one_rank(), r);
  ASSERT_EQ(rest.losses.size(), 7u);
  EXPECT_EQ(first.losses[0], full.losses[0]);
  for (size_t i = 0; i < rest.losses.size(); ++i) EXPECT_EQ(rest.losses[i], full.losses[i + 1]) << "step " << i + 2;
}

// fp16's dynamic loss scale is training state: started far too high (2^28) the first steps
// overflow and halve it; a run stopped after step 1 saves the halved scale (loss_scale.txt) and
// the resumed run goes on from it, so its losses equal an uninterrupted run's bit for bit (a
// resume from train.loss_scale would skip one more step and drift). A damaged file is an error.
TEST(Train, Fp16ResumeKeepsTheLossScale) {
  const auto fp16 = [](const fs::path& dir) {
    Config c = small("gpt2", dir, 8);
    c.train.precision = kernels::Precision::fp16;
    c.train.loss_scale = double(1 << 28);
    return c;
  };
  const auto full = train(fp16(scratch("fp16_full")), one_rank(), quiet());
  const fs::path dir = scratch("fp16_preempted");
  std::atomic<bool> stop{true};
  TrainOptions o = quiet();
  o.stop = &stop;
  const auto first = train(fp16(dir), one_rank(), o);
  ASSERT_EQ(first.steps_done, 1);
  const std::string ck = *latest_checkpoint(dir.string());
  const ModelDims d = ModelDims::from(fp16(dir).model, comm::ParallelGrid::single());
  const CheckpointData saved = load_checkpoint(ck, table_hash(param_table(d)), true);
  EXPECT_EQ(saved.loss_scale.scale, double(1 << 27)) << "step 1 overflows at 2^28 and halves the scale";
  TrainOptions r = quiet();
  r.resume = true;
  const auto rest = train(fp16(dir), one_rank(), r);
  ASSERT_EQ(rest.losses.size(), 7u);
  for (size_t i = 0; i < rest.losses.size(); ++i) EXPECT_EQ(rest.losses[i], full.losses[i + 1]) << "step " << i + 2;
  std::ofstream(fs::path(ck) / "loss_scale.txt") << "loss_scale nan\n";
  try {
    load_checkpoint(ck, table_hash(param_table(d)), true);
    ADD_FAILURE() << "a damaged loss_scale.txt loaded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("loss_scale.txt"), std::string::npos) << e.what();
  }
}

// Extending a run (more train.steps) and resuming: the steps after the resume see the data an
// uninterrupted run of the final length sees (the sample index does not depend on the run length;
// it once re-shuffled), so with a constant learning rate the losses match bit for bit.
TEST(Train, ExtendedRunReadsTheSameData) {
  const auto constant = [](Config c) {
    c.schedule.decay = Decay::constant;
    c.schedule.warmup_steps = 0;
    return c;
  };
  const auto full = train(constant(small("gpt2", scratch("extend_full"), 8)), one_rank(), quiet());
  const fs::path dir = scratch("extend");
  train(constant(small("gpt2", dir, 4)), one_rank(), quiet());
  TrainOptions r = quiet();
  r.resume = true;
  const auto rest = train(constant(small("gpt2", dir, 8)), one_rank(), r);
  ASSERT_EQ(rest.losses.size(), 4u);
  for (size_t i = 0; i < rest.losses.size(); ++i) EXPECT_EQ(rest.losses[i], full.losses[i + 4]) << "step " << i + 5;
}

// Resuming with another train.global_batch reads on from the consumed-sample count.
TEST(Train, ResumeWithAnotherGlobalBatchCountsSamples) {
  const fs::path dir = scratch("batch_change");
  train(small("gpt2", dir, 4), one_rank(), quiet());  // 4 steps of 8 samples
  Config bigger = small("gpt2", dir, 6);
  bigger.train.global_batch = 16;
  TrainOptions r = quiet();
  r.resume = true;
  train(bigger, one_rank(), r);  // 2 steps of 16
  const ModelDims d = ModelDims::from(bigger.model, comm::ParallelGrid::single());
  const CheckpointData ck = load_checkpoint(dir.string(), table_hash(param_table(d)), true);
  EXPECT_EQ(ck.step, 6);
  EXPECT_EQ(ck.consumed_samples, 4 * 8 + 2 * 16);
}

// Young's rule: a save blocking 10 s with a failure every 5 h: sqrt(2 * 10 * 18000) = 600 s, which
// is 300 steps of 2 s.
TEST(Checkpoint, IntervalAdviceFollowsYoungsRule) {
  CheckpointConfig c;
  c.mtbf_hours = 5;
  c.interval = 1000;
  const std::string advice = checkpoint_interval_advice(10.0, 2.0, c);
  EXPECT_NE(advice.find("= 600 s = checkpoint.interval=300"), std::string::npos) << advice;
  EXPECT_NE(advice.find("every 1000 steps = 2e+03 s"), std::string::npos) << advice;
}

// A damaged `latest` (a crash while it was rewritten, a hand edit): --resume falls back to the
// newest complete step_N, says so, and continues bit for bit.
TEST(Checkpoint, DamagedLatestFallsBackToTheNewestCompleteStep) {
  const auto full = train(small("gpt2", scratch("latest_full"), 6), one_rank(), quiet());
  const fs::path dir = scratch("latest_damaged");
  Config cfg = small("gpt2", dir, 6);
  cfg.checkpoint.interval = 2;
  train(cfg, one_rank(), quiet());  // checkpoints at steps 2, 4 and 6
  // Back to the state of a run stopped after step 4 whose `latest` got damaged.
  fs::remove_all(dir / "checkpoints" / "step_00000006");
  std::ofstream(dir / "checkpoints" / "latest", std::ios::trunc) << "step_0000\xff";
  std::string note;
  const auto found = latest_checkpoint(dir.string(), &note);
  ASSERT_TRUE(found);
  EXPECT_EQ(fs::path(*found).filename(), "step_00000004");
  EXPECT_NE(note.find("damaged"), std::string::npos) << note;
  TrainOptions r = quiet();
  r.resume = true;
  const auto rest = train(cfg, one_rank(), r);
  ASSERT_EQ(rest.losses.size(), 2u);
  EXPECT_EQ(rest.losses[0], full.losses[4]);
  EXPECT_EQ(rest.losses[1], full.losses[5]);
  fs::remove(dir / "checkpoints" / "latest");  // missing altogether: the same
  EXPECT_TRUE(latest_checkpoint(dir.string()));
}

TEST(Checkpoint, CorruptionIsReportedNotLoaded) {
  const fs::path dir = scratch("corrupt");
  Config cfg = small("gpt2", dir, 2);
  train(cfg, one_rank(), quiet());
  const std::string ck = *latest_checkpoint(dir.string());
  const std::string state = (fs::path(ck) / "state.bin").string();
  const ModelDims d = ModelDims::from(cfg.model, comm::ParallelGrid::single());
  const uint64_t h = table_hash(param_table(d));
  EXPECT_NO_THROW(load_checkpoint(dir.string(), h, true));
  const auto expect_error = [&](const std::string& fragment, uint64_t hash) {
    try {
      load_checkpoint(ck, hash, true);
      ADD_FAILURE() << "expected an error containing '" << fragment << "'";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("state.bin"), std::string::npos) << e.what();
    }
  };
  expect_error("different model shape", h + 1);
  {
    std::fstream f(state, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1000);
    f.put(char(0x5a));
  }
  expect_error("checksum mismatch", h);
  fs::resize_file(state, fs::file_size(state) - 4);
  expect_error("truncated or corrupt", h);
  {
    std::fstream f(state, std::ios::in | std::ios::out | std::ios::binary);
    f.write("NOTACKPT", 8);
  }
  expect_error("wrong magic", h);
}

TEST(Checkpoint, KeepsNewestAndNeverDropsTheLatest) {
  const fs::path dir = scratch("keep");
  Config cfg = small("gpt2", dir, 6);
  cfg.checkpoint.interval = 1;
  cfg.checkpoint.keep = 2;
  train(cfg, one_rank(), quiet());
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir / "checkpoints"))
    if (e.is_directory()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_00000005", "step_00000006"}));
  EXPECT_EQ(*latest_checkpoint(dir.string()), (dir / "checkpoints" / "step_00000006").string());
}

TEST(Generate, DeterministicAndWithinVocabulary) {
  const fs::path dir = scratch("gen");
  Config cfg = small("gpt2", dir, 20);
  train(cfg, one_rank(), quiet());
  const ModelDims d = ModelDims::from(cfg.model, comm::ParallelGrid::single());
  Model<float> model(d, 1, cfg.train.seq_len);
  model.load_params(load_checkpoint(dir.string(), table_hash(model.table()), false).params);
  ComputeContext ctx;
  SamplingOptions s;
  s.max_new_tokens = 50;
  s.stop_at_end_of_document = false;
  const auto prompt = ByteTokenizer().encode("In the beginning");
  const auto a = generate(model, ctx, prompt, cfg.train.seq_len, s, ByteTokenizer::kEndOfDocument);
  const auto b = generate(model, ctx, prompt, cfg.train.seq_len, s, ByteTokenizer::kEndOfDocument);
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 50u);  // longer than nothing, and past the 32-token window
  for (int32_t id : a) EXPECT_TRUE(id >= 0 && id < 257) << id;
}

}  // namespace
}  // namespace hokusai
