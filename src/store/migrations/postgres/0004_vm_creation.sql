-- VM metadata (PostgreSQL twin of ../0004_vm_creation.sql; keep them in step):
-- the frozen facts of a VM's creation as one JSON object ('' when unknown: VMs
-- made before this migration). TEXT rather than JSONB: the store never queries
-- inside it, and core/vm_metadata.h parses it.
ALTER TABLE vms ADD COLUMN creation TEXT NOT NULL DEFAULT '';
