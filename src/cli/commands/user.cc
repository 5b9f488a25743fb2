// `corral user add|list|show|passwd|delete` and `corral user key
// add|list|remove`. Passwords never come from argv: --password-stdin reads them
// from stdin; otherwise, on a terminal, they are asked for twice with echo off.
// SSH keys are read from a file (or stdin), one per line, as in
// authorized_keys; their owner defaults to the caller (GET /api/v1/whoami).
#include <fstream>
#include <iostream>
#include <memory>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/password.h"
#include "cli/views.h"

namespace corral::cli {

namespace {

std::string userPath(const std::string &login) {
  return "/api/v1/users/" + encodePathSegment(login);
}

int usage(const Error &e) {
  std::cerr << "corral: " << e.message << '\n';
  return kExitUsage;
}

// The field an API error names, "" when none.
std::string errorField(const std::string &body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("error") ||
      !j["error"].is_object())
    return {};
  return field(j["error"], "field");
}

struct AddArgs {
  std::string login, displayName, email, output;
  bool admin = false, passwordStdin = false;
};

struct PasswdArgs {
  std::string login;
  bool passwordStdin = false;
};

int addUser(const Context &ctx, const AddArgs &a, bool displayGiven,
            bool emailGiven) {
  nlohmann::json body{{"login", a.login}};
  if (displayGiven)
    body["display_name"] = a.displayName;
  if (emailGiven)
    body["email"] = a.email;
  if (a.admin)
    body["admin"] = true;
  if (a.passwordStdin) {
    auto pw = readSecretFromStdin("the password");
    if (!pw)
      return usage(pw.error());
    body["password"] = *pw;
  } else if (stdinIsTerminal()) {
    // A user without a password still gets in through the socket or a token.
    auto pw = promptNewPassword(a.login, true);
    if (!pw)
      return usage(pw.error());
    if (!pw->empty())
      body["password"] = *pw;
  }
  HttpResponse resp;
  if (int rc = callApi(ctx, "POST", "/api/v1/users", body, &resp))
    return rc;
  // Without a password the user cannot log in to the panel: say so, and how
  // to give one, rather than leave it to be found at the login page.
  if (!body.contains("password"))
    std::cerr << "corral: user " << a.login
              << " has no password (web login is refused until one is set: "
                 "`corral user passwd "
              << a.login << "`); the unix socket and API tokens work\n";
  return printChange(resp, a.output, "created user " + a.login, userView);
}

int changePassword(const Context &ctx, const PasswdArgs &a) {
  nlohmann::json body;
  bool prompted = false;
  if (a.passwordStdin) {
    // Line 1: the new password; line 2, when changing one's own: the current
    // one.
    auto lines = readTwoLinesFromStdin("the password");
    if (!lines)
      return usage(lines.error());
    body["password"] = lines->first;
    if (!lines->second.empty())
      body["current_password"] = lines->second;
  } else if (stdinIsTerminal()) {
    auto pw = promptNewPassword(a.login, false);
    if (!pw)
      return usage(pw.error());
    body["password"] = *pw;
    prompted = true;
  } else {
    std::cerr << "corral: stdin is not a terminal: use --password-stdin to "
                 "give the new password\n";
    return kExitUsage;
  }
  HttpResponse resp;
  int rc = callApi(ctx, "PUT", userPath(a.login) + "/password", body, &resp);
  if (rc == kExitApiError && prompted &&
      errorField(resp.body) == "current_password") {
    // Changing one's own password needs the current one (admins need not): ask
    // for it only when the daemon says so.
    auto cur = promptSecret("Current password: ");
    if (!cur)
      return usage(cur.error());
    body["current_password"] = *cur;
    rc = callApi(ctx, "PUT", userPath(a.login) + "/password", body, &resp);
  }
  if (rc != kExitOk)
    return rc;
  std::cout << "changed the password of " << a.login << '\n';
  return kExitOk;
}

// ---- SSH keys

// GET /api/v1/users/{login}/keys -> ID NAME TYPE FINGERPRINT
View sshKeyListView(const nlohmann::json &body) {
  View v{{"ID", "NAME", "TYPE", "FINGERPRINT"}, {}};
  for (const auto &k : listOf(body, "keys"))
    v.rows.push_back({field(k, "id"), field(k, "name"), field(k, "type"),
                      field(k, "fingerprint")});
  return v;
}

struct KeyArgs {
  std::string user, name, file, id, output;
};

// Whose keys: --user when given, else the caller's own login as the daemon
// sees it. Returns an exit code; *login is set on kExitOk.
int keyOwner(const Context &ctx, const std::string &given, bool userGiven,
             std::string *login) {
  if (userGiven) {
    *login = given;
    return kExitOk;
  }
  HttpResponse resp;
  if (int rc = callApi(ctx, "GET", "/api/v1/whoami", std::nullopt, &resp))
    return rc;
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("login") ||
      !j["login"].is_string()) {
    std::cerr << "corral: the daemon did not say who you are (GET "
                 "/api/v1/whoami); give --user\n";
    return kExitApiError;
  }
  *login = j["login"].get<std::string>();
  return kExitOk;
}

// The key lines of an authorized_keys-like text: blank lines and #comments
// skipped, CRLF endings accepted. Each with its line number.
std::vector<std::pair<int, std::string>> keyLines(std::istream &in) {
  std::vector<std::pair<int, std::string>> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#')
      continue;
    out.emplace_back(n, line);
  }
  return out;
}

int addKeys(const Context &ctx, const KeyArgs &a, bool userGiven,
            bool nameGiven) {
  std::vector<std::pair<int, std::string>> lines;
  if (a.file == "-") {
    lines = keyLines(std::cin);
  } else {
    std::ifstream in(a.file);
    if (!in) {
      std::cerr << "corral: cannot read " << a.file << '\n';
      return kExitUsage;
    }
    lines = keyLines(in);
  }
  std::string source = a.file == "-" ? "stdin" : a.file;
  if (lines.empty()) {
    std::cerr << "corral: no SSH public key in " << source << '\n';
    return kExitUsage;
  }
  std::string login;
  if (int rc = keyOwner(ctx, a.user, userGiven, &login))
    return rc;
  int result = kExitOk;
  for (const auto &[n, line] : lines) {
    nlohmann::json body{{"key", line}};
    if (nameGiven)
      body["name"] = a.name;
    HttpResponse resp;
    if (int rc = callApi(ctx, "POST", userPath(login) + "/keys", body, &resp)) {
      // callApi said why; say which line, and go on with the others.
      std::cerr << "corral: " << source << ':' << n << ": key not added\n";
      result = rc;
      continue;
    }
    auto k = nlohmann::json::parse(resp.body, nullptr, false);
    std::cout << "added key " << field(k, "id") << " (" << field(k, "name")
              << ", " << field(k, "fingerprint") << ") to " << login << '\n';
  }
  return result;
}

void addKeyCommands(CLI::App &user, Context &ctx) {
  auto *key = user.add_subcommand(
      "key", "Manage SSH public keys, authorized in your VMs at first boot");
  key->require_subcommand(1);

  auto aa = std::make_shared<KeyArgs>();
  auto *add = key->add_subcommand(
      "add", "Add the SSH public keys of FILE (one per line; - is stdin)");
  auto *addUserOpt = add->add_option("--user", aa->user,
                                     "To this user (admins; default: you)");
  auto *nameOpt =
      add->add_option("--name", aa->name,
                      "A label for the key(s) (default: each key's comment)");
  add->add_option("FILE", aa->file,
                  "A public key file, e.g. ~/.ssh/id_ed25519.pub")
      ->required();
  add->callback([&ctx, aa, addUserOpt, nameOpt] {
    ctx.action = [&ctx, aa, addUserOpt, nameOpt] {
      return addKeys(ctx, *aa, addUserOpt->count() > 0, nameOpt->count() > 0);
    };
  });

  auto la = std::make_shared<KeyArgs>();
  auto *list = key->add_subcommand("list", "List SSH public keys");
  auto *listUser = list->add_option(
      "--user", la->user, "Another user's keys (admins; default: you)");
  addOutputOption(*list, la->output);
  list->callback([&ctx, la, listUser] {
    ctx.action = [&ctx, la, listUser] {
      std::string login;
      if (int rc = keyOwner(ctx, la->user, listUser->count() > 0, &login))
        return rc;
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", userPath(login) + "/keys", std::nullopt,
                           &resp))
        return rc;
      return printAnswer(resp, la->output, sshKeyListView);
    };
  });

  auto ra = std::make_shared<KeyArgs>();
  auto *remove = key->add_subcommand("remove", "Remove an SSH public key");
  auto *removeUser = remove->add_option(
      "--user", ra->user, "Another user's key (admins; default: you)");
  remove->add_option("ID", ra->id, "The key's id (see `corral user key list`)")
      ->required();
  remove->callback([&ctx, ra, removeUser] {
    ctx.action = [&ctx, ra, removeUser] {
      std::string login;
      if (int rc = keyOwner(ctx, ra->user, removeUser->count() > 0, &login))
        return rc;
      if (int rc =
              callApi(ctx, "DELETE",
                      userPath(login) + "/keys/" + encodePathSegment(ra->id),
                      std::nullopt, nullptr))
        return rc;
      std::cout << "removed key " << ra->id << " of " << login << '\n';
      return kExitOk;
    };
  });
}

} // namespace

void addUserCommands(CLI::App &app, Context &ctx) {
  auto *user = app.add_subcommand(
      "user", "Manage users (admins; anyone may read and change their own)");
  user->require_subcommand(1);

  auto aa = std::make_shared<AddArgs>();
  auto *add = user->add_subcommand("add", "Create a user");
  add->add_option("LOGIN", aa->login, "Login name")->required();
  auto *displayOpt =
      add->add_option("--display-name", aa->displayName, "Full name");
  auto *emailOpt = add->add_option("--email", aa->email, "Email address");
  add->add_flag("--admin", aa->admin, "Make the user an admin");
  add->add_flag("--password-stdin", aa->passwordStdin,
                "Read the password from stdin");
  addOutputOption(*add, aa->output);
  add->callback([&ctx, aa, displayOpt, emailOpt] {
    ctx.action = [&ctx, aa, displayOpt, emailOpt] {
      return addUser(ctx, *aa, displayOpt->count() > 0, emailOpt->count() > 0);
    };
  });

  auto listOut = std::make_shared<std::string>();
  auto *list = user->add_subcommand("list", "List users");
  addOutputOption(*list, *listOut);
  list->callback([&ctx, listOut] {
    ctx.action = [&ctx, listOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", "/api/v1/users", std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *listOut, userListView);
    };
  });

  auto showLogin = std::make_shared<std::string>();
  auto showOut = std::make_shared<std::string>();
  auto *show = user->add_subcommand("show", "Show one user");
  show->add_option("LOGIN", *showLogin, "Login name")->required();
  addOutputOption(*show, *showOut);
  show->callback([&ctx, showLogin, showOut] {
    ctx.action = [&ctx, showLogin, showOut] {
      HttpResponse resp;
      if (int rc =
              callApi(ctx, "GET", userPath(*showLogin), std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *showOut, userView);
    };
  });

  auto pa = std::make_shared<PasswdArgs>();
  auto *passwd = user->add_subcommand("passwd", "Set a user's password");
  passwd->add_option("LOGIN", pa->login, "Login name")->required();
  passwd->add_flag("--password-stdin", pa->passwordStdin,
                   "Read the new password from stdin (a second line: your "
                   "current password)");
  passwd->callback([&ctx, pa] {
    ctx.action = [&ctx, pa] { return changePassword(ctx, *pa); };
  });

  auto delLogin = std::make_shared<std::string>();
  auto *del = user->add_subcommand("delete", "Delete a user");
  del->add_option("LOGIN", *delLogin, "Login name")->required();
  del->callback([&ctx, delLogin] {
    ctx.action = [&ctx, delLogin] {
      if (int rc = callApi(ctx, "DELETE", userPath(*delLogin), std::nullopt,
                           nullptr))
        return rc;
      std::cout << "deleted user " << *delLogin << '\n';
      return kExitOk;
    };
  });

  addKeyCommands(*user, ctx);
}

} // namespace corral::cli
