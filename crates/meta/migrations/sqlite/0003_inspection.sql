-- Inspection: a job per image manifest to inspect, enqueued in the transaction that stores the
-- manifest, so no acknowledged push goes uninspected; and the report of each inspected manifest,
-- by digest (the same bytes have the same report in every repository).

CREATE TABLE inspection_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    -- queued, running, done, failed
    state       TEXT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    run_after   BIGINT NOT NULL,
    lease_until BIGINT,
    last_error  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (repo, digest)
);
CREATE INDEX inspection_jobs_due ON inspection_jobs (state, run_after);

CREATE TABLE inspection_reports (
    digest       TEXT PRIMARY KEY,
    report       TEXT NOT NULL,
    db_version   TEXT NOT NULL,
    inspected_at BIGINT NOT NULL,
    millis       BIGINT NOT NULL
);
