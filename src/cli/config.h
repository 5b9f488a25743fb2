// The client's configuration: the known remotes (URL, API token, pinned
// certificate fingerprint) and which one commands talk to. One JSON file,
// $CORRAL_CONFIG, else $XDG_CONFIG_HOME/corral/config.json, else
// ~/.config/corral/config.json. It holds tokens, so it is written 0600 (its
// directory 0700) and atomically (a temporary file renamed over it): a crash
// or a full disk leaves the old file, never half of one.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::cli {

// The name of the unix socket as a remote: always there, never in the file.
inline constexpr std::string_view kLocalRemote = "local";

struct RemoteConfig {
  std::string url;   // "https://host:port"
  std::string token; // API token; never printed
  std::string
      fingerprint; // pinned SHA-256; empty: verified against the system's CAs
};

struct Config {
  std::string current{kLocalRemote};
  std::map<std::string, RemoteConfig> remotes;
};

// $CORRAL_CONFIG, $XDG_CONFIG_HOME/corral/config.json or
// $HOME/.config/corral/config.json; InvalidInput on "config" when none of
// these variables is set.
Result<std::string> configPath();

// A missing file is the empty configuration (current = "local"). A file that
// is not the expected JSON is InvalidInput naming the path.
Result<Config> loadConfig(const std::string &path);

// Writes `config` to `path` with mode 0600 through a temporary file in the
// same directory and rename(2); creates the directory (0700) when missing.
Result<void> saveConfig(const std::string &path, const Config &config);

// Remote names: 1-64 of [a-z0-9_.-], starting with a letter or digit; "local"
// is reserved for the unix socket. InvalidInput on field "NAME".
Result<void> validateRemoteName(std::string_view name);

} // namespace corral::cli
