// Network namespaces for network tests: made with `ip netns add`, so that every
// bridge, tap, address and dnsmasq a test makes lives there and goes with it.
// A Netns kills every process left in it and deletes it when it goes, also when
// the test failed half-way.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/unique_fd.h"

namespace corral::testing {

class Netns {
 public:
  // A fresh namespace named "<prefix>-<random>", its loopback up.
  explicit Netns(const std::string& prefix);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  const std::string& name() const { return name_; }

  // Runs `ip -n NAME ARGS...`; fails the test (and returns "") when ip fails.
  std::string ip(const std::vector<std::string>& args) const;
  // `ip -n NAME -j ARGS...` parsed; an empty array when ip printed nothing.
  nlohmann::json ipJson(const std::vector<std::string>& args) const;
  // Names of the links in it.
  std::vector<std::string> links() const;
  // Pids of every process in it (`ip netns pids`).
  std::vector<pid_t> pids() const;

  // f() on a thread that entered this namespace (setns): sockets it makes are
  // the namespace's. The calling thread is untouched.
  void run(const std::function<void()>& f) const;
  // "GET / HTTP/1.0" to addr:port from inside the namespace: the whole answer
  // (status line, headers, body), or nullopt when no connection was made within
  // timeoutMs.
  std::optional<std::string> httpGet(const std::string& addr, uint16_t port, int timeoutMs = 5000) const;

 private:
  std::string name_;
};

// A TCP server in a namespace that accepts every connection and closes it at
// once (so a client such as busybox nc ends), counting them: a test learns
// whether a connection arrived, not only whether the client thought so.
class AcceptCounter {
 public:
  // Listens on addr:port inside ns; fails the test when it cannot.
  AcceptCounter(const Netns& ns, const std::string& addr, uint16_t port);
  ~AcceptCounter();
  AcceptCounter(const AcceptCounter&) = delete;
  AcceptCounter& operator=(const AcceptCounter&) = delete;

  int accepted() const { return accepted_.load(); }

 private:
  util::UniqueFd listener_;
  util::UniqueFd stop_;  // an eventfd the thread polls beside the listener
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

}  // namespace corral::testing
