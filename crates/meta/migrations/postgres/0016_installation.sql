-- The records' own id, made once: what an S3 prefix's claim names, the same for every replica.
CREATE TABLE installation (
    id  TEXT COLLATE "C" PRIMARY KEY
);
