-- VM metadata (corral.metadata/v1, core/vm_metadata.h): the facts of a VM's
-- creation that never change afterwards, frozen when it is made: who made it and
-- how they came, the corral version and commit that made it, and its root image
-- as it was then (name, id, sha256). One JSON object, so that the set of facts can
-- grow without another migration; '' for VMs made before this migration (their
-- creation facts are unknown). Keep in step with postgres/0004_vm_creation.sql.
ALTER TABLE vms ADD COLUMN creation TEXT NOT NULL DEFAULT '';
