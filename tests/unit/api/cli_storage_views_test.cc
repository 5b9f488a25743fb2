// Proves what the storage commands of the corral CLI print and send, as pure
// functions: byte sizes for people (powers of 1024, one decimal below 10), the
// import progress line and its reporter (redrawn in place on a terminal, one
// line per 10% step elsewhere), an operation's progress from bytes or percent,
// the image list (NAME KIND STATE SIZE OWNER; virtual size for disk/iso, file
// size for direct-boot) and disk list (NAME SIZE POOL FORMAT ENCRYPTED BACKING)
// in table, CSV and JSON, image and VM records with their sizes and disks, and
// the import request: its JSON body, its upload target and when it uploads.
#include <sstream>

#include <gtest/gtest.h>

#include "cli/context.h"
#include "cli/image_import.h"
#include "cli/output.h"
#include "cli/progress.h"

namespace corral::cli {
namespace {

using nlohmann::json;

TEST(Bytes, PowersOf1024) {
  EXPECT_EQ(formatBytes(0), "0 B");
  EXPECT_EQ(formatBytes(1023), "1023 B");
  EXPECT_EQ(formatBytes(1024), "1.0 KiB");
  EXPECT_EQ(formatBytes(1536), "1.5 KiB");
  EXPECT_EQ(formatBytes(430ull << 20), "430 MiB");
  EXPECT_EQ(formatBytes(1ull << 30), "1.0 GiB");
  EXPECT_EQ(formatBytes(10ull << 30), "10 GiB");
  // 9.96 GiB rounds to 10: no "10.0".
  EXPECT_EQ(formatBytes(uint64_t(9.96 * double(1ull << 30))), "10 GiB");
  EXPECT_EQ(formatBytes(3ull << 40), "3.0 TiB");
}

TEST(Progress, LineWithBytesOrPercent) {
  EXPECT_EQ(formatProgressLine("importing", "debian-12", 430ull << 20,
                               1ull << 30),
            "importing debian-12  41%  430 MiB / 1.0 GiB");
  EXPECT_EQ(formatProgressLine("importing", "tiny", 0, 0, 43),
            "importing tiny  43%");
  EXPECT_EQ(formatProgressLine("uploading", "x", 0, 10), "uploading x  0%  0 B / 10 B");
  // A file that grew while it was read never shows more than 100%.
  EXPECT_EQ(formatProgressLine("uploading", "x", 12, 10),
            "uploading x  100%  12 B / 10 B");
  EXPECT_EQ(percentOf(1, 3), 33);
  EXPECT_EQ(percentOf(5, 0), 0);
}

TEST(Progress, FromAnOperation) {
  auto p = operationProgress(json::parse(
      R"({"state":"running","progress":40,"bytes_done":512,"bytes_total":1024})"));
  EXPECT_EQ(p.done, 512u);
  EXPECT_EQ(p.total, 1024u);
  EXPECT_EQ(p.percent, 50); // the bytes win over "progress"
  auto q = operationProgress(json::parse(R"({"progress":40,"bytes_total":0})"));
  EXPECT_EQ(q.total, 0u);
  EXPECT_EQ(q.percent, 40);
  EXPECT_EQ(operationProgress(json::parse(R"({"bytes_done":-1})")).done, 0u);
}

TEST(Progress, PlainLinesAtEachTenPercentStep) {
  std::ostringstream out;
  ProgressReporter r(out, /*tty=*/false, "importing", "deb");
  for (uint64_t done : {0, 5, 9, 10, 15, 19, 55, 100, 100})
    r.update(done, 100);
  r.finish();
  EXPECT_EQ(out.str(), "importing deb  0%  0 B / 100 B\n"
                       "importing deb  10%  10 B / 100 B\n"
                       "importing deb  55%  55 B / 100 B\n"
                       "importing deb  100%  100 B / 100 B\n");
}

TEST(Progress, RedrawnInPlaceOnATerminal) {
  std::ostringstream out;
  ProgressReporter r(out, /*tty=*/true, "importing", "deb");
  r.update(0, 0, 5);
  r.update(0, 0, 5); // the same line is not drawn again
  r.update(1023, 2048);
  r.update(0, 0, 7); // shorter than the last line: blanked to its end
  r.finish();
  EXPECT_EQ(out.str(), "\rimporting deb  5%"
                       "\rimporting deb  49%  1023 B / 2.0 KiB"
                       "\rimporting deb  7%                   "
                       "\n");
}

const char *kImages = R"({"images":[
  {"name":"debian-12","kind":"disk","state":"ready","owner_kind":"",
   "owner":"","size_bytes":300000000,"virtual_size":4294967296},
  {"name":"inst","kind":"iso","state":"importing","owner_kind":"group",
   "owner":"sipb","size_bytes":0,"virtual_size":0},
  {"name":"tiny","kind":"direct-boot","state":"ready","owner_kind":"user",
   "owner":"alice","size_bytes":10485760,"virtual_size":0}]})";

TEST(ImageList, TableAndCsv) {
  auto body = json::parse(kImages);
  EXPECT_EQ(renderView(imageListView(body), "table"),
            "NAME        KIND          STATE       SIZE      OWNER\n"
            "debian-12   disk          ready       4.0 GiB   -\n"
            "inst        iso           importing   0 B       sipb\n"
            "tiny        direct-boot   ready       10 MiB    alice\n");
  EXPECT_EQ(renderView(imageListView(body), "csv"),
            "NAME,KIND,STATE,SIZE,OWNER\r\n"
            "debian-12,disk,ready,4.0 GiB,-\r\n"
            "inst,iso,importing,0 B,sipb\r\n"
            "tiny,direct-boot,ready,10 MiB,alice\r\n");
}

TEST(ImageList, JsonIsTheAnswerItself) {
  auto body = json::parse(kImages);
  ::testing::internal::CaptureStdout();
  printJson(body, "json", imageListView);
  EXPECT_EQ(json::parse(::testing::internal::GetCapturedStdout()), body);
}

TEST(ImageInfo, SizesForPeopleAndExact) {
  auto im = json::parse(R"({"name":"debian-12","kind":"disk","state":"ready",
    "size_bytes":300000000,"virtual_size":4294967296,"format":"qcow2",
    "sha256":"ab","owner_kind":"","owner":""})");
  auto out = renderView(imageInfoView(im), "table");
  EXPECT_EQ(out.rfind("name:", 0), 0u) << out;
  EXPECT_NE(out.find("size_bytes:    286 MiB (300000000 bytes)\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("virtual_size:  4.0 GiB (4294967296 bytes)\n"),
            std::string::npos)
      << out;
  EXPECT_LT(out.find("state:"), out.find("size_bytes:"));
}

TEST(DiskList, TableAndCsv) {
  auto body = json::parse(R"({"disks":[
    {"name":"disk0","size_bytes":4294967296,"pool":"default","format":"qcow2",
     "encrypted":false,"backing_image":"debian-12"},
    {"name":"disk1","size_bytes":10737418240,"pool":"fast","format":"raw",
     "encrypted":true,"backing_image":""}]})");
  EXPECT_EQ(renderView(diskListView(body), "table"),
            "NAME    SIZE      POOL      FORMAT   ENCRYPTED   BACKING\n"
            "disk0   4.0 GiB   default   qcow2    false       debian-12\n"
            "disk1   10 GiB    fast      raw      true        -\n");
  EXPECT_EQ(renderView(diskListView(body), "csv"),
            "NAME,SIZE,POOL,FORMAT,ENCRYPTED,BACKING\r\n"
            "disk0,4.0 GiB,default,qcow2,false,debian-12\r\n"
            "disk1,10 GiB,fast,raw,true,-\r\n");
  EXPECT_EQ(renderView(diskListView(json::object()), "table"),
            "NAME   SIZE   POOL   FORMAT   ENCRYPTED   BACKING\n");
}

TEST(VmInfo, DisksOnOneLineAndTheCdrom) {
  auto vm = json::parse(R"({"name":"web1","state":"stopped","disk_gib":14,
    "cdrom":"inst","boot_cdrom":true,"disks":[
    {"name":"disk0","size_bytes":4294967296,"pool":"default","format":"qcow2",
     "encrypted":true,"backing_image":"debian-12"},
    {"name":"disk1","size_bytes":10737418240,"pool":"fast","format":"qcow2",
     "encrypted":false,"backing_image":""}]})");
  auto out = renderView(vmInfoView(vm), "table");
  EXPECT_NE(out.find("disks:       disk0 4.0 GiB default qcow2 encrypted "
                     "backing=debian-12; disk1 10 GiB fast qcow2\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("cdrom:       inst\n"), std::string::npos) << out;
  EXPECT_NE(out.find("boot_cdrom:  true\n"), std::string::npos) << out;
  EXPECT_LT(out.find("disk_gib:"), out.find("disks:"));
  EXPECT_LT(out.find("disks:"), out.find("cdrom:"));
  // An empty drive.
  auto empty = renderView(vmInfoView(json::parse(R"({"cdrom":"","disks":[]})")),
                          "table");
  EXPECT_EQ(empty, "disks:  -\ncdrom:  -\n");
}

// NICs sit on one line of `vm info`, after the disks: name, network, MAC, then
// the address and hostname (nat/bridged) or the forwards (user).
TEST(VmInfo, NicsOnOneLine) {
  auto vm = json::parse(R"({"name":"web1","disks":[],"nics":[
    {"name":"nic0","network":"lan","mac":"52:54:00:00:00:01","ip":"10.77.0.10","hostname":"web1","forwards":[]},
    {"name":"nic1","network":"default","mac":"52:54:00:00:00:02","ip":"","hostname":"",
     "forwards":["tcp:2222:22","udp:5353:53"]}]})");
  auto out = renderView(vmInfoView(vm), "table");
  EXPECT_NE(out.find("nics:   nic0 lan 52:54:00:00:00:01 10.77.0.10 web1; nic1 default 52:54:00:00:00:02 "
                     "tcp:2222:22 udp:5353:53\n"),
            std::string::npos)
      << out;
  EXPECT_LT(out.find("disks:"), out.find("nics:"));
  EXPECT_NE(renderView(vmInfoView(json::parse(R"({"nics":[]})")), "table").find("nics:  -"), std::string::npos);
}

TEST(ImportRequest, BodyHasOnlyWhatWasGiven) {
  ImportRequest r;
  r.name = "deb";
  r.kind = "disk";
  r.file = "/srv/deb.qcow2";
  EXPECT_EQ(importBody(r), (json{{"name", "deb"},
                                 {"kind", "disk"},
                                 {"path", "/srv/deb.qcow2"}}));
  r.owner = "";
  r.ownerGiven = true; // --owner "" : public, said out loud
  r.format = "raw";
  r.formatGiven = true;
  EXPECT_EQ(importBody(r), (json{{"name", "deb"},
                                 {"kind", "disk"},
                                 {"path", "/srv/deb.qcow2"},
                                 {"owner", ""},
                                 {"format", "raw"}}));

  ImportRequest k;
  k.name = "tiny";
  k.kind = "direct-boot";
  k.file = "/k/vmlinuz";
  k.appendGiven = true;
  EXPECT_EQ(importBody(k), (json{{"name", "tiny"},
                                 {"kind", "direct-boot"},
                                 {"kernel", "/k/vmlinuz"},
                                 {"append", ""}}));
}

TEST(ImportRequest, UploadTargetAndWhenToUpload) {
  ImportRequest r;
  r.name = "my image";
  r.kind = "iso";
  EXPECT_EQ(importUploadTarget(r), "/api/v1/images/my%20image/file?kind=iso");
  r.owner = "g/1";
  r.ownerGiven = true;
  r.description = "x=1&y";
  r.descriptionGiven = true;
  EXPECT_EQ(importUploadTarget(r), "/api/v1/images/my%20image/file?kind=iso"
                                   "&owner=g%2F1&description=x%3D1%26y");
  // Local socket: the path; a remote or --upload: the bytes.
  EXPECT_FALSE(importUploads(r, /*unixSocket=*/true));
  EXPECT_TRUE(importUploads(r, /*unixSocket=*/false));
  r.upload = true;
  EXPECT_TRUE(importUploads(r, true));
  // A kernel always goes by path.
  r.kind = "direct-boot";
  EXPECT_FALSE(importUploads(r, false));
}

} // namespace
} // namespace corral::cli
