// corrald's configuration: command-line flags now (a config file comes with the
// control plane). Every effective setting is logged at start.
#pragma once

#include <chrono>
#include <string>

namespace corral::daemon {

struct Config {
  std::string stateDir = "/var/lib/corral";
  std::string accel = "auto";  // auto | kvm | tcg
  std::string qemuBinary = "qemu-system-x86_64";
  std::string logLevel = "info";
  unsigned stopTimeoutSeconds = 60;
  // A start or stop holds its handler thread until QEMU answers, so this bounds
  // how many VMs start at once; the threads are idle otherwise.
  unsigned apiThreads = 32;
};

}  // namespace corral::daemon
