// GuruMeditation: the process-wide SIGUSR1 reporter, and the one place that
// turns a Report into a file.
//
// `kill -USR1 <pid>` must work when the daemon is wedged (its event loop stuck
// in a handler, a lock held forever). So the SIGUSR1 handler does one
// async-signal-safe thing, write(2) one byte to a pipe, and a dedicated
// reporter thread blocked on that pipe builds the report, writes its text view
// to stderr, the JSON view to <reportsDir>/<id>.json and logs the path (spdlog,
// warn). capture() is the same path on demand, from any thread (the API's
// report route, a 500).
//
// What it leaves to others: which sections exist (the Reporter it is given),
// and reading reports back (they are plain JSON files; Report::fromJson).
#pragma once

#include <signal.h>

#include <cstddef>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "util/report.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace corral::util {

class GuruMeditation {
 public:
  struct Options {
    std::string reportsDir;  // created 0700 by start(); report files are 0600
    bool toStderr = true;    // the signal path writes the text view to stderr
    size_t keep = 50;        // the newest `keep` report files stay, older ones go; 0 keeps all
  };

  // `reporter` must outlive this object. Nothing happens before start().
  GuruMeditation(const Reporter& reporter, Options opts);
  // Restores SIGUSR1's previous disposition, stops and joins the reporter
  // thread (after the report in progress, if any).
  ~GuruMeditation();
  GuruMeditation(const GuruMeditation&) = delete;
  GuruMeditation& operator=(const GuruMeditation&) = delete;

  // Creates reportsDir (0700), installs the SIGUSR1 handler and starts the
  // reporter thread. FailedPrecondition when another GuruMeditation of this
  // process is started (SIGUSR1 has one owner). Call once.
  Result<void> start();

  struct Saved {
    Report report;
    std::string path;
  };
  // Builds a report now, writes <reportsDir>/<id>.json (0600, temp file then
  // rename) and removes the oldest files beyond `keep`. Any thread; works
  // without start() as long as reportsDir exists or can be created. Blocks for
  // as long as the generators take (each bounded by the Reporter's section
  // timeout): call it off the event loop. `context` is written as given, so the
  // caller masks any secret in it.
  Result<Saved> capture(std::string reason, nlohmann::json context = nlohmann::json::object());

 private:
  void runThread();
  Result<void> ensureDir();
  void prune();

  const Reporter& reporter_;
  Options opts_;
  std::mutex writeMu_;  // file writes and pruning
  UniqueFd wakeRead_;
  UniqueFd wakeWrite_;
  std::thread thread_;
  bool installed_ = false;
  struct sigaction previous_ {};
};

}  // namespace corral::util
