// `corral remote add|use|list|remove`: the daemons this client knows, kept in
// the config file (config.h). `add` decides once how the server will be
// trusted: its certificate chains to the system's CAs, or its SHA-256
// fingerprint is pinned (given with --fingerprint, or shown and accepted, the
// way `lxc remote add` trusts on first use). The token is checked with
// GET /api/v1/whoami before anything is saved, and never printed.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/config.h"
#include "cli/context.h"
#include "cli/fingerprint.h"
#include "cli/output.h"
#include "cli/password.h"
#include "cli/remote_url.h"

namespace corral::cli {

namespace {

struct AddArgs {
  std::string name, url, token, fingerprint;
  bool tokenStdin = false, accept = false;
};

int fail(int code, std::string_view message) {
  std::cerr << "corral: " << message << '\n';
  return code;
}

// The remotes as `remote list` shows them; tokens only as "set"/"none".
nlohmann::json remotesJson(const Config &cfg, const std::string &socketPath) {
  nlohmann::json list = nlohmann::json::array();
  list.push_back({{"name", kLocalRemote},
                  {"url", "unix://" + socketPath},
                  {"token_set", false},
                  {"trust", "unix socket (your uid)"},
                  {"fingerprint", nullptr},
                  {"current", cfg.current == kLocalRemote}});
  for (const auto &[name, r] : cfg.remotes) {
    list.push_back(
        {{"name", name},
         {"url", r.url},
         {"token_set", !r.token.empty()},
         {"trust", r.fingerprint.empty() ? "system CAs" : "pinned"},
         {"fingerprint", r.fingerprint.empty() ? nlohmann::json(nullptr)
                                               : nlohmann::json(r.fingerprint)},
         {"current", cfg.current == name}});
  }
  return {{"remotes", list}};
}

View remoteListView(const nlohmann::json &body) {
  View v{{"NAME", "URL", "TOKEN", "TRUST", "FINGERPRINT", "CURRENT"}, {}};
  for (const auto &r : listOf(body, "remotes")) {
    v.rows.push_back({field(r, "name"), field(r, "url"),
                      r.value("token_set", false) ? "set" : "none",
                      field(r, "trust"), field(r, "fingerprint"),
                      r.value("current", false) ? "*" : "-"});
  }
  return v;
}

Result<std::pair<std::string, Config>> loadOrFail() {
  auto path = CORRAL_TRY(configPath());
  auto cfg = CORRAL_TRY(loadConfig(path));
  return std::make_pair(path, cfg);
}

int addRemote(const AddArgs &a) {
  if (auto r = validateRemoteName(a.name); !r)
    return fail(kExitUsage, r.error().message);
  auto url = parseRemoteUrl(a.url);
  if (!url)
    return fail(kExitUsage, url.error().message);
  std::string pinned;
  if (!a.fingerprint.empty()) {
    auto fp = normalizeFingerprint(a.fingerprint);
    if (!fp)
      return fail(kExitUsage, fp.error().message);
    pinned = *fp;
  }
  std::string token = a.token;
  if (a.tokenStdin) {
    auto t = readSecretFromStdin("the token");
    if (!t)
      return fail(kExitUsage, t.error().message);
    token = *t;
  }
  if (token.empty())
    return fail(
        kExitUsage,
        "--token: give the API token (`corral token create` on the server)");
  auto loaded = loadOrFail();
  if (!loaded)
    return fail(kExitUsage, loaded.error().message);
  auto &[path, cfg] = *loaded;
  if (cfg.remotes.count(a.name) > 0)
    return fail(
        kExitUsage,
        fmt::format(
            "a remote named {} exists already; `corral remote remove {}` first",
            a.name, a.name));

  auto cert = HttpClient::probeCertificate(url->host, url->port);
  if (!cert) {
    std::cerr << remoteUnreachableMessage(a.name, a.url, cert.error().message)
              << '\n';
    return kExitUnreachable;
  }
  if (!pinned.empty()) {
    if (!fingerprintsMatch(cert->fingerprint, pinned)) {
      return fail(kExitUnreachable,
                  fmt::format("the server's certificate fingerprint is {}, not "
                              "the {} given with --fingerprint; "
                              "nothing saved",
                              cert->fingerprint, pinned));
    }
  } else if (cert->trusted) {
    std::cerr << "Certificate of " << url->authority()
              << " verified by the system's certificate authorities.\n";
  } else {
    std::cerr << "The certificate of " << url->authority()
              << " is not signed by a known authority (" << cert->trustError
              << ").\n"
              << "  subject:     " << cert->subject << "\n"
              << "  issuer:      " << cert->issuer << "\n"
              << "  not after:   " << cert->notAfter << "\n"
              << "  fingerprint: SHA256 " << cert->fingerprint << "\n"
              << "Compare it with the daemon's (on its host: `openssl x509 "
                 "-noout -fingerprint -sha256 -in CERT`).\n";
    if (!a.accept) {
      if (!stdinIsTerminal())
        return fail(kExitUsage,
                    "stdin is not a terminal: pass --fingerprint SHA256 "
                    "(checked) or --accept-certificate (trusted as "
                    "seen); nothing saved");
      if (!confirm("Trust this certificate?"))
        return fail(kExitUsage, "certificate not accepted; nothing saved");
    }
    pinned = cert->fingerprint;
  }

  // Check the token before saving it: a typo found now, not at the first real
  // command.
  Target t;
  t.name = a.name;
  t.url = a.url;
  t.host = url->host;
  t.port = url->port;
  t.hostHeader = url->authority();
  t.token = token;
  t.fingerprint = pinned;
  HttpClient client(t);
  auto who =
      client.request("GET", "/api/v1/whoami", {}, std::chrono::seconds(30));
  if (!who) {
    std::cerr << remoteUnreachableMessage(a.name, a.url, who.error().message)
              << '\n';
    return kExitUnreachable;
  }
  if (who->status < 200 || who->status >= 300) {
    std::cerr << apiErrorMessage(who->status, who->body)
              << "\ncorral: the token was refused; nothing saved\n";
    return kExitApiError;
  }
  auto me = nlohmann::json::parse(who->body, nullptr, false);

  cfg.remotes[a.name] = RemoteConfig{a.url, token, pinned};
  if (auto r = saveConfig(path, cfg); !r)
    return fail(kExitApiError, r.error().message);
  std::cout << fmt::format(
      "added remote {} ({}) as {}{}\n", a.name, a.url,
      me.is_object() ? field(me, "login") : std::string("-"),
      cfg.current == a.name
          ? ""
          : fmt::format("; `corral remote use {}` to make it current", a.name));
  return kExitOk;
}

} // namespace

void addRemoteCommands(CLI::App &app, Context &ctx) {
  auto *remote =
      app.add_subcommand("remote", "Manage the daemons this client talks to");
  remote->require_subcommand(1);

  auto aa = std::make_shared<AddArgs>();
  auto *add = remote->add_subcommand(
      "add", "Add a daemon reached over TLS with an API token");
  add->add_option("NAME", aa->name, "A name for it")->required();
  add->add_option("URL", aa->url, "https://HOST:PORT")->required();
  auto *tokenOpt = add->add_option("--token", aa->token,
                                   "API token (from `corral token create`)");
  add->add_flag("--token-stdin", aa->tokenStdin,
                "Read the API token from stdin")
      ->excludes(tokenOpt);
  add->add_option("--fingerprint", aa->fingerprint,
                  "The server certificate's SHA-256 fingerprint, to pin it");
  add->add_flag("--accept-certificate", aa->accept,
                "Trust the certificate the server shows without asking (when "
                "stdin is not a terminal)");
  add->callback([&ctx, aa] { ctx.action = [aa] { return addRemote(*aa); }; });

  auto useName = std::make_shared<std::string>();
  auto *use = remote->add_subcommand(
      "use", "Make a remote the current one (\"local\": the unix socket)");
  use->add_option("NAME", *useName, "Remote name")->required();
  use->callback([&ctx, useName] {
    ctx.action = [useName] {
      auto loaded = loadOrFail();
      if (!loaded)
        return fail(kExitUsage, loaded.error().message);
      auto &[path, cfg] = *loaded;
      if (*useName != kLocalRemote && cfg.remotes.count(*useName) == 0)
        return fail(kExitUsage,
                    fmt::format("no remote named {} (see `corral remote list`)",
                                *useName));
      cfg.current = *useName;
      if (auto r = saveConfig(path, cfg); !r)
        return fail(kExitApiError, r.error().message);
      std::cout << "current remote: " << *useName << '\n';
      return kExitOk;
    };
  });

  auto listOut = std::make_shared<std::string>();
  auto *list = remote->add_subcommand(
      "list", "List remotes (tokens are shown only as set or not)");
  addOutputOption(*list, *listOut);
  list->callback([&ctx, listOut] {
    ctx.action = [&ctx, listOut] {
      auto loaded = loadOrFail();
      if (!loaded)
        return fail(kExitUsage, loaded.error().message);
      return printJson(remotesJson(loaded->second, ctx.socketPath), *listOut,
                       remoteListView);
    };
  });

  auto rmName = std::make_shared<std::string>();
  auto *rm = remote->add_subcommand("remove", "Forget a remote and its token");
  rm->add_option("NAME", *rmName, "Remote name")->required();
  rm->callback([&ctx, rmName] {
    ctx.action = [rmName] {
      if (auto r = validateRemoteName(*rmName); !r)
        return fail(kExitUsage, r.error().message);
      auto loaded = loadOrFail();
      if (!loaded)
        return fail(kExitUsage, loaded.error().message);
      auto &[path, cfg] = *loaded;
      if (cfg.remotes.erase(*rmName) == 0)
        return fail(kExitUsage,
                    fmt::format("no remote named {} (see `corral remote list`)",
                                *rmName));
      if (cfg.current == *rmName)
        cfg.current = std::string(kLocalRemote);
      if (auto r = saveConfig(path, cfg); !r)
        return fail(kExitApiError, r.error().message);
      std::cout << "removed remote " << *rmName << '\n';
      return kExitOk;
    };
  });
}

} // namespace corral::cli
