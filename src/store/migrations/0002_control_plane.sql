-- The control plane: VM owners, users, groups, memberships, quota overrides, API
-- tokens, web sessions and operations. Users and groups share one namespace (the
-- store checks it on insert), so a VM's owner is a name plus its kind. Owners and
-- quota subjects are names, not foreign keys, because they point at either table;
-- the store refuses to delete a user or group that still owns VMs.
ALTER TABLE vms ADD COLUMN owner_kind TEXT NOT NULL DEFAULT 'user' CHECK (owner_kind IN ('user', 'group'));
ALTER TABLE vms ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN administrator TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN contact TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN disk_gib INTEGER NOT NULL DEFAULT 0 CHECK (disk_gib >= 0);
CREATE INDEX vms_owner ON vms (owner_kind, owner);
CREATE INDEX vms_administrator ON vms (administrator);

CREATE TABLE users (
  id            INTEGER PRIMARY KEY,
  login         TEXT NOT NULL UNIQUE,
  display_name  TEXT NOT NULL DEFAULT '',
  email         TEXT NOT NULL DEFAULT '',
  password_hash TEXT NOT NULL DEFAULT '',
  admin         INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
  created_at    TEXT NOT NULL,
  version       INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE groups (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL DEFAULT '',
  created_at  TEXT NOT NULL
);

CREATE TABLE memberships (
  group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  PRIMARY KEY (group_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE quotas (
  subject_kind         TEXT NOT NULL CHECK (subject_kind IN ('user', 'group')),
  subject              TEXT NOT NULL,
  max_vms              INTEGER,
  max_running          INTEGER,
  max_memory_total_mib INTEGER,
  min_memory_vm_mib    INTEGER,
  max_memory_vm_mib    INTEGER,
  max_disk_total_gib   INTEGER,
  max_disk_vm_gib      INTEGER,
  PRIMARY KEY (subject_kind, subject)
);

CREATE TABLE tokens (
  id          INTEGER PRIMARY KEY,
  user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name        TEXT NOT NULL DEFAULT '',
  secret_hash TEXT NOT NULL UNIQUE,
  created_at  TEXT NOT NULL,
  expires_at  TEXT NOT NULL DEFAULT '',
  revoked_at  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE sessions (
  id_hash    TEXT PRIMARY KEY,
  user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  csrf_token TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- seq orders operations made within one second (created_at has seconds only).
CREATE TABLE operations (
  seq        INTEGER PRIMARY KEY,
  id         TEXT NOT NULL UNIQUE,
  kind       TEXT NOT NULL,
  target     TEXT NOT NULL DEFAULT '',
  requester  TEXT NOT NULL DEFAULT '',
  state      TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
  progress   INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
  result     TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX operations_state ON operations (state);

-- VMs made before owners existed were root's (the only caller then).
UPDATE vms SET owner = 'root', administrator = 'root' WHERE owner = '';
