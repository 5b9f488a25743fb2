// What every corral subcommand shares: the global options, the action the chosen
// subcommand leaves to run after parsing, and one way to call the API and turn
// its answer into output and an exit code (output.h has the exit codes).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cli/http_client.h"

namespace CLI {
class App;
}

namespace corral::cli {

inline constexpr std::string_view kDefaultSocket = "/var/lib/corral/corral.sock";

struct Context {
  std::string socketPath{kDefaultSocket};
  // Set by the chosen subcommand's parse callback; main() runs it after parsing,
  // so that CLI11 has validated every option first.
  std::function<int()> action;
};

// Adds "-o, --output table|json" to a command, bound to *out (default "table").
void addOutputOption(CLI::App& cmd, std::string& out);

// One API call. On a transport failure prints the "cannot reach corrald" message
// and returns kExitUnreachable; on a non-2xx status prints the API's error and
// returns kExitApiError; otherwise stores the answer in *out and returns kExitOk.
int callApi(const Context& ctx, std::string_view method, std::string_view target,
            const std::optional<nlohmann::json>& body, HttpResponse* out,
            std::chrono::seconds timeout = std::chrono::seconds(300));

// Prints a JSON answer: pretty JSON when output == "json", else table(answer).
// A body that is not JSON is an error (exit 1) naming what came back.
int printAnswer(const HttpResponse& resp, std::string_view output,
                const std::function<std::string(const nlohmann::json&)>& table);

// Registers the nouns; each lives in commands/<noun>.cc.
void addImageCommands(CLI::App& app, Context& ctx);
void addVmCommands(CLI::App& app, Context& ctx);
void addNodeCommands(CLI::App& app, Context& ctx);

}  // namespace corral::cli
