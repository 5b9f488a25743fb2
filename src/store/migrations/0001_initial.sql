-- The first schema: direct-boot images and VMs with their desired and observed state.
CREATE TABLE images (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  kind        TEXT NOT NULL CHECK (kind IN ('direct-boot')),
  kernel      TEXT NOT NULL,
  initrd      TEXT NOT NULL DEFAULT '',
  append      TEXT NOT NULL DEFAULT '',
  size_bytes  INTEGER NOT NULL DEFAULT 0,
  created_at  TEXT NOT NULL
);

CREATE TABLE vms (
  id            INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  uuid          TEXT NOT NULL UNIQUE,
  image_id      INTEGER NOT NULL REFERENCES images(id),
  memory_mib    INTEGER NOT NULL CHECK (memory_mib > 0),
  vcpus         INTEGER NOT NULL CHECK (vcpus > 0),
  on_crash      TEXT NOT NULL CHECK (on_crash IN ('restart', 'stop', 'preserve')),
  desired_state TEXT NOT NULL CHECK (desired_state IN ('running', 'paused', 'stopped')),
  state         TEXT NOT NULL CHECK (state IN ('stopped', 'starting', 'running', 'paused', 'stopping', 'crashed')),
  state_reason  TEXT NOT NULL DEFAULT '',
  pid           INTEGER,
  accel         TEXT NOT NULL DEFAULT '',
  created_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  version       INTEGER NOT NULL DEFAULT 1
);
