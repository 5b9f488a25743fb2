// qemu-img through util::Command; see qemu_img.h.
//
// Every run names the format of every image it opens (-f, -O, or a driver= in
// --image-opts), so qemu-img never probes one. Passphrases reach it only as
// `--object secret,id=ID,file=PATH,format=raw`; an image that needs one is
// opened with --image-opts (or --target-image-opts) naming that secret. Paths
// are absolute (so none is read as an option or a protocol prefix such as
// "nbd:") and are comma-escaped wherever they sit inside an option string.
#include "host/qemu_img.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <functional>
#include <limits>
#include <vector>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "util/command.h"
#include "util/qemu_escape.h"

namespace corral::host {

namespace {

using util::Command;
using Json = nlohmann::json;

// A bound on the runs that have no progress to watch (create, info, resize,
// amend); the slowest is a LUKS key-slot operation, seconds on a loaded host.
constexpr auto kRunTimeout = std::chrono::minutes(10);
constexpr auto kPollInterval = std::chrono::milliseconds(200);
// QEMU 7.2 sizes a new LUKS key slot by timing a trial PBKDF run and fails with
// this message when the thread's CPU clock did not move (seen now and then on a
// busy host, whatever the iter-time): nothing has been written yet, so a run
// that fails this way is simply tried again (QEMU times 2^15 iterations with
// getrusage(RUSAGE_THREAD), whose tick granularity can read 0 ms).
constexpr std::string_view kPbkdfFlake = "Unable to get accurate CPU usage";
constexpr int kAttempts = 6;

Result<void> checkAbsolute(std::string_view field, const std::string& path) {
  if (path.empty() || path.front() != '/')
    return Error::invalidInput(std::string(field), path, "must be an absolute path");
  if (path.find('\0') != std::string::npos) return Error::invalidInput(std::string(field), path, "contains a NUL byte");
  return ok();
}

// The qemu driver for an image of `format`: a raw image with encryption is
// QEMU's "luks" format (LUKS header, then the data).
Result<std::string> driverFor(const std::string& format, bool encrypted) {
  if (format == "qcow2" || format == "luks") return format;
  if (format == "raw") return std::string(encrypted ? "luks" : "raw");
  return Error::invalidInput("format", format, "must be \"qcow2\" or \"raw\"");
}

Command newCommand(const std::string& binary) {
  Command c(binary);
  // 0077: whatever qemu-img creates is the owner's only (0600).
  c.umask(0077).stdoutToBuffer().stderrToBuffer();
  return c;
}

void addSecret(Command& c, std::string_view id, const Encryption& e) {
  c.arg("--object").argFormat("secret,id={},file={},format=raw", id, util::escapeOptionValue(e.secretFile));
}

// An --image-opts string opening path with driver, unlocked with secretId ("" = none).
std::string imageOpts(const std::string& driver, const std::string& path, std::string_view secretId) {
  std::string s = "driver=" + driver;
  if (!secretId.empty()) s += fmt::format(",{}key-secret={}", driver == "qcow2" ? "encrypt." : "", secretId);
  s += ",file.filename=" + util::escapeOptionValue(path);
  return s;
}

// The -o options that make a new image of driver (qcow2 | luks) encrypted with secretId.
std::string encryptCreateOpts(const std::string& driver, std::string_view secretId, int iterTimeMs) {
  std::string prefix = driver == "qcow2" ? "encrypt." : "";
  std::string s = driver == "qcow2" ? "encrypt.format=luks," : "";
  s += fmt::format("{}key-secret={}", prefix, secretId);
  if (iterTimeMs > 0) s += fmt::format(",{}iter-time={}", prefix, iterTimeMs);
  return s;
}

bool isPbkdfFlake(const Error& e) { return e.message.find(kPbkdfFlake) != std::string::npos; }

// Runs the command make() builds, again when QEMU's PBKDF timing flaked.
Result<util::CommandResult> runRetrying(const std::function<Command()>& make) {
  for (int attempt = 1;; ++attempt) {
    Command c = make();
    c.timeout(kRunTimeout);
    auto r = c.run();
    if (r.ok() || attempt == kAttempts || !isPbkdfFlake(r.error())) return r;
    spdlog::warn("{}: {}; trying again", c.toString(), kPbkdfFlake);
  }
}

// The last "(NN.NN/100%)" in text at or after from, as a fraction; -1 when none.
double lastProgress(std::string_view text, size_t from) {
  size_t end = text.rfind("/100%)");
  if (end == std::string_view::npos || end < from) return -1;
  size_t open = text.rfind('(', end);
  if (open == std::string_view::npos) return -1;
  double pct = 0;
  auto [p, ec] = std::from_chars(text.data() + open + 1, text.data() + end, pct);
  if (ec != std::errc() || p != text.data() + end) return -1;
  return std::clamp(pct / 100.0, 0.0, 1.0);
}

int64_t jsonInt(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

std::string jsonString(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

Result<void> QemuImg::create(const std::string& path, const std::string& format, int64_t sizeBytes,
                             const CreateOptions& opts) const {
  CORRAL_TRY(checkAbsolute("path", path));
  const bool encrypted = opts.encryption.has_value();
  const std::string driver = CORRAL_TRY(driverFor(format, encrypted));
  if (driver == "luks" && !encrypted) return Error::invalidInput("format", format, "a luks image needs a key");
  if (encrypted) CORRAL_TRY(checkAbsolute("secret", opts.encryption->secretFile));
  const bool backed = !opts.backingFile.empty();
  if (backed) {
    if (driver != "qcow2") return Error::invalidInput("format", format, "only a qcow2 image can have a backing file");
    CORRAL_TRY(checkAbsolute("backing_file", opts.backingFile));
    if (opts.backingFormat != "qcow2" && opts.backingFormat != "raw")
      return Error::invalidInput("backing_format", opts.backingFormat, "must be \"qcow2\" or \"raw\"");
  }
  if (sizeBytes < 0 || (sizeBytes == 0 && !backed))
    return Error::invalidInput("size", std::to_string(sizeBytes), "must be positive");

  std::vector<std::string> o;
  if (encrypted) o.push_back(encryptCreateOpts(driver, "sec0", luksIterTimeMs_));
  if (opts.preallocateMetadata && driver == "qcow2") o.push_back("preallocation=metadata");

  auto make = [&] {
    Command c = newCommand(binary_);
    c.args({"create", "-q", "-f", driver});
    if (encrypted) addSecret(c, "sec0", *opts.encryption);
    if (backed) c.arg("-b").arg(opts.backingFile).arg("-F").arg(opts.backingFormat);
    if (!o.empty()) c.arg("-o").arg(fmt::format("{}", fmt::join(o, ",")));
    c.arg(path);
    if (sizeBytes > 0) c.arg(std::to_string(sizeBytes));
    return c;
  };
  auto r = runRetrying(make);
  if (!r.ok()) return std::move(r).error().context(fmt::format("create {}", path));
  return ok();
}

Result<ImageInfo> QemuImg::info(const std::string& path, const std::string& format,
                                const std::optional<Encryption>& enc) const {
  CORRAL_TRY(checkAbsolute("path", path));
  Command c = newCommand(binary_);
  // -U: a disk a running guest holds (locked) can still be inspected.
  c.args({"info", "--output=json", "-U"});
  if (enc) {
    CORRAL_TRY(checkAbsolute("secret", enc->secretFile));
    std::string driver = CORRAL_TRY(driverFor(format, true));
    addSecret(c, "sec0", *enc);
    c.arg("--image-opts").arg(imageOpts(driver, path, "sec0"));
  } else {
    if (!format.empty()) c.arg("-f").arg(CORRAL_TRY(driverFor(format, false)));
    c.arg(path);
  }
  c.timeout(kRunTimeout);
  auto r = c.run();
  if (!r.ok()) return std::move(r).error().context(fmt::format("qemu-img info {}", path));
  Json j = Json::parse(r->out, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Error::internal(fmt::format("qemu-img info {}: unreadable JSON output", path));
  ImageInfo out;
  out.format = jsonString(j, "format");
  out.virtualSize = jsonInt(j, "virtual-size");
  out.actualSize = jsonInt(j, "actual-size");
  out.backingFile = jsonString(j, "backing-filename");
  auto e = j.find("encrypted");
  out.encrypted = e != j.end() && e->is_boolean() && e->get<bool>();
  return out;
}

Result<void> QemuImg::convert(const std::string& src, const std::string& srcFormat, const std::string& dst,
                              const std::string& dstFormat, const ConvertOptions& opts) const {
  CORRAL_TRY(checkAbsolute("path", src));
  CORRAL_TRY(checkAbsolute("path", dst));
  const auto& srcEnc = opts.srcEncryption;
  const auto& dstEnc = opts.dstEncryption;
  if (srcEnc) CORRAL_TRY(checkAbsolute("secret", srcEnc->secretFile));
  if (dstEnc) CORRAL_TRY(checkAbsolute("secret", dstEnc->secretFile));
  const std::string srcDriver = CORRAL_TRY(driverFor(srcFormat, srcEnc.has_value()));
  const std::string dstDriver = CORRAL_TRY(driverFor(dstFormat, dstEnc.has_value()));
  if ((srcDriver == "luks" && !srcEnc) || (dstDriver == "luks" && !dstEnc))
    return Error::invalidInput("format", "luks", "a luks image needs a key");
  if (opts.compress && dstDriver != "qcow2")
    return Error::invalidInput("format", dstFormat, "only qcow2 output can be compressed");
  // A dst that is not meant to exist must not: qemu-img would overwrite it, and
  // on failure it is removed as ours.
  if (!opts.dstExists && ::access(dst.c_str(), F_OK) == 0)
    return Error::alreadyExists("path", dst, fmt::format("{} already exists", dst));

  auto removeDst = [&] {
    if (!opts.dstExists) ::unlink(dst.c_str());
  };
  auto cancelled = [&] { return opts.cancel && opts.cancel->load(); };

  for (int attempt = 1;; ++attempt) {
    Command c = newCommand(binary_);
    c.args({"convert", "-p"});
    if (opts.compress) c.arg("-c");
    if (srcEnc) {
      addSecret(c, "src", *srcEnc);
      c.arg("--image-opts");
    } else {
      c.arg("-f").arg(srcDriver);
    }
    if (dstEnc) addSecret(c, "dst", *dstEnc);
    if (opts.dstExists) {
      c.arg("-n");
      // A LUKS target written in place is opened, not created: it needs the key.
      if (dstEnc)
        c.arg("--target-image-opts");
      else
        c.arg("-O").arg(dstDriver);
    } else {
      c.arg("-O").arg(dstDriver);
      if (dstEnc) c.arg("-o").arg(encryptCreateOpts(dstDriver, "dst", luksIterTimeMs_));
    }
    c.arg(srcEnc ? imageOpts(srcDriver, src, "src") : src);
    c.arg(opts.dstExists && dstEnc ? imageOpts(dstDriver, dst, "dst") : dst);

    if (cancelled()) return Error::unavailable("cancelled");
    if (auto st = c.start(); !st.ok()) {
      removeDst();
      return std::move(st).error().context(fmt::format("convert {}", src));
    }
    double reported = -1;
    size_t seen = 0;
    Result<util::ExitStatus> done = Error::internal("not run");
    while (true) {
      if (cancelled()) {
        (void)c.abort(std::chrono::milliseconds(2000));
        removeDst();
        return Error::unavailable("cancelled");
      }
      done = c.wait(kPollInterval);
      const std::string& out = c.out();
      if (double f = lastProgress(out, seen); f > reported) {
        reported = f;
        if (opts.progress) opts.progress(f);
      }
      seen = out.size();
      if (done.ok() || done.error().code != ErrorCode::Timeout) break;
    }
    // A cancel that came while the last bytes went still wins: the caller has
    // been told its request stops, and a dst left behind would surprise it.
    if (cancelled()) {
      removeDst();
      return Error::unavailable("cancelled");
    }
    if (done.ok()) {
      if (opts.progress && reported < 1.0) opts.progress(1.0);
      return ok();
    }
    removeDst();
    if (attempt < kAttempts && isPbkdfFlake(done.error())) {
      spdlog::warn("{}: {}; trying again", c.toString(), kPbkdfFlake);
      continue;
    }
    return std::move(done).error().context(fmt::format("convert {} to {}", src, dst));
  }
}

Result<void> QemuImg::resize(const std::string& path, const std::string& format, int64_t newSize,
                             const std::optional<Encryption>& enc) const {
  CORRAL_TRY(checkAbsolute("path", path));
  if (newSize <= 0) return Error::invalidInput("size", std::to_string(newSize), "must be positive");
  const std::string driver = CORRAL_TRY(driverFor(format, enc.has_value()));
  if (driver == "luks" && !enc) return Error::invalidInput("format", format, "a luks image needs a key");
  if (enc) CORRAL_TRY(checkAbsolute("secret", enc->secretFile));
  Command c = newCommand(binary_);
  c.args({"resize", "-q"});
  if (enc) {
    addSecret(c, "sec0", *enc);
    c.arg("--image-opts").arg(imageOpts(driver, path, "sec0"));
  } else {
    c.arg("-f").arg(driver).arg(path);
  }
  c.arg(std::to_string(newSize)).timeout(kRunTimeout);
  auto r = c.run();
  if (!r.ok()) return std::move(r).error().context(fmt::format("resize {}", path));
  return ok();
}

Result<void> QemuImg::rekey(const std::string& path, const std::string& format, const Encryption& oldKey,
                            const Encryption& newKey) const {
  CORRAL_TRY(checkAbsolute("path", path));
  CORRAL_TRY(checkAbsolute("secret", oldKey.secretFile));
  CORRAL_TRY(checkAbsolute("secret", newKey.secretFile));
  const std::string driver = CORRAL_TRY(driverFor(format, true));
  // qemu-img amend's LUKS options: qcow2 prefixes them with "encrypt.".
  const std::string p = driver == "qcow2" ? "encrypt." : "";

  // Step 1, unlocked with the old key: the new key goes into a free slot.
  // Step 2, unlocked with the new key (proving it opens the image): every slot
  // the old key opens is erased. QEMU refuses to erase the last active slot.
  struct Step {
    std::string unlockWith;
    std::string options;
  };
  std::string iter = luksIterTimeMs_ > 0 ? fmt::format(",{}iter-time={}", p, luksIterTimeMs_) : "";
  const Step steps[] = {
      {"old", fmt::format("{0}state=active,{0}new-secret=new{1}", p, iter)},
      {"new", fmt::format("{0}state=inactive,{0}old-secret=old", p)},
  };
  for (const Step& s : steps) {
    auto make = [&] {
      Command c = newCommand(binary_);
      c.arg("amend");
      addSecret(c, "old", oldKey);
      addSecret(c, "new", newKey);
      c.arg("-o").arg(s.options);
      c.arg("--image-opts").arg(imageOpts(driver, path, s.unlockWith));
      return c;
    };
    auto r = runRetrying(make);
    if (!r.ok()) return std::move(r).error().context(fmt::format("rekey {}", path));
  }
  return ok();
}

// ---------------------------------------------------------------- sizes

namespace {
constexpr int64_t kMiB = int64_t(1) << 20;

struct Unit {
  std::string_view name;
  int shift;
};
constexpr Unit kUnits[] = {{"", 0},    {"b", 0},   {"k", 10},  {"kib", 10}, {"m", 20},  {"mib", 20},
                           {"g", 30},  {"gib", 30}, {"t", 40}, {"tib", 40}, {"p", 50}, {"pib", 50}};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}
}  // namespace

Result<int64_t> parseSize(std::string_view field, std::string_view text) {
  auto bad = [&](std::string_view why) { return Error::invalidInput(std::string(field), std::string(text), why); };
  constexpr std::string_view kForm = "must be a size such as 4G, 512M, 10GiB or a number of bytes";
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0) return bad(kForm);
  std::string_view whole = text.substr(0, i);
  std::string_view frac;
  if (i < text.size() && text[i] == '.') {
    size_t start = ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    frac = text.substr(start, i - start);
    if (frac.empty() || frac.size() > 6) return bad(kForm);
  }
  if (i < text.size() && text[i] == ' ') ++i;  // "4 GiB", as formatSize writes it
  const std::string unit = lower(text.substr(i));
  int shift = -1;
  for (const Unit& u : kUnits)
    if (u.name == unit) shift = u.shift;
  if (shift < 0 || (unit.empty() && i != whole.size())) return bad(kForm);

  // value = (whole * 10^d + frac) * 2^shift / 10^d, exactly, in 128 bits.
  __int128 num = 0;
  for (char c : whole) {
    num = num * 10 + (c - '0');
    if (num > std::numeric_limits<int64_t>::max()) return bad("is too large");
  }
  __int128 den = 1;
  for (char c : frac) {
    num = num * 10 + (c - '0');
    den *= 10;
  }
  // num < 2^84 here (a 63-bit whole part and 6 decimals); keeping it under
  // 2^(100 - shift) before the shift keeps the product far inside 128 bits, and
  // anything refused by that is far beyond int64 anyway.
  if (num >= (__int128(1) << (100 - shift))) return bad("is too large");
  num <<= shift;
  if (num % den != 0) return bad("is not a whole number of bytes");
  num /= den;
  if (num > std::numeric_limits<int64_t>::max()) return bad("is too large");
  const auto bytes = static_cast<int64_t>(num);
  if (bytes <= 0) return bad("must be positive");
  if (bytes % kMiB != 0) return bad("must be a multiple of 1 MiB");
  return bytes;
}

std::string formatSize(int64_t bytes) {
  static constexpr std::string_view names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 0) return "-" + formatSize(bytes == std::numeric_limits<int64_t>::min() ? 0 : -bytes);
  size_t u = 0;
  while (u + 1 < std::size(names) && bytes >= (int64_t(1) << (10 * (u + 1)))) ++u;
  if (u == 0) return fmt::format("{} B", bytes);
  const int64_t unit = int64_t(1) << (10 * u);
  if (bytes % unit == 0) return fmt::format("{} {}", bytes / unit, names[u]);
  std::string s = fmt::format("{:.2f}", static_cast<double>(bytes) / static_cast<double>(unit));
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return fmt::format("{} {}", s, names[u]);
}

}  // namespace corral::host
