// Facts about this host that the node report and validation need: memory,
// CPUs, hostname. Read from /proc and uname on every call (cheap, always true).
#pragma once

#include <cstdint>
#include <string>

namespace corral::host {

struct HostInfo {
  std::string hostname;
  unsigned cpus = 1;
  uint64_t memoryTotalMib = 0;
  uint64_t memoryAvailableMib = 0;
};

HostInfo readHostInfo();

}  // namespace corral::host
