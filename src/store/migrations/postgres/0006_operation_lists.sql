-- Operation lists per caller and the pruning of old ones, by index (PostgreSQL
-- twin of ../0006_operation_lists.sql; keep them in step).
CREATE INDEX operations_requester ON operations (requester, created_at);
CREATE INDEX operations_target ON operations (target, created_at);
CREATE INDEX operations_updated ON operations (updated_at);
