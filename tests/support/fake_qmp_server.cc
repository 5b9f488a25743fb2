#include "support/fake_qmp_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

#include <gtest/gtest.h>

namespace corral::testing {

namespace {

// QEMU 7.2's greeting, byte for byte as qemu-system-x86_64 sent it here.
constexpr std::string_view kGreeting =
    R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}})";

nlohmann::json normalizedArgs(const nlohmann::json& args) {
  return args.is_null() ? nlohmann::json::object() : args;
}

}  // namespace

FakeQmpServer::FakeQmpServer(std::filesystem::path socketPath) : path_(std::move(socketPath)) {
  if (::pipe2(stopPipe_, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  listenFd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listenFd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path_.string();
  if (p.size() >= sizeof(addr.sun_path)) throw std::runtime_error("socket path too long: " + p);
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  if (::bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(listenFd_, 4) != 0) {
    throw std::system_error(errno, std::generic_category(), "bind/listen " + p);
  }
}

FakeQmpServer::~FakeQmpServer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (stopPipe_[1] >= 0) {
    char c = 'x';
    [[maybe_unused]] auto n = ::write(stopPipe_[1], &c, 1);
  }
  if (thread_.joinable()) thread_.join();
  for (int fd : {connFd_, listenFd_, stopPipe_[0], stopPipe_[1]}) {
    if (fd >= 0) ::close(fd);
  }
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

// ---------------------------------------------------------------- script building

FakeQmpServer& FakeQmpServer::loadTranscript(std::string_view name) {
  const auto file =
      std::filesystem::path(CORRAL_SOURCE_DIR) / "tests/data/qemu/qmp" / (std::string(name) + ".jsonl");
  std::ifstream in(file);
  if (!in) {
    ADD_FAILURE() << "no transcript " << file;
    return *this;
  }
  std::string line;
  int lineNo = 0;
  while (std::getline(in, line)) {
    ++lineNo;
    if (line.empty() || line[0] == '#') continue;
    if (line.size() < 3 || line[1] != ':' || line[2] != ' ') {
      ADD_FAILURE() << file << ":" << lineNo << ": neither S: nor C: line";
      continue;
    }
    std::string body = line.substr(3);
    auto json = nlohmann::json::parse(body, nullptr, false);
    if (line[0] == 'C') {
      if (!json.is_object() || !json.contains("execute")) {
        ADD_FAILURE() << file << ":" << lineNo << ": C: line is not a command";
        continue;
      }
      expect(json["execute"].get<std::string>(), json.value("arguments", nlohmann::json()));
    } else if (line[0] == 'S') {
      if (json.is_object() && json.contains("id")) {
        send(json);
      } else {
        sendRaw(body + "\r\n");
      }
    } else {
      ADD_FAILURE() << file << ":" << lineNo << ": unknown direction " << line[0];
    }
  }
  return *this;
}

FakeQmpServer& FakeQmpServer::greet() { return sendRaw(std::string(kGreeting) + "\r\n"); }

FakeQmpServer& FakeQmpServer::send(const Json& message) {
  script_.push_back({Step::Kind::SendJson, {}, message});
  return *this;
}

FakeQmpServer& FakeQmpServer::sendRaw(std::string bytes) {
  script_.push_back({Step::Kind::SendRaw, std::move(bytes), nullptr});
  return *this;
}

FakeQmpServer& FakeQmpServer::expect(std::string execute, Json arguments) {
  script_.push_back({Step::Kind::Expect, std::move(execute), std::move(arguments)});
  return *this;
}

FakeQmpServer& FakeQmpServer::reply(Json returnValue) {
  return send(Json{{"return", std::move(returnValue)}, {"id", nullptr}});
}

FakeQmpServer& FakeQmpServer::replyError(std::string errorClass, std::string desc) {
  return send(Json{{"id", nullptr}, {"error", {{"class", std::move(errorClass)}, {"desc", std::move(desc)}}}});
}

FakeQmpServer& FakeQmpServer::hold() {
  script_.push_back({Step::Kind::Hold, {}, nullptr});
  return *this;
}

FakeQmpServer& FakeQmpServer::serveBatch(std::string execute, Json returnValue, int count) {
  script_.push_back({Step::Kind::Batch, std::move(execute), std::move(returnValue), count});
  return *this;
}

FakeQmpServer& FakeQmpServer::dribble(bool on) {
  script_.push_back({Step::Kind::Dribble, {}, nullptr, 0, on});
  return *this;
}

FakeQmpServer& FakeQmpServer::closeConnection() {
  script_.push_back({Step::Kind::Close, {}, nullptr});
  return *this;
}

// ---------------------------------------------------------------- running

void FakeQmpServer::start() { thread_ = std::thread([this] { run(); }); }

void FakeQmpServer::release() {
  {
    std::lock_guard lock(mutex_);
    released_ = true;
  }
  cv_.notify_all();
}

bool FakeQmpServer::waitFinished(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [this] { return finished_; });
}

std::vector<nlohmann::json> FakeQmpServer::received() const {
  std::lock_guard lock(mutex_);
  return received_;
}

void FakeQmpServer::run() {
  pollfd fds[2] = {{listenFd_, POLLIN, 0}, {stopPipe_[0], POLLIN, 0}};
  while (true) {
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents != 0)) return;
    if (fds[0].revents & POLLIN) break;
  }
  connFd_ = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (connFd_ < 0) {
    ADD_FAILURE() << "FakeQmpServer: accept: " << std::strerror(errno);
    return;
  }
  for (const Step& step : script_) {
    if (!runStep(step)) return;
  }
  {
    std::lock_guard lock(mutex_);
    finished_ = true;
  }
  cv_.notify_all();
  // The script is over: anything the client still sends was not expected.
  while (connFd_ >= 0) {
    auto line = readLine();
    if (!line) return;
    ADD_FAILURE() << "FakeQmpServer: unexpected command after the script ended: " << *line;
    ::shutdown(connFd_, SHUT_RDWR);
    return;
  }
}

bool FakeQmpServer::runStep(const Step& step) {
  switch (step.kind) {
    case Step::Kind::SendRaw:
      return writeAll(step.raw);
    case Step::Kind::SendJson:
      return sendJson(step.json);
    case Step::Kind::Expect: {
      auto line = readLine();
      if (!line) {
        std::lock_guard lock(mutex_);
        if (!stopping_) ADD_FAILURE() << "FakeQmpServer: connection ended while expecting " << step.raw;
        return false;
      }
      return checkCommand(*line, step);
    }
    case Step::Kind::Hold: {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return released_ || stopping_; });
      released_ = false;
      return !stopping_;
    }
    case Step::Kind::Batch: {
      std::vector<std::pair<Json, Json>> got;  // id, arguments
      for (int i = 0; i < step.count; ++i) {
        auto line = readLine();
        if (!line) {
          ADD_FAILURE() << "FakeQmpServer: connection ended in a batch of " << step.raw << " after " << i;
          return false;
        }
        if (!checkCommand(*line, step)) return false;
        got.emplace_back(lastId_, received().back().value("arguments", Json::object()));
      }
      for (auto it = got.rbegin(); it != got.rend(); ++it) {
        lastId_ = it->first;
        const Json& ret = step.json.is_null() ? it->second : step.json;
        if (!sendJson(Json{{"return", ret}, {"id", nullptr}})) return false;
      }
      return true;
    }
    case Step::Kind::Dribble:
      dribble_ = step.flag;
      return true;
    case Step::Kind::Close:
      ::close(connFd_);
      connFd_ = -1;
      return true;
  }
  return false;
}

bool FakeQmpServer::checkCommand(const std::string& line, const Step& step) {
  auto cmd = Json::parse(line, nullptr, false);
  if (!cmd.is_object() || !cmd.contains("execute")) {
    ADD_FAILURE() << "FakeQmpServer: not a QMP command: " << line;
    ::shutdown(connFd_, SHUT_RDWR);
    return false;
  }
  {
    std::lock_guard lock(mutex_);
    received_.push_back(cmd);
  }
  lastId_ = cmd.value("id", Json());
  // A batch compares only the command name; its arguments are the test's business.
  const bool argsMatch = step.kind == Step::Kind::Batch ||
                         normalizedArgs(cmd.value("arguments", Json())) == normalizedArgs(step.json);
  if (cmd["execute"] != step.raw || !argsMatch) {
    ADD_FAILURE() << "FakeQmpServer: unexpected command " << line << "\n  expected execute=" << step.raw
                  << (step.kind == Step::Kind::Batch ? "" : " arguments=" + normalizedArgs(step.json).dump());
    ::shutdown(connFd_, SHUT_RDWR);
    return false;
  }
  return true;
}

bool FakeQmpServer::sendJson(Json message) {
  if (message.contains("id")) message["id"] = lastId_;
  return writeAll(message.dump() + "\r\n");
}

bool FakeQmpServer::writeAll(std::string_view bytes) {
  if (connFd_ < 0) return false;
  while (!bytes.empty()) {
    std::size_t chunk = dribble_ ? 1 : bytes.size();
    ssize_t n = ::send(connFd_, bytes.data(), chunk, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // the client went away; what the test checks decides
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::optional<std::string> FakeQmpServer::readLine() {
  while (true) {
    if (auto nl = inBuf_.find('\n'); nl != std::string::npos) {
      std::string line = inBuf_.substr(0, nl);
      inBuf_.erase(0, nl + 1);
      return line;
    }
    if (connFd_ < 0) return std::nullopt;
    pollfd fds[2] = {{connFd_, POLLIN, 0}, {stopPipe_[0], POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[1].revents != 0) return std::nullopt;
    char buf[4096];
    ssize_t got = ::read(connFd_, buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return std::nullopt;
    inBuf_.append(buf, static_cast<std::size_t>(got));
  }
}

}  // namespace corral::testing
