-- The records' own id, made once: what an S3 prefix's claim names when the records are shared
-- by several replicas (the data directory's id names it otherwise).
CREATE TABLE installation (
    id  TEXT PRIMARY KEY
);
