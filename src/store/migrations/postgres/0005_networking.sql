-- Networking (PostgreSQL twin of ../0005_networking.sql; keep them in step):
-- admin-defined networks, each VM's NICs with their pool address and hostname,
-- and users' SSH public keys (for cloud-init).
--
-- A network is user-mode (QEMU's slirp, host port forwards bound to
-- forward_bind), nat (a bridge corral makes, dnsmasq, masquerade) or bridged (a
-- tap on an existing host bridge). subnet/gateway/pool/dns/domain are '' for
-- user-mode networks.
CREATE TABLE networks (
  id           BIGSERIAL PRIMARY KEY,
  name         TEXT NOT NULL UNIQUE,
  mode         TEXT NOT NULL CHECK (mode IN ('user', 'nat', 'bridged')),
  bridge       TEXT NOT NULL DEFAULT '',
  subnet       TEXT NOT NULL DEFAULT '',
  gateway      TEXT NOT NULL DEFAULT '',
  pool_start   TEXT NOT NULL DEFAULT '',
  pool_end     TEXT NOT NULL DEFAULT '',
  dns          TEXT NOT NULL DEFAULT '',
  domain       TEXT NOT NULL DEFAULT '',
  forward_bind TEXT NOT NULL DEFAULT '',
  description  TEXT NOT NULL DEFAULT '',
  created_at   TEXT NOT NULL
);

-- One row per NIC of a VM. ip and hostname are NULL on user-mode networks; on the
-- others the database keeps each unique per network, so two creates racing for
-- the last address or one hostname give one NIC and one AlreadyExists.
CREATE TABLE nics (
  id         BIGSERIAL PRIMARY KEY,
  vm_id      BIGINT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
  name       TEXT NOT NULL,
  network_id BIGINT NOT NULL REFERENCES networks(id),
  model      TEXT NOT NULL CHECK (model IN ('virtio-net', 'e1000')),
  mac        TEXT NOT NULL UNIQUE,
  ip         TEXT,
  hostname   TEXT,
  forwards   TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  UNIQUE (vm_id, name),
  UNIQUE (network_id, ip),
  UNIQUE (network_id, hostname)
);
CREATE INDEX nics_network ON nics (network_id);

-- A user's SSH public keys, one line each as OpenSSH writes it; fingerprint is
-- "SHA256:<base64>" of the key blob, unique per user.
CREATE TABLE ssh_keys (
  id          BIGSERIAL PRIMARY KEY,
  user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name        TEXT NOT NULL DEFAULT '',
  key         TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  UNIQUE (user_id, fingerprint)
);

-- A fresh install has one user-mode network, "default", that needs no privilege:
-- new VMs get a NIC on it unless told otherwise. An admin may delete it for good.
INSERT INTO networks (name, mode, forward_bind, description, created_at)
  VALUES ('default', 'user', '127.0.0.1', 'QEMU user-mode networking; port forwards on 127.0.0.1',
          to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
