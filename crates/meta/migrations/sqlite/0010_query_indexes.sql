-- Queries across images find each image's repositories by digest alone.
CREATE INDEX manifests_by_digest ON manifests (digest);
