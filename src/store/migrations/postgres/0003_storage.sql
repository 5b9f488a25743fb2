-- Storage (PostgreSQL twin of ../0003_storage.sql; keep them in step): disk and
-- iso images in the library (with a file, format, checksum, owner, import
-- state), each VM's disks as volumes in storage pools, a CD drive per VM, and
-- byte progress for operations (image imports). PostgreSQL alters the CHECK in
-- place (0001's column constraint got the default name images_kind_check).
ALTER TABLE images DROP CONSTRAINT images_kind_check;
ALTER TABLE images ADD CONSTRAINT images_kind_check CHECK (kind IN ('direct-boot', 'disk', 'iso'));
ALTER TABLE images ALTER COLUMN kernel SET DEFAULT '';
ALTER TABLE images
  ADD COLUMN path         TEXT NOT NULL DEFAULT '',
  ADD COLUMN format       TEXT NOT NULL DEFAULT '' CHECK (format IN ('', 'qcow2', 'raw')),
  ADD COLUMN virtual_size BIGINT NOT NULL DEFAULT 0 CHECK (virtual_size >= 0),
  ADD COLUMN sha256       TEXT NOT NULL DEFAULT '',
  ADD COLUMN owner_kind   TEXT NOT NULL DEFAULT '' CHECK (owner_kind IN ('', 'user', 'group')),
  ADD COLUMN owner        TEXT NOT NULL DEFAULT '',
  ADD COLUMN state        TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('importing', 'ready')),
  ADD COLUMN description  TEXT NOT NULL DEFAULT '';

-- The CD drive: the iso image's name ('' = empty; the store refuses to delete an
-- image while a VM has it in its drive), and whether the next start boots from it.
ALTER TABLE vms
  ADD COLUMN cdrom      TEXT NOT NULL DEFAULT '',
  ADD COLUMN boot_cdrom BIGINT NOT NULL DEFAULT 0 CHECK (boot_cdrom IN (0, 1));

ALTER TABLE operations
  ADD COLUMN bytes_done  BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN bytes_total BIGINT NOT NULL DEFAULT 0;

-- One row per disk of a VM (disk0 boots). A volume belongs to one disk only: two
-- rows naming one volume would let deleting one VM destroy another's disk.
CREATE TABLE disks (
  id               BIGSERIAL PRIMARY KEY,
  vm_id            BIGINT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
  name             TEXT NOT NULL,
  pool             TEXT NOT NULL,
  volume           TEXT NOT NULL,
  path             TEXT NOT NULL,
  format           TEXT NOT NULL CHECK (format IN ('qcow2', 'raw')),
  size_bytes       BIGINT NOT NULL CHECK (size_bytes >= 0),
  encrypted        BIGINT NOT NULL DEFAULT 0 CHECK (encrypted IN (0, 1)),
  wrapped_key      TEXT NOT NULL DEFAULT '',
  backing_image_id BIGINT REFERENCES images(id),
  created_at       TEXT NOT NULL,
  UNIQUE (vm_id, name),
  UNIQUE (pool, volume)
);
CREATE INDEX disks_backing_image ON disks (backing_image_id);
CREATE INDEX vms_cdrom ON vms (cdrom);
