// What every corral subcommand shares: the global options (--socket, --remote),
// the action the chosen subcommand leaves to run after parsing, one way to
// call the API and turn its answer into output and an exit code (output.h has
// the exit codes), and the wait for an operation.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cli/http_client.h"
#include "cli/output.h"

namespace CLI {
class App;
}

namespace corral::cli {

inline constexpr std::string_view kDefaultSocket =
    "/var/lib/corral/corral.sock";

struct Context {
  std::string socketPath{kDefaultSocket};
  bool socketGiven = false; // --socket or $CORRAL_SOCKET: the unix socket,
                            // whatever the config says
  std::string remoteName; // --remote or $CORRAL_REMOTE: this remote instead of
                          // the config's current one
  // Set by the chosen subcommand's parse callback; main() runs it after
  // parsing, so that CLI11 has validated every option first.
  std::function<int()> action;

  // Where requests go: --socket, else --remote, else the config's current
  // remote ("local" = the socket). Prints why not and returns nullopt with
  // *exitCode = kExitUsage (unknown remote, broken config).
  std::optional<Target> resolveTarget(int *exitCode) const;

private:
  mutable std::optional<Target> target_;
};

// Adds "-o, --output table|json|csv" to a command, bound to *out (default
// "table").
void addOutputOption(CLI::App &cmd, std::string &out);

// One API call. On a transport failure prints why and returns
// kExitUnreachable; on a non-2xx status prints the API's error and returns
// kExitApiError; otherwise returns kExitOk. *out (when given) receives every
// answer, error answers too (a caller may look at the error's field).
int callApi(const Context &ctx, std::string_view method,
            std::string_view target, const std::optional<nlohmann::json> &body,
            HttpResponse *out,
            std::chrono::seconds timeout = std::chrono::seconds(300),
            const HttpHeaders &headers = {});

// callApi for an upload: PUT target with the file streamed as the body
// (HttpClient::upload), progress reported per chunk. A file that cannot be
// opened or read is a usage error (exit 2), named on stderr.
int callUpload(const Context &ctx, std::string_view target,
               const std::string &filePath, HttpResponse *out,
               const UploadProgress &progress = nullptr);

using ViewFn = std::function<View(const nlohmann::json &)>;

// Prints a JSON answer: pretty JSON for "json", else view(answer) as a table
// or CSV. A body that is not JSON is an error (exit 1) naming what came back.
int printAnswer(const HttpResponse &resp, std::string_view output,
                const ViewFn &view);
int printJson(const nlohmann::json &j, std::string_view output,
              const ViewFn &view);

// Write commands answer with an object (or nothing): in the table format a
// line "done (state)" (state when the object has one), else the object as JSON
// or as a one-row CSV through view.
int printChange(const HttpResponse &resp, std::string_view output,
                const std::string &done, const ViewFn &view = nullptr);

// Waits for operation `id` through GET /api/v1/operations/{id}/wait in rounds
// until it ends or `limit` passes (nullopt: no limit). Stores the last state
// of the operation in *op. Returns kExitOk when it ended (either way; the
// caller reads *op), or the callApi exit code; sets *stillRunning when the
// limit passed first.
int waitOperation(const Context &ctx, const std::string &id,
                  std::optional<std::chrono::seconds> limit, nlohmann::json *op,
                  bool *stillRunning);
// The same in rounds of `round` (at most a minute: a proxy or NAT between here
// and the daemon may drop a connection that stays silent for longer), calling
// onRound with the operation after each: short rounds show progress.
int waitOperation(const Context &ctx, const std::string &id,
                  std::optional<std::chrono::seconds> limit, nlohmann::json *op,
                  bool *stillRunning, std::chrono::seconds round,
                  const std::function<void(const nlohmann::json &)> &onRound);

// Registers the nouns; each lives in commands/<noun>.cc.
void addImageCommands(CLI::App &app, Context &ctx);
void addDiskCommands(CLI::App &app, Context &ctx);
void addNetworkCommands(CLI::App &app, Context &ctx);
void addNicCommands(CLI::App &vm, Context &ctx);  // `vm nic ...`
void addVmCommands(CLI::App &app, Context &ctx);
void addNodeCommands(CLI::App &app, Context &ctx);
void addRemoteCommands(CLI::App &app, Context &ctx);
void addUserCommands(CLI::App &app, Context &ctx);
void addGroupCommands(CLI::App &app, Context &ctx);
void addTokenCommands(CLI::App &app, Context &ctx);
void addQuotaCommands(CLI::App &app, Context &ctx);
void addOperationCommands(CLI::App &app, Context &ctx);
void addEventCommands(CLI::App &app, Context &ctx);
void addConsoleCommands(CLI::App &app, Context &ctx);
void addAdminCommands(CLI::App &app, Context &ctx);

} // namespace corral::cli
