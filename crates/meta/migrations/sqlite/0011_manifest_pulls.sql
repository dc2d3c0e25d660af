-- When each manifest was last pulled, for evicting what a pull-through cache holds. Written in
-- batches (a pull is remembered in memory first), so it may lag the newest pulls by a minute.
CREATE TABLE manifest_pulls (
    repo       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    pulled_at  BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
