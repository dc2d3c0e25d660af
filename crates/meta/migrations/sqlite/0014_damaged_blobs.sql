-- Blobs whose bytes are gone or wrong: the scrub found them not hashing to their digest (and moved
-- them aside), or a read found them missing. While a digest is here it reads as absent everywhere
-- (HEAD and GET 404, a manifest cannot reference it), so a client pushing it again uploads it, and
-- the upload that writes good bytes removes the row: one push repairs every repository.
CREATE TABLE damaged_blobs (
    digest    TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    found_at  BIGINT NOT NULL
);

-- Where the scrub is in its walk of the blob store, so a restart resumes the pass.
CREATE TABLE scrub_progress (
    id             BIGINT PRIMARY KEY CHECK (id = 1),
    after_digest   TEXT,
    pass_started   BIGINT NOT NULL,
    last_pass_ended BIGINT
);
