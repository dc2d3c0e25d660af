-- Each webhook's place in the audit log (its events), and its retries of the next entry.
CREATE TABLE webhook_cursors (
    hook        TEXT PRIMARY KEY,
    after_id    BIGINT NOT NULL,
    attempts    BIGINT NOT NULL,
    next_at     BIGINT NOT NULL,
    last_error  TEXT
);

-- Deliveries given up on after their retries.
CREATE TABLE webhook_failures (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hook        TEXT NOT NULL,
    audit_id    BIGINT NOT NULL,
    error       TEXT NOT NULL,
    at          BIGINT NOT NULL
);
