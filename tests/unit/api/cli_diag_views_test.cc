// Proves what the corral CLI prints for `vm dump` and `node verify`: the dump
// as flattened "key: value" lines (nested metadata, argv joined, disks
// numbered, runtime "-" when not running), and verify's table and summary
// naming each problem and warning again, so none hides in a long list.
#include <gtest/gtest.h>

#include "cli/output.h"
#include "cli/views.h"

namespace corral::cli {
namespace {

using nlohmann::json;

TEST(VmDumpView, FlattensMetadataAndRuntime) {
  json dump = {{"metadata",
                {{"schema", "corral.metadata/v1"},
                 {"created", {{"by", {{"login", "alice"}, {"via", "token"}}}}},
                 {"flavour", {{"memory_mib", 512}, {"disks", {{{"name", "disk0"}, {"size_bytes", 1024}}}}}}}},
               {"metadata_source", "runtime record"},
               {"runtime", {{"pid", 42}, {"argv", {"qemu-system-x86_64", "-name", "guest=a,debug-threads=on"}}}}};
  std::string text = renderView(vmDumpView(dump), "table");
  EXPECT_NE(text.find("metadata.schema:"), std::string::npos) << text;
  EXPECT_NE(text.find("metadata.created.by.login:"), std::string::npos) << text;
  EXPECT_NE(text.find("metadata.flavour.disks.0.name:"), std::string::npos) << text;
  EXPECT_NE(text.find("qemu-system-x86_64 -name guest=a,debug-threads=on"), std::string::npos) << text;
  EXPECT_NE(text.find("runtime.pid:"), std::string::npos) << text;

  json stopped = {{"metadata", {{"name", "a"}}}, {"metadata_source", "store"}, {"runtime", nullptr}};
  std::string s = renderView(vmDumpView(stopped), "table");
  EXPECT_NE(s.find("runtime:"), std::string::npos) << s;
  EXPECT_NE(s.find("metadata.name:"), std::string::npos) << s;
}

TEST(NodeVerifyView, TableAndSummaryNameEveryProblem) {
  json body = {{"checks",
                {{{"name", "qemu"}, {"ok", true}, {"warning", false}, {"detail", "fine"}},
                 {{"name", "state_dir"}, {"ok", false}, {"warning", false}, {"detail", "mode 0755"}},
                 {{"name", "clock.sync"}, {"ok", true}, {"warning", true}, {"detail", "not synchronised"}},
                 {{"name", "key.console"}, {"ok", false}, {"warning", false}, {"detail", "mode 0644"}}}},
               {"problems", 2},
               {"warnings", 1}};
  std::string table = renderView(nodeVerifyView(body), "table");
  EXPECT_NE(table.find("state_dir     PROBLEM"), std::string::npos) << table;
  EXPECT_NE(table.find("clock.sync    WARNING"), std::string::npos) << table;
  EXPECT_NE(table.find("qemu          ok"), std::string::npos) << table;
  EXPECT_EQ(nodeVerifySummary(body), "2 problems: state_dir, key.console; 1 warning: clock.sync\n");
  EXPECT_EQ(nodeVerifySummary({{"checks", json::array()}}), "no problems\n");
}

}  // namespace
}  // namespace corral::cli
