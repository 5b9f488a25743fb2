// Proves the storage commands of the corral CLI end to end in-process: the
// command line is parsed by the real CLI11 setup (addImageCommands,
// addVmCommands, addDiskCommands) and the chosen action talks to a stand-in
// daemon on a unix socket that records each request. Covered: `image import`
// (exactly one of --disk/--iso/--kernel, the options that need one of them, the
// path sent to the local daemon, the file streamed with --upload and its query,
// the wait for the import operation with progress lines on a non-terminal, the
// image printed from the operation's result, a failed import's exit code,
// --no-wait), `image list|info`, `vm create` storage keys (only those given,
// sizes as the strings typed), `vm start|reboot --cdrom`, `vm cdrom
// insert|eject`, and `disk list|add|resize|remove|rekey` routes and bodies.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli_fake_daemon.h"
#include "cli_run.h"
#include "support/temp_dir.h"

namespace corral::cli {
namespace {

using nlohmann::json;
using testutil::FakeDaemon;
using testutil::Reply;
using testutil::SeenRequest;

// `corral ARGS...` with the storage nouns.
testutil::CliRun corral(const FakeDaemon &daemon, std::vector<std::string> args) {
  return testutil::runCli(daemon, std::move(args), {addImageCommands, addVmCommands, addDiskCommands});
}

// Answers like corrald for the routes these tests use.
const char *kImage =
    R"({"name":"deb","kind":"disk","state":"ready","owner_kind":"","owner":"",
        "description":"","size_bytes":300000000,"virtual_size":4294967296,
        "format":"qcow2","sha256":"ab12","created_at":"2024-05-01T00:00:00Z"})";

Reply daemonAnswer(const SeenRequest &r) {
  if ((r.method == "POST" && r.target == "/api/v1/images") ||
      (r.method == "PUT" && r.target.rfind("/api/v1/images/", 0) == 0))
    return {202, R"({"id":"op-1","kind":"image.import","target":"deb",
                    "state":"running","progress":0,"bytes_done":0,
                    "bytes_total":0})"};
  if (r.target.rfind("/api/v1/operations/op-1/wait", 0) == 0)
    return {200, std::string(R"({"id":"op-1","kind":"image.import",
                   "state":"succeeded","progress":100,
                   "bytes_done":1073741824,"bytes_total":1073741824,
                   "result":)") +
                     kImage + "}"};
  if (r.method == "GET" && r.target == "/api/v1/images")
    return {200, std::string(R"({"images":[)") + kImage + "]}"};
  if (r.method == "GET" && r.target == "/api/v1/images/deb")
    return {200, kImage};
  if (r.target.find("/disks") != std::string::npos) {
    json d{{"name", "disk1"},       {"size_bytes", 10737418240},
           {"pool", "default"},     {"format", "qcow2"},
           {"encrypted", true},     {"backing_image", ""}};
    if (r.method == "GET")
      return {200, json{{"disks", json::array({d})}}.dump()};
    if (r.method == "DELETE")
      return {204, ""};
    return {r.method == "POST" && r.target.find("rekey") == std::string::npos
                ? 201
                : 200,
            d.dump()};
  }
  if (r.target.rfind("/api/v1/vms", 0) == 0)
    return {r.method == "POST" && r.target == "/api/v1/vms" ? 201 : 200,
            R"({"name":"web1","state":"stopped","cdrom":"inst"})"};
  return {404, R"({"error":{"code":"not_found","message":"no route"}})"};
}

std::filesystem::path touch(const corral::testing::TempDir &dir,
                            const std::string &name) {
  std::ofstream(dir / name) << "0123456789";
  return dir / name;
}

TEST(CliImageImport, NeedsExactlyOneSource) {
  corral::testing::TempDir dir;
  auto disk = touch(dir, "d.qcow2").string();
  auto iso = touch(dir, "i.iso").string();
  FakeDaemon daemon(daemonAnswer);
  for (std::vector<std::string> bad : {
           std::vector<std::string>{"image", "import", "deb"},
           {"image", "import", "deb", "--disk", disk, "--iso", iso},
           {"image", "import", "deb", "--disk", disk, "--kernel", "/k"},
           // the options that belong to one source
           {"image", "import", "deb", "--disk", disk, "--initrd", "/i"},
           {"image", "import", "deb", "--iso", iso, "--append", "x"},
           {"image", "import", "deb", "--iso", iso, "--format", "raw"},
           {"image", "import", "deb", "--disk", disk, "--format", "vmdk"},
           {"image", "import", "deb", "--kernel", "/k", "--upload"},
           {"image", "import", "deb", "--disk", (dir / "missing").string()},
       }) {
    auto r = corral(daemon, bad);
    EXPECT_EQ(r.code, kExitUsage) << bad.back() << ": " << r.err;
  }
  EXPECT_TRUE(daemon.requests().empty());
  auto none = corral(daemon, {"image", "import", "deb"});
  EXPECT_NE(none.err.find("exactly one of --disk"), std::string::npos)
      << none.err;
}

TEST(CliImageImport, LocalDaemonGetsTheAbsolutePathAndTheImageIsPrinted) {
  corral::testing::TempDir dir;
  touch(dir, "d.qcow2");
  FakeDaemon daemon(daemonAnswer);
  // A relative path is made absolute: the daemon's cwd is not ours.
  auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  auto r = corral(daemon, {"image", "import", "deb", "--disk", "d.qcow2",
                           "--owner", "sipb", "--format", "qcow2"});
  std::filesystem::current_path(cwd);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  auto seen = daemon.requests();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/api/v1/images");
  EXPECT_EQ(json::parse(seen[0].body),
            (json{{"name", "deb"},
                  {"kind", "disk"},
                  {"path", (dir / "d.qcow2").string()},
                  {"owner", "sipb"},
                  {"format", "qcow2"}}));
  EXPECT_EQ(seen[1].target.rfind("/api/v1/operations/op-1/wait?timeout=", 0),
            0u);
  // stderr is no terminal here: plain lines, the last at 100%.
  EXPECT_NE(r.err.find("importing deb  0%\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("importing deb  100%  1.0 GiB / 1.0 GiB\n"),
            std::string::npos)
      << r.err;
  // The image, from the operation's result, as `image info` shows it.
  EXPECT_EQ(r.out.rfind("name:", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("virtual_size:  4.0 GiB (4294967296 bytes)\n"),
            std::string::npos)
      << r.out;
}

TEST(CliImageImport, KernelGoesByPathWithInitrdAndAppend) {
  FakeDaemon daemon(daemonAnswer);
  auto r = corral(daemon, {"image", "import", "tiny", "--kernel", "/b/vmlinuz",
                           "--initrd", "/b/initrd", "--append",
                           "console=ttyS0", "--description", "test kernel",
                           "-o", "json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  auto seen = daemon.requests();
  ASSERT_GE(seen.size(), 1u);
  EXPECT_EQ(json::parse(seen[0].body), (json{{"name", "tiny"},
                                             {"kind", "direct-boot"},
                                             {"kernel", "/b/vmlinuz"},
                                             {"initrd", "/b/initrd"},
                                             {"append", "console=ttyS0"},
                                             {"description", "test kernel"}}));
  // -o json: the image's JSON itself.
  EXPECT_EQ(json::parse(r.out)["virtual_size"], 4294967296);
}

TEST(CliImageImport, UploadStreamsTheFileWithItsQuery) {
  corral::testing::TempDir dir;
  auto iso = touch(dir, "inst.iso");
  FakeDaemon daemon(daemonAnswer);
  auto r = corral(daemon, {"image", "import", "inst", "--iso", iso.string(),
                           "--upload", "--owner", "ops team", "--description",
                           "a&b"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  auto seen = daemon.requests();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "PUT");
  EXPECT_EQ(seen[0].target, "/api/v1/images/inst/file?kind=iso&owner=ops%20team"
                            "&description=a%26b");
  EXPECT_EQ(seen[0].contentType, "application/octet-stream");
  EXPECT_EQ(seen[0].body, "0123456789");
  EXPECT_NE(r.err.find("uploading inst  100%  10 B / 10 B\n"),
            std::string::npos)
      << r.err;
}

TEST(CliImageImport, NoWaitPrintsTheOperation) {
  corral::testing::TempDir dir;
  auto disk = touch(dir, "d.qcow2");
  FakeDaemon daemon(daemonAnswer);
  auto r = corral(daemon, {"image", "import", "deb", "--disk", disk.string(),
                           "--no-wait", "-o", "json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(daemon.requests().size(), 1u);
  EXPECT_EQ(json::parse(r.out)["id"], "op-1");
}

TEST(CliImageImport, FailedImportExitsOneWithTheReason) {
  corral::testing::TempDir dir;
  auto disk = touch(dir, "d.qcow2");
  FakeDaemon daemon([](const SeenRequest &r) -> Reply {
    if (r.method == "POST")
      return {202, R"({"id":"op-1","state":"pending"})"};
    return {200, R"({"id":"op-1","state":"failed","bytes_done":5,
                    "bytes_total":10,"result":{"error":{"code":"invalid_input",
                    "message":"d.qcow2 is not a qcow2 image"}}})"};
  });
  auto r = corral(daemon, {"image", "import", "deb", "--disk", disk.string()});
  EXPECT_EQ(r.code, kExitApiError);
  EXPECT_NE(r.err.find("corral: d.qcow2 is not a qcow2 image"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(CliImage, ListAndInfo) {
  FakeDaemon daemon(daemonAnswer);
  auto list = corral(daemon, {"image", "list"});
  ASSERT_EQ(list.code, kExitOk) << list.err;
  EXPECT_EQ(list.out, "NAME   KIND   STATE   SIZE      OWNER\n"
                      "deb    disk   ready   4.0 GiB   -\n");
  auto info = corral(daemon, {"image", "info", "deb", "-o", "json"});
  ASSERT_EQ(info.code, kExitOk) << info.err;
  EXPECT_EQ(json::parse(info.out)["name"], "deb");
  EXPECT_EQ(daemon.requests().back().target, "/api/v1/images/deb");
}

TEST(CliVm, CreateSendsOnlyTheStorageKeysGiven) {
  FakeDaemon daemon(daemonAnswer);
  // NAME after a --disk: each --disk takes one size.
  auto r = corral(daemon, {"vm", "create", "--disk", "20G", "web1", "--image",
                           "deb", "--memory", "1G", "--disk", "10737418240",
                           "--encrypt", "--full-clone", "--cdrom", "inst",
                           "--pool", "fast"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  auto body = json::parse(daemon.requests().at(0).body);
  EXPECT_EQ(body["name"], "web1");
  EXPECT_EQ(body["disks"], (json{"20G", "10737418240"})); // strings as typed
  EXPECT_EQ(body["encrypt"], true);
  EXPECT_EQ(body["full_clone"], true);
  EXPECT_EQ(body["cdrom"], "inst");
  EXPECT_EQ(body["pool"], "fast");

  auto plain = corral(daemon, {"vm", "create", "web2", "--image", "deb",
                               "--memory", "512"});
  ASSERT_EQ(plain.code, kExitOk) << plain.err;
  auto b2 = json::parse(daemon.requests().back().body);
  for (const char *k : {"disks", "encrypt", "full_clone", "cdrom", "pool"})
    EXPECT_FALSE(b2.contains(k)) << k;
}

TEST(CliVm, StartAndRebootWithACdrom) {
  FakeDaemon daemon(daemonAnswer);
  ASSERT_EQ(corral(daemon, {"vm", "start", "web1", "--cdrom", "inst"}).code,
            kExitOk);
  ASSERT_EQ(corral(daemon, {"vm", "reboot", "web1", "--cdrom", "inst"}).code,
            kExitOk);
  ASSERT_EQ(corral(daemon, {"vm", "start", "web1"}).code, kExitOk);
  EXPECT_EQ(corral(daemon, {"vm", "pause", "web1", "--cdrom", "x"}).code,
            kExitUsage);
  auto seen = daemon.requests();
  // The stand-in answers with the VM at once (no operation): one request each.
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].target, "/api/v1/vms/web1/actions/start");
  EXPECT_EQ(json::parse(seen[0].body), (json{{"cdrom", "inst"}}));
  EXPECT_EQ(seen[1].target, "/api/v1/vms/web1/actions/reboot");
  EXPECT_EQ(json::parse(seen[1].body), (json{{"cdrom", "inst"}}));
  EXPECT_TRUE(seen[2].body.empty()); // no --cdrom: no body, as before
}

TEST(CliVm, CdromInsertAndEject) {
  FakeDaemon daemon(daemonAnswer);
  auto ins = corral(daemon, {"vm", "cdrom", "insert", "web1", "inst"});
  ASSERT_EQ(ins.code, kExitOk) << ins.err;
  EXPECT_EQ(ins.out, "inserted inst into vm web1 (stopped)\n");
  auto ej = corral(daemon, {"vm", "cdrom", "eject", "web1"});
  ASSERT_EQ(ej.code, kExitOk) << ej.err;
  auto seen = daemon.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "PUT");
  EXPECT_EQ(seen[0].target, "/api/v1/vms/web1/cdrom");
  EXPECT_EQ(json::parse(seen[0].body), (json{{"image", "inst"}}));
  EXPECT_EQ(seen[1].method, "DELETE");
  EXPECT_EQ(seen[1].target, "/api/v1/vms/web1/cdrom");
  EXPECT_EQ(corral(daemon, {"vm", "cdrom", "insert", "web1"}).code,
            kExitUsage);
}

TEST(CliDisk, RoutesAndBodies) {
  FakeDaemon daemon(daemonAnswer);
  auto list = corral(daemon, {"disk", "list", "web1"});
  ASSERT_EQ(list.code, kExitOk) << list.err;
  EXPECT_EQ(list.out,
            "NAME    SIZE     POOL      FORMAT   ENCRYPTED   BACKING\n"
            "disk1   10 GiB   default   qcow2    true        -\n");
  auto add = corral(daemon, {"disk", "add", "web1", "10G", "--encrypt",
                             "--pool", "fast"});
  ASSERT_EQ(add.code, kExitOk) << add.err;
  EXPECT_EQ(add.out, "added disk1 (10 GiB) to vm web1\n");
  auto plainAdd = corral(daemon, {"disk", "add", "web1", "512M"});
  ASSERT_EQ(plainAdd.code, kExitOk) << plainAdd.err;
  auto resize =
      corral(daemon, {"disk", "resize", "web1", "disk1", "20G", "-o", "json"});
  ASSERT_EQ(resize.code, kExitOk) << resize.err;
  EXPECT_EQ(json::parse(resize.out)["name"], "disk1");
  ASSERT_EQ(corral(daemon, {"disk", "remove", "web1", "disk1"}).code, kExitOk);
  auto rekey = corral(daemon, {"disk", "rekey", "web1", "disk1"});
  ASSERT_EQ(rekey.code, kExitOk) << rekey.err;
  EXPECT_EQ(rekey.out, "rekeyed disk1 of vm web1\n");

  auto seen = daemon.requests();
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_EQ(seen[0].method + " " + seen[0].target, "GET /api/v1/vms/web1/disks");
  EXPECT_EQ(seen[1].method + " " + seen[1].target,
            "POST /api/v1/vms/web1/disks");
  EXPECT_EQ(json::parse(seen[1].body),
            (json{{"size", "10G"}, {"encrypt", true}, {"pool", "fast"}}));
  EXPECT_EQ(json::parse(seen[2].body), (json{{"size", "512M"}}));
  EXPECT_EQ(seen[3].method + " " + seen[3].target,
            "PATCH /api/v1/vms/web1/disks/disk1");
  EXPECT_EQ(json::parse(seen[3].body), (json{{"size", "20G"}}));
  EXPECT_EQ(seen[4].method + " " + seen[4].target,
            "DELETE /api/v1/vms/web1/disks/disk1");
  EXPECT_EQ(seen[5].method + " " + seen[5].target,
            "POST /api/v1/vms/web1/disks/disk1/rekey");

  // Missing arguments are usage errors, before any request.
  EXPECT_EQ(corral(daemon, {"disk", "add", "web1"}).code, kExitUsage);
  EXPECT_EQ(corral(daemon, {"disk", "resize", "web1", "disk1"}).code,
            kExitUsage);
  EXPECT_EQ(daemon.requests().size(), 6u);
}

} // namespace
} // namespace corral::cli
