#include "hokusai/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <cstdio>

namespace hokusai {

Log::Log(int rank, bool console, const std::string& file) : rank_(rank) {
  if (console) sinks_.push_back(std::make_shared<spdlog::sinks::stdout_sink_mt>());
  if (!file.empty()) add_file(file);
}

void Log::add_file(const std::string& file) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file, /*truncate=*/false);
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e][rank " + std::to_string(rank_) + "][%n] %v");
  sinks_.push_back(sink);
}

std::shared_ptr<spdlog::logger> Log::get(const std::string& component) const {
  auto logger = std::make_shared<spdlog::logger>(component, sinks_.begin(), sinks_.end());
  // The file sink keeps its own (dated) pattern; set_pattern on the logger would override it,
  // so only the console sink gets the short one.
  if (!sinks_.empty() && dynamic_cast<spdlog::sinks::stdout_sink_mt*>(sinks_.front().get()))
    sinks_.front()->set_pattern("[%H:%M:%S][rank " + std::to_string(rank_) + "][%n] %v");
  logger->flush_on(spdlog::level::info);
  return logger;
}

ProgressLine::ProgressLine(bool enabled) : enabled_(enabled && isatty(STDOUT_FILENO)) {}

void ProgressLine::draw(const std::string& text) {
  if (!enabled_) return;
  std::fprintf(stdout, "\r\033[K%s", text.c_str());
  std::fflush(stdout);
  drawn_ = true;
}

void ProgressLine::clear() {
  if (!enabled_ || !drawn_) return;
  std::fprintf(stdout, "\r\033[K");
  std::fflush(stdout);
  drawn_ = false;
}

}  // namespace hokusai
