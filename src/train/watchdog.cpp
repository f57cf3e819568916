#include "train/watchdog.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>

namespace hokusai {

namespace fs = std::filesystem;

namespace {

// Seconds on the wall clock: heartbeats are compared across the nodes of a job (NTP-synchronised).
double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Heartbeat {
  int rank = -1;
  long pid = 0;
  int64_t step = 0;
  double written = 0, since = 0;  // when the file was written; when its phase began
  std::string phase, who;
};

// "pid step written since phase\twho"
bool read_heartbeat(const fs::path& p, Heartbeat& h) {
  std::ifstream in(p);
  std::string line;
  if (!std::getline(in, line)) return false;
  std::istringstream s(line);
  if (!(s >> h.pid >> h.step >> h.written >> h.since)) return false;
  std::getline(s >> std::ws, h.phase, '\t');
  std::getline(s, h.who);
  return true;
}

}  // namespace

Watchdog::Watchdog(double timeout_s, const std::string& run_dir, int rank, int ranks, std::string who)
    : timeout_(timeout_s), dir_((fs::path(run_dir) / "heartbeat").string()), who_(std::move(who)), rank_(rank),
      ranks_(ranks) {
  if (timeout_ <= 0) return;
  std::error_code ec;
  fs::create_directories(dir_, ec);  // every rank: the directory may be on a node-local path
  since_ = now_s();
  write_heartbeat(since_);
  thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Watchdog::phase(const char* what, int64_t step) {
  if (timeout_ <= 0) return;
  what_ = what;
  step_ = step;
  since_ = now_s();
}

void Watchdog::write_heartbeat(double now) const {
  const fs::path file = fs::path(dir_) / fmt::format("rank-{}", rank_), tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << fmt::format("{} {} {:.3f} {:.3f} {}\t{}\n", long(::getpid()), step_.load(), now, since_.load(), what_.load(),
                       who_);
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);  // a failed heartbeat write must not end the run
}

void Watchdog::watch() {
  // Heartbeats often enough that a silent rank stands out well within the timeout.
  const double beat = std::clamp(timeout_ / 4, 0.2, 10.0);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::duration<double>(std::min(beat, 0.25 * timeout_)));
    if (stop_) break;
    const double now = now_s();
    write_heartbeat(now);
    if (now - since_ > timeout_) expire(now);
  }
}

void Watchdog::expire(double now) {
  // One rank speaks for the job: the first to create the verdict file.
  const std::string verdict = (fs::path(dir_) / "verdict").string();
  const int fd = ::open(verdict.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd < 0) std::_Exit(1);
  // The ranks whose heartbeat stopped (a stopped, dead or wedged process), else the ones behind.
  std::vector<Heartbeat> all;
  for (int r = 0; r < ranks_; ++r) {
    Heartbeat h;
    h.rank = r;
    if (read_heartbeat(fs::path(dir_) / fmt::format("rank-{}", r), h)) all.push_back(h);
  }
  const double stale = std::max(2.0 * std::clamp(timeout_ / 4, 0.2, 10.0), 1.0);
  std::string culprits;
  int named = 0;
  for (const Heartbeat& h : all)
    if (now - h.written > stale && named++ < 8)
      culprits += fmt::format("{}{} silent for {:.1f} s (last in {} at step {}, pid {})", culprits.empty() ? "" : "; ",
                              h.who, now - h.written, h.phase, h.step, h.pid);
  if (culprits.empty()) {
    int64_t behind = INT64_MAX;
    for (const Heartbeat& h : all) behind = std::min(behind, h.step);
    for (const Heartbeat& h : all)
      if (h.step == behind && h.rank != rank_ && named++ < 8)
        culprits += fmt::format("{}{} in {} at step {} for {:.1f} s", culprits.empty() ? "" : "; ", h.who, h.phase,
                                h.step, now - h.since);
  }
  const std::string line = fmt::format(
      "hokusai: {}: no progress for {:.1f} s in {} at step {} (comm.timeout_s={}); {}: aborting the job, resume "
      "from the last checkpoint with --resume\n",
      who_, now - since_, what_.load(), step_.load(), timeout_,
      culprits.empty() ? "no other rank's heartbeat found" : "waiting for " + culprits);
  (void)!::write(fd, line.data(), line.size());
  ::close(fd);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  std::_Exit(1);
}

}  // namespace hokusai
