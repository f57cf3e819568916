// The decoder-only Transformer of one rank: its pipeline stage's layers and its tensor-parallel
// slice of each, with parameters, gradients and activations in flat arenas.
//
// Legend: B micro-batch, T sequence, N = B*T tokens, C hidden, NH heads on this rank, HS head
// size, F MLP width on this rank, V real vocabulary, Vp padded vocabulary, Vl embedding rows on
// this rank, L layers on this rank.
//
// Families: gpt2 = LayerNorm (with bias), tanh-GELU MLP, learned absolute positions, biases on
// every linear (the Fugaku-LLM architecture); llama = RMSNorm, SwiGLU MLP, rotary embedding,
// no biases.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "comm/range.hpp"
#include "hokusai/config.hpp"
#include "kernels/gemm.hpp"

namespace hokusai::comm {
class ParallelGrid;  // comm/grid.hpp
}

namespace hokusai {

// Local sizes of this rank's shard, all from the config and the grid.
struct ModelDims {
  Family family = Family::gpt2;
  int64_t L = 0;             // layers on this pipeline stage (all its chunks)
  int64_t L_total = 0;       // layers of the whole model
  int64_t layer_offset = 0;  // global index of this stage's first layer
  // Interleaved pipeline (virtual stages): the stage holds `chunks` model chunks of L/chunks
  // consecutive layers each; chunk c of stage s is virtual stage c*pp + s. One chunk otherwise.
  int chunks = 1, pp = 1, pp_rank = 0;
  int64_t C = 0, NH = 0, HS = 0, F = 0;
  int64_t KV = 0;  // key/value heads on this rank (= NH, or NH / group for grouped-query attention)
  int64_t V = 0, Vp = 0, Vl = 0, vocab_start = 0;
  // Tensor parallelism: this rank's slice of the heads [head_start, head_start + NH) of NH_total,
  // of the key/value heads [kv_head_start, + KV) of KV_total (the groups of its query heads) and
  // of the MLP width [ffn_start, ffn_start + F) of F_total.
  int tp = 1, tp_rank = 0;
  // Sequence parallelism (parallel.sequence_parallel, Megatron's): between the tensor-parallel
  // linears, the norms and residual adds run on this rank's block of the N = B*T token rows only
  // (comm::split_evenly(N, tp, tp_rank)); the column-parallel linears all-gather their input rows,
  // the row-parallel ones reduce-scatter their output. Only with tp > 1 (the trainer sets it).
  bool sequence_parallel = false;
  int64_t NH_total = 0, KV_total = 0, F_total = 0, head_start = 0, kv_head_start = 0, ffn_start = 0;
  int64_t max_T = 0;
  bool tied = true, has_embedding = true, has_head = true;
  double eps = 1e-5, rope_theta = 10000.0, init_std = 0.02;

  // stage_layers: layers per pipeline stage (parallel.stage_layers); empty = as even as possible.
  static ModelDims from(const ModelConfig& m, const comm::ParallelGrid& grid,
                        const std::vector<int>& stage_layers = {}, int chunks = 1);
  bool bias() const { return family == Family::gpt2; }
  // Rows of this rank's fused projection: NH query, KV key and KV value heads of HS each.
  int64_t qkv_rows() const { return (NH + 2 * KV) * HS; }
  // Rows of this rank's MLP up-projection: F (gpt2), or F gate and F up rows (llama's SwiGLU).
  int64_t fc_rows() const { return family == Family::gpt2 ? F : 2 * F; }
  int64_t chunk_layers() const { return L / chunks; }
  // Global index of local layer l (chunk l / chunk_layers()).
  int64_t global_layer(int64_t l) const {
    const int64_t Lc = chunk_layers();
    return chunks == 1 ? layer_offset + l : ((l / Lc) * pp + pp_rank) * Lc + l % Lc;
  }
};

// Model FLOPs per token of one training step (forward + backward) of the whole model at
// sequence length T: 6 * (matmul parameters, output projection included) + 12*L*T*C (attention
// scores and weighted sum). Embedding lookups and recomputation are not counted (MFU convention).
double train_flops_per_token(const ModelConfig& m, int64_t T);

// What initialises a tensor.
enum class Init { normal, normal_residual, ones, zeros };

// One entry of the parameter size table. The same table lays out the parameter, gradient and
// optimizer-state arenas, so every range (a layer, a ZeRO shard, a checkpoint shard) is one
// contiguous slice of each.
struct TensorSpec {
  std::string name;            // "layers.3.qkv_w" (global layer index)
  std::vector<int64_t> shape;  // local shape, e.g. {(NH+2*KV)*HS, C} for qkv_w
  int64_t offset = 0, numel = 0;
  int layer = -1;              // local layer index, -1 for embeddings and final norm
  Init init = Init::normal;
  bool decay = true;           // weight decay applies (matrices); false for norms/biases/embeddings
  bool is_embedding = false;
  bool tp_sharded = false;     // split over the tensor-parallel ranks (else a full replica on each)
  // The last pipeline stage's copy of a tied wte: kept equal to the first stage's by summing the
  // two gradients, so counted once (on the first stage) in the gradient norm.
  bool tied_copy = false;
};

// Index in the serial (tp = 1) tensor of element `i` of this rank's slice of `spec`: the map
// that makes a sharded model's initialisation (and a gathered checkpoint) equal the serial one.
int64_t serial_index(const TensorSpec& spec, const ModelDims& d, int64_t i);

// Pointers into an arena (parameters or gradients). Null where the family or stage has none.
template <typename T>
struct LayerViews {
  T* ln1_w;     // (C)
  T* ln1_b;     // (C)        gpt2
  T* qkv_w;     // ((NH+2*KV)*HS, C)  rows: [q heads | k heads | v heads]
  T* qkv_b;     // (3*NH*HS)  gpt2 (KV = NH)
  T* proj_w;    // (C, NH*HS)
  T* proj_b;    // (C)        gpt2
  T* ln2_w;     // (C)
  T* ln2_b;     // (C)        gpt2
  T* fc_w;      // (F, C) gpt2;  (2F, C) llama: rows [gate | up]
  T* fc_b;      // (F)        gpt2
  T* fcproj_w;  // (C, F)
  T* fcproj_b;  // (C)        gpt2
};

template <typename T>
struct ModelViews {
  T* wte;      // (Vl, C)  first stage (and last stage when tied)
  T* wpe;      // (max_T, C) gpt2, first stage
  std::vector<LayerViews<T>> layers;  // L
  T* lnf_w;    // (C) last stage
  T* lnf_b;    // (C) gpt2, last stage
  T* lm_head;  // (Vl, C) last stage, untied; == wte when tied
};

std::vector<TensorSpec> param_table(const ModelDims& d);
int64_t arena_size(const std::vector<TensorSpec>& table);
// The one function that points views into an arena laid out by `table`.
template <typename T>
ModelViews<T> point_views(T* arena, const std::vector<TensorSpec>& table, const ModelDims& d);

// Deterministic initialisation: every element is a function of (seed, tensor name, element
// index), so the same seed gives the same model at any layout or thread count.
template <typename T>
void init_params(T* arena, const std::vector<TensorSpec>& table, const ModelDims& d, uint64_t seed);

// The tensor-parallel group's reductions, as the model needs them (src/model does not depend
// on MPI; the trainer builds these from the tp communicator). Float only: the double model
// (gradient checks) is always serial.
struct TensorParallelOps {
  int size = 1, rank = 0;
  std::function<void(float*, int64_t)> sum;        // in place, over the tp group
  std::function<void(float*, int64_t)> max;        // in place, over the tp group
  std::function<void(double*, int64_t)> sum_f64;   // in place, over the tp group
  // Sequence parallelism: rows x cols row-major, rank q's block comm::split_evenly(rows, size, q).
  // gather_rows: full := every rank's row block stacked; reduce_scatter_rows: mine := this rank's
  // rows of the sum over the group of full (full unchanged). Each is the other's backward.
  std::function<void(const float* mine, int64_t rows, int64_t cols, float* full)> gather_rows;
  std::function<void(const float* full, int64_t rows, int64_t cols, float* mine)> reduce_scatter_rows;
  // This rank's block of n token rows.
  comm::Range rows(int64_t n) const { return comm::split_evenly(n, size, rank); }
};

struct ComputeContext {
  kernels::GemmContext gemm;
  const TensorParallelOps* tp = nullptr;  // null or size 1: the model is not split
  // Called by forward before it reads parameters [begin, end) of the arena (the embeddings, each
  // layer, the head): a sharded optimizer (ZeRO-1) may still be gathering them. Empty: all ready.
  std::function<void(int64_t begin, int64_t end)> params_needed;
};

template <typename T>
struct Activations;  // defined in src/model; sized for (B, T) at construction
template <typename T>
struct Scratch;

// Activation recomputation: Recompute (hokusai/config.hpp, parallel.recompute).

// One rank's model: the layers of its pipeline stage (with the embedding on the first stage and
// the head and loss on the last), its tensor-parallel slice of each. T = float for training,
// double for gradient checks.
//
// Pipeline use: `slots` micro-batches may be between their forward and their backward at once
// (1F1B keeps up to pp - stage of them); each forward and backward names its slot and its model
// chunk (interleaved schedule; a slot holds one chunk's activations). A chunk without the
// embedding reads its input from input_buffer(slot), filled by the caller (the previous virtual
// stage's stage_output); a chunk without the head takes the gradient of its output as `dy` and
// leaves the gradient of its input in input_grad() (boundary_rows of each, below).
// What forward does at the head (the last stage's last chunk):
//   logits:   keeps the B*T x Vl logits (logits()); backward derives their gradient from them.
//             For inference and tests: the array is allocated on first use and is not part of
//             activation_bytes().
//   loss:     the loss only, a block of rows at a time (evaluation).
//   gradient: the loss and its gradient, a block of rows at a time, never all the logits at once
//             (training): the output projection's weight gradient is added into grads() there,
//             and backward, given the same dloss, finishes the head from the kept gradient of
//             the final norm's output. Bit for bit the logits pass's gradients on the native GEMM
//             when B*T is a multiple of 256 (or at most one block).
enum class HeadPass { logits, loss, gradient };
// Rows per block of HeadPass::loss and gradient for N rows (the last block takes the rest).
int64_t head_block_rows(int64_t N);

// Allocates on 64-byte boundaries: a vector load of a row that starts a cache line splits none
// (glibc puts a large std::vector 16 bytes past a line).
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
};
template <typename T>
using CacheLineVector = std::vector<T, CacheLineAllocator<T>>;

template <typename T>
class Model {
 public:
  // attention: flash (fused, saves B*NH*T log-sum-exps per layer) or gemm (saves B*NH*T*T
  // probabilities; the reference). saved: the precision of the products (train.precision): bf16
  // or fp16 keeps each block's two norm outputs, qkv, MLP pre-activation and attention output as
  // 16-bit values and rebuilds the MLP activation in backward, which changes no result (products
  // round the first three anyway, and a 16-bit run rounds the other two where they are made;
  // docs/precision.md); fp32 keeps everything in fp32. A model whose products run in another
  // precision than `saved` refuses to run: pass the context's. huge_pages: the parameter,
  // gradient and activation arenas advised for transparent huge pages (kernels.huge_pages,
  // hokusai/memory.hpp); only where the bytes live changes.
  Model(const ModelDims& dims, int64_t max_B, int64_t max_T, int slots = 1, Recompute recompute = Recompute::none,
        Attention attention = Attention::gemm, kernels::Precision saved = kernels::Precision::fp32,
        bool huge_pages = false);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelDims& dims() const { return dims_; }
  const std::vector<TensorSpec>& table() const { return table_; }
  // The arenas, as fixed-size spans: views point into them, so they are filled in place
  // (load_params), never replaced.
  std::span<T> params() { return params_; }
  std::span<T> grads() { return grads_; }
  std::span<const T> params() const { return params_; }
  // Copies a saved arena in; throws std::invalid_argument when the size differs.
  void load_params(std::span<const T> saved);

  void init(uint64_t seed) { init_params(params_.data(), table_, dims_, seed); }
  void zero_grads();

  // tokens, targets: (B, T). Targets < 0 are ignored. Returns the sum of per-token losses over
  // valid targets (double) on the last stage (0 elsewhere) and keeps the activations for
  // backward in `slot`. `head` and `dloss` (HeadPass::gradient only): what the head does.
  double forward(const ComputeContext& ctx, const int32_t* tokens, const int32_t* targets,
                 int64_t B, int64_t Tn, int slot = 0, int chunk = 0, HeadPass head = HeadPass::logits,
                 T dloss = T(0));
  // Called during backward each time a contiguous range [begin, end) of the gradient arena has
  // received its last contribution of this backward: the head (final norm, untied output
  // projection), then each layer from the last, then the embeddings. Data parallelism starts
  // reducing a range while backward continues.
  using GradsReady = std::function<void(int64_t begin, int64_t end)>;

  // Backward of the last forward; every valid token's loss is weighted by `dloss` (e.g.
  // 1/tokens in the global batch) — the forward's, when it ran HeadPass::gradient; a slot whose
  // head ran HeadPass::loss has no backward. Adds into grads().
  // `dy`: gradient of this stage's output (B*T*C), for a stage without the head.
  // `last`: this is the step's last backward of `chunk` (the only one `ready` may be given to).
  // Under sequence parallelism the norms' weight gradients are partial over tp: backward keeps
  // them in the model, summed over micro-batches, and the last backward sums them over tp and
  // adds them into grads() — so with last = false they are not in grads() yet.
  void backward(const ComputeContext& ctx, const int32_t* tokens, const int32_t* targets,
                T dloss, const GradsReady& ready = nullptr, int slot = 0, const T* dy = nullptr, int chunk = 0,
                bool last = true);
  // Logits of the last forward in slot 0 (HeadPass::logits; throws after another pass): (B*T, Vl),
  // valid until slot 0's next forward or backward (backward turns them into their gradient in place).
  const T* logits() const;
  // Pipeline: a boundary between stages carries the token rows boundary_rows(B*T) of a
  // micro-batch's activations and gradients, C values per row — this rank's sequence-parallel
  // rows (each tp rank sends its own to its peer of the next stage: 1/tp of the bytes, no gather),
  // or all rows. input_buffer(slot) (max_B*max_T*C) is where a stage without the embedding
  // receives its input, those rows at their offset rows.begin*C, right before the slot's forward
  // (slots may share one buffer: only full recomputation and a chunk without blocks read a slot's
  // input after its forward, and only then does each slot have its own); stage_output(slot) the rows of
  // this stage's output of the forward in `slot` (contiguous), valid until the slot's next
  // forward; input_grad() the rows of the gradient of this stage's input after a backward
  // (contiguous), valid until the next backward. backward's `dy` is B*T*C with the rows at their
  // offset (only they are read).
  comm::Range boundary_rows(int64_t N) const;
  T* input_buffer(int slot);
  const T* stage_output(int slot) const;
  const T* input_grad() const { return input_grad_; }
  int slots() const { return n_slots_; }
  Recompute recompute() const { return recompute_; }
  Attention attention() const { return attention_; }
  // Gradient-arena range of the embeddings (a tied wte copy on the last stage included).
  comm::Range embedding_range() const { return embedding_range_; }
  // Bytes of saved activations and gradient scratch allocated for (max_B, max_T): the tensors'
  // own bytes, those that share memory counted once (the head's block of logits and a running
  // block's scratch); the arena adds under 64 bytes of alignment per tensor.
  int64_t activation_bytes() const { return activation_bytes_; }
  // Bytes of the arenas the constructor advised for huge pages (0 without huge_pages).
  int64_t huge_page_bytes() const { return huge_page_bytes_; }
  // The same for a model that was never built (the planner): counted, not allocated.
  static int64_t activation_bytes(const ModelDims& dims, int64_t max_B, int64_t max_T, int slots,
                                  Recompute recompute, Attention attention,
                                  kernels::Precision saved = kernels::Precision::fp32);

 private:
  ModelDims dims_;
  std::vector<TensorSpec> table_;
  // On cache lines (64 bytes): the products read each weight row whole (every tensor's offset in
  // the arena is a multiple of 16 values for the shipped models), so a vector load splits no line.
  CacheLineVector<T> params_, grads_;
  ModelViews<T> p_, g_;
  Recompute recompute_;
  Attention attention_ = Attention::gemm;
  kernels::Precision saved_ = kernels::Precision::fp32;  // of the product-only activations
  std::vector<Activations<T>> slots_;
  std::unique_ptr<Scratch<T>> scratch_;
  const T* input_grad_ = nullptr;
  // Where a slot's forward input lives: its own `encoded`, or the scratch's one shared by all.
  T* input_of(Activations<T>& s) const;
  int n_slots_ = 1;
  int64_t max_N_ = 0, max_T_ = 0, activation_bytes_ = 0, huge_page_bytes_ = 0;
  // Gradient-arena ranges reported to GradsReady, computed once from the table.
  comm::Range head_range_{0, 0}, embedding_range_{0, 0};
  std::vector<comm::Range> layer_ranges_;
};

}  // namespace hokusai
