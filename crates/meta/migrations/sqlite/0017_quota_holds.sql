-- Bytes held against namespaces' quotas, shared by every replica: the writes under way (settled 0)
-- and, for a while, the ones recorded (settled 1), whose ids only grow: a count of a namespace's
-- stored bytes begun after reading the largest id misses none of the settled rows up to it.
CREATE TABLE quota_holds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace   TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    settled     INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE INDEX quota_holds_by_namespace ON quota_holds (namespace, id);
CREATE INDEX quota_holds_by_expiry ON quota_holds (expires_ms);
