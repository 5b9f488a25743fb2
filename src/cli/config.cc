// Config file I/O (config.h).
#include "cli/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace corral::cli {
namespace {

Error ioError(std::string_view what, const std::string &path, int err) {
  return Error{ErrorCode::Unavailable,
               fmt::format("cannot {} {}: {}", what, path, std::strerror(err)),
               "config", path};
}

Error badFile(const std::string &path, std::string_view why) {
  return Error::invalidInput(
      "config", path,
      fmt::format("{} is not a corral config file: {}", path, why));
}

std::string stringAt(const nlohmann::json &obj, const char *key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>()
                                            : std::string();
}

} // namespace

Result<std::string> configPath() {
  auto env = [](const char *name) -> std::string {
    const char *v = std::getenv(name);
    return v != nullptr ? std::string(v) : std::string();
  };
  if (auto p = env("CORRAL_CONFIG"); !p.empty())
    return p;
  if (auto x = env("XDG_CONFIG_HOME"); !x.empty() && x.front() == '/')
    return x + "/corral/config.json";
  if (auto h = env("HOME"); !h.empty())
    return h + "/.config/corral/config.json";
  return Error::invalidInput(
      "config", "", "cannot find the config file: set CORRAL_CONFIG or HOME");
}

Result<void> validateRemoteName(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return Error::invalidInput("NAME", std::string(name), why);
  };
  if (name.empty() || name.size() > 64)
    return bad("must be 1 to 64 characters");
  if (name == kLocalRemote)
    return bad("\"local\" is the unix socket and cannot be added or removed");
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '-' && c != '_' && c != '.')))
      return bad("may hold only a-z, 0-9, '-', '_' and '.', and must start "
                 "with a letter or digit");
  }
  return ok();
}

Result<Config> loadConfig(const std::string &path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return Config{};
    return ioError("read", path, errno);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return ioError("read", path, errno != 0 ? errno : EIO);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return badFile(path, "not a JSON object");
  Config cfg;
  if (auto c = stringAt(j, "current_remote"); !c.empty())
    cfg.current = c;
  if (auto it = j.find("remotes"); it != j.end()) {
    if (!it->is_object())
      return badFile(path, "\"remotes\" is not an object");
    for (const auto &[name, r] : it->items()) {
      if (!r.is_object())
        return badFile(path, fmt::format("remote {} is not an object", name));
      cfg.remotes[name] = RemoteConfig{stringAt(r, "url"), stringAt(r, "token"),
                                       stringAt(r, "fingerprint")};
    }
  }
  return cfg;
}

Result<void> saveConfig(const std::string &path, const Config &config) {
  nlohmann::json remotes = nlohmann::json::object();
  for (const auto &[name, r] : config.remotes) {
    nlohmann::json e{{"url", r.url}, {"token", r.token}};
    if (!r.fingerprint.empty())
      e["fingerprint"] = r.fingerprint;
    remotes[name] = std::move(e);
  }
  nlohmann::json j{{"current_remote", config.current}, {"remotes", remotes}};
  std::string text = j.dump(2) + "\n";

  std::filesystem::path p(path);
  std::filesystem::path dir =
      p.parent_path().empty() ? std::filesystem::path(".") : p.parent_path();
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec)
      return ioError("create the directory", dir.string(), ec.value());
    ::chmod(dir.c_str(), 0700);
  }
  // mkstemp creates the file 0600 under any umask: the token is never readable
  // by others, not even for the moment before a chmod.
  std::string tmpl = (dir / ("." + p.filename().string() + ".XXXXXX")).string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    return ioError("create a temporary file in", dir.string(), errno);
  auto abandon = [&](std::string_view what, int err) {
    ::close(fd);
    ::unlink(tmpl.c_str());
    return ioError(what, tmpl, err);
  };
  if (::fchmod(fd, 0600) != 0)
    return abandon("set the mode of", errno);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return abandon("write", errno);
    off += size_t(n);
  }
  if (::fsync(fd) != 0)
    return abandon("flush", errno);
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmpl.c_str());
    return ioError("close", tmpl, err);
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmpl.c_str());
    return ioError("replace", path, err);
  }
  // Make the rename itself durable.
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return ok();
}

} // namespace corral::cli
