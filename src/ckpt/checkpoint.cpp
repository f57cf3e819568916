#include "hokusai/checkpoint.hpp"
#include "hokusai/hash.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace hokusai {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'H', 'K', 'S', 'C', 'K', 'P', 'T', '1'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kFloat32 = 7;

struct Header {
  char magic[8];
  uint32_t version, dtype;
  int64_t step, consumed_samples, adam_t, n_params;
  uint64_t table_hash, has_optimizer;
};
static_assert(sizeof(Header) == 64);

// 64-bit multiply-xor hash over 8-byte words (tail bytes padded): ~10 GB/s, catches torn or
// flipped data. In two parts so a reader can feed an array in pieces (whole words each):
// checksum_words over the words, checksum_end with the tail and the array's total size.
uint64_t checksum_words(uint64_t h, const unsigned char* p, size_t bytes) {
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  return h;
}
uint64_t checksum_end(uint64_t h, const unsigned char* tail_bytes, size_t tail_size, size_t total_bytes) {
  uint64_t tail = 0;
  if (tail_size > 0) std::memcpy(&tail, tail_bytes, tail_size);  // (null for an empty array)
  return ((h ^ tail) * 0x100000001b3ULL) ^ total_bytes;
}
uint64_t checksum(uint64_t h, const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  const size_t whole = bytes / 8 * 8;
  return checksum_end(checksum_words(h, p, whole), whole < bytes ? p + whole : nullptr, bytes - whole, bytes);
}

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

// The state file, written through the file descriptor so a failure reports the system's reason
// (ENOSPC, EDQUOT, EIO) and how far it got, and synced before the rename that publishes it.
class StateFile {
 public:
  StateFile(std::string path, uint64_t total) : path_(std::move(path)), total_(total) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create");
  }
  ~StateFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  void put(const void* data, size_t bytes) {
    const auto* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, p, std::min<size_t>(bytes, size_t(1) << 30));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("cannot write");
      p += n, bytes -= size_t(n), written_ += uint64_t(n);
    }
  }
  void finish() {
    if (::fsync(fd_) != 0) fail("cannot sync");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot close");
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    const int err = errno ? errno : EIO;
    std::error_code ec;
    const auto space = fs::space(fs::path(path_).parent_path(), ec);
    const double mib = 1.0 / (1 << 20);
    char free_text[64] = "";
    if (!ec) std::snprintf(free_text, sizeof free_text, ", %.1f MiB free there", double(space.available) * mib);
    char sizes[96];
    std::snprintf(sizes, sizeof sizes, "%.1f of %.1f MiB written", double(written_) * mib, double(total_) * mib);
    throw std::runtime_error("checkpoint: " + std::string(what) + " '" + path_ + "': " + std::strerror(err) + " (" +
                             sizes + free_text + "): free space or point logging.run_dir to a larger file system");
  }
  std::string path_;
  uint64_t total_, written_ = 0;
  int fd_ = -1;
};

void write_text_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("checkpoint: cannot write '" + tmp.string() + "'");
  }
  fs::rename(tmp, path);
}

}  // namespace

uint64_t table_hash(const std::vector<TensorSpec>& table) {
  uint64_t h = fnv1a("");
  for (const auto& s : table) {
    h = fnv1a(s.name, h);
    for (int64_t d : s.shape) h = fnv1a(std::string_view(reinterpret_cast<const char*>(&d), sizeof d), h);
  }
  return h;
}

std::string save_checkpoint(const std::string& run_dir, const Config& cfg, uint64_t thash,
                            const CheckpointView& data, int keep) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  fs::create_directories(root);
  const fs::path final_dir = root / step_name(data.step);
  const fs::path tmp_dir = root / (step_name(data.step) + ".tmp");
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);
  try {
    {
      std::ofstream out(tmp_dir / "config.yaml");
      out << dump_config(cfg);
      if (!out) throw std::runtime_error("checkpoint: cannot write '" + (tmp_dir / "config.yaml").string() + "'");
    }
    if (!data.manifest.empty()) {
      std::ofstream out(tmp_dir / "tensors.json");
      out << data.manifest;
      if (!out.flush()) throw std::runtime_error("checkpoint: cannot write '" + (tmp_dir / "tensors.json").string() + "'");
    }
    if (data.loss_scale.scale > 0) {
      std::ofstream out(tmp_dir / "loss_scale.txt");
      out << fmt::format("loss_scale {}\ngood_steps {}\n", data.loss_scale.scale, data.loss_scale.good_steps);
      if (!out.flush()) throw std::runtime_error("checkpoint: cannot write '" + (tmp_dir / "loss_scale.txt").string() + "'");
    }
    Header h{};
    std::memcpy(h.magic, kMagic, 8);
    h.version = kVersion;
    h.dtype = kFloat32;
    h.step = data.step;
    h.consumed_samples = data.consumed_samples;
    h.adam_t = data.adam_t;
    h.n_params = int64_t(data.params.size());
    h.table_hash = thash;
    h.has_optimizer = data.m.empty() ? 0 : 1;
    const uint64_t total = sizeof h + (h.has_optimizer ? 3 : 1) * data.params.size() * sizeof(float) + 8;
    StateFile out((tmp_dir / "state.bin").string(), total);
    uint64_t sum = checksum(0, &h, sizeof h);
    out.put(&h, sizeof h);
    const auto put = [&](std::span<const float> v) {
      sum = checksum(sum, v.data(), v.size() * sizeof(float));
      out.put(v.data(), v.size() * sizeof(float));
    };
    put(data.params);
    if (h.has_optimizer) {
      put(data.m);
      put(data.v);
    }
    out.put(&sum, sizeof sum);
    out.finish();
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);  // a failed save leaves nothing behind that takes space
    throw;
  }
  // Saving a step that already exists (a resumed run ending where it started): move the old copy
  // aside first, so some complete checkpoint exists at every instant.
  const fs::path old_dir = root / (step_name(data.step) + ".old");
  fs::remove_all(old_dir);
  if (fs::exists(final_dir)) fs::rename(final_dir, old_dir);
  fs::rename(tmp_dir, final_dir);
  fs::remove_all(old_dir);
  write_text_atomic(root / "latest", step_name(data.step) + "\n");
  prune_checkpoints(run_dir, keep);  // only now that the new checkpoint is complete and referenced
  return final_dir.string();
}

namespace {

// The complete step_N directories under run_dir/checkpoints, oldest first.
std::vector<fs::path> complete_checkpoints(const fs::path& root) {
  std::vector<fs::path> all;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec))
    if (checkpoint_step(e.path().string()) >= 0 && fs::exists(e.path() / "state.bin")) all.push_back(e.path());
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace

void prune_checkpoints(const std::string& run_dir, int keep) {
  const std::vector<fs::path> all = complete_checkpoints(fs::path(run_dir) / "checkpoints");
  for (size_t i = 0; i + size_t(std::max(keep, 1)) < all.size(); ++i) fs::remove_all(all[i]);
}

void discard_checkpoint(const std::string& run_dir, int64_t step) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  fs::remove_all(root / step_name(step));
  const std::vector<fs::path> left = complete_checkpoints(root);
  if (left.empty())
    fs::remove(root / "latest");
  else
    write_text_atomic(root / "latest", left.back().filename().string() + "\n");
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir, std::string* note) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::ifstream in(root / "latest");
  std::string name;
  if ((in >> name) && checkpoint_step(name) >= 0 && fs::exists(root / name / "state.bin")) return (root / name).string();
  // `latest` is missing or damaged: the newest complete step_N (a save renames step_N.tmp to
  // step_N only once state.bin is whole).
  std::error_code ec;
  int64_t best = -1;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const int64_t step = checkpoint_step(e.path().string());
    if (step > best && fs::exists(e.path() / "state.bin")) best = step;
  }
  if (best < 0) return std::nullopt;
  const fs::path found = root / step_name(best);
  if (note) {
    // (appended piece by piece: g++ 12 warns falsely on "'" + std::string&& here, bug 105329)
    std::string text = "'";
    text += (root / "latest").string();
    text += name.empty() ? std::string("' is missing or empty") : "' is damaged ('" + name + "')";
    text += ": using the newest complete checkpoint, " + found.filename().string();
    *note = std::move(text);
  }
  return found.string();
}

std::string checkpoint_shard_root(const std::string& run_dir, int pp, int pp_rank, int tp, int tp_rank) {
  fs::path root(run_dir);
  if (pp > 1) root /= "pp-stage-" + std::to_string(pp_rank);
  if (tp > 1) root /= "tp-rank-" + std::to_string(tp_rank);
  return root.string();
}

int64_t checkpoint_step(const std::string& dir) {
  const std::string name = fs::path(dir).filename().string();
  if (name.size() != 13 || name.rfind("step_", 0) != 0) return -1;
  int64_t step = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return -1;
    step = step * 10 + (c - '0');
  }
  return step;
}

std::optional<std::string> checkpoint_at(const std::string& run_dir, int64_t step) {
  const fs::path dir = fs::path(run_dir) / "checkpoints" / step_name(step);
  if (!fs::exists(dir / "state.bin")) return std::nullopt;
  return dir.string();
}

std::string checkpoint_dir(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "state.bin")) return dir;
  if (auto latest = latest_checkpoint(dir)) return *latest;
  throw std::runtime_error("checkpoint: '" + dir + "' is neither a checkpoint (no state.bin) nor a run " +
                           "directory with checkpoints/latest: give a run directory or checkpoints/step_N");
}

namespace {

// Opens dir's state.bin and checks its header against the file: every error names the file.
Header read_header(std::ifstream& in, const std::string& path, uint64_t expected_hash, bool with_optimizer) {
  in.open(path, std::ios::binary);
  if (!in) throw std::runtime_error("checkpoint: cannot open '" + path + "'");
  const auto file_size = fs::file_size(path);
  Header h{};
  if (!in.read(reinterpret_cast<char*>(&h), sizeof h))
    throw std::runtime_error("checkpoint: '" + path + "' is truncated (no header)");
  if (std::memcmp(h.magic, kMagic, 8) != 0)
    throw std::runtime_error("checkpoint: '" + path + "' has a wrong magic (not a hokusai checkpoint)");
  if (h.version != kVersion)
    throw std::runtime_error("checkpoint: '" + path + "' version " + std::to_string(h.version) +
                             ", this build reads version " + std::to_string(kVersion));
  if (h.dtype != kFloat32)
    throw std::runtime_error("checkpoint: '" + path + "' dtype code " + std::to_string(h.dtype) + ", expected 7 (float32)");
  if (h.table_hash != expected_hash)
    throw std::runtime_error("checkpoint: '" + path + "' was saved from a different model shape " +
                             "(tensor table hash differs): use the config stored beside it");
  if (h.has_optimizer > 1)
    throw std::runtime_error("checkpoint: '" + path + "' has_optimizer=" + std::to_string(h.has_optimizer) +
                             ", expected 0 or 1 (corrupt)");
  if (h.step < 0 || h.consumed_samples < 0 || h.adam_t < 0)
    throw std::runtime_error("checkpoint: '" + path + "' holds a negative counter (step " + std::to_string(h.step) +
                             ", consumed samples " + std::to_string(h.consumed_samples) + ", Adam step " +
                             std::to_string(h.adam_t) + "): corrupt");
  const uint64_t arrays = h.has_optimizer ? 3 : 1;
  // n_params is bounded by the file before any product (a huge count must not wrap around).
  const bool fits = h.n_params >= 0 && uint64_t(h.n_params) <= file_size / (arrays * sizeof(float));
  const uint64_t expected_size = fits ? sizeof h + arrays * uint64_t(h.n_params) * sizeof(float) + 8 : 0;
  if (!fits || file_size != expected_size)
    throw std::runtime_error("checkpoint: '" + path + "' is " + std::to_string(file_size) + " bytes, expected " +
                             (fits ? std::to_string(expected_size) : std::string("far more")) + " for n_params=" + std::to_string(h.n_params) +
                             " (truncated or corrupt)");
  if (with_optimizer && !h.has_optimizer)
    throw std::runtime_error("checkpoint: '" + path + "' holds no optimizer state: cannot resume from it");
  return h;
}

// dir's loss_scale.txt; none (scale 0) when the checkpoint has no such file.
LossScaleState read_loss_scale(const std::string& dir) {
  const fs::path path = fs::path(dir) / "loss_scale.txt";
  std::ifstream in(path);
  if (!in) return {};
  LossScaleState s;
  std::string k1, k2;
  if (!(in >> k1 >> s.scale >> k2 >> s.good_steps) || k1 != "loss_scale" || k2 != "good_steps" ||
      !std::isfinite(s.scale) || s.scale < 1 || s.good_steps < 0)
    throw std::runtime_error("checkpoint: '" + path.string() + "' is not \"loss_scale <value >= 1>\" then "
                             "\"good_steps <n >= 0>\" (corrupt): delete it to restart the scale from "
                             "train.loss_scale");
  return s;
}

}  // namespace

CheckpointData load_checkpoint(const std::string& dir_in, uint64_t expected_hash, bool with_optimizer) {
  const std::string dir = checkpoint_dir(dir_in);
  const std::string path = (fs::path(dir) / "state.bin").string();
  std::ifstream in;
  const Header h = read_header(in, path, expected_hash, with_optimizer);
  CheckpointData d;
  d.step = h.step;
  d.consumed_samples = h.consumed_samples;
  d.adam_t = h.adam_t;
  d.loss_scale = read_loss_scale(dir);
  uint64_t sum = checksum(0, &h, sizeof h);
  const auto get = [&](std::vector<float>& v) {
    v.resize(size_t(h.n_params));
    in.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
    if (!in) throw std::runtime_error("checkpoint: '" + path + "' read failed");
    sum = checksum(sum, v.data(), v.size() * sizeof(float));
  };
  get(d.params);
  std::vector<float> m, v;
  if (h.has_optimizer) {
    get(m);
    get(v);
  }
  uint64_t stored = 0;
  in.read(reinterpret_cast<char*>(&stored), sizeof stored);
  if (!in || stored != sum)
    throw std::runtime_error("checkpoint: '" + path + "' checksum mismatch (corrupt file): use an older checkpoint");
  if (with_optimizer) {
    d.m = std::move(m);
    d.v = std::move(v);
  }
  return d;
}

CheckpointReader::CheckpointReader(const std::string& dir, uint64_t expected_hash, bool with_optimizer) {
  path_ = (fs::path(checkpoint_dir(dir)) / "state.bin").string();
  std::ifstream in;
  const Header h = read_header(in, path_, expected_hash, with_optimizer);
  step = h.step, consumed_samples = h.consumed_samples, adam_t = h.adam_t, n_params = h.n_params;
  loss_scale = read_loss_scale(checkpoint_dir(dir));
  arrays_ = h.has_optimizer ? 3 : 1;
  // The whole file's checksum, array by array in 16 MiB pieces: nothing of it is kept.
  uint64_t sum = checksum(0, &h, sizeof h);
  std::vector<unsigned char> buf(size_t(16) << 20);
  const size_t array_bytes = size_t(n_params) * sizeof(float);
  for (int a = 0; a < arrays_; ++a) {
    size_t done = 0;
    uint64_t words = sum;
    while (done < array_bytes) {
      const size_t n = std::min(buf.size(), array_bytes - done);
      if (!in.read(reinterpret_cast<char*>(buf.data()), std::streamsize(n)))
        throw std::runtime_error("checkpoint: '" + path_ + "' read failed");
      const size_t whole = n / 8 * 8;  // pieces are whole words but for the array's last one
      words = checksum_words(words, buf.data(), whole);
      done += n;
      if (done == array_bytes) sum = checksum_end(words, buf.data() + whole, n - whole, array_bytes);
    }
    if (array_bytes == 0) sum = checksum_end(words, nullptr, 0, 0);
  }
  uint64_t stored = 0;
  in.read(reinterpret_cast<char*>(&stored), sizeof stored);
  if (!in || stored != sum)
    throw std::runtime_error("checkpoint: '" + path_ + "' checksum mismatch (corrupt file): use an older checkpoint");
}

void CheckpointReader::read(int array, int64_t offset, int64_t count, float* out) const {
  if (array < 0 || array >= arrays_ || offset < 0 || count < 0 || offset + count > n_params)
    throw std::logic_error("CheckpointReader::read: a range outside the arrays of '" + path_ + "'");
  std::ifstream in(path_, std::ios::binary);
  in.seekg(std::streamoff(sizeof(Header) + (size_t(array) * size_t(n_params) + size_t(offset)) * sizeof(float)));
  if (!in.read(reinterpret_cast<char*>(out), std::streamsize(size_t(count) * sizeof(float))))
    throw std::runtime_error("checkpoint: '" + path_ + "' read failed (changed since it was checked?)");
}

}  // namespace hokusai
