// callApi/printAnswer/waitOperation and target resolution: the shared path from
// the command line to the daemon and from its answer to stdout, stderr and an
// exit code. See context.h.
#include "cli/context.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/config.h"
#include "cli/parse.h"
#include "cli/remote_url.h"
#include "cli/views.h"

namespace corral::cli {

std::optional<Target> Context::resolveTarget(int *exitCode) const {
  if (target_)
    return target_;
  *exitCode = kExitUsage;
  if (socketGiven && !remoteName.empty()) {
    std::cerr << "corral: give --socket or --remote, not both\n";
    return std::nullopt;
  }
  if (socketGiven)
    return target_ = Target::unixSocket(socketPath);
  std::string name = remoteName;
  if (name.empty()) {
    auto path = configPath();
    // No HOME and no config: the socket, as before remotes existed.
    if (!path)
      return target_ = Target::unixSocket(socketPath);
    auto cfg = loadConfig(*path);
    if (!cfg) {
      std::cerr << "corral: " << cfg.error().message << '\n';
      return std::nullopt;
    }
    name = cfg->current;
  }
  if (name == kLocalRemote)
    return target_ = Target::unixSocket(socketPath);
  auto path = configPath();
  if (!path) {
    std::cerr << "corral: " << path.error().message << '\n';
    return std::nullopt;
  }
  auto cfg = loadConfig(*path);
  if (!cfg) {
    std::cerr << "corral: " << cfg.error().message << '\n';
    return std::nullopt;
  }
  auto it = cfg->remotes.find(name);
  if (it == cfg->remotes.end()) {
    std::cerr << "corral: no remote named " << name
              << " (see `corral remote list`)\n";
    return std::nullopt;
  }
  auto url = parseRemoteUrl(it->second.url);
  if (!url) {
    std::cerr << "corral: remote " << name << ": " << url.error().message
              << '\n';
    return std::nullopt;
  }
  Target t;
  t.name = name;
  t.url = it->second.url;
  t.host = url->host;
  t.port = url->port;
  t.hostHeader = url->authority();
  t.token = it->second.token;
  t.fingerprint = it->second.fingerprint;
  return target_ = std::move(t);
}

void addOutputOption(CLI::App &cmd, std::string &out) {
  out = "table";
  cmd.add_option("-o,--output", out, "Output format")
      ->check(CLI::IsMember({"table", "json", "csv"}))
      ->capture_default_str();
}

namespace {

// Why no answer came: the socket or remote unreachable, or the connection lost.
void reportTransportError(const Target &where, const Error &e) {
  if (where.isUnix()) {
    if (e.field == "connect") {
      std::cerr << unreachableMessage(where.socketPath, e.message) << '\n';
    } else {
      std::cerr << "corral: lost the connection to corrald at "
                << where.socketPath << ": " << e.message << '\n';
    }
  } else if (e.field == "exchange") {
    std::cerr << "corral: lost the connection to remote " << where.name
              << " at " << where.url << ": " << e.message << '\n';
  } else {
    std::cerr << remoteUnreachableMessage(where.name, where.url, e.message)
              << '\n';
  }
}

// A call's answer as an exit code: a transport error or the daemon's refusal
// printed, the response handed to out when asked for.
int finishCall(const Target &where, Result<HttpResponse> r, HttpResponse *out) {
  if (!r) {
    reportTransportError(where, r.error());
    return kExitUnreachable;
  }
  int code = exitCodeForStatus(r->status);
  if (code != kExitOk)
    std::cerr << apiErrorMessage(r->status, r->body) << '\n';
  if (out != nullptr)
    *out = std::move(r).take();
  return code;
}

} // namespace

int callApi(const Context &ctx, std::string_view method,
            std::string_view target, const std::optional<nlohmann::json> &body,
            HttpResponse *out, std::chrono::seconds timeout,
            const HttpHeaders &headers) {
  int code = kExitOk;
  auto where = ctx.resolveTarget(&code);
  if (!where)
    return code;
  HttpClient client(*where);
  std::string payload = body ? body->dump() : std::string();
  return finishCall(*where, client.request(method, target, payload, timeout, headers), out);
}

int callUpload(const Context &ctx, std::string_view target,
               const std::string &filePath, HttpResponse *out,
               const UploadProgress &progress) {
  int code = kExitOk;
  auto where = ctx.resolveTarget(&code);
  if (!where)
    return code;
  HttpClient client(*where);
  auto r = client.upload("PUT", target, filePath, {}, progress);
  if (!r && r.error().field == "file") {
    std::cerr << "corral: " << r.error().message << '\n';
    return kExitUsage;
  }
  return finishCall(*where, std::move(r), out);
}

int printJson(const nlohmann::json &j, std::string_view output,
              const ViewFn &view) {
  if (output == "json" || !view) {
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << '\n';
  } else {
    std::cout << renderView(view(j), output);
  }
  std::cout.flush();
  return kExitOk;
}

int printAnswer(const HttpResponse &resp, std::string_view output,
                const ViewFn &view) {
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (j.is_discarded()) {
    std::cerr << "corral: the daemon's answer is not JSON (HTTP " << resp.status
              << ", " << resp.body.size() << " bytes)\n";
    return kExitApiError;
  }
  return printJson(j, output, view);
}

int printChange(const HttpResponse &resp, std::string_view output,
                const std::string &done, const ViewFn &view) {
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (resp.body.find_first_not_of(" \r\n\t") == std::string::npos ||
      j.is_discarded()) {
    std::cout << done << '\n';
    return kExitOk;
  }
  if (output == "table") {
    if (j.is_object() && j.contains("state") && j["state"].is_string())
      std::cout << fmt::format("{} ({})\n", done,
                               j["state"].get<std::string>());
    else
      std::cout << done << '\n';
    std::cout.flush();
    return kExitOk;
  }
  return printJson(j, output, view ? view : ViewFn([](const nlohmann::json &o) {
                     return objectView(o, {});
                   }));
}

int waitOperation(const Context &ctx, const std::string &id,
                  std::optional<std::chrono::seconds> limit, nlohmann::json *op,
                  bool *stillRunning) {
  return waitOperation(ctx, id, limit, op, stillRunning,
                       std::chrono::seconds(60), nullptr);
}

int waitOperation(const Context &ctx, const std::string &id,
                  std::optional<std::chrono::seconds> limit, nlohmann::json *op,
                  bool *stillRunning, std::chrono::seconds roundLength,
                  const std::function<void(const nlohmann::json &)> &onRound) {
  using Clock = std::chrono::steady_clock;
  const bool bounded = limit.has_value();
  const Clock::time_point deadline =
      Clock::now() + limit.value_or(std::chrono::seconds(0));
  *stillRunning = false;
  for (;;) {
    auto round = roundLength;
    if (bounded) {
      auto left =
          std::chrono::ceil<std::chrono::seconds>(deadline - Clock::now());
      round = std::clamp(left, std::chrono::seconds(0), roundLength);
    }
    HttpResponse resp;
    std::string path = fmt::format("/api/v1/operations/{}/wait?timeout={}",
                                   encodePathSegment(id), round.count());
    if (int rc = callApi(ctx, "GET", path, std::nullopt, &resp,
                         round + std::chrono::seconds(30)))
      return rc;
    auto j = nlohmann::json::parse(resp.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      std::cerr << "corral: the daemon's answer about operation " << id
                << " is not an operation\n";
      return kExitApiError;
    }
    *op = std::move(j);
    if (onRound)
      onRound(*op);
    if (operationExitCode(operationState(*op)))
      return kExitOk;
    if (bounded && Clock::now() >= deadline) {
      *stillRunning = true;
      return kExitOk;
    }
  }
}

} // namespace corral::cli
