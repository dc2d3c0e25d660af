-- The registry core: repositories, blob links, manifests and their references, tags, uploads.
-- Portable types only (BIGINT, TEXT, BLOB), timestamps as epoch milliseconds, so that the
-- PostgreSQL migration is the same schema.

CREATE TABLE repositories (
    name        TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

-- A blob is readable in a repository only if it is linked there (pushed or mounted).
CREATE TABLE blob_links (
    repo        TEXT NOT NULL REFERENCES repositories(name),
    digest      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);

CREATE TABLE manifests (
    repo          TEXT NOT NULL REFERENCES repositories(name),
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    size          BIGINT NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repo, subject) WHERE subject IS NOT NULL;

-- What each manifest references: kind 'blob' (config, layers) or 'manifest' (index children).
CREATE TABLE manifest_refs (
    repo      TEXT NOT NULL,
    manifest  TEXT NOT NULL,
    target    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    PRIMARY KEY (repo, manifest, target)
);
CREATE INDEX manifest_refs_by_target ON manifest_refs (repo, target);

CREATE TABLE tags (
    repo        TEXT NOT NULL REFERENCES repositories(name),
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (repo, name)
);
CREATE INDEX tags_by_digest ON tags (repo, digest);

CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    repo        TEXT NOT NULL,
    received    BIGINT NOT NULL,
    hash_state  BLOB NOT NULL,
    started_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX uploads_by_age ON uploads (updated_at);
