// callApi/printAnswer: the shared path from an API answer to stdout, stderr and
// an exit code. See context.h.
#include "cli/context.h"

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/output.h"

namespace corral::cli {

void addOutputOption(CLI::App& cmd, std::string& out) {
  out = "table";
  cmd.add_option("-o,--output", out, "Output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
}

int callApi(const Context& ctx, std::string_view method, std::string_view target,
            const std::optional<nlohmann::json>& body, HttpResponse* out, std::chrono::seconds timeout) {
  HttpClient client(ctx.socketPath);
  std::string payload = body ? body->dump() : std::string();
  auto r = client.request(method, target, payload, timeout);
  if (!r) {
    const Error& e = r.error();
    if (e.field == "connect") {
      std::cerr << unreachableMessage(ctx.socketPath, e.message) << '\n';
    } else {
      std::cerr << "corral: lost the connection to corrald at " << ctx.socketPath << ": " << e.message << '\n';
    }
    return kExitUnreachable;
  }
  int code = exitCodeForStatus(r->status);
  if (code != kExitOk) {
    std::cerr << apiErrorMessage(r->status, r->body) << '\n';
    return code;
  }
  if (out != nullptr) *out = std::move(r).take();
  return kExitOk;
}

int printAnswer(const HttpResponse& resp, std::string_view output,
                const std::function<std::string(const nlohmann::json&)>& table) {
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (j.is_discarded()) {
    std::cerr << "corral: the daemon's answer is not JSON (HTTP " << resp.status << ", " << resp.body.size()
              << " bytes)\n";
    return kExitApiError;
  }
  if (output == "json") {
    std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  } else {
    std::cout << table(j);
  }
  std::cout.flush();
  return kExitOk;
}

}  // namespace corral::cli
