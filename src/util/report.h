// The Guru Meditation Report (after OpenStack Oslo's): a snapshot of a running
// process made of named sections, each produced by a pluggable generator, with
// a JSON view and a text view of the same model.
//
// This file holds the model (Report), the registry of generators (Reporter) and
// the generic sections every corral process can offer: package, process,
// threads. What it leaves to others: corrald's own sections (VMs, operations,
// database, configuration, last errors) register themselves with a Reporter;
// util/guru.h turns SIGUSR1 and on-demand captures into report files.
//
// No section here carries a secret: environment variables and command lines
// are never read, open files appear only as their link targets.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace corral::util {

// One report: a header and ordered sections. A plain value; build it with
// Reporter::build() or read it back with fromJson().
struct Report {
  std::string id;      // unique, sortable, safe as a file name: "20261203T133012Z-1a2b3c"
  std::string reason;  // "SIGUSR1", "api", "internal error", ...
  int64_t createdUnix = 0;
  nlohmann::json context = nlohmann::json::object();             // free-form, e.g. the request of a 500
  std::vector<std::pair<std::string, nlohmann::json>> sections;  // in registration order

  // {"id", "reason", "created_at" (RFC3339 UTC), "context", "sections": {name: value...}, "order": [names]}
  nlohmann::json toJson() const;
  // The human view of the same model: "==== Guru Meditation ====", the header,
  // then "==== name ====" per section in order; nested objects indented, frame
  // arrays one frame a line ("#3 0x... function (file:line)").
  std::string toText() const;
  // The inverse of toJson(), for a client that fetched the JSON and wants the
  // text view. InvalidInput when `j` is not a report.
  static Result<Report> fromJson(const nlohmann::json& j);
};

// A new report id for a report created at `unixSeconds`: UTC time, then a
// per-process counter (so ids made in the same second still sort by creation).
std::string newReportId(int64_t unixSeconds);

// "2026-12-03T13:30:12Z".
std::string formatRfc3339(int64_t unixSeconds);

// The registry of section generators. Thread-safe: add() and build() may run
// on any thread at any time.
class Reporter {
 public:
  using Generator = std::function<nlohmann::json()>;

  // `sectionTimeout`: how long build() waits for one generator before it gives
  // up on it (the section then says so) and goes on with the others.
  explicit Reporter(std::chrono::milliseconds sectionTimeout = std::chrono::seconds(10))
      : sectionTimeout_(sectionTimeout) {}

  // Registers a section; a later add of the same name replaces the generator
  // and keeps its place in the order.
  void add(std::string section, Generator g);

  // Names of the registered sections, in order.
  std::vector<std::string> sections() const;

  // Runs every generator, in order, on a worker thread. One that throws gives
  // {"error": "..."}; one that takes longer than the timeout gives {"error":
  // "did not finish in N ms"} and is left to finish on its own thread (so a
  // generator's captures must outlive it: register only long-lived objects),
  // while the others still run on a fresh worker.
  Report build(std::string reason, nlohmann::json context = nlohmann::json::object()) const;

 private:
  std::chrono::milliseconds sectionTimeout_;
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, Generator>> generators_;
};

// The generic sections.

// product, vendor, version, commit, build type, compiler and its version.
nlohmann::json packageSection();

// pid, ppid, uid/gid (real and effective), state, start time (RFC3339), uptime,
// rusage, open fds (count and fd -> link target), threads (count).
nlohmann::json processSection();

// Every native thread: tid, name, state and a symbolized stack (util/stacks.h),
// or why it has none. `perThreadTimeout` bounds the wait for each thread.
nlohmann::json threadsSection(std::chrono::milliseconds perThreadTimeout = std::chrono::milliseconds(500));

// Registers package, process and threads (in that order) with `r`.
void addGenericSections(Reporter& r);

}  // namespace corral::util
