-- Blob links by digest: whether a namespace already holds a blob (a quota counts each blob once
-- per namespace) and whether any repository still needs its bytes, without walking every link.
CREATE INDEX blob_links_by_digest ON blob_links (digest, repo);
