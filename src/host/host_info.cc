#include "host/host_info.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace corral::host {

HostInfo readHostInfo() {
  HostInfo info;
  struct utsname u {};
  if (::uname(&u) == 0) info.hostname = u.nodename;
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  info.cpus = n > 0 ? static_cast<unsigned>(n) : 1;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib) {
    std::getline(meminfo, unit);
    if (key == "MemTotal:") info.memoryTotalMib = kib / 1024;
    if (key == "MemAvailable:") info.memoryAvailableMib = kib / 1024;
  }
  return info;
}

}  // namespace corral::host
