-- The first schema (PostgreSQL): direct-boot images and VMs with their desired and observed state.
CREATE TABLE images (
  id          BIGSERIAL PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  kind        TEXT NOT NULL CHECK (kind IN ('direct-boot')),
  kernel      TEXT NOT NULL,
  initrd      TEXT NOT NULL DEFAULT '',
  append      TEXT NOT NULL DEFAULT '',
  size_bytes  BIGINT NOT NULL DEFAULT 0,
  created_at  TEXT NOT NULL
);

CREATE TABLE vms (
  id            BIGSERIAL PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  uuid          TEXT NOT NULL UNIQUE,
  image_id      BIGINT NOT NULL REFERENCES images(id),
  memory_mib    BIGINT NOT NULL CHECK (memory_mib > 0),
  vcpus         BIGINT NOT NULL CHECK (vcpus > 0),
  on_crash      TEXT NOT NULL CHECK (on_crash IN ('restart', 'stop', 'preserve')),
  desired_state TEXT NOT NULL CHECK (desired_state IN ('running', 'paused', 'stopped')),
  state         TEXT NOT NULL CHECK (state IN ('stopped', 'starting', 'running', 'paused', 'stopping', 'crashed')),
  state_reason  TEXT NOT NULL DEFAULT '',
  pid           BIGINT,
  accel         TEXT NOT NULL DEFAULT '',
  created_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  version       BIGINT NOT NULL DEFAULT 1
);
