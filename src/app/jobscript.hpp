// `hokusai jobscript`: a complete Slurm or PJM batch script for a config's parallel layout.
//
// Pure text generation from the resolved config and the options below (no scheduler is called,
// nothing is submitted); the one side effect of the command is writing the files. What a
// generated script does, in both dialects:
//   - asks for nodes x ranks-per-node = tp x pp x dp ranks and threads per rank;
//   - fixes the run directory, so a requeued or resubmitted job finds it and adds --resume when
//     a checkpoint exists there;
//   - shortly before the time limit (Slurm: --signal=B:USR1@lead; PJM: a timer in the script,
//     PJM having no early signal) sends SIGUSR1 to the ranks: they checkpoint and exit 75;
//   - exit 75 (time limit, scontrol requeue, preemption: every stop signal) -> the job requeues
//     itself (Slurm: scontrol requeue) or resubmits itself (PJM: pjsub), and continues;
//     any other failure -> the job stops, printing the log's last error line;
//   - PJM only: a virtual-coordinate file (--vcoordfile) that puts every MPI rank where hokusai's
//     placement wants its grid rank on the torus (so the placement is the identity), written
//     beside the script, and the binary staged node-locally with llio_transfer.
#pragma once

#include <string>
#include <vector>

#include "hokusai/config.hpp"

namespace hokusai {

enum class Scheduler { slurm, pjm };

struct JobscriptOptions {
  Scheduler scheduler = Scheduler::slurm;
  int nodes = 0;                 // required
  int ranks_per_node = 0;        // 0: ranks / nodes
  int threads_per_rank = 0;      // 0: kernels.threads, else (PJM) 48 / ranks per node, (Slurm) 1
  std::string time = "01:00:00"; // Slurm --time / PJM elapse, HH:MM:SS
  int signal_lead_s = 300;       // SIGUSR1 this long before the time limit
  std::string partition, account;  // Slurm; empty: the cluster's default
  std::string rscgrp, group;       // PJM; empty: the site's default
  std::string launcher = "srun";   // Slurm: srun (--mpi=pmix) or mpirun
  std::string shape;               // PJM node shape AxBxC; empty: derived from the node count
  std::string gfscache;            // PJM: -x PJM_LLIO_GFSCACHE=<volumes>; empty: not set
  bool llio_transfer = true;       // PJM: stage the binary node-locally
  int max_requeues = 50;           // give up after this many requeues (a job that never progresses)
  std::string job_name;            // empty: the config's file name
  // Absolute paths written into the script.
  std::string hokusai, config, run_dir, script, vcoord;
  std::vector<std::string> sets;   // --set overrides, passed on to `hokusai train`
  std::string command_line;        // what produced the script (its header says so)
};

struct Jobscript {
  std::string script;
  std::string vcoord;                 // PJM: the --vcoordfile's text (empty for Slurm)
  std::vector<std::string> notes;     // what was chosen and why (printed by the command)
};

// Throws ConfigError naming the option when the layout does not fit the request (ranks not
// divisible into the nodes, a bad time, an unknown launcher, a shape of another node count).
Jobscript make_jobscript(const Config& cfg, const JobscriptOptions& opts);

}  // namespace hokusai
