// Holds the served route table against docs/api.yaml: a route served but not
// documented, or documented but not served, fails this test.
#include <fstream>
#include <set>
#include <string>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "api/routes.h"
#include "host/state_dir.h"
#include "support/temp_dir.h"

namespace corral::api {
namespace {

// docs/api.yaml keeps paths at two spaces of indent and methods at four; this
// reads exactly that much of it.
std::set<std::pair<std::string, std::string>> documentedRoutes() {
  std::ifstream in(std::string(CORRAL_SOURCE_DIR) + "/docs/api.yaml");
  std::set<std::pair<std::string, std::string>> out;
  std::string line, path;
  bool inPaths = false;
  while (std::getline(in, line)) {
    if (line.rfind("paths:", 0) == 0) { inPaths = true; continue; }
    if (!inPaths) continue;
    if (!line.empty() && line[0] != ' ') break;
    if (line.rfind("  /", 0) == 0) {
      path = line.substr(2, line.find(':') - 2);
    } else if (line.rfind("    ", 0) == 0 && line.size() > 4 && line[4] != ' ') {
      std::string method = line.substr(4, line.find(':') - 4);
      for (const char* m : {"get", "post", "put", "patch", "delete"})
        if (method == m) {
          for (auto& c : method) c = static_cast<char>(toupper(c));
          out.insert({method, path});
        }
    }
  }
  return out;
}

TEST(ApiSpec, ServedRoutesAreExactlyTheDocumentedOnes) {
  testing::TempDir dir;
  host::StateDir state(dir.path());
  ASSERT_TRUE(state.prepare().ok());
  auto store = store::openSqliteStore(state.database().string());
  ASSERT_TRUE(store.ok());
  boost::asio::io_context io;
  core::EventBus events;
  core::VmManager vms(io, **store, state, {}, &events);
  core::Operations ops(**store, 1);
  core::Identity identity(**store);
  core::Images images(**store, vms.storage(), ops);
  auto tokens = core::ConsoleTokens::open({.keyFile = state.consoleKey()});
  ASSERT_TRUE(tokens.ok()) << tokens.error().describe();
  Router router;
  addAllRoutes(router, {.vms = vms, .images = images, .ops = ops, .events = events, .identity = identity,
                        .consoleTokens = **tokens, .nodeFacts = [](const core::Principal&) { return nlohmann::json::object(); }});

  std::set<std::pair<std::string, std::string>> served;
  for (const auto& r : router.routes()) served.insert(r);
  auto documented = documentedRoutes();
  ASSERT_FALSE(documented.empty()) << "docs/api.yaml not found or has no paths";
  for (const auto& r : served) EXPECT_TRUE(documented.count(r)) << r.first << " " << r.second << " is not in docs/api.yaml";
  for (const auto& r : documented) EXPECT_TRUE(served.count(r)) << r.first << " " << r.second << " is documented but not served";
}

}  // namespace
}  // namespace corral::api
