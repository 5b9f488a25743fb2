// Proves the corral CLI's config file (cli/config.cc; links corral_cli): a
// missing file reads as "local" with no remotes; what is saved reads back; the
// file is written 0600 (it holds tokens) even under a permissive umask, in a
// directory created 0700, with no temporary file left behind; a broken file is
// an error naming the path; the path follows CORRAL_CONFIG, then
// XDG_CONFIG_HOME, then HOME; remote names are checked against the allow-list.
#include "cli/config.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include <gtest/gtest.h>

#include "support/files.h"
#include "support/temp_dir.h"

namespace corral::cli {
namespace {

namespace fs = std::filesystem;
using corral::testing::modeOf;
using corral::testing::readAll;

TEST(CliConfig, MissingFileIsLocal) {
  testing::TempDir dir;
  auto cfg = loadConfig((dir / "nope/config.json").string());
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_EQ(cfg->current, "local");
  EXPECT_TRUE(cfg->remotes.empty());
}

TEST(CliConfig, RoundTripWith0600AndNoLeftovers) {
  testing::TempDir dir;
  fs::path path = dir / "sub/corral/config.json";
  mode_t old = ::umask(0); // the file must be 0600 whatever the umask says
  Config cfg;
  cfg.current = "prod";
  cfg.remotes["prod"] = RemoteConfig{"https://h:8443", "crl_secret", "AB:CD"};
  cfg.remotes["lab"] = RemoteConfig{"https://lab:1", "crl_other", ""};
  auto r = saveConfig(path.string(), cfg);
  ::umask(old);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(modeOf(path), 0600u);
  EXPECT_EQ(modeOf(path.parent_path()), 0700u);
  int files = 0;
  for ([[maybe_unused]] const auto &e :
       fs::directory_iterator(path.parent_path()))
    ++files;
  EXPECT_EQ(files, 1);

  auto back = loadConfig(path.string());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->current, "prod");
  ASSERT_EQ(back->remotes.size(), 2u);
  EXPECT_EQ(back->remotes["prod"].url, "https://h:8443");
  EXPECT_EQ(back->remotes["prod"].token, "crl_secret");
  EXPECT_EQ(back->remotes["prod"].fingerprint, "AB:CD");
  EXPECT_EQ(back->remotes["lab"].fingerprint, "");

  // Rewriting replaces (rename) rather than truncating: a file opened before
  // keeps the old content, and the mode stays 0600.
  std::ifstream before(path);
  cfg.remotes.erase("lab");
  ASSERT_TRUE(saveConfig(path.string(), cfg).ok());
  EXPECT_EQ(modeOf(path), 0600u);
  std::string oldText((std::istreambuf_iterator<char>(before)),
                      std::istreambuf_iterator<char>());
  EXPECT_NE(oldText.find("lab"), std::string::npos);
  EXPECT_EQ(loadConfig(path.string())->remotes.size(), 1u);
}

TEST(CliConfig, ExistingLooseFileBecomes0600) {
  testing::TempDir dir;
  fs::path path = dir / "config.json";
  std::ofstream(path) << "{}";
  fs::permissions(path, fs::perms::all);
  ASSERT_TRUE(saveConfig(path.string(), Config{}).ok());
  EXPECT_EQ(modeOf(path), 0600u);
}

TEST(CliConfig, BrokenFileNamesThePath) {
  testing::TempDir dir;
  fs::path path = dir / "config.json";
  for (std::string text :
       {"not json", "[]", R"({"remotes": []})", R"({"remotes": {"a": 1}})"}) {
    std::ofstream(path, std::ios::trunc) << text;
    auto r = loadConfig(path.string());
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.error().message.find(path.string()), std::string::npos)
        << r.error().message;
  }
}

TEST(CliConfig, PathFromEnvironment) {
  auto keep = [](const char *n) {
    const char *v = std::getenv(n);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  auto c = keep("CORRAL_CONFIG"), x = keep("XDG_CONFIG_HOME"), h = keep("HOME");
  ::setenv("CORRAL_CONFIG", "/tmp/a.json", 1);
  ::setenv("XDG_CONFIG_HOME", "/tmp/xdg", 1);
  ::setenv("HOME", "/tmp/home", 1);
  EXPECT_EQ(*configPath(), "/tmp/a.json");
  ::unsetenv("CORRAL_CONFIG");
  EXPECT_EQ(*configPath(), "/tmp/xdg/corral/config.json");
  ::setenv("XDG_CONFIG_HOME", "relative",
           1); // the XDG spec says: ignore relative paths
  EXPECT_EQ(*configPath(), "/tmp/home/.config/corral/config.json");
  ::unsetenv("XDG_CONFIG_HOME");
  ::unsetenv("HOME");
  EXPECT_FALSE(configPath().ok());
  auto restore = [](const char *n, const std::optional<std::string> &v) {
    if (v)
      ::setenv(n, v->c_str(), 1);
    else
      ::unsetenv(n);
  };
  restore("CORRAL_CONFIG", c);
  restore("XDG_CONFIG_HOME", x);
  restore("HOME", h);
}

TEST(CliConfig, RemoteNames) {
  for (std::string good : {"prod", "lab-1", "a.b_c", "9x"})
    EXPECT_TRUE(validateRemoteName(good).ok()) << good;
  for (std::string bad :
       std::vector<std::string>{"", "local", "Prod", "-x", "a/b", "a b",
                                std::string(65, 'a'), ".."}) {
    auto r = validateRemoteName(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().field, "NAME");
    }
  }
}

} // namespace
} // namespace corral::cli
