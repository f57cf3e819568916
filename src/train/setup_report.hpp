// The lines a run prints at start, after the model is built: the model and batch, this rank's
// memory account (src/plan/memory), the pipeline and its modelled bubble, data parallelism, the
// placement and the algorithm of each collective.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <string>

#include "comm/grid_comm.hpp"
#include "hokusai/config.hpp"
#include "hokusai/model.hpp"
#include "parallel/gradient_sync.hpp"
#include "parallel/pipeline.hpp"

namespace hokusai {

struct RunShape {
  const Config& cfg;
  const comm::GridComms& comms;
  const Model<float>& model;
  const parallel::Pipeline& pipe;
  const parallel::GradientSync& sync;
  int64_t optimizer_params;  // parameters whose Adam state this rank keeps
  int64_t huge_page_bytes;   // of the model's arenas and the Adam moments, advised for huge pages
  int micro_batches;         // per step on each data-parallel rank
  double tokens_per_step, flops_per_token;
  int threads;
  const kernels::GemmContext& gemm;
  std::string run_dir;
};

// Logs the lines; returns the memory account's peak for this rank (MiB), which the run checks
// against its peak resident memory at the end.
double log_run_shape(spdlog::logger& lg, const RunShape& s);

}  // namespace hokusai
