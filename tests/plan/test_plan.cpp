// The planner's arithmetic: the counted activation memory equals what a built model allocates,
// the pipeline's time formula, the machine file's round trip and errors, nearest-shape lookups,
// the search over the Fugaku-LLM 13B recipe, and the trainer's start-up refusal.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "comm/grid.hpp"
#include "hokusai/config.hpp"
#include "hokusai/model.hpp"
#include "plan/cost.hpp"
#include "plan/network.hpp"
#include "plan/machine.hpp"
#include "scratch.hpp"

namespace hokusai::plan {
namespace {

Config tiny_gpt2() {
  Config c;
  c.model.family = Family::gpt2;
  c.model.layers = 4, c.model.hidden = 64, c.model.heads = 4, c.model.vocab_size = 300, c.model.max_seq_len = 32;
  c.train.seq_len = 32, c.train.micro_batch = 2, c.train.global_batch = 8;
  resolve(c);
  return c;
}

MachineSpec simple_machine() {
  MachineSpec m;
  m.name = "test", m.cpu = "none", m.source = "made up for the test";
  m.cores_per_node = 4, m.ranks_per_node = 1, m.max_nodes = 64;
  m.peak_gflops_fp32 = 100, m.memory_gib = 16, m.process_mib = 50;
  m.op_bandwidth = {{1, 10.0}, {4, 20.0}};
  m.xent_ns = {{4, 1.0}};
  m.optimizer_ns = {{4, 0.5}};
  m.gemm = {{"NT", 512, 768, 768, 1, 80.0}, {"NT", 512, 768, 768, 4, 300.0}, {"TN", 768, 768, 512, 1, 60.0}};
  m.attention = {{"flash", 256, 64, 1, 400.0, 800.0}};
  m.intra_node = {0.5, 5.0, 10.0}, m.inter_node = {1.0, 6.8, 20.0};
  return m;
}

// What loading `text` as the machine file DIR/bad.yaml throws ("no error" when it loads).
std::string machine_error(const std::string& dir, const std::string& text) {
  const std::string path = dir + "/bad.yaml";
  std::ofstream(path, std::ios::trunc) << text;
  try {
    load_machine(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

// The planner counts activations through the constructor's own layout: equal for every mode.
TEST(PlanMemory, CountedActivationsEqualABuiltModel) {
  for (Family family : {Family::gpt2, Family::llama})
    for (Recompute r : {Recompute::none, Recompute::selective, Recompute::full})
      for (Attention a : {Attention::gemm, Attention::flash})
        for (int slots : {1, 3}) {
          Config c = tiny_gpt2();
          c.model.family = family;
          c.model.ffn_hidden = 0;
          resolve(c);
          const ModelDims d = ModelDims::from(c.model, comm::ParallelGrid::single());
          const Model<float> built(d, 2, 32, slots, r, a);
          EXPECT_EQ(Model<float>::activation_bytes(d, 2, 32, slots, r, a), built.activation_bytes())
              << name_of(family) << " " << name_of(r) << " " << name_of(a) << " slots " << slots;
          EXPECT_GT(built.activation_bytes(), 0);
        }
}

// Sequence parallelism at tp = 2: each block keeps half of the residual stream's rows (its two
// norms' normalized rows and 1/std; a chunk's last block its output too), and so does the scratch
// (the norm's output, resid2, the stream between blocks); the slot keeps one gathered output and
// the scratch adds the gathered input, the partial sums and the norms' 4C gradient parts of every
// layer. Counted = built, and exactly that difference.
TEST(PlanMemory, SequenceParallelKeepsHalfTheResidualStream) {
  Config c = tiny_gpt2();
  c.parallel.tp = 2;
  const int slots = 2;
  const ModelDims plain = stage_dims(c, 0);
  c.parallel.sequence_parallel = true;
  const ModelDims sp = stage_dims(c, 0);
  ASSERT_TRUE(sp.sequence_parallel);
  ASSERT_FALSE(plain.sequence_parallel);
  const int64_t B = 2, T = 32, N = B * T, Nr = N / 2, C = sp.C, L = sp.L;
  const Model<float> built(sp, B, T, slots, Recompute::none, Attention::flash);
  EXPECT_EQ(Model<float>::activation_bytes(sp, B, T, slots, Recompute::none, Attention::flash),
            built.activation_bytes());
  ASSERT_GE(L, 3);  // two stream rows in the scratch
  const int64_t per_row = slots * L * (2 * C + 2) + slots * C + 4 * C;
  const int64_t saved_floats = per_row * (N - Nr) - slots * N * C - 2 * N * C - L * 4 * C;
  EXPECT_EQ(Model<float>::activation_bytes(plain, B, T, slots, Recompute::none, Attention::flash) -
                built.activation_bytes(),
            int64_t(sizeof(float)) * saved_floats);
  // The planner sees it too; at tp = 1 the flag changes nothing.
  EXPECT_LT(stage_memory(c, 0, Recompute::none).activations,
            [&] { Config p = c; p.parallel.sequence_parallel = false; return stage_memory(p, 0, Recompute::none).activations; }());
  c.parallel.tp = 1;
  EXPECT_FALSE(stage_dims(c, 0).sequence_parallel);
}

// Sequence parallelism across pipeline stages: a boundary carries this tp rank's token rows only
// (Model::boundary_rows), so a stage's transfer is 1/tp of the activation and so is its pending
// gradient send; only the head's stage keeps a gathered output.
TEST(PlanMemory, SequenceParallelBoundariesCarryTheRanksRows) {
  Config c = tiny_gpt2();
  c.parallel.tp = 2, c.parallel.pp = 2;
  Config sp = c;
  sp.parallel.sequence_parallel = true;
  const int64_t B = c.train.micro_batch, T = c.train.seq_len, N = B * T, C = c.model.hidden;
  for (int stage : {0, 1}) {
    const ModelDims d = stage_dims(sp, stage);
    ASSERT_TRUE(d.sequence_parallel);
    const Model<float> built(d, B, T, 2, Recompute::none, Attention::flash);
    EXPECT_EQ(built.boundary_rows(N).begin, 0);
    EXPECT_EQ(built.boundary_rows(N).size(), N / 2);
    EXPECT_EQ(Model<float>::activation_bytes(d, B, T, 2, Recompute::none, Attention::flash), built.activation_bytes())
        << "stage " << stage;
  }
  EXPECT_EQ(Model<float>(stage_dims(c, 0), B, T, 1, Recompute::none, Attention::flash).boundary_rows(N).size(), N);
  // The pending gradient send of stage 1 (stage 0 sends none): half the rows.
  EXPECT_DOUBLE_EQ(stage_memory(c, 1, Recompute::none).comm - stage_memory(sp, 1, Recompute::none).comm,
                   4.0 * double(N / 2 * C));
  const MachineSpec m = simple_machine();
  const Plan plain = plan_run(c, m, 0), split = plan_run(sp, m, 0);
  for (int stage : {0, 1}) {
    const auto pp_bytes = [&](const Plan& p) {
      for (const Transfer& t : p.stages[size_t(stage)].transfers)
        if (t.group == "pp") return t.bytes;
      return 0.0;
    };
    EXPECT_DOUBLE_EQ(pp_bytes(plain), 4.0 * double(N * C));
    EXPECT_DOUBLE_EQ(pp_bytes(split), 4.0 * double(N / 2 * C)) << "stage " << stage;
  }
}

TEST(PlanMemory, StageMemoryCountsZeroOneAndTheSchedulesSlots) {
  Config c = tiny_gpt2();
  c.parallel.pp = 2;
  const MemoryAccount first = stage_memory(c, 0, Recompute::none);
  // 1F1B: stage 0 keeps 2 micro-batches in flight, the last stage 1.
  EXPECT_GT(first.activations, 0);
  c.parallel.pp = 1, c.parallel.dp = 2;
  c.parallel.zero1 = true;
  const MemoryAccount z = stage_memory(c, 0, Recompute::none);
  EXPECT_NEAR(z.optimizer, z.params, 8.0);  // 8 bytes of Adam state per parameter, over 2 ranks
  EXPECT_GT(z.checkpoint_gather, 0);        // dp rank 0 gathers the whole state at a save
  c.parallel.zero1 = false;
  EXPECT_DOUBLE_EQ(stage_memory(c, 0, Recompute::none).optimizer, 2.0 * z.params);
  // Recomputation only ever lowers a stage's activations.
  EXPECT_LT(stage_memory(c, 0, Recompute::full).activations, stage_memory(c, 0, Recompute::selective).activations + 1);
  EXPECT_LE(stage_memory(c, 0, Recompute::selective).activations, stage_memory(c, 0, Recompute::none).activations);
}

// train.precision: bf16 products speed up by the machine's bf16 peak over its fp32 peak where
// the trainer would use that unit (>= 0.9x, kernels::fastest_isa's rule), else not at all; only
// the products: the step's other terms stay. fp16 products never do: they accumulate in fp32 and
// the fp16 FMAs of real CPUs (A64FX: 2x fp32) accumulate in fp16, so the file's fp16 peak is not
// theirs — before 2026-12-04 the plan of Fugaku's fp16 run used it (the 13B step 17.8 s in fp32,
// 11.7 s in fp16) while the trainer ran those products at the fp32 rate or below.
TEST(PlanTime, LowPrecisionSpeedsUpOnlyProductsOnAFastUnit) {
  MachineSpec m = simple_machine();
  m.peak_gflops_bf16 = 200, m.peak_gflops_fp16 = 200;  // both 2x fp32 (100)
  EXPECT_DOUBLE_EQ(precision_speedup(m, kernels::Precision::fp32), 1.0);
  EXPECT_DOUBLE_EQ(precision_speedup(m, kernels::Precision::bf16), 2.0);
  EXPECT_DOUBLE_EQ(precision_speedup(m, kernels::Precision::fp16), 1.0);
  Config c = tiny_gpt2();
  const Plan fp32 = plan_run(c, m, 1);
  c.train.precision = kernels::Precision::bf16;
  const Plan bf16 = plan_run(c, m, 1);
  c.train.precision = kernels::Precision::fp16;
  const Plan fp16 = plan_run(c, m, 1);
  EXPECT_LT(bf16.step_s, fp32.step_s);
  EXPECT_GT(bf16.step_s, fp32.step_s / 2) << "only the products speed up";
  EXPECT_DOUBLE_EQ(fp16.step_s, fp32.step_s) << "fp16 products at the fp32 rate";
  EXPECT_NE(format_plan(fp16, m).find("fp16 products at the fp32 rate"), std::string::npos) << format_plan(fp16, m);
  m.peak_gflops_bf16 = 80;  // below the threshold: the fp32 kernel on rounded panels
  EXPECT_DOUBLE_EQ(precision_speedup(m, kernels::Precision::bf16), 1.0);
  m.peak_gflops_bf16 = 90;  // exactly the threshold: used, and slower than fp32
  EXPECT_DOUBLE_EQ(precision_speedup(m, kernels::Precision::bf16), 0.9);
  c.train.precision = kernels::Precision::bf16;
  EXPECT_GT(plan_run(c, m, 1).step_s, fp32.step_s) << "a unit at 0.9x is used and slower";
}

// A machine file with a measured table of train.precision (hokusai calibrate with a 16-bit
// config): the run's products come from it, not from the fp32 table scaled by the peaks; fp32 runs
// never read it; the table survives the YAML round trip, and a bad precision names the entry.
TEST(PlanTime, MeasuredPrecisionTableReplacesThePeakRatio) {
  MachineSpec m = simple_machine();
  m.peak_gflops_bf16 = 400;  // the peaks promise 4x
  Config c = tiny_gpt2();
  const Plan fp32 = plan_run(c, m, 1);
  c.train.precision = kernels::Precision::bf16;
  const Plan modelled = plan_run(c, m, 1);
  EXPECT_NE(format_plan(modelled, m).find("MODELLED"), std::string::npos);
  // Measured: bf16 products at 1.5x the fp32 table, slower than the peaks promised.
  std::vector<GemmPoint> bf16;
  for (GemmPoint g : m.gemm) g.gflops *= 1.5, g.precision = "bf16", bf16.push_back(g);
  m.gemm.insert(m.gemm.end(), bf16.begin(), bf16.end());
  EXPECT_TRUE(has_gemm_table(m, "bf16"));
  EXPECT_FALSE(has_gemm_table(m, "fp16"));
  EXPECT_NEAR(gemm_seconds(m, "NT", 512, 768, 768, 1, 0, "bf16"), 2.0 * 512 * 768 * 768 / 120e9, 1e-12);
  EXPECT_NEAR(gemm_seconds(m, "NT", 512, 768, 768, 1), 2.0 * 512 * 768 * 768 / 80e9, 1e-12);
  const Plan measured = plan_run(c, m, 1);
  EXPECT_GT(measured.step_s, modelled.step_s) << "1.5x measured, not 4x from the peaks";
  EXPECT_LT(measured.step_s, fp32.step_s);
  EXPECT_NE(format_plan(measured, m).find("measured bf16 table"), std::string::npos);
  c.train.precision = kernels::Precision::fp32;
  EXPECT_DOUBLE_EQ(plan_run(c, m, 1).step_s, fp32.step_s) << "fp32 runs ignore the bf16 table";
  const std::string dir = testing::scratch_dir("plan", "machine_precision").string();
  std::ofstream(dir + "/m.yaml", std::ios::trunc) << machine_yaml(m, "# test\n");
  const MachineSpec r = load_machine(dir + "/m.yaml");
  ASSERT_EQ(r.gemm.size(), m.gemm.size());
  EXPECT_EQ(r.gemm.back().precision, "bf16");
  EXPECT_EQ(r.gemm.front().precision, "fp32");
  std::string text = machine_yaml(m, "");
  text.replace(text.rfind("precision: bf16"), 15, "precision: int8");
  const std::string error = machine_error(dir, text);
  EXPECT_NE(error.find("precision 'int8'"), std::string::npos) << error;
  EXPECT_NE(error.find("bad.yaml"), std::string::npos) << error;
}

// A 16-bit calibration measures attention in that precision too; the plan of such a run reads
// those points, and falls back to the fp32 ones where the file has none.
TEST(PlanTime, AttentionInTheRunsPrecision) {
  MachineSpec m = simple_machine();
  Config c = tiny_gpt2();
  c.kernels.attention = Attention::flash;
  c.train.precision = kernels::Precision::bf16;
  const Plan fp32_points = plan_run(c, m, 1);
  EXPECT_FALSE(has_attention_table(m, "flash", "bf16"));
  EXPECT_NE(format_plan(fp32_points, m).find("attention at its fp32 rate"), std::string::npos);
  EXPECT_NEAR(attention_seconds(m, "flash", false, 1, 256, 64, 1, "bf16"), 400e-6, 1e-12) << "falls back to fp32";
  m.attention.push_back({"flash", 256, 64, 1, 100.0, 200.0, "bf16"});  // 4x faster in bf16
  EXPECT_TRUE(has_attention_table(m, "flash", "bf16"));
  EXPECT_FALSE(has_attention_table(m, "gemm", "bf16"));
  EXPECT_NEAR(attention_seconds(m, "flash", false, 1, 256, 64, 1, "bf16"), 100e-6, 1e-12);
  EXPECT_NEAR(attention_seconds(m, "flash", true, 1, 512, 64, 1, "bf16"), 4 * 200e-6, 1e-12);
  EXPECT_NEAR(attention_seconds(m, "flash", false, 1, 256, 64, 1), 400e-6, 1e-12) << "fp32 ignores bf16 points";
  const Plan bf16_points = plan_run(c, m, 1);
  EXPECT_LT(bf16_points.step_s, fp32_points.step_s);
  EXPECT_NE(format_plan(bf16_points, m).find("attention from its measured bf16 points"), std::string::npos);
  c.train.precision = kernels::Precision::fp32;
  EXPECT_DOUBLE_EQ(plan_run(c, m, 1).step_s, plan_run(c, simple_machine(), 1).step_s) << "fp32 runs ignore them";
  const std::string dir = testing::scratch_dir("plan", "machine_attention_precision").string();
  std::ofstream(dir + "/m.yaml", std::ios::trunc) << machine_yaml(m, "# test\n");
  const MachineSpec r = load_machine(dir + "/m.yaml");
  ASSERT_EQ(r.attention.size(), 2u);
  EXPECT_EQ(r.attention.front().precision, "fp32");
  EXPECT_EQ(r.attention.back().precision, "bf16");
  std::string text = machine_yaml(m, "");
  text.replace(text.rfind("precision: bf16"), 15, "precision: fp8");
  const std::string error = machine_error(dir, text);
  EXPECT_NE(error.find("attention entry"), std::string::npos) << error;
  EXPECT_NE(error.find("precision 'fp8'"), std::string::npos) << error;
}

TEST(PlanTime, UniformStagesGiveTheBubbleFormula) {
  // Two identical stages (no head/embedding difference matters for the formula's shape): the
  // pipeline time is m·max + (Σ − max)/v, so with P stages of equal t it is (m + P − 1)·t.
  Config c = tiny_gpt2();
  c.parallel.pp = 2;
  const MachineSpec m = simple_machine();
  const Plan p = plan_run(c, m, 2);
  ASSERT_EQ(p.stages.size(), 2u);
  double sum = 0, most = 0;
  for (const StagePlan& s : p.stages) sum += s.per_micro_batch(), most = std::max(most, s.per_micro_batch());
  EXPECT_NEAR(p.pipeline_s, p.micro_batches * most + (sum - most), 1e-12);
  EXPECT_NEAR(p.bubble_s, sum - most, 1e-12);
  EXPECT_GT(p.tokens_per_s, 0);
  EXPECT_GT(p.mfu, 0);
  EXPECT_LT(p.mfu, 1.5);
}

// The gradient reduction hides behind backward only where the network moves it (across nodes);
// dp ranks of one node move its bytes with their own cores, so all of it is exposed there.
TEST(PlanTime, ReductionHidesOnlyAcrossNodes) {
  Config c = tiny_gpt2();
  c.parallel.dp = 2, c.kernels.threads = 1;
  const MachineSpec m = simple_machine();
  const Plan one_node = plan_run(c, m, 1), two_nodes = plan_run(c, m, 2);
  ASSERT_EQ(one_node.stages.size(), 1u);
  ASSERT_EQ(two_nodes.stages.size(), 1u);
  const StagePlan &local = one_node.stages[0], &apart = two_nodes.stages[0];
  ASSERT_GT(local.dp_s, 0);
  EXPECT_DOUBLE_EQ(local.dp_exposed_s, local.dp_s);
  // Across nodes: what backward cannot cover (dp_overlap 1), at least the last bucket.
  EXPECT_LT(apart.dp_exposed_s, apart.dp_s);
  EXPECT_NEAR(apart.dp_exposed_s,
              std::max(apart.dp_s / double(c.model.layers + 1), apart.dp_s - m.dp_overlap * apart.backward_s), 1e-12);
}

// Tied embeddings over a pipeline: the two ends sum their wte gradients (a ring of two, this tp
// rank's vocabulary slice) after backward, in the step's tail; the middle stages and an untied
// model have no such sum.
TEST(PlanTime, TiedEmbeddingSumOnThePipelinesEnds) {
  Config c = tiny_gpt2();
  c.parallel.pp = 4, c.parallel.tp = 2, c.kernels.threads = 1;
  const MachineSpec m = simple_machine();
  const Plan p = plan_run(c, m, 1);
  ASSERT_EQ(p.stages.size(), 4u);
  const double wte = 4.0 * double(padded_vocab(c.model, 2) / 2) * c.model.hidden;
  for (const StagePlan& s : p.stages) {
    const bool end = s.stage == 0 || s.stage == 3;
    const auto it = std::find_if(s.transfers.begin(), s.transfers.end(), [](const Transfer& t) { return t.group == "tied"; });
    ASSERT_EQ(it != s.transfers.end(), end) << "stage " << s.stage;
    if (!end) {
      EXPECT_EQ(s.tied_s, 0.0);
      continue;
    }
    EXPECT_DOUBLE_EQ(it->bytes, wte);
    EXPECT_GT(s.tied_s, 0.0);
    EXPECT_DOUBLE_EQ(s.tied_s, it->seconds);
    EXPECT_GE(p.tail_s, s.tied_s + s.dp_exposed_s + s.optimizer_s - 1e-15);
  }
  c.model.tie_embeddings = false;
  resolve(c);
  for (const StagePlan& s : plan_run(c, m, 1).stages) EXPECT_EQ(s.tied_s, 0.0) << "untied, stage " << s.stage;
}

TEST(PlanTime, MoreThreadsNeverSlowerAndOversubscriptionTimeShares) {
  Config c = tiny_gpt2();
  MachineSpec m = simple_machine();
  m.max_nodes = 1;
  c.kernels.threads = 1;
  const Plan one = plan_run(c, m, 1);
  c.kernels.threads = 4;
  const Plan four = plan_run(c, m, 1);
  EXPECT_LT(four.step_s, one.step_s);
  // 8 one-thread ranks on a 4-core node: at least the node's core time over its cores.
  c.kernels.threads = 1, c.parallel.dp = 8, c.train.global_batch = 16;
  const Plan over = plan_run(c, m, 1);
  EXPECT_GT(over.oversubscription, 1.0);
  EXPECT_NE(over.limit.find("time-share"), std::string::npos);
}

TEST(PlanMachine, YamlRoundTripAndLookups) {
  const MachineSpec m = simple_machine();
  const std::string path = (testing::scratch_dir("plan", "machine") / "m.yaml").string();
  std::ofstream(path) << machine_yaml(m, "# test\n");
  const MachineSpec r = load_machine(path);
  EXPECT_EQ(r.name, m.name);
  EXPECT_EQ(r.cores_per_node, m.cores_per_node);
  EXPECT_EQ(r.gemm.size(), m.gemm.size());
  EXPECT_EQ(r.attention.size(), 1u);
  EXPECT_DOUBLE_EQ(r.inter_node.bandwidth_gbs, 6.8);
  // The exact shape is its measurement; a near one takes the nearest's rate.
  EXPECT_NEAR(gemm_seconds(r, "NT", 512, 768, 768, 1), 2.0 * 512 * 768 * 768 / 80e9, 1e-12);
  EXPECT_NEAR(gemm_seconds(r, "NT", 512, 768, 768, 4), 2.0 * 512 * 768 * 768 / 300e9, 1e-12);
  EXPECT_NEAR(gemm_seconds(r, "NT", 1024, 768, 768, 1), 2.0 * 1024 * 768 * 768 / 80e9, 1e-12);
  EXPECT_NEAR(gemm_seconds(r, "TN", 768, 768, 512, 1), 2.0 * 768 * 768 * 512 / 60e9, 1e-12);
  // Causal attention grows as T²: twice the length, four times the time.
  EXPECT_NEAR(attention_seconds(r, "flash", false, 1, 512, 64, 1), 4 * 400e-6, 1e-12);
  // Memory bandwidth saturates: more threads than measured add nothing.
  EXPECT_NEAR(op_seconds(r, 20e9, 8), 1.0, 1e-12);
  EXPECT_NEAR(op_seconds(r, 10e9, 1), 1.0, 1e-12);
}

TEST(PlanMachine, BadFilesNameTheFileAndField) {
  const std::string dir = testing::scratch_dir("plan", "machine_bad").string();
  const auto error_of = [&](const std::string& text) { return machine_error(dir, text); };
  EXPECT_NE(error_of("name: x\n").find("cores_per_node"), std::string::npos);
  EXPECT_NE(error_of("cores_per_node: 2\npeak_gflops_per_core: {fp32: 10}\nmemory_gib: 1\n").find("op_bandwidth"),
            std::string::npos);
  EXPECT_NE(error_of("cores_per_node: two\n").find("'cores_per_node'"), std::string::npos);
  EXPECT_NE(error_of("cores_per_node: 2\npeak_gflops_per_core: {fp32: 10}\nmemory_gib: 1\nop_bandwidth: [{threads: 1, "
                     "gbs: 5}]\nxent: [{threads: 1, ns: 1}]\noptimizer: [{threads: 1, ns: 1}]\ngemm: [{ops: XX, m: 1, "
                     "n: 1, k: 1, gflops: 1}]\n")
                .find("gemm entry"),
            std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("bad.yaml"), std::string::npos);
  try {
    load_machine(dir + "/missing.yaml");
    FAIL() << "a missing file loaded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.yaml"), std::string::npos);
  }
}

// The published recipe on the Fugaku description: the layout is valid, the 13B model fits only
// with its parameters spread, and one rank is far over a node.
TEST(PlanSearch, FugakuLlm13B) {
  Config c = load_config(std::string(HOKUSAI_SOURCE_DIR) + "/configs/fugaku-llm-13b.yaml");
  resolve(c);
  const MachineSpec m = load_machine(std::string(HOKUSAI_SOURCE_DIR) + "/configs/machines/fugaku.yaml");
  const Plan published = plan_run(c, m, 13824);
  EXPECT_EQ(published.stages.size(), 8u);
  EXPECT_EQ(published.micro_batches, 7);
  EXPECT_TRUE(published.fits()) << format_plan(published, m);
  EXPECT_GT(published.mfu, 0.01);
  EXPECT_LT(published.mfu, 1.0);
  Config one = c;
  one.parallel = ParallelConfig{};
  const Plan single = plan_run(one, m, 1);
  EXPECT_FALSE(single.fits());
  EXPECT_GT(single.peak_bytes(), 200e9);  // 16 bytes a parameter alone
  const std::vector<Plan> found = search_layouts(c, m, 13824);
  ASSERT_FALSE(found.empty());
  EXPECT_TRUE(found.front().fits());
  EXPECT_LE(found.front().step_s, published.step_s * 1.0001);  // the best is at least as fast
  for (size_t i = 1; i < found.size() && found[i].fits(); ++i) EXPECT_LE(found[i - 1].step_s, found[i].step_s);
}


// The network pricing against closed forms where the answer is known (plan/network.hpp).
TEST(PlanNetwork, PatternsOnARingOfNodes) {
  const LinkTier link{1.0, 10.0, 1e9}, node{0.1, 100.0, 1e9};
  const TorusNetwork ring4(comm::Torus{{4}, true}, link, node);
  const double beta = 1.0 / 10e9, n = 1e8;
  const std::vector<std::vector<int>> one{{0, 1, 2, 3}};
  // Ring allreduce on a ring of nodes: 2(p-1) steps of n/p, one hop each, no link shared.
  const Price r = ring4.price(on_nodes(allreduce_steps(comm::AllreduceAlgorithm::ring, 4), one));
  EXPECT_NEAR(r.seconds(n), 1.5 * n * beta + 6e-6, 1e-9);
  // Rabenseifner: its distance-2 exchange (n/2) crosses the middle links twice, the distance-1
  // one (n/4) once, each way: (2·n/2 + n/4)·2 = 2.5 n·β, and 2·(2+1) hops of latency.
  const Price rb = ring4.price(on_nodes(allreduce_steps(comm::AllreduceAlgorithm::rabenseifner, 4), one));
  EXPECT_NEAR(rb.seconds(n), 2.5 * n * beta + 6e-6, 1e-9);
  // Two groups of 2 on the same ring do not share a link; on one node no link is used at all.
  const Price pairs = ring4.price(on_nodes(allreduce_steps(comm::AllreduceAlgorithm::ring, 2), {{0, 1}, {2, 3}}));
  EXPECT_NEAR(pairs.seconds(n), n * beta + 2e-6, 1e-9);
  const Price local = ring4.price(on_nodes(allreduce_steps(comm::AllreduceAlgorithm::ring, 2), {{1, 1}}));
  EXPECT_NEAR(local.seconds(n), n / 100e9 + 0.2e-6, 1e-9);
  // Six ranks: Rabenseifner folds 2 pairs first and unfolds them last (whole vectors).
  const auto six = allreduce_steps(comm::AllreduceAlgorithm::rabenseifner, 6);
  ASSERT_EQ(six.size(), 6u);
  EXPECT_EQ(six.front().size(), 2u);
  EXPECT_DOUBLE_EQ(six.front().front().share, 1.0);
}

TEST(PlanNetwork, TorusAllreduceReachesTheLinkBoundOnASymmetricTorus) {
  // 8x8x8: six parts, one per outgoing link, each link carrying the same bytes at every moment:
  // the time is the bound 2n(p-1)/p over the node's 6 links, plus 2·Σ(e-1) steps' latency.
  const LinkTier link{0.5, 6.8, 1e12};
  const double n = 16.0 * (1 << 20), p = 512;
  const double bound = 2 * n * (p - 1) / p / (6 * 6.8e9) + 2 * 21 * 0.5e-6;
  EXPECT_NEAR(torus_allreduce_seconds(comm::Torus{{8, 8, 8}, true}, n, link, 0), bound, bound * 0.01);
  // An injection limit below the links' sum caps it.
  const double capped = torus_allreduce_seconds(comm::Torus{{8, 8, 8}, true}, n, link, 6.8);
  EXPECT_GT(capped, 5.0 * bound);
}

}  // namespace
}  // namespace hokusai::plan
