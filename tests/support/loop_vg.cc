#include "support/loop_vg.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include <fmt/format.h>

namespace corral::testing {
namespace fs = std::filesystem;

namespace {

std::string lvmBinary() {
  for (const char* p : {"/usr/sbin/lvm", "/sbin/lvm"})
    if (::access(p, X_OK) == 0) return p;
  return "lvm";
}

Result<util::CommandResult> runTool(const std::string& program, std::vector<std::string> args) {
  util::Command c(program);
  c.args(args).stdoutToBuffer().stderrToBuffer().timeout(std::chrono::seconds(60));
  return c.run();
}

}  // namespace

Result<util::CommandResult> LoopVg::lvm(const std::string& sub, std::vector<std::string> args) const {
  args.insert(args.begin(), {sub, "--config", config_});
  return runTool(lvmBinary(), std::move(args));
}

std::unique_ptr<LoopVg> LoopVg::make(const std::string& lvmConfig, std::string& whyNot, int64_t sizeMiB) {
  if (::geteuid() != 0) return whyNot = "needs root for losetup and LVM", nullptr;
  auto vg = std::unique_ptr<LoopVg>(new LoopVg);
  vg->config_ = lvmConfig;
  if (!vg->lvm("version", {}).ok()) return whyNot = "lvm is not installed (apt-get install lvm2)", nullptr;
  std::random_device rd;
  vg->name_ = fmt::format("corraltest{}x{:08x}", ::getpid(), rd());
  vg->file_ = fs::temp_directory_path() / (vg->name_ + ".img");
  { std::ofstream f(vg->file_); }
  fs::resize_file(vg->file_, uint64_t(sizeMiB) << 20);
  auto loop = runTool("losetup", {"-f", "--show", vg->file_.string()});
  if (!loop.ok()) return whyNot = "cannot make a loop device: " + loop.error().message, nullptr;
  vg->loop_ = loop->out.substr(0, loop->out.find('\n'));
  if (auto r = vg->lvm("pvcreate", {"--yes", vg->loop_}); !r.ok())
    return whyNot = "pvcreate failed: " + r.error().message, nullptr;
  vg->pv_ = true;
  if (auto r = vg->lvm("vgcreate", {vg->name_, vg->loop_}); !r.ok())
    return whyNot = "vgcreate failed: " + r.error().message, nullptr;
  vg->vg_ = true;
  return vg;
}

LoopVg::~LoopVg() {
  if (vg_) (void)lvm("vgremove", {"-f", name_});
  if (pv_) (void)lvm("pvremove", {"-ff", "--yes", loop_});
  if (!loop_.empty()) (void)runTool("losetup", {"-d", loop_});
  std::error_code ec;
  fs::remove(file_, ec);
}

bool deviceMapperAvailable() {
  int fd = ::open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

}  // namespace corral::testing
