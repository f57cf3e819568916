#include "app/calibrate.hpp"

#include <fmt/format.h>
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <functional>
#include <ostream>
#include <thread>

#include "comm/grid.hpp"
#include "comm/nonblocking.hpp"
#include "hokusai/model.hpp"
#include "kernels/gemm.hpp"
#include "kernels/ops.hpp"
#include "kernels/peak.hpp"
#include "model/layers.hpp"
#include "plan/cost.hpp"

namespace hokusai {

namespace {

using Clock = std::chrono::steady_clock;

// Median seconds of `f` over at least 3 runs and about `budget` seconds (one warm-up run first).
double median_seconds(const std::function<void()>& f, double budget) {
  f();
  std::vector<double> t;
  const auto start = Clock::now();
  while (t.size() < 3 || (std::chrono::duration<double>(Clock::now() - start).count() < budget && t.size() < 50)) {
    const auto t0 = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + long(t.size() / 2), t.end());
  return t[t.size() / 2];
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos)
      return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

double rss_mib() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

double memory_gib() {
  return double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE)) / double(1 << 30);
}

std::vector<float> filled(int64_t n) {
  std::vector<float> v(size_t(std::max<int64_t>(n, 1)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * float(int(i % 97) - 48);
  return v;
}

// The dimensions of the config's model split over tp (stage 0 of a one-stage layout).
ModelDims dims_at(Config cfg, int tp, int micro_batch) {
  cfg.parallel.tp = tp, cfg.parallel.pp = 1, cfg.parallel.dp = 1, cfg.parallel.stage_layers.clear();
  cfg.train.micro_batch = micro_batch;
  return plan::stage_dims(cfg, 0);
}

// The block's elementwise ops, forward and backward, with the model's kernels on real buffers.
double elementwise_seconds(const ModelDims& d, int64_t B, int64_t T, double budget) {
  const int64_t N = B * T, C = d.C, F = d.F, QKV = d.qkv_rows();
  const bool gpt2 = d.family == Family::gpt2;
  const int64_t FC = gpt2 ? F : 2 * F, W = std::max({C, FC, QKV});
  std::vector<float> x = filled(N * C), y = filled(N * C), z = filled(N * C), qkv = filled(N * QKV), fch = filled(N * FC),
                     act = filled(N * F), xn = filled(N * C), rstd = filled(N), w = filled(W), dw = filled(W), db = filled(W), dy = filled(N * C),
                     dfch = filled(N * FC), dact = filled(N * F), dqkv = filled(N * QKV);
  namespace k = kernels;
  return median_seconds(
      [&] {
        // forward: each norm keeps its normalized rows (xn) and makes its output from them
        for (int i = 0; i < 2; ++i) {
          k::norm_rows_forward(xn.data(), y.data(), rstd.data(), x.data(), w.data(), gpt2 ? w.data() : nullptr, N, C, 1e-5,
                               gpt2, kernels::Precision::fp32);
          k::residual_forward(z.data(), x.data(), y.data(), N * C);
        }
        if (gpt2) {
          k::bias_forward(qkv.data(), w.data(), N, QKV);
          k::bias_forward(y.data(), w.data(), N, C);
          k::bias_forward(fch.data(), w.data(), N, F);
          k::bias_forward(z.data(), w.data(), N, C);
          k::gelu_forward(act.data(), fch.data(), N * F);
        } else {
          k::rope_forward(qkv.data(), B, T, d.NH, d.KV, d.HS, 10000.0);
          k::swiglu_forward(act.data(), fch.data(), N, F);
        }
        // backward, as block_backward: the output gradient (z) becomes d(resid2), then the input's
        // gradient, in place; the zeroed buffers are the ones the model zeroes (GELU's gradient is
        // made in place over the activation's: a copy of dact stands in for it, dact stays as made)
        std::fill(dqkv.begin(), dqkv.end(), 0.0f);
        if (gpt2)
          std::copy_n(dact.begin(), N * F, dfch.begin());
        else
          std::fill(dfch.begin(), dfch.end(), 0.0f);
        const auto norm_backward = [&](float* din) {  // the output rebuilt for the weight gradient, then backward
          k::norm_scale_forward(y.data(), xn.data(), w.data(), gpt2 ? w.data() : nullptr, N, C);
          k::norm_rows_backward(din, dw.data(), gpt2 ? db.data() : nullptr, dy.data(), xn.data(), w.data(), rstd.data(),
                                N, C, gpt2);
        };
        norm_backward(z.data());
        norm_backward(z.data());
        if (gpt2) {
          k::bias_backward(db.data(), dy.data(), N, C);
          k::bias_backward(db.data(), dfch.data(), N, F);
          k::bias_backward(db.data(), dy.data(), N, C);
          k::gelu_backward_in_place(dfch.data(), fch.data(), N * F);
        } else {
          k::swiglu_backward(dfch.data(), dact.data(), fch.data(), N, F);
          k::rope_backward(dqkv.data(), B, T, d.NH, d.KV, d.HS, 10000.0);
        }
      },
      budget);
}

}  // namespace

plan::MachineSpec calibrate_machine(const Config& cfg_in, const CalibrateOptions& o, const comm::Communicator& world,
                                    std::ostream& log) {
  plan::MachineSpec m;
  const int rank = world.rank(), ranks = world.size();
  // The network first, between ranks 0 and 1 (the others wait for the end without spinning): the
  // latency of a ping-pong, and the allreduce the comm layer's policy picks at the tensor- and
  // data-parallel sizes, from which the formulas' bandwidth is fitted (its γ from a local sum).
  const comm::Communicator pair = world.split(rank < 2 ? 0 : 1, rank);
  if (ranks >= 2 && rank <= 1) {
    const int peer = 1 - rank;
    std::vector<float> buf = filled(int64_t(1) << 24);  // 64 MiB
    const auto pingpong = [&](int64_t n) {
      if (rank == 0) {
        comm::isend(world, buf.data(), n, peer, 7).wait();
        comm::irecv(world, buf.data(), n, peer, 8).wait();
      } else {
        comm::irecv(world, buf.data(), n, peer, 7).wait();
        comm::isend(world, buf.data(), n, peer, 8).wait();
      }
    };
    for (int i = 0; i < 10; ++i) pingpong(2);
    auto t0 = Clock::now();
    for (int i = 0; i < 200; ++i) pingpong(2);
    const double alpha = std::chrono::duration<double>(Clock::now() - t0).count() / 400.0;
    // γ: summing n bytes into n bytes on one core.
    std::vector<float> other = filled(int64_t(1) << 22);
    t0 = Clock::now();
    for (int r = 0; r < 5; ++r)
      for (size_t i = 0; i < other.size(); ++i) buf[i] += other[i];
    const double reduce_gbs = 5.0 * 16.0 * (1 << 20) / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
    std::vector<double> beta;
    for (int64_t n : {int64_t(3) << 17, int64_t(1) << 22, int64_t(1) << 24}) {  // 1.5, 16, 64 MiB
      const double bytes = 4.0 * double(n);
      const int reps = n < (1 << 20) ? 20 : 5;
      comm::allreduce(pair, buf.data(), n, comm::ReduceOp::sum);
      pair.barrier();
      t0 = Clock::now();
      for (int r = 0; r < reps; ++r) comm::allreduce(pair, buf.data(), n, comm::ReduceOp::sum);
      const double t = std::chrono::duration<double>(Clock::now() - t0).count() / reps;
      // Two ranks (ring): 2α + n·β + (n/2)·γ.
      beta.push_back(std::max(t - 2.0 * alpha - 0.5 * bytes / (reduce_gbs * 1e9), 1e-12) / bytes);
    }
    std::sort(beta.begin(), beta.end());
    m.intra_node = {1e6 * alpha, 1.0 / beta[1] / 1e9, reduce_gbs};
    if (rank == 0)
      log << fmt::format("calibrate: MPI between ranks 0 and 1: {:.2f} us latency; allreduce fits {:.2f} GB/s with "
                         "sums at {:.2f} GB/s\n",
                         m.intra_node.alpha_us, m.intra_node.bandwidth_gbs, reduce_gbs);
  }
  if (rank != 0) {
    float done = 0;
    comm::Request r = comm::irecv(world, &done, 1, 0, 9);
    while (!r.test()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return {};
  }
  const auto finish = [&] {
    for (int q = 1; q < ranks; ++q) {
      const float done = 1;
      comm::isend(world, &done, 1, q, 9).wait();
    }
  };
  Config cfg = cfg_in;
  const int cores = int(std::thread::hardware_concurrency());
  std::vector<int> threads = o.threads.empty() ? std::vector<int>{1, cores} : o.threads;
  threads.erase(std::unique(threads.begin(), threads.end()), threads.end());
  // mpirun binds each rank to one core by default (Open MPI with 2 ranks or fewer): the thread
  // counts above one would then share that core and the table would be wrong.
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    const int usable = CPU_COUNT(&allowed);
    const int most = *std::max_element(threads.begin(), threads.end());
    if (most > usable) {
      finish();
      throw std::runtime_error(fmt::format(
          "calibrate: --threads asks for {} threads but this process may run on {} CPU(s) only (mpirun binds ranks to "
          "cores: run it as mpirun --bind-to none -np 2 hokusai calibrate ...)", most, usable));
    }
  }
  const std::vector<int> tps = o.tp.empty() ? std::vector<int>{1, 2} : o.tp;
  const std::vector<int> mbs = o.micro_batches.empty() ? std::vector<int>{cfg.train.micro_batch} : o.micro_batches;
  const auto peak = kernels::probe_peak_fp32(1, 0.5);
  m.cpu = cpu_model();
  m.name = o.name.empty() ? "local" : o.name;
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  m.source = fmt::format("measured (hokusai calibrate, {}, {}{})", date, cfg.source.empty() ? "defaults" : cfg.source,
                         ranks >= 2 ? ", MPI with 2 ranks" : ", MPI not measured (run under mpirun -np 2)");
  m.cores_per_node = cores;
  m.ranks_per_node = 1;
  m.max_nodes = 1;
  m.peak_gflops_fp32 = peak.per_core_gflops;
  m.peak_gflops_bf16 = std::max(peak.bf16_per_core_gflops, peak.amx_bf16_per_core_gflops);
  m.memory_gib = memory_gib();
  log << fmt::format("calibrate: {} ({} cores, {:.1f} GiB), fp32 peak {:.1f} GFLOP/s per core ({})\n", m.cpu, cores,
                     m.memory_gib, m.peak_gflops_fp32, peak.isa);
  if (ranks < 2) m.intra_node = {1.0, 5.0, 10.0};  // not measured: stated in `source`
  m.inter_node = m.intra_node;
  kernels::GemmWorkspace ws;
  {
    // What a rank holds besides the model: code, libraries, MPI, the OpenMP threads and the GEMM
    // packing buffers after a product at the model's widest shape — this process now, before the
    // measurements allocate their own buffers.
    const ModelDims d = dims_at(cfg, 1, mbs.front());
    const int64_t N = int64_t(mbs.front()) * cfg.train.seq_len;
    std::vector<float> a = filled(N * d.C), b = filled(d.Vl * d.C), c = filled(N * d.Vl);
    omp_set_num_threads(*std::max_element(threads.begin(), threads.end()));
    kernels::gemm({cfg.kernels.gemm, *std::max_element(threads.begin(), threads.end()), kernels::GemmIsa::automatic, &ws},
                  kernels::Op::N, kernels::Op::T, N, d.Vl, d.C, 1.0f, a.data(), d.C, b.data(), d.C, 0.0f, c.data(), d.Vl);
    m.process_mib = rss_mib() - 4.0 * double(a.size() + b.size() + c.size()) / double(1 << 20);
  }
  for (int t : threads) {
    omp_set_num_threads(t);
    const kernels::GemmContext ctx{cfg.kernels.gemm, t, kernels::GemmIsa::automatic, &ws};
    // GEMMs at the model's shapes, per tensor-parallel width and micro-batch.
    std::vector<plan::GemmCall> calls;
    for (int tp : tps)
      for (int mb : mbs) {
        const ModelDims d = dims_at(cfg, tp, mb);
        const int64_t N = int64_t(mb) * cfg.train.seq_len;
        for (bool bwd : {false, true})
          for (const auto& list : {plan::layer_gemms(d, N, bwd), plan::head_gemms(d, N, bwd)})
            for (const plan::GemmCall& g : list)
              if (std::none_of(calls.begin(), calls.end(), [&](const plan::GemmCall& c) {
                    return c.ops == g.ops && c.m == g.m && c.n == g.n && c.k == g.k;
                  }))
                calls.push_back(g);
      }
    // The table in fp32 and, for a config with a 16-bit train.precision, in that precision too:
    // the planner then reads the run's products from what they measured, not from the peaks.
    std::vector<kernels::Precision> precisions{kernels::Precision::fp32};
    if (cfg.train.precision != kernels::Precision::fp32) precisions.push_back(cfg.train.precision);
    // ctx for products in `precision`, on the unit the trainer picks for it.
    const auto in_precision = [&](kernels::Precision precision) {
      kernels::GemmContext c = ctx;
      c.precision = precision;
      c.isa = kernels::fastest_isa(precision, peak);
      return c;
    };
    for (const plan::GemmCall& g : calls)
      for (const kernels::Precision precision : precisions) {
        const bool ta = g.ops[0] == 'T', tb = g.ops[1] == 'T';
        const kernels::GemmContext pctx = in_precision(precision);
        std::vector<float> a = filled(g.m * g.k), b = filled(g.k * g.n), c(size_t(g.m * g.n));
        const double s = median_seconds(
            [&] {
              kernels::gemm(pctx, ta ? kernels::Op::T : kernels::Op::N, tb ? kernels::Op::T : kernels::Op::N, g.m, g.n,
                            g.k, 1.0f, a.data(), ta ? g.m : g.k, b.data(), tb ? g.k : g.n, 0.0f, c.data(), g.n);
            },
            o.seconds);
        const double flops = 2.0 * double(g.m) * double(g.n) * double(g.k);
        m.gemm.push_back({g.ops, g.m, g.n, g.k, t, flops / s / 1e9, 0.0, std::string(name_of(precision))});
        if (t == 1 && cores > 1) {
          // The same product on one core while every core runs it (private buffers): the rate a
          // rank gets when the node's other ranks compute too.
          std::vector<double> busy(static_cast<size_t>(cores));
#pragma omp parallel num_threads(cores)
          {
            kernels::GemmContext one{cfg.kernels.gemm, 1, pctx.isa, nullptr};
            one.precision = precision;
            std::vector<float> pa = filled(g.m * g.k), pb = filled(g.k * g.n), pc(static_cast<size_t>(g.m * g.n));
            std::vector<double> times;
            for (int r = 0; r < 5; ++r) {
#pragma omp barrier
              const auto s0 = Clock::now();
              kernels::gemm(one, ta ? kernels::Op::T : kernels::Op::N, tb ? kernels::Op::T : kernels::Op::N, g.m, g.n,
                            g.k, 1.0f, pa.data(), ta ? g.m : g.k, pb.data(), tb ? g.k : g.n, 0.0f, pc.data(), g.n);
              times.push_back(std::chrono::duration<double>(Clock::now() - s0).count());
            }
            std::sort(times.begin(), times.end());
            busy[size_t(omp_get_thread_num())] = times[2];
          }
          std::sort(busy.begin(), busy.end());
          m.gemm.back().busy_gflops = flops / busy[busy.size() / 2] / 1e9;
        }
      }
    // Contention: the block's GEMMs on one thread each, on t threads at once (private buffers),
    // against one thread alone — what a core loses when the node's other cores compute too.
    if (t == 1) {
      m.contention.push_back({1, 1.0});
    } else {
      const ModelDims d1 = dims_at(cfg, 1, mbs.front());
      const std::vector<plan::GemmCall> block = plan::layer_gemms(d1, int64_t(mbs.front()) * cfg.train.seq_len, false);
      const auto run_block = [&](kernels::GemmWorkspace& w, std::vector<std::vector<float>>& bufs) {
        const kernels::GemmContext one{cfg.kernels.gemm, 1, kernels::GemmIsa::automatic, &w};
        for (size_t i = 0; i < block.size(); ++i) {
          const plan::GemmCall& g = block[i];
          const bool ta = g.ops[0] == 'T', tb = g.ops[1] == 'T';
          kernels::gemm(one, ta ? kernels::Op::T : kernels::Op::N, tb ? kernels::Op::T : kernels::Op::N, g.m, g.n, g.k,
                        1.0f, bufs[3 * i].data(), ta ? g.m : g.k, bufs[3 * i + 1].data(), tb ? g.k : g.n, 0.0f,
                        bufs[3 * i + 2].data(), g.n);
        }
      };
      const auto buffers = [&] {
        std::vector<std::vector<float>> b;
        for (const plan::GemmCall& g : block) b.push_back(filled(g.m * g.k)), b.push_back(filled(g.k * g.n)),
                                              b.push_back(filled(g.m * g.n));
        return b;
      };
      double alone = 0;
      {
        kernels::GemmWorkspace w;
        auto b = buffers();
        alone = median_seconds([&] { run_block(w, b); }, o.seconds);
      }
      std::vector<double> together(static_cast<size_t>(t));
#pragma omp parallel num_threads(t)
      {
        kernels::GemmWorkspace w;
        auto b = buffers();
        const int me = omp_get_thread_num();
        run_block(w, b);
#pragma omp barrier
        std::vector<double> times;
        for (int r = 0; r < 5; ++r) {
          const auto s0 = Clock::now();
          run_block(w, b);
          times.push_back(std::chrono::duration<double>(Clock::now() - s0).count());
#pragma omp barrier
        }
        std::sort(times.begin(), times.end());
        together[size_t(me)] = times[2];
      }
      std::sort(together.begin(), together.end());
      m.contention.push_back({t, std::max(1.0, together[together.size() / 2] / alone)});
    }
    log << fmt::format("calibrate: {} thread(s): {} GEMM shapes{}, a core at {:.3f}x its time alone when {} compute\n",
                       t, calls.size(), precisions.size() > 1 ? " in fp32 and " + std::string(name_of(precisions[1])) : "",
                       m.contention.back().value, t);
    // Attention per (sequence, head): one sequence of all heads (tp 1), both kinds, in each
    // precision of the GEMM table (its inner products on the trainer's unit).
    const ModelDims d = dims_at(cfg, 1, 1);
    const int64_t T = cfg.train.seq_len;
    std::vector<float> qkv = filled(T * d.qkv_rows()), out = filled(T * d.NH * d.HS), dout = filled(T * d.NH * d.HS),
                       dqkv(size_t(T * d.qkv_rows())), lse(size_t(d.NH * T));
    for (const kernels::Precision precision : precisions)
      for (Attention kind : {Attention::flash, Attention::gemm}) {
        const kernels::GemmContext actx = in_precision(precision);
        std::vector<float> probs(kind == Attention::gemm ? size_t(d.NH * T * T) : 1);
        const auto fwd = [&] {
          if (kind == Attention::flash)
            model::flash_attention_forward(actx, out.data(), lse.data(), qkv.data(), 1, T, d.NH, d.KV, d.HS);
          else
            model::attention_forward(actx, out.data(), probs.data(), qkv.data(), 1, T, d.NH, d.KV, d.HS);
        };
        const double f = median_seconds(fwd, o.seconds);
        fwd();
        const double b = median_seconds(
            [&] {
              if (kind == Attention::flash)
                model::flash_attention_backward(actx, dqkv.data(), dout.data(), out.data(), lse.data(), qkv.data(), 1,
                                                T, d.NH, d.KV, d.HS);
              else
                model::attention_backward(actx, dqkv.data(), dout.data(), probs.data(), qkv.data(), 1, T, d.NH, d.KV,
                                          d.HS);
            },
            o.seconds);
        m.attention.push_back({std::string(name_of(kind)), T, d.HS, t, 1e6 * f / double(d.NH),
                               1e6 * b / double(d.NH), std::string(name_of(precision))});
      }
    // Elementwise ops of a block, the cross-entropy, the optimizer.
    const int64_t N = int64_t(mbs.front()) * T;
    const plan::ElementwiseBytes eb = plan::elementwise_bytes(d, N);
    m.op_bandwidth.push_back(
        {t, (eb.forward + eb.backward) / elementwise_seconds(d, mbs.front(), T, o.seconds) / 1e9});
    {
      std::vector<float> logits = filled(N * d.Vl), dlogits = filled(N * d.Vl), losses = filled(N), lsev = filled(N),
                         dl(size_t(N), 1.0f / float(N));
      std::vector<int32_t> targets(static_cast<size_t>(N));
      for (int64_t i = 0; i < N; ++i) targets[size_t(i)] = int32_t((i * 7919) % d.V);
      const double s = median_seconds(
          [&] {
            kernels::softmax_xent_forward(losses.data(), lsev.data(), logits.data(), targets.data(), N, d.Vl, d.V);
            kernels::softmax_xent_backward(dlogits.data(), dl.data(), logits.data(), lsev.data(), targets.data(), N,
                                           d.Vl, d.V, 0);
          },
          o.seconds);
      m.xent_ns.push_back({t, 1e9 * s / double(N * d.Vl)});
    }
    {
      const int64_t n = int64_t(1) << 23;
      std::vector<float> p = filled(n), g = filled(n), mm = filled(n), vv = filled(n);
      int64_t step = 1;
      const double s = median_seconds(
          [&] {
            double ss = kernels::sum_squares(g.data(), n);
            kernels::adamw_update(p.data(), g.data(), mm.data(), vv.data(), n,
                                  {1e-4, 0.9, 0.95, 1e-8, 0.1 + 0.0 * ss, step++});
            std::fill(g.begin(), g.end(), 0.0f);
          },
          o.seconds);
      m.optimizer_ns.push_back({t, 1e9 * s / double(n)});
    }
    // The whole model against the sum of its parts: two blocks and the head, forward + backward.
    {
      Config small = cfg;
      small.model.layers = 2;
      small.parallel = ParallelConfig{};
      small.train.micro_batch = mbs.front();
      small.train.global_batch = mbs.front();
      small.kernels.threads = t;
      const ModelDims sd = plan::stage_dims(small, 0);
      // In the run's precision, as plan_run predicts it (its products from that precision's table).
      Model<float> model(sd, mbs.front(), T, 1, Recompute::none, cfg.kernels.attention, cfg.train.precision,
                         cfg.kernels.huge_pages);
      model.init(1);
      std::vector<int32_t> tokens(static_cast<size_t>(N)), targets(static_cast<size_t>(N));
      for (int64_t i = 0; i < N; ++i)
        tokens[size_t(i)] = int32_t((i * 31) % sd.V), targets[size_t(i)] = int32_t((i * 17 + 3) % sd.V);
      kernels::GemmContext run_ctx = ctx;
      run_ctx.precision = cfg.train.precision;
      run_ctx.isa = kernels::fastest_isa(cfg.train.precision, peak);
      const ComputeContext cc{run_ctx, nullptr, {}};
      const double measured = median_seconds(
          [&] {
            model.forward(cc, tokens.data(), targets.data(), mbs.front(), T, 0, 0, HeadPass::gradient, 1.0f / float(N));
            model.backward(cc, tokens.data(), targets.data(), 1.0f / float(N));
          },
          8 * o.seconds);
      plan::MachineSpec parts = m;
      parts.compute_factor.clear();
      const plan::Plan predicted = plan::plan_run(small, parts, 1);
      const plan::StagePlan& st = predicted.stages.front();
      m.compute_factor.push_back({t, measured / (st.forward_s + st.backward_s)});
    }
    log << fmt::format("calibrate: {} thread(s): attention, elementwise {:.1f} GB/s, cross-entropy {:.2f} ns/logit, "
                       "optimizer {:.2f} ns/parameter, whole model {:.3f}x its parts\n",
                       t, m.op_bandwidth.back().value, m.xent_ns.back().value, m.optimizer_ns.back().value,
                       m.compute_factor.back().value);
  }
  // Efficiencies for shapes the table lacks: the median measured fraction of peak.
  std::vector<double> eff;
  for (const plan::GemmPoint& g : m.gemm)
    if (g.precision == "fp32") eff.push_back(g.gflops / (m.peak_gflops_fp32 * g.threads));
  std::nth_element(eff.begin(), eff.begin() + long(eff.size() / 2), eff.end());
  if (!eff.empty()) m.gemm_efficiency = std::clamp(eff[eff.size() / 2], 0.05, 1.0);
  finish();
  return m;
}

}  // namespace hokusai
