#include "support/netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "util/command.h"
#include "util/unique_fd.h"

namespace corral::testing {
namespace {

util::Command ipCommand(const std::vector<std::string>& args) {
  util::Command c("ip");
  c.args(args).keepEnv({"PATH"}).stdoutToBuffer().stderrToBuffer().timeout(std::chrono::milliseconds(20000));
  return c;
}

}  // namespace

Netns::Netns(const std::string& prefix) {
  std::random_device rd;
  name_ = fmt::format("{}-{:08x}", prefix, rd());
  auto r = ipCommand({"netns", "add", name_}).run();
  if (!r.ok()) {
    ADD_FAILURE() << "ip netns add " << name_ << ": " << r.error().message;
    return;
  }
  ip({"link", "set", "lo", "up"});
}

Netns::~Netns() {
  // Whatever is left in it (a dnsmasq, a QEMU) would keep it alive.
  for (int round = 0; round < 50; ++round) {
    auto left = pids();
    if (left.empty()) break;
    for (pid_t p : left) ::kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto r = ipCommand({"netns", "del", name_}).allowFailureStatus().run();
  if (!r.ok() || r->status.exitCode != 0) ADD_FAILURE() << "ip netns del " << name_ << " failed";
}

std::string Netns::ip(const std::vector<std::string>& args) const {
  std::vector<std::string> all = {"-n", name_};
  all.insert(all.end(), args.begin(), args.end());
  auto r = ipCommand(all).run();
  if (!r.ok()) {
    ADD_FAILURE() << "ip " << fmt::format("{}", fmt::join(all, " ")) << ": " << r.error().message;
    return "";
  }
  return r->out;
}

nlohmann::json Netns::ipJson(const std::vector<std::string>& args) const {
  std::vector<std::string> all = {"-j"};
  all.insert(all.end(), args.begin(), args.end());
  std::string out = ip(all);
  auto j = nlohmann::json::parse(out, nullptr, false);
  return j.is_discarded() ? nlohmann::json::array() : j;
}

std::vector<std::string> Netns::links() const {
  std::vector<std::string> out;
  for (const auto& l : ipJson({"link", "show"})) out.push_back(l.value("ifname", ""));
  return out;
}

std::vector<pid_t> Netns::pids() const {
  std::vector<pid_t> out;
  auto r = ipCommand({"netns", "pids", name_}).allowFailureStatus().run();
  if (!r.ok()) return out;
  std::istringstream in(r->out);
  pid_t p = 0;
  while (in >> p) out.push_back(p);
  return out;
}

void Netns::run(const std::function<void()>& f) const {
  std::thread t([&] {
    util::UniqueFd ns(::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns || ::setns(ns.get(), CLONE_NEWNET) != 0) {
      ADD_FAILURE() << "cannot enter netns " << name_ << ": " << std::strerror(errno);
      return;
    }
    f();
  });
  t.join();
}

std::optional<std::string> Netns::httpGet(const std::string& addr, uint16_t port, int timeoutMs) const {
  std::optional<std::string> answer;
  run([&] {
    util::UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (!s || ::inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) return;
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) return;
    pollfd p{s.get(), POLLOUT, 0};
    if (::poll(&p, 1, timeoutMs) != 1) return;
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return;
    const std::string req = "GET / HTTP/1.0\r\n\r\n";
    if (::send(s.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return;
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd r{s.get(), POLLIN, 0};
      if (::poll(&r, 1, 200) != 1) continue;
      char buf[4096];
      ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    answer = out;
  });
  return answer;
}

AcceptCounter::AcceptCounter(const Netns& ns, const std::string& addr, uint16_t port) {
  ns.run([&] {
    listener_ = util::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (::inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1 ||
        ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(listener_.get(), 16) != 0)
      ADD_FAILURE() << "cannot listen on " << addr << ":" << port << " in " << ns.name() << ": " << std::strerror(errno);
  });
  stop_ = util::UniqueFd(::eventfd(0, EFD_CLOEXEC));
  thread_ = std::thread([this] {
    for (;;) {
      pollfd p[2] = {{listener_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
      if (p[1].revents) return;
      if (p[0].revents & POLLIN) {
        util::UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (c) ++accepted_;
      }
    }
  });
}

AcceptCounter::~AcceptCounter() {
  uint64_t one = 1;
  (void)::write(stop_.get(), &one, sizeof one);
  thread_.join();
}

}  // namespace corral::testing
