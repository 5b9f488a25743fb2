// Network namespaces for network tests: made with `ip netns add`, so that every
// bridge, tap, address and dnsmasq a test makes lives there and goes with it.
// A Netns kills every process left in it and deletes it when it goes, also when
// the test failed half-way.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

}  // namespace corral::testing
