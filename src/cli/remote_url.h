// A remote's URL: "https://HOST[:PORT][/]" and nothing else. TLS always (the
// daemon has no plain TCP listener); no user info, path, query or fragment,
// because the API lives at /api/v1 on the root and a token belongs in the
// config, not in a URL. Header-only for the unit tests.
#pragma once

#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "util/result.h"

namespace corral::cli {

struct RemoteUrl {
  std::string host; // without brackets for IPv6
  uint16_t port = 443;
  bool ipv6 = false;

  // "host:port" or "[v6]:port", for the Host header and messages.
  std::string authority() const {
    return ipv6 ? fmt::format("[{}]:{}", host, port)
                : fmt::format("{}:{}", host, port);
  }
};

inline Result<RemoteUrl> parseRemoteUrl(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return Error::invalidInput("url", std::string(url), why);
  };
  constexpr std::string_view scheme = "https://";
  if (url.size() < scheme.size())
    return bad("must look like https://HOST:PORT");
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(url[i])) != scheme[i]) {
      return bad(url.substr(0, 7) == "http://"
                     ? "must use https:// (the daemon speaks TLS only)"
                     : "must look like https://HOST:PORT");
    }
  std::string_view rest = url.substr(scheme.size());
  if (!rest.empty() && rest.back() == '/')
    rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos)
    return bad(
        "must be https://HOST:PORT with no user, path, query or fragment");
  RemoteUrl out;
  std::string_view portText;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos)
      return bad("has an unclosed '[' in the host");
    out.host = std::string(rest.substr(1, close - 1));
    out.ipv6 = true;
    for (char c : out.host)
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return bad("has a bad IPv6 address");
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return bad("has something after the IPv6 address that is not :PORT");
      portText = after.substr(1);
      if (portText.empty())
        return bad("has an empty port");
    }
  } else {
    size_t colon = rest.find(':');
    out.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      portText = rest.substr(colon + 1);
      if (portText.empty())
        return bad("has an empty port");
    }
    for (char c : out.host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-')
        return bad(fmt::format("has a bad character '{}' in the host", c));
  }
  if (out.host.empty())
    return bad("has no host");
  if (!portText.empty()) {
    uint32_t p = 0;
    for (char c : portText) {
      if (c < '0' || c > '9')
        return bad("has a port that is not a number");
      p = p * 10 + uint32_t(c - '0');
      if (p > 65535)
        return bad("has a port above 65535");
    }
    if (p == 0)
      return bad("has port 0");
    out.port = uint16_t(p);
  }
  return out;
}

} // namespace corral::cli
