-- Storage: disk and iso images in the library (with a file, format, checksum,
-- owner, import state), each VM's disks as volumes in storage pools, a CD drive
-- per VM, and byte progress for operations (image imports). Keep in step with
-- postgres/0003_storage.sql.
--
-- images.kind's CHECK must widen, and SQLite cannot alter a CHECK: the table is
-- rebuilt (create new, copy, drop, rename: sqlite.org/lang_altertable.html). The
-- migration runner turns foreign keys off around it (vms.image_id and, below,
-- disks reference images) and runs PRAGMA foreign_key_check before committing.
CREATE TABLE images_new (
  id           INTEGER PRIMARY KEY,
  name         TEXT NOT NULL UNIQUE,
  kind         TEXT NOT NULL CHECK (kind IN ('direct-boot', 'disk', 'iso')),
  kernel       TEXT NOT NULL DEFAULT '',
  initrd       TEXT NOT NULL DEFAULT '',
  append       TEXT NOT NULL DEFAULT '',
  size_bytes   INTEGER NOT NULL DEFAULT 0,
  created_at   TEXT NOT NULL,
  path         TEXT NOT NULL DEFAULT '',
  format       TEXT NOT NULL DEFAULT '' CHECK (format IN ('', 'qcow2', 'raw')),
  virtual_size INTEGER NOT NULL DEFAULT 0 CHECK (virtual_size >= 0),
  sha256       TEXT NOT NULL DEFAULT '',
  owner_kind   TEXT NOT NULL DEFAULT '' CHECK (owner_kind IN ('', 'user', 'group')),
  owner        TEXT NOT NULL DEFAULT '',
  state        TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('importing', 'ready')),
  description  TEXT NOT NULL DEFAULT ''
);
INSERT INTO images_new (id, name, kind, kernel, initrd, append, size_bytes, created_at)
  SELECT id, name, kind, kernel, initrd, append, size_bytes, created_at FROM images;
DROP TABLE images;
ALTER TABLE images_new RENAME TO images;

-- The CD drive: the iso image's name ('' = empty; the store refuses to delete an
-- image while a VM has it in its drive), and whether the next start boots from it.
ALTER TABLE vms ADD COLUMN cdrom TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN boot_cdrom INTEGER NOT NULL DEFAULT 0 CHECK (boot_cdrom IN (0, 1));

ALTER TABLE operations ADD COLUMN bytes_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN bytes_total INTEGER NOT NULL DEFAULT 0;

-- One row per disk of a VM (disk0 boots). A volume belongs to one disk only: two
-- rows naming one volume would let deleting one VM destroy another's disk.
CREATE TABLE disks (
  id               INTEGER PRIMARY KEY,
  vm_id            INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
  name             TEXT NOT NULL,
  pool             TEXT NOT NULL,
  volume           TEXT NOT NULL,
  path             TEXT NOT NULL,
  format           TEXT NOT NULL CHECK (format IN ('qcow2', 'raw')),
  size_bytes       INTEGER NOT NULL CHECK (size_bytes >= 0),
  encrypted        INTEGER NOT NULL DEFAULT 0 CHECK (encrypted IN (0, 1)),
  wrapped_key      TEXT NOT NULL DEFAULT '',
  backing_image_id INTEGER REFERENCES images(id),
  created_at       TEXT NOT NULL,
  UNIQUE (vm_id, name),
  UNIQUE (pool, volume)
);
CREATE INDEX disks_backing_image ON disks (backing_image_id);
CREATE INDEX vms_cdrom ON vms (cdrom);
