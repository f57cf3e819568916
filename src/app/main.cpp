// The `hokusai` command. Exit codes: 0 success; 1 a configuration, data or runtime error (one
// line on stderr says what and where); 2 bad command line; 75 stopped by SIGTERM/SIGUSR1 after
// saving a checkpoint (resume with `hokusai train CONFIG --resume --set logging.run_dir=DIR`).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <omp.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "comm/grid_comm.hpp"
#include "comm/shared.hpp"
#include "hokusai/checkpoint.hpp"
#include "hokusai/config.hpp"
#include "hokusai/data.hpp"
#include "hokusai/generate.hpp"
#include "hokusai/train.hpp"
#include "kernels/gemm_tuning.hpp"
#include "kernels/peak.hpp"
#include "app/calibrate.hpp"
#include "app/jobscript.hpp"
#include "app/report.hpp"
#include "ckpt/hf_export.hpp"
#include "ckpt/hf_import.hpp"
#include "plan/cost.hpp"

namespace fs = std::filesystem;
using namespace hokusai;

namespace {

constexpr int kExitError = 1;
constexpr int kExitPreempted = 75;  // EX_TEMPFAIL: try again (resume) later

// Signals are process-wide by nature; this flag is the one piece of process state, read by the
// training loop at step boundaries through TrainOptions::stop.
std::atomic<bool> g_stop_requested{false};
extern "C" void on_stop_signal(int) { g_stop_requested.store(true); }

// `hf_model`: a Hugging Face directory whose config.json replaces the file's model section
// (before the --set overrides).
Config load_resolved(const std::string& path, const std::vector<std::string>& sets, const std::string& hf_model = "") {
  Config cfg = load_config(path);
  if (!hf_model.empty()) cfg.model = hf_model_config(hf_model);
  for (const auto& s : sets) apply_override(cfg, s);
  resolve(cfg);
  validate(cfg);
  return cfg;
}

// The one line an error prints (same format with or without mpirun).
std::string error_line(const std::exception& e) {
  if (dynamic_cast<const ConfigError*>(&e)) return std::string("hokusai: config error: ") + e.what();
  if (dynamic_cast<const DataError*>(&e)) return std::string("hokusai: data error: ") + e.what();
  return std::string("hokusai: error: ") + e.what();
}

// `faults`: the fault-injection fields of TrainOptions (hidden options, for the reliability tests).
int cmd_train(const std::string& path, const std::vector<std::string>& sets, bool dump_only, bool resume,
              const TrainOptions& faults, bool from_hf_config, int* argc, char*** argv) {
  TrainOptions opts = faults;
  opts.resume = resume;
  opts.name = fs::path(path).stem().string();
  opts.stop = &g_stop_requested;
  if (dump_only) {
    Config cfg = load_resolved(path, sets, from_hf_config ? opts.init_from : "");
    if (cfg.logging.run_dir.empty()) cfg.logging.run_dir = "runs/" + opts.name + "-config";
    fs::create_directories(cfg.logging.run_dir);
    const fs::path out = fs::path(cfg.logging.run_dir) / "config.yaml";
    std::ofstream(out) << dump_config(cfg);
    std::cout << dump_config(cfg) << "# written to " << out.string() << "\n";
    return 0;
  }
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  // One process or an mpirun job: MPI is initialised either way (a build without MPI runs over
  // comm/'s one-process MPI, HOKUSAI_WITH_MPI=OFF).
  comm::Environment mpi(argc, argv);
  const comm::Communicator world = comm::Communicator::world();
  // Set-up: every rank reads the same config and the same machine, and the errors of both
  // (config, topology, coordinate file) come after the last collective of describe_machine, so
  // every rank reaches the agreement below. The lowest failing rank prints the one line; the
  // barrier lets it print before any rank exits (mpirun kills the rest when one exits non-zero).
  Config cfg;
  comm::Machine machine;
  std::string setup_error;
  try {
    if (from_hf_config && opts.init_from.empty()) throw ConfigError("--from-hf-config needs --init-from HF_DIR");
    if (resume && !opts.init_from.empty())
      throw ConfigError("--init-from starts a run from a model; --resume continues one: give one of them");
    cfg = load_resolved(path, sets, from_hf_config ? opts.init_from : "");
    check_rank_count(cfg, world.size());
    machine = comm::describe_machine(world, cfg.comm.topology, cfg.comm.coordinates, cfg.comm.ranks_per_node);
  } catch (const std::exception& e) {
    setup_error = error_line(e);
  }
  const int speaker = world.lowest_rank_where(!setup_error.empty());
  if (speaker >= 0) {
    if (world.rank() == speaker) std::fprintf(stderr, "%s\n", setup_error.c_str());
    std::fflush(stderr);
    world.barrier();
    return kExitError;
  }
  try {
    const comm::GridShape shape{cfg.parallel.tp, cfg.parallel.pp, cfg.parallel.dp};
    const comm::GridComms comms = comm::GridComms::build(shape, world, comm::place(shape, machine));
    opts.default_threads = comm::cpus_per_rank(comm::split_node(world));
    const TrainSummary s = train(cfg, comms, opts);
    return s.preempted ? kExitPreempted : 0;
  } catch (const std::exception& e) {
    // Other ranks may be inside a collective: report, then take the whole job down.
    if (world.size() > 1) {
      std::fprintf(stderr, "hokusai: rank %d: %s\n", world.rank(), e.what());
      std::fflush(stderr);
      comm::abort_job(kExitError);
    }
    throw;
  }
}

struct GenerateArgs {
  std::string run;
  std::string prompt;
  SamplingOptions sampling;
  int threads = 0;
  bool all = false;
  std::string logits;  // write the prompt's logits here (text) instead of sampling
};

int cmd_generate(const GenerateArgs& a) {
  const std::string dir = checkpoint_dir(a.run);
  Config cfg = load_config((fs::path(dir) / "config.yaml").string());
  resolve(cfg);
  validate(cfg);
  if (a.threads > 0) omp_set_num_threads(a.threads);
  ComputeContext ctx;
  kernels::GemmWorkspace ws;
  ctx.gemm.backend = cfg.kernels.gemm;
  ctx.gemm.threads = omp_get_max_threads();
  ctx.gemm.workspace = &ws;
  const ModelDims dims = ModelDims::from(cfg.model, comm::ParallelGrid::single());
  Model<float> model(dims, 1, cfg.train.seq_len);
  CheckpointData ck = load_checkpoint(dir, table_hash(model.table()), false);
  model.load_params(ck.params);
  std::string model_path = cfg.data.tokenizer_model;
  if (!model_path.empty()) model_path = resolve_data_path(model_path, {HOKUSAI_SOURCE_DIR});
  const auto tok = make_tokenizer(cfg.data.tokenizer, model_path);
  const std::vector<int32_t> prompt = tok->encode(a.prompt);
  if (!a.logits.empty()) {  // the reference of the export tests: logits of every prompt position
    const int64_t T = int64_t(prompt.size());
    if (T == 0 || T > cfg.train.seq_len)
      throw ConfigError(fmt::format("--logits: the prompt has {} tokens, expected 1 to train.seq_len = {}", T,
                                    cfg.train.seq_len));
    std::vector<int32_t> targets(size_t(T), -1);
    model.forward(ctx, prompt.data(), targets.data(), 1, T);
    std::ofstream f(a.logits, std::ios::trunc);
    f << "# tokens";
    for (int32_t id : prompt) f << ' ' << id;
    f << '\n';
    for (int64_t t = 0; t < T; ++t) {
      const float* row = model.logits() + t * dims.Vl;
      for (int64_t v = 0; v < dims.V; ++v) f << fmt::format("{:.9g}", row[v]) << (v + 1 < dims.V ? ' ' : '\n');
    }
    if (!f.flush()) throw ConfigError("--logits '" + a.logits + "': cannot write it");
    return 0;
  }
  const auto out = generate(model, ctx, prompt, cfg.train.seq_len, a.sampling, tok->end_of_document());
  std::cout << a.prompt << tok->decode(out) << std::endl;
  return 0;
}

// Writes the batch script (and PJM's coordinate file beside it) and says what it chose.
int cmd_jobscript(const std::string& config_path, JobscriptOptions o, const std::string& scheduler,
                  const std::string& out, bool create_run_dir, int argc, char** argv) {
  if (scheduler == "slurm")
    o.scheduler = Scheduler::slurm;
  else if (scheduler == "pjm")
    o.scheduler = Scheduler::pjm;
  else
    throw ConfigError("--scheduler '" + scheduler + "': expected slurm or pjm");
  const Config cfg = load_resolved(config_path, o.sets);
  o.command_line = "hokusai";
  for (int i = 1; i < argc; ++i) o.command_line += std::string(" ") + argv[i];
  if (o.job_name.empty()) o.job_name = fs::path(config_path).stem().string();
  if (o.hokusai.empty()) o.hokusai = fs::canonical("/proc/self/exe").string();
  o.hokusai = fs::absolute(o.hokusai).lexically_normal().string();
  o.config = fs::absolute(config_path).lexically_normal().string();
  if (o.run_dir.empty()) o.run_dir = cfg.logging.run_dir.empty() ? "runs/" + o.job_name : cfg.logging.run_dir;
  o.run_dir = fs::absolute(o.run_dir).lexically_normal().string();
  if (o.scheduler == Scheduler::pjm) {
    if (out.empty()) throw ConfigError("--scheduler pjm needs -o FILE: the --vcoordfile is written beside the script");
    o.script = fs::absolute(out).lexically_normal().string();
    o.vcoord = fs::path(o.script).replace_extension(".vcoord").string();
  }
  const Jobscript j = make_jobscript(cfg, o);
  // The batch system writes the job's output into the run directory: it must exist at submission.
  if (create_run_dir) {
    std::error_code ec;
    fs::create_directories(o.run_dir, ec);
    if (ec) throw ConfigError("--run-dir '" + o.run_dir + "': cannot create it: " + ec.message() +
                              " (or give --no-create and make it before submitting)");
  }
  for (const auto& note : j.notes) std::cerr << "jobscript: " << note << "\n";
  if (out.empty()) {
    std::cout << j.script;
    return 0;
  }
  const auto write = [](const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::trunc);
    f << text;
    if (!f.flush()) throw ConfigError("-o '" + path + "': cannot write it: " + std::strerror(errno));
  };
  write(o.script.empty() ? out : o.script, j.script);
  fs::permissions(out, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec, fs::perm_options::add);
  std::cerr << "jobscript: wrote " << out;
  if (!j.vcoord.empty()) {
    write(o.vcoord, j.vcoord);
    std::cerr << " and " << o.vcoord;
  }
  std::cerr << " (run directory " << o.run_dir << "); submit with "
            << (o.scheduler == Scheduler::slurm ? "sbatch " : "pjsub ") << out << "\n";
  return 0;
}

struct PlanArgs {
  std::string config, machine = "machine.yaml";
  std::vector<std::string> sets;
  int nodes = 0, top = 10;
  bool search = false, json = false;
};

std::vector<int> int_list(const std::string& flag, const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      size_t used = 0;
      out.push_back(std::stoi(item, &used));
      if (used != item.size() || out.back() < 1) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw ConfigError(flag + " '" + text + "': expected positive integers separated by commas");
    }
  }
  return out;
}

int cmd_plan(const PlanArgs& a) {
  const Config cfg = load_resolved(a.config, a.sets);
  if (!fs::exists(a.machine))
    throw ConfigError("--machine '" + a.machine + "': no such file (give one of configs/machines/*.yaml, or measure "
                      "this machine with: hokusai calibrate " + a.config + " -o " + a.machine + ")");
  const plan::MachineSpec m = plan::load_machine(a.machine);
  if (a.search) {
    const std::vector<plan::Plan> plans = plan::search_layouts(cfg, m, a.nodes > 0 ? a.nodes : 1);
    if (a.json) {
      std::cout << "[";
      for (size_t i = 0; i < plans.size() && i < size_t(a.top); ++i) std::cout << (i ? ",\n" : "") << plan::plan_json(plans[i]);
      std::cout << "]\n";
    } else {
      std::cout << plan::format_search(plans, m, size_t(a.top));
    }
    return 0;
  }
  const plan::Plan p = plan::plan_run(cfg, m, a.nodes);
  std::cout << (a.json ? plan::plan_json(p) + "\n" : plan::format_plan(p, m));
  return 0;
}

int cmd_calibrate(const std::string& config, const std::vector<std::string>& sets, const std::string& threads,
                  const std::string& tps, const std::string& mbs, const std::string& out, CalibrateOptions o,
                  int* argc, char*** argv) {
  const Config cfg = load_resolved(config, sets);
  if (!threads.empty()) o.threads = int_list("--threads", threads);
  if (!tps.empty()) o.tp = int_list("--tp", tps);
  if (!mbs.empty()) o.micro_batches = int_list("--micro-batches", mbs);
  comm::Environment mpi(argc, argv);
  const comm::Communicator world = comm::Communicator::world();
  const plan::MachineSpec m = calibrate_machine(cfg, o, world, std::cerr);
  if (world.rank() != 0) return 0;
  const std::string text = plan::machine_yaml(
      m, "# Measured by `hokusai calibrate` on this machine (src/app/calibrate.cpp): every figure below is\n"
         "# measured, none modelled, except the network's when `source` says MPI was not measured.\n");
  std::ofstream f(out, std::ios::trunc);
  f << text;
  if (!f.flush()) throw ConfigError("-o '" + out + "': cannot write it: " + std::strerror(errno));
  std::cerr << "calibrate: wrote " << out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hokusai: LLM pretraining on CPU supercomputers"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "hokusai 0.1.0");

  std::string config_path;
  std::vector<std::string> sets;
  bool dump_only = false, resume = false;
  auto* train_cmd = app.add_subcommand("train", "Train a model described by a YAML config");
  train_cmd->add_option("config", config_path, "YAML config (e.g. configs/tiny.yaml)")->required();
  train_cmd->add_option("--set", sets, "Override a field: --set optimizer.lr=3e-4 (repeatable)");
  train_cmd->add_flag("--dump-config", dump_only,
                      "Write the resolved config to <run_dir>/config.yaml, print it, and exit");
  train_cmd->add_flag("--resume", resume, "Continue logging.run_dir from its newest checkpoint");
  TrainOptions faults;
  bool from_hf_config = false;
  train_cmd->add_option("--init-from", faults.init_from,
                        "Start from the weights of a Hugging Face directory or a hokusai checkpoint (any layout)");
  train_cmd->add_flag("--from-hf-config", from_hf_config, "Take the model section from --init-from's config.json");
  train_cmd->add_flag("--eval-only", faults.eval_only,
                      "Print the validation loss of the starting model (--resume, --init-from) and exit: no "
                      "training step, no checkpoint");
  // Fault injection for the reliability tests (docs/reliability.md); not shown in --help.
  std::string slow_rank;  // R:MS
  train_cmd->add_option("--inject-nonfinite-step", faults.inject_nonfinite_step, "")->group("");
  train_cmd->add_option("--inject-slow-rank", slow_rank, "")->group("");

  GenerateArgs gen;
  auto* gen_cmd = app.add_subcommand("generate", "Sample text from a trained model");
  gen_cmd->add_option("run", gen.run, "Run directory or checkpoints/step_N directory")->required();
  gen_cmd->add_option("--prompt", gen.prompt, "Text to continue");
  gen_cmd->add_option("--tokens", gen.sampling.max_new_tokens, "Tokens to generate")->capture_default_str();
  gen_cmd->add_option("--temperature", gen.sampling.temperature, "Softmax temperature; 0 = greedy")
      ->capture_default_str();
  gen_cmd->add_option("--top-k", gen.sampling.top_k, "Sample among the k likeliest tokens; 0 = all")
      ->capture_default_str();
  gen_cmd->add_option("--seed", gen.sampling.seed, "Sampling seed")->capture_default_str();
  gen_cmd->add_option("--threads", gen.threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)");
  bool whole = false;
  gen_cmd->add_flag("--no-stop", whole, "Do not stop at the end-of-document token");
  gen_cmd->add_option("--logits", gen.logits, "")->group("");  // the export tests' reference

  std::string check_path;
  std::vector<std::string> check_sets;
  bool reference = false;
  auto* cfg_cmd = app.add_subcommand("config", "Validate and print a resolved config, or the field reference");
  cfg_cmd->add_option("config", check_path, "YAML config to validate and print");
  cfg_cmd->add_option("--set", check_sets, "Override a field (repeatable)");
  cfg_cmd->add_flag("--reference", reference, "Print the Markdown reference of every field");

  PreprocessOptions pre;
  std::string pre_tokenizer = "byte", pre_model;
  auto* pre_cmd = app.add_subcommand("preprocess", "Text or JSONL -> Megatron indexed dataset (.bin/.idx)");
  pre_cmd->add_option("--input", pre.inputs, "Input files: .txt (one document per line) or .jsonl")->required();
  pre_cmd->add_option("--output-prefix", pre.output_prefix, "Writes PREFIX.bin and PREFIX.idx")->required();
  pre_cmd->add_option("--tokenizer", pre_tokenizer, "byte or sentencepiece")->capture_default_str();
  pre_cmd->add_option("--tokenizer-model", pre_model, "SentencePiece .model file");
  pre_cmd->add_option("--json-key", pre.json_key, "Field holding the text in JSONL")->capture_default_str();
  pre_cmd->add_option("--format", pre.format, "auto (by extension), text or jsonl")->capture_default_str();

  std::string merge_run, merge_out;
  auto* merge_cmd = app.add_subcommand(
      "merge", "Merge a tensor/pipeline-parallel run's per-rank checkpoints into one serial checkpoint");
  merge_cmd->add_option("run", merge_run, "Run directory of the parallel run")->required();
  merge_cmd->add_option("out", merge_out, "Run directory to write the serial checkpoint into")->required();

  int peak_threads = 0;
  auto* peak_cmd = app.add_subcommand("peak", "Measure this machine's fp32 FMA peak (the MFU denominator)");
  peak_cmd->add_option("--threads", peak_threads, "Threads (0: OMP_NUM_THREADS or all cores)");

  JobscriptOptions job;
  std::string job_config, job_scheduler = "slurm", job_out;
  bool job_mkdir = true;
  auto* job_cmd = app.add_subcommand("jobscript", "Write a Slurm or PJM batch script for a config's layout");
  job_cmd->add_option("config", job_config, "YAML config")->required();
  job_cmd->add_option("--scheduler", job_scheduler, "slurm or pjm")->capture_default_str();
  job_cmd->add_option("--nodes", job.nodes, "Nodes to ask for")->required();
  job_cmd->add_option("--ranks-per-node", job.ranks_per_node, "MPI ranks per node (0: ranks / nodes)");
  job_cmd->add_option("--threads-per-rank", job.threads_per_rank,
                      "OpenMP threads per rank (0: kernels.threads, else 48 / ranks per node on PJM, 1 on Slurm)");
  job_cmd->add_option("--time", job.time, "Time limit HH:MM:SS (Slurm --time, PJM elapse)")->capture_default_str();
  job_cmd->add_option("--signal-lead", job.signal_lead_s, "Seconds before the limit to checkpoint and requeue")
      ->capture_default_str();
  job_cmd->add_option("--partition", job.partition, "Slurm partition (default: the cluster's)");
  job_cmd->add_option("--account", job.account, "Slurm account (default: yours)");
  job_cmd->add_option("--launcher", job.launcher, "Slurm: srun (--mpi=pmix) or mpirun")->capture_default_str();
  job_cmd->add_option("--rscgrp", job.rscgrp, "PJM resource group (default: the site's)");
  job_cmd->add_option("--group", job.group, "PJM group (-g; default: yours)");
  job_cmd->add_option("--shape", job.shape, "PJM node shape AxBxC (default: from --nodes and tp)");
  job_cmd->add_option("--gfscache", job.gfscache, "PJM: volumes for PJM_LLIO_GFSCACHE, e.g. /vol0004:/vol0005");
  job_cmd->add_flag("!--no-llio-transfer", job.llio_transfer, "PJM: do not stage the binary with llio_transfer");
  job_cmd->add_option("--max-requeues", job.max_requeues, "Stop after this many requeues")->capture_default_str();
  job_cmd->add_option("--job-name", job.job_name, "Job name (default: the config's file name)");
  job_cmd->add_option("--run-dir", job.run_dir, "Run directory (default: logging.run_dir, else runs/<config name>)");
  job_cmd->add_option("--hokusai", job.hokusai, "The hokusai binary the job runs (default: this one)");
  job_cmd->add_option("--set", job.sets, "Override a config field, also passed to the job (repeatable)");
  job_cmd->add_option("-o,--output", job_out, "Write the script here (default: standard output)");
  job_cmd->add_flag("!--no-create", job_mkdir,
                    "Do not create the run directory (the job's output goes there: make it before submitting)");

  std::string export_src, export_out, export_dtype = "fp32";
  double export_shard_gb = 5.0;
  auto* export_cmd = app.add_subcommand("export", "Write a run's model as a Hugging Face directory (safetensors)");
  export_cmd->add_option("run", export_src, "Run directory (any layout) or checkpoints/step_N")->required();
  export_cmd->add_option("out", export_out, "Output directory")->required();
  export_cmd->add_option("--dtype", export_dtype, "fp32, bf16 or fp16")->capture_default_str();
  export_cmd->add_option("--max-shard-size", export_shard_gb, "GB per safetensors file before sharding")
      ->capture_default_str();

  std::string import_src, import_out, import_config;
  std::vector<std::string> import_sets;
  auto* import_cmd = app.add_subcommand("import", "Write a Hugging Face model directory as a hokusai checkpoint");
  import_cmd->add_option("hf_dir", import_src, "Hugging Face directory (config.json + safetensors)")->required();
  import_cmd->add_option("out", import_out, "Run directory to write (checkpoints/step_00000000)")->required();
  import_cmd->add_option("--config", import_config,
                         "hokusai config for the rest (default: configs/tiny.yaml's; the model from config.json)");
  import_cmd->add_option("--set", import_sets, "Override a field (repeatable)");

  std::vector<std::string> report_runs;
  std::string report_out = "report.html";
  auto* report_cmd = app.add_subcommand("report", "Write one HTML report (inline SVG) of one or several runs");
  report_cmd->add_option("runs", report_runs, "Run directories (overlaid in one report)")->required();
  report_cmd->add_option("-o,--output", report_out, "HTML file to write")->capture_default_str();

  PlanArgs plan_args;
  auto* plan_cmd = app.add_subcommand(
      "plan", "Predict memory per pipeline stage, step time and MFU of a layout on a machine (no run, no MPI)");
  plan_cmd->add_option("config", plan_args.config, "YAML config")->required();
  plan_cmd->add_option("--machine", plan_args.machine, "Machine file (configs/machines/*.yaml or calibrate's)")
      ->capture_default_str();
  plan_cmd->add_option("--nodes", plan_args.nodes, "Nodes (default: the layout's ranks over the machine's ranks per node)");
  plan_cmd->add_flag("--search", plan_args.search, "Rank every valid layout for --nodes nodes by predicted step time");
  plan_cmd->add_option("--top", plan_args.top, "Layouts --search prints")->capture_default_str();
  plan_cmd->add_flag("--json", plan_args.json, "JSON instead of the tables");
  plan_cmd->add_option("--set", plan_args.sets, "Override a config field (repeatable)");

  std::string cal_config, cal_threads, cal_tp, cal_mb, cal_out = "machine.yaml";
  std::vector<std::string> cal_sets;
  CalibrateOptions cal;
  auto* cal_cmd = app.add_subcommand(
      "calibrate", "Measure this machine's planner file: peaks, GEMMs at the config's shapes, ops, MPI (under mpirun -np 2)");
  cal_cmd->add_option("config", cal_config, "YAML config whose shapes are measured")->required();
  cal_cmd->add_option("--set", cal_sets, "Override a config field (repeatable)");
  cal_cmd->add_option("--threads", cal_threads, "Thread counts, e.g. 1,2 (default: 1 and all cores)");
  cal_cmd->add_option("--tp", cal_tp, "Tensor-parallel widths whose shapes are measured (default: 1,2)");
  cal_cmd->add_option("--micro-batches", cal_mb, "Micro-batch sizes (default: the config's)");
  cal_cmd->add_option("--seconds", cal.seconds, "Seconds per measured point")->capture_default_str();
  cal_cmd->add_option("--name", cal.name, "The machine's name in the file")->capture_default_str();
  cal_cmd->add_option("-o,--output", cal_out, "Machine file to write")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train_cmd) {
      if (!slow_rank.empty() && std::sscanf(slow_rank.c_str(), "%d:%d", &faults.inject_slow_rank, &faults.inject_slow_ms) != 2)
        throw std::runtime_error("--inject-slow-rank '" + slow_rank + "': expected RANK:MILLISECONDS");
      return cmd_train(config_path, sets, dump_only, resume, faults, from_hf_config, &argc, &argv);
    }
    if (*gen_cmd) {
      gen.sampling.stop_at_end_of_document = !whole;
      return cmd_generate(gen);
    }
    if (*cfg_cmd) {
      if (reference) {
        std::cout << config_reference_markdown();
        return 0;
      }
      if (check_path.empty()) throw ConfigError("config: give a YAML file or --reference");
      std::cout << dump_config(load_resolved(check_path, check_sets));
      return 0;
    }
    if (*merge_cmd) {
      std::cout << "wrote " << merge_checkpoint(merge_run, merge_out) << "\n";
      return 0;
    }
    if (*pre_cmd) {
      const std::optional<TokenizerKind> kind = value_named<TokenizerKind>(pre_tokenizer);
      if (!kind) throw ConfigError("--tokenizer: '" + pre_tokenizer + "' is not one of: " + name_list<TokenizerKind>());
      const auto tok = make_tokenizer(*kind, pre_model);
      const auto st = preprocess(pre, *tok);
      std::cout << "wrote " << pre.output_prefix << ".bin/.idx: " << st.documents << " documents, " << st.tokens
                << " tokens (" << tok->name() << "), " << double(st.input_bytes) / 1e6 / std::max(st.seconds, 1e-9)
                << " MB/s\n";
      return 0;
    }
    if (*export_cmd) {
      ExportOptions eo;
      const std::map<std::string, safetensors::DType> dtypes{
          {"fp32", safetensors::DType::F32}, {"bf16", safetensors::DType::BF16}, {"fp16", safetensors::DType::F16}};
      if (!dtypes.count(export_dtype)) throw ConfigError("--dtype '" + export_dtype + "': expected fp32, bf16 or fp16");
      eo.dtype = dtypes.at(export_dtype);
      eo.max_shard_bytes = int64_t(export_shard_gb * double(int64_t(1) << 30));
      const ExportSummary es = export_hf(export_src, export_out, eo);
      std::cout << "exported " << es.checkpoint << " (step " << es.step << "): " << es.tensors << " tensors, "
                << fmt::format("{:.1f}", double(es.bytes) / 1e6) << " MB " << export_dtype << " -> " << export_out << ":";
      for (const auto& f : es.files) std::cout << ' ' << f;
      std::cout << "\n";
      return 0;
    }
    if (*import_cmd) {
      // The model from config.json unless a config is given (then it must match the files).
      Config cfg = import_config.empty() ? Config{} : load_config(import_config);
      if (import_config.empty()) cfg.model = hf_model_config(import_src);
      for (const auto& s : import_sets) apply_override(cfg, s);
      const std::string written = import_hf(import_src, import_out, cfg, false);
      std::cout << "wrote " << written << "\n";
      return 0;
    }
    if (*report_cmd) {
      std::vector<RunMetrics> runs;
      for (const auto& dir : report_runs) runs.push_back(read_run_metrics(dir));
      for (size_t i = 0; i < runs.size(); ++i)  // two runs named alike: say which is which
        for (size_t k = 0; k < i; ++k)
          if (runs[k].name == runs[i].name) runs[i].name = runs[i].dir;
      std::ofstream f(report_out, std::ios::trunc);
      f << render_report(runs);
      if (!f.flush()) throw ConfigError("-o '" + report_out + "': cannot write it: " + std::strerror(errno));
      std::cout << "wrote " << report_out << " (" << runs.size() << " run(s))\n";
      return 0;
    }
    if (*job_cmd) return cmd_jobscript(job_config, job, job_scheduler, job_out, job_mkdir, argc, argv);
    if (*plan_cmd) return cmd_plan(plan_args);
    if (*cal_cmd) return cmd_calibrate(cal_config, cal_sets, cal_threads, cal_tp, cal_mb, cal_out, cal, &argc, &argv);
    if (*peak_cmd) {
      const int t = peak_threads > 0 ? peak_threads : omp_get_max_threads();
      const auto p = kernels::probe_peak_fp32(t, 1.0);
      std::cout << "isa " << p.isa << ": " << p.per_core_gflops << " GFLOP/s per core, peak "
                << p.peak_gflops() << " GFLOP/s for " << p.threads << " threads; measured together now: "
                << p.all_gflops << " GFLOP/s (fp32 FMA)\n";
      if (p.bf16_per_core_gflops > 0)
        std::cout << "bf16 dot products (vdpbf16ps): " << p.bf16_per_core_gflops << " GFLOP/s per core ("
                  << p.bf16_per_core_gflops / p.per_core_gflops << "x fp32)\n";
      if (p.amx_bf16_per_core_gflops > 0)
        std::cout << "bf16 AMX tiles (tdpbf16ps): " << p.amx_bf16_per_core_gflops << " GFLOP/s per core ("
                  << p.amx_bf16_per_core_gflops / p.per_core_gflops << "x fp32)\n";
      const kernels::GemmIsa isa = kernels::resolve_gemm_isa(kernels::GemmIsa::automatic);
      const kernels::CpuModel cpu = kernels::this_cpu_model();
      const kernels::ChosenBlocks b = kernels::sgemm_blocks(isa);
      std::cout << "GEMM: " << kernels::sgemm_kernel_name(isa) << " with blocks mc " << b.blocks.mc << ", kc "
                << b.blocks.kc << ", nc " << b.blocks.nc << ": " << b.why;
      if (!cpu.vendor.empty()) std::cout << "; CPU " << cpu.vendor << " family " << cpu.family << " model " << cpu.model;
      std::cout << "\n";
      if (isa == kernels::GemmIsa::avx512bf16 || isa == kernels::GemmIsa::amx) {
        const kernels::ChosenBlocks h = kernels::sbgemm_blocks(isa);
        const kernels::GemmIsa bf16_isa = kernels::fastest_isa(kernels::Precision::bf16, p);
        std::cout << "bf16 GEMM: " << kernels::sbgemm_kernel(isa).name << " with blocks mc " << h.blocks.mc << ", kc "
                  << h.blocks.kc << ", nc " << h.blocks.nc << ": " << h.why << "; train.precision bf16 runs "
                  << (bf16_isa == isa ? "on it" : "bf16-rounded panels on the fp32 kernel (its unit probes slower)")
                  << "\n";
      } else if (const char* half = kernels::blocks_variable_value(true)) {
        // No 16-bit kernel to apply it to: still one line for a malformed value, and say it does nothing.
        kernels::blocks_from_environment(true, {}, "this CPU (no bf16 kernel)", 1, 1, 1);
        std::cout << kernels::blocks_variable(true) << "=" << half
                  << " has no effect here: this CPU has no bf16 kernel (16-bit products run on the fp32 kernel above)\n";
      }
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", error_line(e).c_str());
    return kExitError;
  }
  return 0;
}
