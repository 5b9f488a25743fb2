// What `corral image import` sends, as pure functions of the parsed command
// line (header-only: the unit tests compile the same code): the JSON body of
// POST /api/v1/images, the target of the streamed PUT
// /api/v1/images/{name}/file, and which of the two is used.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cli/parse.h"

namespace corral::cli {

struct ImportRequest {
  std::string name;
  std::string kind; // "disk", "iso" or "direct-boot"
  std::string file; // the --disk, --iso or --kernel file
  std::string initrd, append, owner, description, format, output;
  bool appendGiven = false, ownerGiven = false, descriptionGiven = false,
       formatGiven = false;
  bool upload = false, noWait = false;
};

// The file's bytes travel (PUT .../file) to a remote daemon or with --upload;
// the local daemon otherwise reads the path. A direct-boot image always goes
// by path: its kernel and initrd are the daemon host's files.
inline bool importUploads(const ImportRequest &r, bool unixSocket) {
  return r.kind != "direct-boot" && (r.upload || !unixSocket);
}

// POST /api/v1/images: only the keys that were given (paths as the caller made
// them: absolute).
inline nlohmann::json importBody(const ImportRequest &r) {
  nlohmann::json body{{"name", r.name}, {"kind", r.kind}};
  if (r.kind == "direct-boot") {
    body["kernel"] = r.file;
    if (!r.initrd.empty())
      body["initrd"] = r.initrd;
    if (r.appendGiven)
      body["append"] = r.append;
  } else {
    body["path"] = r.file;
  }
  if (r.ownerGiven)
    body["owner"] = r.owner;
  if (r.descriptionGiven)
    body["description"] = r.description;
  if (r.formatGiven)
    body["format"] = r.format;
  return body;
}

// PUT /api/v1/images/{name}/file?kind=...[&owner=...][&description=...]
// [&format=...], every value percent-encoded.
inline std::string importUploadTarget(const ImportRequest &r) {
  std::string t = "/api/v1/images/" + encodePathSegment(r.name) +
                  "/file?kind=" + encodePathSegment(r.kind);
  if (r.ownerGiven)
    t += "&owner=" + encodePathSegment(r.owner);
  if (r.descriptionGiven)
    t += "&description=" + encodePathSegment(r.description);
  if (r.formatGiven)
    t += "&format=" + encodePathSegment(r.format);
  return t;
}

} // namespace corral::cli
