// Loggers tagged with rank and component: "[12:00:01][rank 0][train] step 10 ...".
// No global registry: a Log owns its sinks and hands out component loggers that share them.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <vector>

namespace hokusai {

class Log {
 public:
  // console: print to stdout (rank 0 by default; errors from every rank go to stderr anyway).
  // file: also append to this file ("" = none).
  Log(int rank, bool console, const std::string& file = "");
  std::shared_ptr<spdlog::logger> get(const std::string& component) const;
  void add_file(const std::string& file);

 private:
  int rank_;
  std::vector<spdlog::sink_ptr> sinks_;
};

// One status line redrawn in place when stdout is a terminal; silent otherwise.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled);
  void draw(const std::string& text);
  void clear();  // erase the line before something else prints
  bool enabled() const { return enabled_; }

 private:
  bool enabled_, drawn_ = false;
};

}  // namespace hokusai
