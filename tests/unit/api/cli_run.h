// Runs one `corral ARGS...` in-process for the CLI tests: the real CLI11 setup
// of the nouns given, against a FakeDaemon's socket, stdout and stderr
// captured; a parse error is exit 2, as in main().
#pragma once

#include <initializer_list>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>

#include "cli/context.h"
#include "cli_fake_daemon.h"

namespace corral::cli::testutil {

struct CliRun {
  int code = -1;
  std::string out, err;
};

using Noun = void (*)(CLI::App &, Context &);

inline CliRun runCli(const FakeDaemon &daemon, std::vector<std::string> args,
                     std::initializer_list<Noun> nouns) {
  Context ctx;
  ctx.socketPath = daemon.socketPath();
  ctx.socketGiven = true;
  CLI::App app{"corral", "corral"};
  app.require_subcommand(1);
  for (Noun add : nouns)
    add(app, ctx);
  args.insert(args.begin(), "corral");
  std::vector<const char *> argv;
  for (const auto &a : args)
    argv.push_back(a.c_str());
  CliRun r;
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  try {
    app.parse(int(argv.size()), argv.data());
    r.code = ctx.action ? ctx.action() : kExitUsage;
  } catch (const CLI::ParseError &e) {
    std::cerr << e.what() << '\n';
    r.code = kExitUsage;
  }
  r.out = ::testing::internal::GetCapturedStdout();
  r.err = ::testing::internal::GetCapturedStderr();
  return r;
}

} // namespace corral::cli::testutil
