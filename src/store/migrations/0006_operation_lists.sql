-- Operation lists per caller and the pruning of old ones, by index (keep in
-- step with postgres/0006_operation_lists.sql): a user's list is their own
-- requests plus the vm.* operations on VMs they may see, never a scan of the
-- newest rows that another user's flood could push theirs out of.
CREATE INDEX operations_requester ON operations (requester, created_at);
CREATE INDEX operations_target ON operations (target, created_at);
CREATE INDEX operations_updated ON operations (updated_at);
