// `corral events`: follows GET /api/v1/events (a WebSocket) and prints one line
// per VM change as it happens. Exits 0 when the daemon closes the stream or on
// Ctrl-C, 3 when it cannot connect or the connection breaks, 1 when the daemon
// refuses the stream.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/views.h"
#include "cli/ws_client.h"

namespace corral::cli {

void addEventCommands(CLI::App &app, Context &ctx) {
  auto out = std::make_shared<std::string>();
  auto *events =
      app.add_subcommand("events", "Follow VM state changes as they happen");
  addOutputOption(*events, *out);
  events->callback([&ctx, out] {
    ctx.action = [&ctx, out] {
      int code = kExitOk;
      auto target = ctx.resolveTarget(&code);
      if (!target)
        return code;
      if (*out == "table") {
        std::cout << "TIME TYPE VM STATE REASON" << std::endl;
      } else if (*out == "csv") {
        std::cout << csvRow(eventHeaders()) << std::flush;
      }
      auto r = followWebSocket(
          *target, "/api/v1/events", [&](const std::string &text) {
            auto e = nlohmann::json::parse(text, nullptr, false);
            if (e.is_discarded())
              return; // not an event: a newer daemon's other message
            if (*out == "json") {
              std::cout << e.dump(-1, ' ', false,
                                  nlohmann::json::error_handler_t::replace)
                        << '\n';
            } else if (*out == "csv") {
              std::cout << csvRow(eventCells(e));
            } else {
              std::cout << formatEventLine(e);
            }
            // Line-buffered by hand: `corral events | grep` must see each line
            // now.
            std::cout.flush();
          });
      if (r)
        return kExitOk;
      const Error &e = r.error();
      if (e.field == "upgrade") {
        std::cerr << e.message << '\n';
        return kExitApiError;
      }
      if (e.field == "exchange") {
        std::cerr << "corral: lost the event stream from " << target->where()
                  << ": " << e.message << '\n';
      } else if (target->isUnix()) {
        std::cerr << unreachableMessage(target->socketPath, e.message) << '\n';
      } else {
        std::cerr << remoteUnreachableMessage(target->name, target->url,
                                              e.message)
                  << '\n';
      }
      return kExitUnreachable;
    };
  });
}

} // namespace corral::cli
