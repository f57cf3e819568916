#include "train/setup_report.hpp"

#include <fmt/format.h>

#include "comm/collectives.hpp"
#include "hokusai/memory.hpp"
#include "plan/memory.hpp"

namespace hokusai {

namespace {

// "4..7" or, interleaved, "2..3, 10..11"
std::string stage_layer_list(const ModelDims& d) {
  std::string out;
  for (int c = 0; c < d.chunks; ++c) {
    const int64_t first = d.global_layer(c * d.chunk_layers());
    out += fmt::format("{}{}..{}", c ? ", " : "", first, first + d.chunk_layers() - 1);
  }
  return out;
}

// The placement and one line per collective the run uses, with the algorithm chosen for it.
void log_comm(spdlog::logger& lg, const RunShape& s) {
  const comm::GridComms& comms = s.comms;
  if (comms.world.size() == 1) return;
  for (const std::string& line : comms.placement.description) lg.info("{}", line);
  const int tp = comms.tp.size();
  const int64_t act_bytes = 4 * int64_t(s.cfg.train.micro_batch) * s.cfg.train.seq_len * s.cfg.model.hidden;
  const comm::AllreduceAlgorithm tp_algorithm = s.cfg.comm.tp_allreduce;
  if (tp > 1)
    lg.info("comm: tp activation allreduce over {} ranks ({:.2f} MB per call): {} (comm.tp_allreduce: {})", tp,
            1e-6 * double(act_bytes),
            tp_algorithm == comm::AllreduceAlgorithm::automatic
                ? comm::describe_policy(act_bytes, act_bytes, tp, comm::Layout::flat)
                : std::string(name_of(tp_algorithm)),
            name_of(tp_algorithm));
  if (comms.pp.size() > 1)
    lg.info("comm: pipeline activations and gradients ({:.2f} MB per micro-batch): non-blocking point-to-point, "
            "tagged by micro-batch", 1e-6 * double(act_bytes));
  for (const std::string& line : s.sync.describe()) lg.info("{}", line);
}

}  // namespace

double log_run_shape(spdlog::logger& lg, const RunShape& s) {
  const Config& cfg = s.cfg;
  const ModelDims& d = s.model.dims();
  const int world = s.comms.world.size(), pp = s.comms.pp.size(), dp = s.comms.dp.size();
  const int64_t n_params = arena_size(s.model.table()), B = cfg.train.micro_batch, T = cfg.train.seq_len;
  lg.info("model: {} L={} C={} NH={}{} F={} V={} (padded {}), {:.2f}M parameters{}, {:.1f} MFLOP/token",
          name_of(cfg.model.family), d.L_total, d.C, d.NH_total,
          d.KV_total != d.NH_total ? fmt::format(" KV={}", d.KV_total) : std::string(), d.F_total, d.V, d.Vp,
          double(n_params) / 1e6,
          world > 1 ? " on rank 0" : "", s.flops_per_token / 1e6);
  lg.info("batch: {} x {} tokens per micro-batch, {} micro-batches per step ({} tokens); gemm={}{} threads={}", B, T,
          s.micro_batches, s.tokens_per_step, name_of(cfg.kernels.gemm),
          s.gemm.backend == kernels::GemmBackend::native
              ? " (" + std::string(kernels::sgemm_kernel_name(s.gemm.isa)) + ")"
              : std::string(),
          s.threads);
  if (cfg.train.precision != kernels::Precision::fp32)
    lg.info("precision: {}; master weights, gradients, Adam state, norms, softmax and the loss in fp32{}",
            kernels::gemm_precision_path(s.gemm),
            cfg.train.precision == kernels::Precision::fp16
                ? fmt::format("; loss scale from {:g}, doubled after {} good steps", cfg.train.loss_scale,
                              cfg.train.loss_scale_window)
                : std::string());
  lg.info("run directory: {}", s.run_dir);
  // Memory of this rank by owner (the peak RSS at the end is the check of this account).
  const plan::MemoryAccount mem = plan::account_memory({.params = n_params,
                                                        .optimizer_params = s.optimizer_params,
                                                        .activation_bytes = s.model.activation_bytes(),
                                                        .pipeline_bytes = s.pipe.buffer_bytes(),
                                                        .dp = dp,
                                                        .zero1 = s.sync.zero1(),
                                                        .dp_rank_zero = s.comms.dp.rank() == 0});
  const double mb = 1.0 / (1 << 20);
  lg.info("memory (rank {}): parameters {:.1f} MiB, gradients {:.1f} MiB, optimizer state {:.1f} MiB{}, "
          "activations and scratch {:.1f} MiB ({} micro-batch slot(s), recompute {}, {} attention), communication buffers "
          "{:.1f} MiB, total {:.1f} MiB{}",
          s.comms.world.rank(), mem.params * mb, mem.grads * mb, mem.optimizer * mb,
          s.sync.zero1() ? " (ZeRO-1 shard)" : "", mem.activations * mb, s.model.slots(), name_of(s.model.recompute()),
          name_of(s.model.attention()),
          mem.comm * mb, mem.steady() * mb,
          mem.checkpoint_gather > 0
              ? fmt::format(", {:.1f} MiB at a checkpoint (ZeRO-1 Adam state gathered here)", mem.peak() * mb)
              : std::string());
  if (cfg.kernels.huge_pages) {
    const std::string mode = huge_page_mode();
    if (mode != "madvise" && mode != "always")
      lg.info("huge pages: asked for, but transparent huge pages are {} on this system: base pages "
              "(/sys/kernel/mm/transparent_hugepage/enabled; kernels.huge_pages)",
              mode);
    else if (s.huge_page_bytes == 0)
      lg.info("huge pages: none of those arenas reaches {} MiB, the smallest advised for them (kernels.huge_pages)",
              kHugePageMinBytes >> 20);
    else
      lg.info("huge pages: {:.1f} MiB of those arenas advised for huge pages of {} KiB (transparent huge pages: "
              "{}; kernels.huge_pages)",
              double(s.huge_page_bytes) * mb, huge_page_bytes() >> 10, mode);
  }
  if (pp > 1)
    lg.info("pipeline: {} stages, {} over {} micro-batches per step (bubble {:.0f}% modelled); stage {} holds "
            "layers {}{}{}",
            pp, d.chunks > 1 ? fmt::format("interleaved 1F1B with {} chunks per stage", d.chunks) : "1F1B",
            s.micro_batches, 100.0 * plan::pipeline_bubble(pp, d.chunks, s.micro_batches), s.comms.pp.rank(),
            stage_layer_list(d), d.has_embedding ? " and the embedding" : "",
            d.has_head ? (d.tied && !d.has_embedding ? " and the head (tied wte copy)" : " and the head") : "");
  if (dp > 1)
    lg.info("data parallel: {} ranks, each {} micro-batches of {} per step; {}", dp, s.micro_batches, B,
            s.sync.zero1()
                ? "ZeRO-1: gradients reduce-scattered, each rank updates its shard of parameters and Adam state (" +
                      std::to_string(s.sync.shard().size()) + " of " + std::to_string(n_params) +
                      "), parameters all-gathered"
                : std::string("gradients summed in per-layer buckets overlapped with backward"));
  log_comm(lg, s);
  return mem.peak() * mb;
}

}  // namespace hokusai
